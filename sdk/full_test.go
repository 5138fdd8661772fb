package sdk

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Tests of a Redis that is full: maxmemory reached with the noeviction
// policy. Enqueueing is refused with ErrServerFull before anything is
// written; everything a worker does keeps working, so workers drain the
// queues.

// fullServer starts a private redis-server capped at 20 MB with the
// noeviction policy (an external server cannot be reconfigured).
func fullServer(t *testing.T) (*redistest.Server, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "20mb", "--maxmemory-policy", "noeviction"))
	if srv.External() {
		t.Skip("needs a redis-server of its own to set maxmemory; unset LUAQ_REDIS_URL")
	}
	return srv, srv.Client(t)
}

// ballast fills a server with filler keys until it refuses a write for
// memory, and keeps it full on demand.
type ballast struct {
	rdb *redis.Client
	n   int
}

// fill writes filler keys until the server refuses one for memory: 64 KiB
// values first, then smaller ones, so that the refusal is not caused by the
// refused command's own bytes and the server stays over its limit. It
// returns how many keys it wrote.
func (b *ballast) fill(t *testing.T) int {
	t.Helper()
	added := 0
	for _, size := range []int{64 << 10, 1 << 10, 16} {
		value := strings.Repeat("x", size)
		for {
			err := b.rdb.Set(context.Background(), fmt.Sprintf("ballast:%d", b.n), value, 0).Err()
			if err != nil {
				if !strings.HasPrefix(err.Error(), "OOM ") {
					t.Errorf("filling the server: %v", err)
				}
				break
			}
			b.n++
			added++
		}
	}
	return added
}

