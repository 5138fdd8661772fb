package sdk

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// TestKilledWorkersTaskRecoveredPromptly checks how fast a task leased by a
// worker process that died (simulated by leasing through the dequeue script
// and never acking) is recovered: within lease + janitor interval + slack,
// three times in a row. The janitors run with a 15-minute lock TTL: the lock
// is released after every round, so its TTL never delays the next round,
// whichever janitor runs it.
func TestKilledWorkersTaskRecoveredPromptly(t *testing.T) {
	const (
		queue    = "recover"
		lease    = 500 * time.Millisecond
		interval = 200 * time.Millisecond
		slack    = time.Second
		bound    = lease + interval + slack
		rounds   = 3
		procs    = 3 // worker processes (or janitors), each with its own client
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lock := testQueueKeys(t, queue).Key("lock")

	// startJanitors runs n standalone janitors of queue with the long lock TTL, each
	// on its own connection, and returns a function that stops them and
	// waits until they have.
	startJanitors := func(t *testing.T, queue string, n int) (stop func()) {
		t.Helper()
		jctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			j := newTestJanitor(t, srv.Client(t), JanitorConfig{Queues: []string{queue}, LockTTL: 15 * time.Minute, Interval: interval})
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = j.Run(jctx)
			}()
		}
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
		t.Cleanup(stop)
		return stop
	}
	// checkTiming checks when the dead worker's task was recovered, measured
	// from just after its lease was granted.
	checkTiming := func(t *testing.T, round int, elapsed time.Duration) {
		t.Helper()
		t.Logf("round %d: recovered %s after the lease", round, elapsed.Round(time.Millisecond))
		if elapsed > bound {
			t.Errorf("round %d: recovered after %s, want within lease %s + interval %s + slack %s", round, elapsed, lease, interval, slack)
		}
		if elapsed < lease-100*time.Millisecond {
			t.Errorf("round %d: recovered after %s, before the %s lease expired", round, elapsed, lease)
		}
	}

	t.Run("janitors alone reclaim every time", func(t *testing.T) {
		// No worker runs, so nothing but the janitors can reclaim: if a
		// janitor kept the lock after its round, no round would run for
		// 15 minutes and the later rounds would time out.
		stop := startJanitors(t, queue, procs)
		for round := 1; round <= rounds; round++ {
			info := enqueueOne(t, c, queue, "job", MaxRetry(10))
			got := leaseDirect(t, c.Loader(), queue, 1, lease)
			t0 := time.Now()
			if len(got) != 1 || got[0].ID != info.ID {
				t.Fatalf("round %d: the dead worker leased %v, want %s", round, got, info.ID)
			}
			waitFor(t, bound+time.Second, "the janitors to reclaim the lease", func() bool {
				s := mustReadQueue(t, rdb, queue)
				_, active := s.active[info.ID]
				return !active && s.errors[info.ID] == "lease expired"
			})
			checkTiming(t, round, time.Since(t0))
			s := mustReadQueue(t, rdb, queue)
			if _, ok := s.scheduled[info.ID]; !ok || s.stat("failed") != round {
				t.Fatalf("round %d: scheduled %v, stats %v; want the task waiting for its retry, %d failed runs", round, s.scheduled, s.stats, round)
			}
		}
		stop()
		if n := rdb.Exists(ctx, lock).Val(); n != 0 {
			t.Errorf("lock left after the janitors stopped: %q, TTL %s", rdb.Get(ctx, lock).Val(), rdb.PTTL(ctx, lock).Val())
		}
	})

	t.Run("live workers run it every time", func(t *testing.T) {
		// Idle workers do not wake for lease deadlines: the janitors
		// reclaim the lease and the retry's wake signal brings the task to
		// an idle worker. This checks that end-to-end bound; the subtest
		// above isolates the janitors.
		const queue2 = queue + "-w"
		// The same long-TTL janitors, over this subtest's queue, besides
		// the workers' built-in ones.
		startJanitors(t, queue2, procs)

		type run struct {
			id      string
			retried int
			at      time.Time
		}
		victims := make(chan run, 10)
		var gates [rounds + 1]chan struct{}
		for i := range gates {
			gates[i] = make(chan struct{})
		}
		var blockersStarted atomic.Int32
		var workers []*Worker
		for i := 0; i < procs; i++ {
			// Each worker process has its own client, a 500ms lease, and
			// its built-in janitor every 200ms.
			w, _ := newTestWorker(t, srv.Client(t), WorkerConfig{
				Queues: map[string]int{queue2: 1}, Concurrency: 1,
				LeaseDuration: lease, JanitorInterval: interval,
			})
			w.HandleFunc("block", func(hctx context.Context, task *Task) error {
				blockersStarted.Add(1)
				round, _ := strconv.Atoi(string(task.Payload))
				select {
				case <-gates[round]:
				case <-hctx.Done():
				}
				return nil
			})
			w.HandleFunc("victim", func(hctx context.Context, task *Task) error {
				victims <- run{task.ID, task.Retried, time.Now()}
				return nil
			})
			workers = append(workers, w)
		}
		for _, w := range workers {
			runWorker(t, w)
		}
		for round := 1; round <= rounds; round++ {
			// Keep every live worker busy so that only the dead worker
			// can lease the victim.
			batch := make([]NewTask, procs)
			for i := range batch {
				batch[i] = NewTask{Type: "block", Payload: []byte(strconv.Itoa(round))}
			}
			if _, err := c.EnqueueBatch(ctx, queue2, batch); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 3*time.Second, "every live worker to be busy", func() bool { return blockersStarted.Load() == int32(procs*round) })
			info := enqueueOne(t, c, queue2, "victim", MaxRetry(10))
			got := leaseDirect(t, c.Loader(), queue2, 1, lease)
			t0 := time.Now()
			if len(got) != 1 || got[0].ID != info.ID {
				t.Fatalf("round %d: the dead worker leased %v, want %s", round, got, info.ID)
			}
			close(gates[round]) // the live workers go idle
			v := recv(t, victims, bound+time.Second, "the victim to run on a live worker")
			if v.id != info.ID || v.retried != 1 {
				t.Fatalf("round %d: ran %s (retried %d), want %s retried once (the dead worker's lease counts as a failed run)", round, v.id, v.retried, info.ID)
			}
			checkTiming(t, round, v.at.Sub(t0))
			waitFor(t, 3*time.Second, "the round's tasks to complete", func() bool {
				qi, err := c.QueueInfo(ctx, queue2)
				return err == nil && qi.Processed == int64((procs+1)*round)
			})
		}
		qi, err := c.QueueInfo(ctx, queue2)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Failed != rounds || qi.Retried != rounds || qi.Active != 0 || qi.Scheduled != 0 || qi.Pending != 0 {
			t.Errorf("QueueInfo %+v: want one failed run (the expired lease) per round and nothing left", qi)
		}
	})
}

// enqueueOne enqueues one task with no payload through c.
func enqueueOne(t *testing.T, c *Client, queue, taskType string, opts ...Option) *TaskInfo {
	t.Helper()
	info, err := c.Enqueue(context.Background(), queue, taskType, nil, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return info
}
