package sdk

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestKilledWorkersTaskRecoveredPromptly checks how soon a task leased by a
// worker process that died (simulated by leasing through the dequeue script
// and never acking) is recovered, three times in a row: never before its
// lease expired, and at the first chance after. "Soon" is measured in events
// the test observed, not in seconds a loaded machine could miss: the first
// janitor round sent after the lease expired must reclaim it, and live
// workers must run it before the janitors have gone through a few more
// rounds. The janitors run with a 15-minute lock TTL: the lock is released
// after every round, so its TTL never delays the next round, whichever
// janitor runs it.
func TestKilledWorkersTaskRecoveredPromptly(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	r := &recoveryRig{srv: srv, rdb: rdb, c: c, log: newCallLog(t)}
	t.Run("janitors alone reclaim every time", r.janitorsAlone)
	t.Run("live workers run it every time", r.liveWorkers)
}

const (
	recoveryLease    = 500 * time.Millisecond
	recoveryInterval = 200 * time.Millisecond
	recoveryRounds   = 3
	recoveryProcs    = 3 // worker processes (or janitors), each with its own client
	// recoveryRoundsToRun is how many janitor rounds may begin after the
	// victim's lease expired before a live worker runs it. A janitor
	// reclaims the lease and the retry it schedules wakes an idle worker,
	// which then needs a few calls; the six janitors, each every 200ms with four calls a
	// round, run at most 30 rounds a second in the same process, slowed by
	// load as much as the workers (at load 13, 10 rounds at worst), so a
	// worker that slept through its chance (until its 30s MaxIdleWait)
	// would let hundreds pass.
	recoveryRoundsToRun = 60
)

// recoveryRig holds what the subtests of
// TestKilledWorkersTaskRecoveredPromptly share.
type recoveryRig struct {
	srv *redistest.Server
	rdb *redis.Client
	c   *Client
	log *callLog // every janitor's and worker's script calls
}

// hookedClient returns a new client of the server that records its script
// calls in r.log, as a separate process's would be.
func (r *recoveryRig) hookedClient(t *testing.T) *redis.Client {
	rc := r.srv.Client(t)
	rc.AddHook(r.log)
	return rc
}

