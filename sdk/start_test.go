package sdk

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/redistest"
)

// startQueue is the queue of the Start tests.
const startQueue = "start-q"

// newStartWorker returns a worker of startQueue over rdb.
func newStartWorker(t *testing.T, rdb redis.UniversalClient) *Worker {
	t.Helper()
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{startQueue: 1}, LeaseDuration: time.Second,
		Logger: (&logCapture{}).logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestWorkerStartIsLeasingWhenItReturns checks that Start returns with the
// worker registered and leasing, and that Shutdown then leaves no
// registration behind.
func TestWorkerStartIsLeasingWhenItReturns(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := newStartWorker(t, rdb)
	ran := make(chan string, 1)
	w.HandleFunc("job", func(_ context.Context, task *Task) error {
		ran <- task.ID
		return nil
	})
	if err := w.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	list, err := c.Workers(ctx, startQueue, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != w.id {
		t.Fatalf("Workers right after Start = %+v, want the worker %s", list, w.id)
	}
	if _, err := c.Enqueue(ctx, startQueue, "job", nil, ID("t1")); err != nil {
		t.Fatal(err)
	}
	select {
	case id := <-ran:
		if id != "t1" {
			t.Errorf("handler ran %q, want t1", id)
		}
	case <-time.After(hangGuard):
		t.Fatal("the started worker did not run the task")
	}
	waitTerminal(t, c, startQueue, 1)
	if err := w.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if list, err := c.Workers(ctx, startQueue, 10); err != nil || len(list) != 0 {
		t.Errorf("Workers after Shutdown = %+v, %v; want none", list, err)
	}
	for _, role := range []string{"workers", "worker_info"} {
		k := "luaq:{" + startQueue + "}:" + role
		if n, err := rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Errorf("%s: EXISTS = %d, %v after Shutdown; want 0", k, n, err)
		}
	}
}

// TestWorkerStartOnlyOnce checks that a worker starts at most once, by Start
// or Run, and never after Shutdown or a failed start.
func TestWorkerStartOnlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		setup func(t *testing.T, w *Worker)
	}{
		{name: "after Start", setup: func(t *testing.T, w *Worker) {
			if err := w.Start(ctx); err != nil {
				t.Fatalf("first Start: %v", err)
			}
		}},
		{name: "after Shutdown", setup: func(t *testing.T, w *Worker) {
			if err := w.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
		}},
		{name: "after a failed Start", setup: func(t *testing.T, w *Worker) {
			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			if err := w.Start(cancelled); err == nil {
				t.Fatal("Start with a cancelled context succeeded")
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newStartWorker(t, rdb)
			t.Cleanup(func() { _ = w.Shutdown(ctx) })
			tc.setup(t, w)
			if err := w.Start(ctx); err == nil {
				t.Error("second Start succeeded")
			}
			if err := w.Run(ctx); err == nil {
				t.Error("Run after it succeeded")
			}
		})
	}
}

// TestWorkerStartUnreachable checks that Start and Run report a server that
// cannot be reached as their own error, not by running into the caller's
// deadline, and that the worker is then finished.
func TestWorkerStartUnreachable(t *testing.T) {
	// An address nothing listens on: a port that was free a moment ago.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, method := range []string{"Start", "Run"} {
		t.Run(method, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			t.Cleanup(func() { rdb.Close() })
			w := newStartWorker(t, rdb)
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			start := w.Start
			if method == "Run" {
				start = w.Run
			}
			err := start(ctx)
			if err == nil {
				t.Fatalf("%s on an unreachable server succeeded", method)
			}
			if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("%s = %v: it waited for the caller's deadline instead of failing on the connection", method, err)
			}
			if err := w.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown after a failed start: %v", err)
			}
		})
	}
}