// keepFull refills the server every few milliseconds, so that memory the
// workers free is taken again, until the returned stop function is called
// (at the latest when the test ends).
func (b *ballast) keepFull(t *testing.T) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			b.fill(t)
			select {
			case <-quit:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

// empty deletes every filler key.
func (b *ballast) empty(t *testing.T) {
	t.Helper()
	for i := 0; i < b.n; i += 500 {
		var batch []string
		for j := i; j < min(i+500, b.n); j++ {
			batch = append(batch, fmt.Sprintf("ballast:%d", j))
		}
		if err := b.rdb.Del(context.Background(), batch...).Err(); err != nil {
			t.Fatalf("emptying the ballast: %v", err)
		}
	}
	b.n = 0
}

func TestEnqueueRefusedWhenFullLeavesNothing(t *testing.T) {
	_, rdb := fullServer(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.Enqueue(ctx, "q", "t", []byte("first")); err != nil {
		t.Fatal(err)
	}
	b := &ballast{rdb: rdb}
	b.fill(t)
	before := mustReadQueue(t, rdb, "q")
	tasks := []NewTask{{Type: "t", Payload: []byte("a")}, {Type: "t", Payload: []byte("b"), Options: []Option{Unique("u", time.Hour)}}}
	_, err = c.EnqueueBatch(ctx, "q", tasks)
	if !errors.Is(err, ErrServerFull) {
		t.Fatalf("EnqueueBatch on a full server: err = %v, want ErrServerFull", err)
	}
	if n := strings.Count(err.Error(), "luaq: "); n != 1 || !strings.HasPrefix(err.Error(), "luaq: ") {
		t.Errorf("error %q should start with the one luaq: prefix", err)
	}
	if diff := cmp.Diff(before, mustReadQueue(t, rdb, "q"), cmp.AllowUnexported(queueState{})); diff != "" {
		t.Errorf("a refused enqueue changed the queue (-before +after):\n%s", diff)
	}
	b.empty(t)
	if _, err := c.EnqueueBatch(ctx, "q", tasks); err != nil {
		t.Fatalf("EnqueueBatch once memory is free: %v", err)
	}
}

// fullRunLog records what the handlers of the drain test saw.
type fullRunLog struct {
	mu        sync.Mutex
	starts    map[string]int
	cancelled []string
}

func (l *fullRunLog) handler(run time.Duration) HandlerFunc {
	return func(ctx context.Context, task *Task) error {
		l.mu.Lock()
		l.starts[task.ID]++
		first := l.starts[task.ID] == 1
		l.mu.Unlock()
		select {
		case <-time.After(run):
		case <-ctx.Done():
			l.mu.Lock()
			l.cancelled = append(l.cancelled, fmt.Sprintf("%s: %v", task.ID, context.Cause(ctx)))
			l.mu.Unlock()
			return ctx.Err()
		}
		if first && strings.HasSuffix(task.ID, "-fails-once") {
			return errors.New("planned failure")
		}
		return nil
	}
}

func TestWorkerStartedWhileFullDrainsTheQueue(t *testing.T) {
	_, rdb := fullServer(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const lease = 1500 * time.Millisecond
	run := lease * 3 / 2 // each handler outlives its first lease
	var ids []string
	for i := range 40 {
		id := fmt.Sprintf("task-%d", i)
		if i%4 == 0 {
			id += "-fails-once" // exercises retry-or-archive while full
		}
		ids = append(ids, id)
		if _, err := c.Enqueue(ctx, "q", "slow", nil, ID(id)); err != nil {
			t.Fatal(err)
		}
	}

	b := &ballast{rdb: rdb}
	b.fill(t)
	if _, err := c.Enqueue(ctx, "q", "slow", nil); !errors.Is(err, ErrServerFull) {
		t.Fatalf("Enqueue on a full server: err = %v, want ErrServerFull", err)
	}
	stopFilling := b.keepFull(t)
	spellStart := time.Now()

	runs := &fullRunLog{starts: map[string]int{}}
	w, logs := newTestWorker(t, rdb, WorkerConfig{
		Queues: map[string]int{"q": 1}, Concurrency: 20, LeaseDuration: lease,
		JanitorInterval: 200 * time.Millisecond,
	})
	w.Handle("slow", runs.handler(run))
	runWorker(t, w)
	waitFor(t, time.Minute, "the worker to drain the queue while the server is full", func() bool {
		info, err := c.QueueInfo(ctx, "q")
		return err == nil && info.Processed == int64(len(ids))
	})
	checkStillFullAndRegistered(t, c, w, spellStart, 2*lease)
	stopFilling()
	spell := time.Since(spellStart)

	b.empty(t)
	if _, err := c.Enqueue(ctx, "q", "slow", nil, ID("after")); err != nil {
		t.Fatalf("Enqueue once memory is free: %v", err)
	}
	waitFor(t, time.Minute, "the task enqueued after the full spell", func() bool {
		info, err := c.QueueInfo(ctx, "q")
		return err == nil && info.Processed == int64(len(ids))+1
	})
	checkRunsExactlyOnce(t, runs, append(ids, "after"))
	if logs.contains("lease lost") {
		t.Errorf("a lease was lost while the server was full")
	}
	t.Logf("drained %d tasks on a full server in a %s full spell (lease %s, handler %s), %d handlers cancelled",
		len(ids), spell.Round(time.Millisecond), lease, run, len(runs.cancelled))
}

// checkStillFullAndRegistered checks, after at least minSpell of the full
// spell, that the server still refuses enqueues and the worker's heartbeat
// kept it registered.
func checkStillFullAndRegistered(t *testing.T, c *Client, w *Worker, spellStart time.Time, minSpell time.Duration) {
	t.Helper()
	if d := minSpell - time.Since(spellStart); d > 0 {
		time.Sleep(d)
	}
	ctx := context.Background()
	if _, err := c.Enqueue(ctx, "q", "slow", nil); !errors.Is(err, ErrServerFull) {
		t.Errorf("Enqueue at the end of the full spell: err = %v, want ErrServerFull", err)
	}
	workers, err := c.Workers(ctx, "q", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(workers) != 1 || workers[0].ID != w.id {
		t.Errorf("after %s of full server, Workers = %+v, want the running worker", time.Since(spellStart), workers)
	}
}

// checkRunsExactlyOnce checks that every task ran once (twice for those
// planned to fail once) and no handler was cancelled.
func checkRunsExactlyOnce(t *testing.T, runs *fullRunLog, ids []string) {
	t.Helper()
	runs.mu.Lock()
	defer runs.mu.Unlock()
	want := map[string]int{}
	for _, id := range ids {
		want[id] = 1
		if strings.HasSuffix(id, "-fails-once") {
			want[id] = 2
		}
	}
	if diff := cmp.Diff(want, runs.starts); diff != "" {
		t.Errorf("handler runs per task (-want +got):\n%s", diff)
	}
	if len(runs.cancelled) > 0 {
		t.Errorf("%d handlers were cancelled: %v", len(runs.cancelled), runs.cancelled)
	}
}

// TestGivingBackWhileFull shuts a worker down during a full spell: its
// running tasks go back to pending and its registration is removed, and a
// second worker runs them.
func TestGivingBackWhileFull(t *testing.T) {
	_, rdb := fullServer(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		if _, err := c.Enqueue(ctx, "q", "block", nil, ID(fmt.Sprintf("b%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	var started atomic.Int32
	first, _ := newTestWorker(t, rdb, WorkerConfig{Queues: map[string]int{"q": 1}, Concurrency: 3, ShutdownTimeout: time.Minute})
	first.HandleFunc("block", func(ctx context.Context, _ *Task) error {
		started.Add(1)
		<-ctx.Done()
		return ctx.Err()
	})
	stopFirst := runWorker(t, first)
	waitFor(t, time.Minute, "three running handlers", func() bool { return started.Load() == 3 })

	b := &ballast{rdb: rdb}
	b.fill(t)
	// A context that has ended cancels the handlers at once; stopFirst
	// then waits for the cleanup (the give-backs, the deregistration).
	ended, cancel := context.WithCancel(ctx)
	cancel()
	if err := first.Shutdown(ended); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with an ended context: %v", err)
	}
	stopFirst()
	if workers, err := c.Workers(ctx, "q", 10); err != nil || len(workers) != 0 {
		t.Fatalf("after shutdown on a full server, Workers = %v, %v; want none", workers, err)
	}
	st := mustReadQueue(t, rdb, "q")
	if len(st.pending) != 3 || len(st.active) != 0 {
		t.Fatalf("after shutdown on a full server: pending %v, active %v; want the 3 tasks given back", st.pending, st.active)
	}

	second, _ := newTestWorker(t, rdb, WorkerConfig{Queues: map[string]int{"q": 1}, Concurrency: 3})
	second.HandleFunc("block", func(context.Context, *Task) error { return nil })
	runWorker(t, second)
	waitFor(t, time.Minute, "the given-back tasks to run on the full server", func() bool {
		info, err := c.QueueInfo(ctx, "q")
		return err == nil && info.Processed == 3
	})
}