// startJanitors runs n standalone janitors of queue with the long lock
// TTL, each on its own connection, and returns a function that stops them
// and waits until they have.
func (r *recoveryRig) startJanitors(t *testing.T, queue string, n int) (stop func()) {
	t.Helper()
	jctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		j := newTestJanitor(t, r.hookedClient(t), JanitorConfig{Queues: []string{queue}, LockTTL: 15 * time.Minute, Interval: recoveryInterval})
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

// leaseDead leases the one pending task of queue as a worker that then dies,
// checks it is want, and returns its lease deadline (Unix ms, server clock).
func (r *recoveryRig) leaseDead(t *testing.T, round int, queue, want string) int64 {
	t.Helper()
	got := leaseDirect(t, r.c.loader, queue, 1, recoveryLease)
	if len(got) != 1 || got[0].ID != want {
		t.Fatalf("round %d: the dead worker leased %v, want %s", round, got, want)
	}
	deadline, ok := mustReadQueue(t, r.rdb, queue).active[want]
	if !ok {
		t.Fatalf("round %d: %s is not active after the lease", round, want)
	}
	return deadline
}

func (r *recoveryRig) janitorsAlone(t *testing.T) {
	// No worker runs, so nothing but the janitors can reclaim: if a janitor
	// kept the lock after its round, no round would run for 15 minutes and
	// the wait would hit the hang guard.
	const queue = "recover"
	stop := r.startJanitors(t, queue, recoveryProcs)
	for round := 1; round <= recoveryRounds; round++ {
		r.log.reset()
		info := enqueueOne(t, r.c, queue, "job", MaxRetry(10))
		deadline := r.leaseDead(t, round, queue, info.ID)
		waitFor(t, hangGuard, "the janitors to reclaim the lease", func() bool {
			s := mustReadQueue(t, r.rdb, queue)
			_, active := s.active[info.ID]
			return !active && s.errors[info.ID] == "lease expired"
		})
		// The reclaiming call's reply may reach its janitor after this test
		// saw the effect.
		waitFor(t, hangGuard, "the reclaiming janitor to get its reply", func() bool {
			for _, c := range r.log.of("clean") {
				if cleanReclaimed(c) > 0 {
					return true
				}
			}
			return false
		})
		checkFirstRoundReclaims(t, round, r.log.of("clean"), deadline)
		s := mustReadQueue(t, r.rdb, queue)
		if _, ok := s.scheduled[info.ID]; !ok || s.stat("failed") != round {
			t.Fatalf("round %d: scheduled %v, stats %v; want the task waiting for its retry, %d failed runs", round, s.scheduled, s.stats, round)
		}
	}
	stop()
	ctx := context.Background()
	if lock := testQueueKeys(t, queue).Key("lock"); r.rdb.Exists(ctx, lock).Val() != 0 {
		t.Errorf("lock left after the janitors stopped: %q, TTL %s", r.rdb.Get(ctx, lock).Val(), r.rdb.PTTL(ctx, lock).Val())
	}
}

// checkFirstRoundReclaims checks, from the janitors' clean calls, that the
// lease ending at deadline (Unix ms, server clock) was reclaimed by exactly
// one call, which ran after the deadline, and that no call sent after the
// deadline and answered before that one began left it: the first round
// that could reclaim it did. A clean call reclaims the leases whose deadline
// is before the server's now, and the server runs a call after the client
// sent it, so a call sent after the deadline must reclaim it.
func checkFirstRoundReclaims(t *testing.T, round int, calls []scriptCall, deadline int64) {
	t.Helper()
	var reclaimer *scriptCall
	for i := range calls {
		switch n := cleanReclaimed(calls[i]); {
		case n < 0:
			t.Errorf("round %d: a clean call failed: %v", round, calls[i].err)
		case n > 0 && reclaimer != nil:
			t.Errorf("round %d: two clean calls reclaimed a lease, want one", round)
		case n > 0:
			reclaimer = &calls[i]
		}
	}
	if reclaimer == nil {
		t.Fatalf("round %d: no clean call reclaimed the lease (%d calls)", round, len(calls))
	}
	t.Logf("round %d: reclaimed by a clean call answered %s after the lease ended", round, time.Duration(reclaimer.end.UnixMilli()-deadline)*time.Millisecond)
	if reclaimer.end.UnixMilli() <= deadline {
		t.Errorf("round %d: reclaimed by a call answered at %d ms, not after the lease ended at %d ms", round, reclaimer.end.UnixMilli(), deadline)
	}
	for _, c := range calls {
		if c.start.UnixMilli() > deadline && c.end.Before(reclaimer.start) {
			t.Errorf("round %d: a clean call sent %s after the lease ended left it; reclaimed only by a later round", round, time.Duration(c.start.UnixMilli()-deadline)*time.Millisecond)
		}
	}
}

// recoveryRun is one run of the victim task on a live worker.
type recoveryRun struct {
	id      string
	retried int
	at      time.Time
}

// startLiveWorkers runs recoveryProcs workers of queue, each with its own
// client, a 500ms lease and its built-in janitor every 200ms. Each "block"
// task (payload: the round) holds a worker until gates[round] closes; each
// "victim" run is sent to victims. It returns how many blockers started.
func (r *recoveryRig) startLiveWorkers(t *testing.T, queue string, gates []chan struct{}, victims chan<- recoveryRun) *atomic.Int32 {
	var blockersStarted atomic.Int32
	for i := 0; i < recoveryProcs; i++ {
		w, _ := newTestWorker(t, r.hookedClient(t), WorkerConfig{
			Queues: map[string]int{queue: 1}, Concurrency: 1,
			LeaseDuration: recoveryLease, JanitorInterval: recoveryInterval,
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
			victims <- recoveryRun{task.ID, task.Retried, time.Now()}
			return nil
		})
		runWorker(t, w)
	}
	return &blockersStarted
}

func (r *recoveryRig) liveWorkers(t *testing.T) {
	// Here an idle worker's own dequeue may reclaim the lease too (its idle
	// wait ends when the first lease may be reclaimed), so this checks the
	// end-to-end path; the subtest above isolates the janitors.
	const queue = "recover-w"
	ctx := context.Background()
	// The same long-TTL janitors, over this subtest's queue, besides the
	// workers' built-in ones.
	r.startJanitors(t, queue, recoveryProcs)
	victims := make(chan recoveryRun, 10)
	gates := make([]chan struct{}, recoveryRounds+1)
	for i := range gates {
		gates[i] = make(chan struct{})
	}
	blockersStarted := r.startLiveWorkers(t, queue, gates, victims)
	for round := 1; round <= recoveryRounds; round++ {
		// Keep every live worker busy so that only the dead worker can
		// lease the victim.
		batch := make([]NewTask, recoveryProcs)
		for i := range batch {
			batch[i] = NewTask{Type: "block", Payload: []byte(strconv.Itoa(round))}
		}
		if _, err := r.c.EnqueueBatch(ctx, queue, batch); err != nil {
			t.Fatal(err)
		}
		waitFor(t, hangGuard, "every live worker to be busy", func() bool { return blockersStarted.Load() == int32(recoveryProcs*round) })
		r.log.reset()
		info := enqueueOne(t, r.c, queue, "victim", MaxRetry(10))
		deadline := r.leaseDead(t, round, queue, info.ID)
		close(gates[round]) // the live workers go idle
		v := recv(t, victims, hangGuard, "the victim to run on a live worker")
		if v.id != info.ID || v.retried != 1 {
			t.Fatalf("round %d: ran %s (retried %d), want %s retried once (the dead worker's lease counts as a failed run)", round, v.id, v.retried, info.ID)
		}
		checkRanSoonAfterLease(t, round, v.at, deadline, r.log.of("clean"))
		waitFor(t, hangGuard, "the round's tasks to complete", func() bool {
			qi, err := r.c.QueueInfo(ctx, queue)
			return err == nil && qi.Processed == int64((recoveryProcs+1)*round)
		})
	}
	qi, err := r.c.QueueInfo(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Failed != recoveryRounds || qi.Retried != recoveryRounds || qi.Active != 0 || qi.Scheduled != 0 || qi.Pending != 0 {
		t.Errorf("QueueInfo %+v: want one failed run (the expired lease) per round and nothing left", qi)
	}
}

// checkRanSoonAfterLease checks that the victim, whose dead lease ended at
// deadline (Unix ms, server clock), ran at ranAt: after the lease ended, and
// before the janitors had begun recoveryRoundsToRun clean rounds after it.
func checkRanSoonAfterLease(t *testing.T, round int, ranAt time.Time, deadline int64, cleans []scriptCall) {
	t.Helper()
	rounds := 0
	for _, c := range cleans {
		if c.start.UnixMilli() > deadline && c.start.Before(ranAt) {
			rounds++
		}
	}
	t.Logf("round %d: ran %s after the lease ended, %d janitor rounds after it", round, time.Duration(ranAt.UnixMilli()-deadline)*time.Millisecond, rounds)
	if ranAt.UnixMilli() <= deadline {
		t.Errorf("round %d: ran at %d ms, before the dead worker's lease ended at %d ms", round, ranAt.UnixMilli(), deadline)
	}
	if rounds >= recoveryRoundsToRun {
		t.Errorf("round %d: ran only after %d janitor rounds had begun after the lease ended, want fewer than %d: the idle workers missed it", round, rounds, recoveryRoundsToRun)
	}
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
