package sdk

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

// Shutdown with a context, in the manner of net/http.Server.Shutdown.

// blockingHandler starts, reports its start, and returns only when release
// is closed, whatever its context says.
func blockingHandler(started chan<- string, release <-chan struct{}) HandlerFunc {
	return func(_ context.Context, task *Task) error {
		started <- task.ID
		<-release
		return errors.New("released")
	}
}

func TestShutdownReturnsContextErrorWhenItEndsFirst(t *testing.T) {
	f := newFixture(t)
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"q": 1}, ShutdownTimeout: time.Minute})
	started, release := make(chan string, 1), make(chan struct{})
	w.HandleFunc("t", blockingHandler(started, release))
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()
	id := f.enqueue(t, "q", "t").ID
	recv(t, started, 10*time.Second, "the handler to start")

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := w.Shutdown(ctx) // the handler is blocked until release closes
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a 100ms context and a handler that does not return: %v, want context.DeadlineExceeded", err)
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned (%v) while a handler was still running", err)
	default:
	}
	if s := mustReadQueue(t, f.rdb, "q"); len(s.pending) != 0 || s.active[id] == 0 {
		t.Errorf("while its handler runs the task must stay leased: pending %v, active %v", s.pending, s.active)
	}
	close(release)
	if err := recv(t, runErr, time.Minute, "Run to return after the handler"); err != nil {
		t.Errorf("Run: %v", err)
	}
	if s := mustReadQueue(t, f.rdb, "q"); !slices.Equal(s.pending, []string{id}) {
		t.Errorf("after the handler returned: pending %v, want the task given back", s.pending)
	}
	if err := w.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown after the cleanup: %v", err)
	}
}

// TestShutdownCancelsBeforeGivingBack: a handler whose context was
// cancelled by Shutdown and that takes a while to return still holds its
// task (leased, not pending) until it returns.
func TestShutdownCancelsBeforeGivingBack(t *testing.T) {
	f := newFixture(t)
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"q": 1}, ShutdownTimeout: time.Minute})
	started := make(chan string, 1)
	seen := make(chan []string, 1)
	w.HandleFunc("t", func(ctx context.Context, task *Task) error {
		started <- task.ID
		<-ctx.Done()
		// Cancelled: look at the queue for a while before returning. The
		// task must not be pending yet.
		var pendingSeen []string
		for range 20 {
			if s, err := readQueue(context.Background(), f.rdb, "q"); err == nil {
				pendingSeen = append(pendingSeen, s.pending...)
			}
			time.Sleep(10 * time.Millisecond)
		}
		seen <- pendingSeen
		return ctx.Err()
	})
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(context.Background()) }()
	id := f.enqueue(t, "q", "t").ID
	recv(t, started, 10*time.Second, "the handler to start")
	// A context that ends at once cancels the handler without waiting out
	// the grace period; the cleanup goes on in the background.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown with a cancelled context: %v, want context.Canceled", err)
	}
	if err := recv(t, runErr, time.Minute, "Run to return"); err != nil {
		t.Errorf("Run: %v", err)
	}
	if p := recv(t, seen, time.Second, "the handler's observations"); len(p) > 0 {
		t.Errorf("the task was pending (%v) while its cancelled handler still ran", p)
	}
	if s := mustReadQueue(t, f.rdb, "q"); !slices.Equal(s.pending, []string{id}) || len(s.active) != 0 {
		t.Errorf("after Shutdown: pending %v, active %v; want the task given back", s.pending, s.active)
	}
}

// TestShutdownLeavesStuckHandlersToLeaseExpiry: a handler that ignores its
// cancellation past ShutdownTimeout keeps its task leased; the worker stops
// renewing it, so its lease expires and another worker's janitor reclaims
// the task as a failed run.
func TestShutdownLeavesStuckHandlersToLeaseExpiry(t *testing.T) {
	f := newFixture(t)
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"q": 1}, ShutdownTimeout: 50 * time.Millisecond, JanitorInterval: -1})
	started, release := make(chan string, 2), make(chan struct{})
	defer close(release)
	w.HandleFunc("t", blockingHandler(started, release))
	runWorker(t, w)
	id := f.enqueue(t, "q", "t").ID
	recv(t, started, 10*time.Second, "the handler to start")
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if s := mustReadQueue(t, f.rdb, "q"); len(s.pending) != 0 || s.active[id] == 0 {
		t.Fatalf("after Shutdown with a stuck handler: pending %v, active %v; want the task still leased", s.pending, s.active)
	}
	if workers, err := f.c.Workers(context.Background(), "q", 10); err != nil || len(workers) != 0 {
		t.Errorf("after Shutdown, Workers = %v, %v; want none", workers, err)
	}

	next, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"q": 1}, JanitorInterval: 20 * time.Millisecond})
	retried := make(chan int, 1)
	next.HandleFunc("t", func(_ context.Context, task *Task) error { retried <- task.Retried; return nil })
	runWorker(t, next)
	if r := recv(t, retried, time.Minute, "the expired lease to be reclaimed and run again"); r != 1 {
		t.Errorf("the reclaimed task ran with Retried %d, want 1 (a failed run)", r)
	}
}
