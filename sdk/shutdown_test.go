package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

// checkReleased reports (as text, "" when fine) whether queue holds no lease
// and no worker registration any more, and every task in want is pending with
// its retry count unchanged.
func checkReleased(ctx context.Context, f *fixture, queue string, want map[string]int) string {
	s, err := readQueue(ctx, f.rdb, queue)
	if err != nil {
		return err.Error()
	}
	var problems []string
	for _, role := range []string{"workers", "worker_info"} {
		if n, err := f.rdb.Exists(ctx, "luaq:{"+queue+"}:"+role).Result(); err != nil || n != 0 {
			problems = append(problems, fmt.Sprintf("registration key %s left (%v)", role, err))
		}
	}
	if len(s.active) != 0 || len(s.tokens) != 0 {
		problems = append(problems, fmt.Sprintf("leases left: active %v, tokens %v", s.active, s.tokens))
	}
	got := append([]string(nil), s.pending...)
	sort.Strings(got)
	var ids []string
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	if diff := cmp.Diff(ids, got); diff != "" {
		problems = append(problems, fmt.Sprintf("pending %v (-want +got sorted):\n%s", s.pending, diff))
	}
	for id, retried := range want {
		n, err := recordRetried(s.tasks[id])
		if err != nil || n != retried {
			problems = append(problems, fmt.Sprintf("task %s record %q: retried %d (%v), want %d", id, s.tasks[id], n, err, retried))
		}
	}
	return strings.Join(problems, "; ")
}

// TestShutdownWaitsForRunningHandlers: a handler that finishes within
// ShutdownTimeout completes normally, its context is never cancelled,
// Shutdown returns only after it did, and no new task is leased meanwhile.
func TestShutdownWaitsForRunningHandlers(t *testing.T) {
	f := newFixture(t)
	const queue = "grace"
	// A ShutdownTimeout far beyond the handler's 300ms, however slow the
	// machine.
	w, logs := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, ShutdownTimeout: hangGuard / 4})
	started := make(chan string, 2)
	var finished atomic.Int64 // UnixNano of the handler's return
	var ctxErr atomic.Value
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		started <- task.ID
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
		}
		ctxErr.Store(fmt.Sprint(context.Cause(ctx)))
		finished.Store(time.Now().UnixNano())
		return nil
	})
	first := f.enqueue(t, queue, "job")
	second := f.enqueue(t, queue, "job")
	stop := runWorker(t, w)
	if id := recv(t, started, hangGuard, "the first task to start"); id != first.ID {
		t.Fatalf("task %s started first, want %s", id, first.ID)
	}
	stop() // Shutdown, then Run's return
	returned := time.Now()
	if fin := finished.Load(); fin == 0 || time.Unix(0, fin).After(returned) {
		t.Fatalf("Shutdown returned before the running handler finished")
	}
	if e := ctxErr.Load(); e != "<nil>" {
		t.Errorf("handler context cause %v, want <nil> (never cancelled)", e)
	}
	select {
	case id := <-started:
		t.Errorf("task %s started after Shutdown began", id)
	default:
	}
	s := mustReadQueue(t, f.rdb, queue)
	if _, ok := s.tasks[first.ID]; ok || s.stat("processed") != 1 || s.stat("failed") != 0 {
		t.Errorf("first task: record present %v, stats %v; want it completed", ok, s.stats)
	}
	if problem := checkReleased(context.Background(), f, queue, map[string]int{second.ID: 0}); problem != "" {
		t.Errorf("after Shutdown: %s", problem)
	}
	if logs.contains("level=ERROR") || logs.contains("level=WARN") {
		t.Errorf("worker logged warnings or errors:\n%s", logs)
	}
}

// TestShutdownRequeuesOverdueHandler: a handler that outlives
// ShutdownTimeout has its context cancelled with cause ErrWorkerStopping, and
// its task goes back to pending with its retry count unchanged; the next
// worker leases it with the same Retried.
func TestShutdownRequeuesOverdueHandler(t *testing.T) {
	f := newFixture(t)
	const queue, grace = "overdue", 300 * time.Millisecond
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, ShutdownTimeout: grace})
	blocked := make(chan struct{}, 1)
	causes := make(chan error, 1)
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		if task.Retried == 0 {
			return errors.New("first run fails") // so the retry count is 1, not 0
		}
		blocked <- struct{}{}
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return ctx.Err() // must not be recorded as a failure
	})
	info := f.enqueue(t, queue, "job", MaxRetry(5))
	runWorker(t, w)
	recv(t, blocked, hangGuard, "the second run to start")

	begin := time.Now()
	if err := w.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took < grace-20*time.Millisecond {
		t.Errorf("Shutdown returned after %s, before ShutdownTimeout %s", took, grace)
	}
	select {
	case cause := <-causes:
		if !errors.Is(cause, ErrWorkerStopping) {
			t.Errorf("handler context cause %v, want ErrWorkerStopping", cause)
		}
	default:
		t.Fatal("Shutdown returned before the handler's context was cancelled")
	}
	if problem := checkReleased(context.Background(), f, queue, map[string]int{info.ID: 1}); problem != "" {
		t.Errorf("after Shutdown: %s", problem)
	}
	s := mustReadQueue(t, f.rdb, queue)
	if got, want := [3]int{s.stat("failed"), s.stat("retried"), s.stat("processed")}, [3]int{1, 1, 0}; got != want {
		t.Errorf("failed, retried, processed = %v, want %v (the requeue is not a failure)", got, want)
	}

	// The next worker gets the task at once, with the same Retried.
	w2, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}})
	leased := make(chan int, 1)
	w2.HandleFunc("job", func(_ context.Context, task *Task) error { leased <- task.Retried; return nil })
	runWorker(t, w2)
	if r := recv(t, leased, hangGuard, "the requeued task to run on a new worker"); r != 1 {
		t.Errorf("next lease has Retried %d, want 1", r)
	}
}

// TestShutdownCleansUpBeforeReturning: however the worker is stopped (Run's
// context cancelled, Shutdown from several goroutines at once, or both), Run
// and every Shutdown call return only after the running tasks are back in
// pending and no lease is left.
func TestShutdownCleansUpBeforeReturning(t *testing.T) {
	tests := []struct {
		name      string
		cancelCtx bool
		callers   int
	}{
		{"Run's context cancelled", true, 0},
		{"Shutdown from 5 goroutines", false, 5},
		{"context cancelled and Shutdown from 5 goroutines", true, 5},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			const queue, grace = "stop", 200 * time.Millisecond
			w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, Concurrency: 2, ShutdownTimeout: grace})
			started := make(chan struct{}, 3)
			causes := make(chan error, 3)
			var returned atomic.Int32
			w.HandleFunc("job", func(ctx context.Context, task *Task) error {
				defer returned.Add(1)
				started <- struct{}{}
				<-ctx.Done()
				causes <- context.Cause(ctx)
				return nil
			})
			want := map[string]int{}
			for i := 0; i < 3; i++ { // two run, one waits
				want[f.enqueue(t, queue, "job").ID] = 0
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- w.Run(ctx) }()
			t.Cleanup(func() { _ = w.Shutdown(context.Background()) })
			for i := 0; i < 2; i++ {
				recv(t, started, hangGuard, "two handlers to start")
			}

			type result struct {
				who     string
				err     error
				took    time.Duration
				problem string
			}
			results := make(chan result, tc.callers+1)
			observe := func(who string, begin time.Time, err error) {
				took := time.Since(begin)
				problem := checkReleased(context.Background(), f, queue, want)
				if n := returned.Load(); n != 2 {
					problem += fmt.Sprintf("; %d of 2 handlers returned", n)
				}
				results <- result{who, err, took, problem}
			}
			begin := time.Now()
			go func() { observe("Run", begin, <-runErr) }()
			if tc.cancelCtx {
				cancel()
			}
			for i := 0; i < tc.callers; i++ {
				go func() { observe(fmt.Sprintf("Shutdown #%d", i+1), begin, w.Shutdown(context.Background())) }()
			}
			for i := 0; i < tc.callers+1; i++ {
				r := recv(t, results, hangGuard, "Run and Shutdown to return")
				if r.err != nil {
					t.Errorf("%s returned %v", r.who, r.err)
				}
				if r.problem != "" {
					t.Errorf("right after %s returned: %s", r.who, r.problem)
				}
				if r.took < grace-20*time.Millisecond {
					t.Errorf("%s returned after %s, before ShutdownTimeout %s", r.who, r.took, grace)
				}
			}
			for i := 0; i < 2; i++ {
				if c := recv(t, causes, hangGuard, "handler causes"); !errors.Is(c, ErrWorkerStopping) {
					t.Errorf("handler context cause %v, want ErrWorkerStopping", c)
				}
			}
			s := mustReadQueue(t, f.rdb, queue)
			if len(s.pending) != 3 || s.pending[2] != "3" {
				t.Errorf("pending %v: want the two requeued tasks ahead of the one that never started (3)", s.pending)
			}
			if s.stat("failed") != 0 || s.stat("processed") != 0 {
				t.Errorf("stats %v: a requeue is neither a failure nor a completion", s.stats)
			}
		})
	}
}

// TestRunAndShutdownMisuse: Shutdown before Run returns at once and Run
// afterwards fails; a second Run fails while the first runs and after it
// returned; Shutdown racing Run's start never hangs.
func TestRunAndShutdownMisuse(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	t.Run("Shutdown before Run", func(t *testing.T) {
		wrdb := f.srv.Client(t)
		spy := newScriptSpy(t, wrdb)
		const grace = 30 * time.Second
		w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"m1": 1}, ShutdownTimeout: grace})
		begin := time.Now()
		if err := w.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(begin); took >= grace {
			t.Errorf("Shutdown of a worker never run took %s, want at once, not its ShutdownTimeout %s", took, grace)
		}
		if err := w.Shutdown(ctx); err != nil {
			t.Errorf("second Shutdown: %v", err)
		}
		if err := w.Run(ctx); err == nil {
			t.Error("Run after Shutdown succeeded, want an error")
		}
		if n := spy.count("dequeue"); n != 0 {
			t.Errorf("a worker shut down before Run sent %d dequeue calls", n)
		}
	})

	t.Run("Run twice", func(t *testing.T) {
		wrdb := f.srv.Client(t)
		spy := newScriptSpy(t, wrdb)
		w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"m2": 1}})
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(ctx) }()
		waitFor(t, hangGuard, "the first Run to dequeue", func() bool { return spy.count("dequeue") >= 1 })
		second := make(chan error, 1)
		go func() { second <- w.Run(ctx) }()
		if err := recv(t, second, hangGuard, "the second Run to return"); err == nil {
			t.Error("second Run succeeded, want an error")
		}
		if err := w.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if err := recv(t, runErr, hangGuard, "the first Run to return"); err != nil {
			t.Errorf("first Run: %v", err)
		}
		if err := w.Run(ctx); err == nil {
			t.Error("Run after Run returned succeeded, want an error")
		}
	})

	t.Run("Shutdown while Run's start fails", func(t *testing.T) {
		// A server that accepts connections and never answers: Run's
		// bundle load times out while Shutdown is already waiting.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() { _, _ = io.Copy(io.Discard, c); _ = c.Close() }()
			}
		}()
		dead := redis.NewClient(&redis.Options{Addr: l.Addr().String(), ReadTimeout: 300 * time.Millisecond, MaxRetries: -1, Protocol: 2})
		t.Cleanup(func() { _ = dead.Close() })
		w, _ := newTestWorker(t, dead, WorkerConfig{Queues: map[string]int{"m4": 1}})
		runErr := make(chan error, 1)
		go func() { runErr <- w.Run(ctx) }()
		time.Sleep(50 * time.Millisecond) // Run is inside its bundle load now
		shut := make(chan error, 1)
		go func() { shut <- w.Shutdown(ctx) }()
		if err := recv(t, runErr, hangGuard, "Run to fail"); err == nil {
			t.Error("Run against an unresponsive server succeeded")
		}
		if err := recv(t, shut, hangGuard, "Shutdown to return after Run failed to start"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})

	t.Run("Run starting while its client opens connections", func(t *testing.T) {
		// Run's start must not race with other users of the same client
		// (under -race): here, first connections opened by other goroutines.
		for i := 0; i < 40; i++ {
			rdb := f.srv.Client(t) // fresh: no connection yet
			w, _ := newTestWorker(t, rdb, WorkerConfig{Queues: map[string]int{"m5": 1}})
			runErr := make(chan error, 1)
			go func() { runErr <- w.Run(ctx) }()
			var wg sync.WaitGroup
			for j := 0; j < 4; j++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for k := 0; k < 3; k++ {
						_ = rdb.Ping(ctx).Err()
					}
				}()
			}
			wg.Wait()
			if err := w.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := recv(t, runErr, hangGuard, "Run to return"); err != nil {
				t.Fatalf("iteration %d: Run: %v", i, err)
			}
		}
	})

	t.Run("Shutdown racing Run's start", func(t *testing.T) {
		for i := 0; i < 20; i++ {
			w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"m3": 1}})
			runErr := make(chan error, 1)
			go func() { runErr <- w.Run(ctx) }()
			if i%2 == 1 {
				time.Sleep(time.Duration(i) * 100 * time.Microsecond)
			}
			shut := make(chan error, 1)
			go func() { shut <- w.Shutdown(ctx) }()
			if err := recv(t, shut, hangGuard, fmt.Sprintf("iteration %d: Shutdown to return", i)); err != nil {
				t.Errorf("iteration %d: Shutdown: %v", i, err)
			}
			// Run either lost the race (an error) or ran and stopped (nil).
			recv(t, runErr, hangGuard, fmt.Sprintf("iteration %d: Run to return", i))
		}
	})
}
