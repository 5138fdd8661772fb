package sdk

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// ---------------------------------------------------------------------------
// Helpers shared by the worker, client and shutdown tests of this package.

// fixture is a private redis-server with a client and an SDK Client over it.
type fixture struct {
	srv *redistest.Server
	rdb *redis.Client
	c   *Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{srv: srv, rdb: rdb, c: c}
}

func (f *fixture) enqueue(t *testing.T, queue, taskType string, opts ...Option) *TaskInfo {
	t.Helper()
	info, err := f.c.Enqueue(context.Background(), queue, taskType, nil, opts...)
	if err != nil {
		t.Fatalf("Enqueue(%s, %s): %v", queue, taskType, err)
	}
	return info
}

func (f *fixture) queueInfo(t *testing.T, queue string) *QueueInfo {
	t.Helper()
	info, err := f.c.QueueInfo(context.Background(), queue)
	if err != nil {
		t.Fatalf("QueueInfo(%s): %v", queue, err)
	}
	return info
}

// constBackoff always waits d.
func constBackoff(d time.Duration) BackoffFunc {
	return func(int, error, *Task) time.Duration { return d }
}

// newTestWorker builds a worker with fast defaults for the fields cfg leaves
// zero: Concurrency 1, a 500ms lease, a 2s shutdown timeout, 1ms reclaim and
// retry backoffs, and a captured log (printed when the test fails).
func newTestWorker(t *testing.T, rdb redis.UniversalClient, cfg WorkerConfig) (*Worker, *logCapture) {
	t.Helper()
	logs := &logCapture{}
	if cfg.Logger == nil {
		cfg.Logger = logs.logger()
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = 1
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 500 * time.Millisecond
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 2 * time.Second
	}
	if cfg.ReclaimBackoff == 0 {
		cfg.ReclaimBackoff = time.Millisecond
	}
	if cfg.Backoff == nil {
		cfg.Backoff = constBackoff(time.Millisecond)
	}
	w, err := NewWorker(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log:\n%s", logs)
		}
	})
	return w, logs
}

// queueState is the raw content of one queue's keys.
type queueState struct {
	pending   []string
	scheduled map[string]int64 // id -> due, Unix ms
	active    map[string]int64 // id -> lease deadline, Unix ms
	tokens    map[string]string
	archived  []string
	errors    map[string]string
	tasks     map[string]string
	stats     map[string]string
}

// readQueue reads a queue's keys. It reports errors instead of failing the
// test, so goroutines may call it.
func readQueue(ctx context.Context, rdb redis.Cmdable, queue string) (*queueState, error) {
	q, err := keys.ForQueue(queue)
	if err != nil {
		return nil, err
	}
	pipe := rdb.Pipeline()
	pending := pipe.LRange(ctx, q.Key("pending"), 0, -1)
	scheduled := pipe.ZRangeWithScores(ctx, q.Key("scheduled"), 0, -1)
	active := pipe.ZRangeWithScores(ctx, q.Key("active"), 0, -1)
	tokens := pipe.HGetAll(ctx, q.Key("tokens"))
	archived := pipe.ZRange(ctx, q.Key("archived"), 0, -1)
	errs := pipe.HGetAll(ctx, q.Key("errors"))
	tasks := pipe.HGetAll(ctx, q.Key("tasks"))
	stats := pipe.HGetAll(ctx, q.Key("stats"))
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	zmap := func(zs []redis.Z) map[string]int64 {
		m := map[string]int64{}
		for _, z := range zs {
			m[z.Member.(string)] = int64(z.Score)
		}
		return m
	}
	return &queueState{
		pending: pending.Val(), scheduled: zmap(scheduled.Val()), active: zmap(active.Val()),
		tokens: tokens.Val(), archived: archived.Val(), errors: errs.Val(), tasks: tasks.Val(),
		stats: stats.Val(),
	}, nil
}

func mustReadQueue(t *testing.T, rdb redis.Cmdable, queue string) *queueState {
	t.Helper()
	s, err := readQueue(context.Background(), rdb, queue)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// stat returns a counter of the stats hash, 0 when absent.
func (s *queueState) stat(name string) int {
	n, _ := strconv.Atoi(s.stats[name])
	return n
}

// recordRetried returns the retry count of a stored task record: its first
// field (lib/record.lua).
func recordRetried(rec string) (int, error) {
	field, _, ok := strings.Cut(rec, ":")
	if !ok {
		return 0, fmt.Errorf("task record %q has no ':'", rec)
	}
	return strconv.Atoi(field)
}

// serverNow reads the Redis server's clock.
func serverNow(t *testing.T, rdb redis.Cmdable) time.Time {
	t.Helper()
	now, err := rdb.Time(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return now
}

// scriptSpy is a go-redis hook that counts EVALSHA calls per bundle script
// and can intercept them (fail or delay them) to simulate a network fault.
type scriptSpy struct {
	names map[string]string // SHA -> script name

	mu    sync.Mutex
	calls map[string]int

	// intercept, when set (before the client is used), runs before a
	// command or pipeline that calls scripts, with their names. It may block;
	// an error fails the commands without sending them; the context it
	// returns is the one they are sent with.
	intercept func(ctx context.Context, names []string) (context.Context, error)
}

func newScriptSpy(t *testing.T, rdb *redis.Client) *scriptSpy {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptSpy{names: map[string]string{}, calls: map[string]int{}}
	for _, sc := range b.Scripts() {
		s.names[sc.SHA] = sc.Name
	}
	rdb.AddHook(s)
	return s
}

func (s *scriptSpy) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[name]
}

// snapshot returns the calls counted so far, per script name.
func (s *scriptSpy) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// total returns the script calls counted so far.
func (s *scriptSpy) total() int {
	n := 0
	for _, c := range s.snapshot() {
		n += c
	}
	return n
}

func (s *scriptSpy) record(cmds []redis.Cmder) []string {
	var names []string
	for _, c := range cmds {
		args := c.Args()
		if c.Name() != "evalsha" || len(args) < 2 {
			continue
		}
		sha, _ := args[1].(string)
		if name, ok := s.names[sha]; ok {
			names = append(names, name)
		}
	}
	s.mu.Lock()
	for _, n := range names {
		s.calls[n]++
	}
	s.mu.Unlock()
	return names
}

func (s *scriptSpy) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *scriptSpy) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		names := s.record([]redis.Cmder{cmd})
		if len(names) > 0 && s.intercept != nil {
			c, err := s.intercept(ctx, names)
			if err != nil {
				cmd.SetErr(err)
				return err
			}
			ctx = c
		}
		return next(ctx, cmd)
	}
}

func (s *scriptSpy) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		names := s.record(cmds)
		if len(names) > 0 && s.intercept != nil {
			c, err := s.intercept(ctx, names)
			if err != nil {
				for _, cmd := range cmds {
					cmd.SetErr(err)
				}
				return err
			}
			ctx = c
		}
		return next(ctx, cmds)
	}
}

func hasName(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// recv waits for a value from ch, failing the test after timeout.
func recv[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		var zero T
		return zero
	}
}

// ---------------------------------------------------------------------------

// TestScheduledTaskRunsWhenDue checks that a task scheduled with ProcessIn or
// ProcessAt does not run before it is due (on the server clock, which here is
// the machine's clock too) and runs without waiting out the worker's long
// MaxIdleWait: the dequeue reply's next-due hint wakes it.
func TestScheduledTaskRunsWhenDue(t *testing.T) {
	const maxIdle = 30 * time.Second
	f := newFixture(t)
	wrdb, calls := f.srv.Client(t), newCallLog(t)
	wrdb.AddHook(calls)
	w, logs := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"sched": 1}, Concurrency: 4, MaxIdleWait: maxIdle})
	started := make(chan struct{}, 10)
	var mu sync.Mutex
	ranAt := map[string]time.Time{}
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		mu.Lock()
		ranAt[task.ID] = time.Now()
		mu.Unlock()
		started <- struct{}{}
		return nil
	})
	runWorker(t, w)
	waitFor(t, hangGuard, "the worker to go idle", func() bool { return len(calls.of("dequeue")) > 0 })

	tests := []struct {
		name string
		opt  func(now time.Time) Option
	}{
		{"ProcessIn 300ms", func(time.Time) Option { return ProcessIn(300 * time.Millisecond) }},
		{"ProcessAt now+400ms", func(now time.Time) Option { return ProcessAt(now.Add(400 * time.Millisecond)) }},
	}
	due := map[string]time.Time{}
	names := map[string]string{}
	for _, tc := range tests {
		info := f.enqueue(t, "sched", "job", tc.opt(serverNow(t, f.rdb)))
		if info.State != "scheduled" {
			t.Fatalf("%s: state %q, want scheduled", tc.name, info.State)
		}
		due[info.ID] = info.ProcessAt
		names[info.ID] = tc.name
	}
	for range tests {
		recv(t, started, hangGuard, "a scheduled task to run")
	}
	mu.Lock()
	defer mu.Unlock()
	for id, at := range ranAt {
		d := due[id]
		if at.Before(d) {
			t.Errorf("%s: ran at %s, %s before it was due", names[id], at.Format(time.StampMilli), d.Sub(at))
		}
		checkWoken(t, names[id], idleSpellStart(t, calls.of("dequeue"), d), d, at, maxIdle)
	}
	if logs.contains("level=ERROR") {
		t.Errorf("worker logged errors:\n%s", logs)
	}
}

// TestIdleWorkerWakesOnEnqueueWithoutPolling checks the wake list: a worker
// idle on an empty queue with MaxIdleWait 30s sends (almost) no dequeue calls
// while idle, yet handles an enqueued task at once.
func TestIdleWorkerWakesOnEnqueueWithoutPolling(t *testing.T) {
	f := newFixture(t)
	const maxIdle = 30 * time.Second
	wrdb, calls := f.srv.Client(t), newCallLog(t)
	spy := newScriptSpy(t, wrdb)
	wrdb.AddHook(calls)
	w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"idle": 1, "idle2": 1}, Concurrency: 2, MaxIdleWait: maxIdle})
	handled := make(chan time.Time, 4)
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		handled <- time.Now()
		return nil
	})
	runWorker(t, w)
	waitFor(t, hangGuard, "the worker's first dequeue", func() bool { return spy.count("dequeue") >= 2 })
	time.Sleep(50 * time.Millisecond)

	before := spy.count("dequeue")
	time.Sleep(time.Second)
	if n := spy.count("dequeue") - before; n > 2 {
		t.Errorf("an idle worker sent %d dequeue calls in 1s, want at most 2 (it must block, not poll)", n)
	}

	for round, queue := range []string{"idle", "idle2", "idle"} {
		sent := time.Now()
		f.enqueue(t, queue, "job")
		what := fmt.Sprintf("round %d (queue %s)", round, queue)
		got := recv(t, handled, hangGuard, what+": the enqueued task to run")
		checkWoken(t, what, idleSpellStart(t, calls.of("dequeue"), sent), sent, got, maxIdle)
		// Idle again before the next round.
		time.Sleep(100 * time.Millisecond)
	}
	if n := spy.count("dequeue"); n > before+20 {
		t.Errorf("%d dequeue calls for 3 tasks after idling, want a few per task", n-before)
	}
}

// TestIdleWorkerWakesAfterShortIdle: after a short idle spell (waiting a few
// ms for a retry to be due), the worker goes idle for MaxIdleWait; an enqueue
// must still wake it at once, although the short spell's BLPOP may not have
// ended yet when the long spell begins.
func TestIdleWorkerWakesAfterShortIdle(t *testing.T) {
	f := newFixture(t)
	// The retry backoff is 1ms: the worker idles ~1ms before the retry.
	const maxIdle = 30 * time.Second
	wrdb, calls := f.srv.Client(t), newCallLog(t)
	wrdb.AddHook(calls)
	w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"short": 1}, MaxIdleWait: maxIdle})
	type run struct {
		id string
		at time.Time
	}
	ran := make(chan run, 3)
	w.HandleFunc("flaky", func(_ context.Context, task *Task) error {
		if task.Retried == 0 {
			return errors.New("first run fails")
		}
		ran <- run{task.ID, time.Now()}
		return nil
	})
	w.HandleFunc("job", func(_ context.Context, task *Task) error { ran <- run{task.ID, time.Now()}; return nil })
	runWorker(t, w)
	for round := 0; round < 10; round++ {
		flaky := f.enqueue(t, "short", "flaky", MaxRetry(1))
		if r := recv(t, ran, hangGuard, "the retried task to succeed"); r.id != flaky.ID {
			t.Fatalf("round %d: task %s ran, want %s", round, r.id, flaky.ID)
		}
		time.Sleep(20 * time.Millisecond) // the worker is idle again, most likely
		sent := time.Now()
		f.enqueue(t, "short", "job")
		what := fmt.Sprintf("round %d", round)
		r := recv(t, ran, hangGuard, what+": the task enqueued to an idle worker to run")
		checkWoken(t, what, idleSpellStart(t, calls.of("dequeue"), sent), sent, r.at, maxIdle)
	}
}

// TestIdleSpellAfterShortWaitStillWakes drives idle directly to make the
// lost-wake window of TestIdleWorkerWakesAfterShortIdle deterministic: a
// short idle spell ends by its timer while its BLPOP is still blocked in
// Redis; the next, long spell must still end on the next wake token.
func TestIdleSpellAfterShortWaitStillWakes(t *testing.T) {
	f := newFixture(t)
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"ws": 1}, MaxIdleWait: 30 * time.Second})
	w.setupWaiters()
	t.Cleanup(func() {
		_ = w.Shutdown(context.Background()) // ends a stuck idle spell
		w.waiter.stop()
	})
	const maxIdle = 30 * time.Second
	for round := 0; round < 3; round++ {
		w.idle(5 * time.Millisecond) // ends by its timer; its BLPOP outlives it
		done := make(chan time.Time, 1)
		spell := time.Now()
		go func() { w.idle(maxIdle); done <- time.Now() }()
		time.Sleep(1200 * time.Millisecond) // the short BLPOP (whole seconds, at least 1) has timed out by now
		sent := time.Now()
		f.enqueue(t, "ws", "job") // leaves a wake token
		what := fmt.Sprintf("round %d", round)
		ended := recv(t, done, hangGuard, what+": the long idle spell to end on the wake token")
		checkWoken(t, what, spell, sent, ended, maxIdle)
	}
}

// TestTaskTimeout checks that a handler's context ends with DeadlineExceeded
// once the task's Timeout passes, and that such a run counts as a failure:
// retried while retries are left, then archived.
func TestTaskTimeout(t *testing.T) {
	const taskTimeout = 100 * time.Millisecond
	tests := []struct {
		name     string
		maxRetry int
	}{
		{"no retries", 0},
		{"two retries", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"to": 1}, LeaseDuration: 300 * time.Millisecond})
			type run struct {
				retried     int
				err, cause  error
				start, done time.Time // handler start; when it saw ctx end
				deadline    time.Time
				deadlineSet bool
			}
			runs := make(chan run, 10)
			w.HandleFunc("slow", func(ctx context.Context, task *Task) error {
				start := time.Now()
				dl, ok := ctx.Deadline()
				select {
				case <-ctx.Done():
				case <-time.After(hangGuard / 2): // fails the ctx checks below
				}
				runs <- run{task.Retried, ctx.Err(), context.Cause(ctx), start, time.Now(), dl, ok}
				return ctx.Err()
			})
			runWorker(t, w)
			// Each run's context is made after the previous run ended (the
			// first: after the enqueue was sent) and before its handler
			// starts, so its deadline lies between those plus the timeout.
			after := time.Now()
			info := f.enqueue(t, "to", "slow", Timeout(taskTimeout), MaxRetry(tc.maxRetry))
			for i := 0; i <= tc.maxRetry; i++ {
				r := recv(t, runs, hangGuard, fmt.Sprintf("run %d", i+1))
				if r.retried != i {
					t.Errorf("run %d: Retried %d, want %d", i+1, r.retried, i)
				}
				if !errors.Is(r.err, context.DeadlineExceeded) || !errors.Is(r.cause, context.DeadlineExceeded) {
					t.Errorf("run %d: ctx.Err %v, cause %v; want DeadlineExceeded for both", i+1, r.err, r.cause)
				}
				if !r.deadlineSet || r.deadline.Before(after.Add(taskTimeout)) || r.deadline.After(r.start.Add(taskTimeout)) {
					t.Errorf("run %d: ctx deadline set=%v at %s; want the %s timeout counted from between %s and the handler's start at %s",
						i+1, r.deadlineSet, r.deadline.Format(time.StampMicro), taskTimeout, after.Format(time.StampMicro), r.start.Format(time.StampMicro))
				}
				if r.done.Before(r.deadline) {
					t.Errorf("run %d: handler was cancelled at %s, before its deadline %s", i+1, r.done.Format(time.StampMicro), r.deadline.Format(time.StampMicro))
				}
				after = r.done
			}
			waitFor(t, hangGuard, "the task to be archived", func() bool {
				return len(mustReadQueue(t, f.rdb, "to").archived) == 1
			})
			select {
			case r := <-runs:
				t.Errorf("an extra run after the retries were used up: %+v", r)
			case <-time.After(100 * time.Millisecond):
			}
			s := mustReadQueue(t, f.rdb, "to")
			if s.archived[0] != info.ID {
				t.Errorf("archived %v, want [%s]", s.archived, info.ID)
			}
			if msg := s.errors[info.ID]; !strings.Contains(msg, "timeout or deadline exceeded") || !strings.Contains(msg, "context deadline exceeded") {
				t.Errorf("stored error %q, want it to name the timeout", msg)
			}
			if got, want := [3]int{s.stat("failed"), s.stat("retried"), s.stat("archived")}, [3]int{tc.maxRetry + 1, tc.maxRetry, 1}; got != want {
				t.Errorf("failed, retried, archived = %v, want %v", got, want)
			}
			if s.stat("processed") != 0 {
				t.Errorf("processed %d, want 0", s.stat("processed"))
			}
		})
	}
}

// TestTaskDeadline checks that the handler's context carries the task's
// Deadline exactly, and that a failure whose retry could not start before
// the deadline archives the task instead of retrying it.
func TestTaskDeadline(t *testing.T) {
	tests := []struct {
		name       string
		in         time.Duration // deadline from now
		backoff    time.Duration
		behaviour  string // "wait": block on ctx; "fail-once": fail the first run at once, then succeed
		wantRuns   int
		wantArch   bool
		wantErrSub string
	}{
		{"run outlasts the deadline", 300 * time.Millisecond, time.Millisecond, "wait", 1, true, "deadline exceeded"},
		{"retry would start after the deadline", 2 * time.Second, 5 * time.Second, "fail-once", 1, true, "first run fails"},
		{"retry fits before the deadline", 2 * time.Second, time.Millisecond, "fail-once", 2, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"dl": 1}, Backoff: constBackoff(tc.backoff)})
			type run struct {
				ctxDeadline  time.Time
				taskDeadline time.Time
				err, cause   error
			}
			runs := make(chan run, 10)
			w.HandleFunc("job", func(ctx context.Context, task *Task) error {
				dl, _ := ctx.Deadline()
				if tc.behaviour == "wait" {
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Second):
					}
					runs <- run{dl, task.Deadline, ctx.Err(), context.Cause(ctx)}
					return ctx.Err()
				}
				runs <- run{dl, task.Deadline, ctx.Err(), context.Cause(ctx)}
				if task.Retried == 0 {
					return errors.New("first run fails")
				}
				return nil
			})
			runWorker(t, w)
			deadline := time.UnixMilli(serverNow(t, f.rdb).Add(tc.in).UnixMilli())
			info := f.enqueue(t, "dl", "job", Deadline(deadline), MaxRetry(5))
			if !info.Deadline.Equal(deadline) {
				t.Errorf("TaskInfo.Deadline %s, want %s", info.Deadline, deadline)
			}
			for i := 0; i < tc.wantRuns; i++ {
				r := recv(t, runs, hangGuard, fmt.Sprintf("run %d", i+1))
				if !r.ctxDeadline.Equal(deadline) || !r.taskDeadline.Equal(deadline) {
					t.Errorf("run %d: ctx deadline %s, Task.Deadline %s; want both %s", i+1, r.ctxDeadline, r.taskDeadline, deadline)
				}
				if tc.behaviour == "wait" && (!errors.Is(r.err, context.DeadlineExceeded) || !errors.Is(r.cause, context.DeadlineExceeded)) {
					t.Errorf("run %d: ctx.Err %v, cause %v; want DeadlineExceeded", i+1, r.err, r.cause)
				}
			}
			var s *queueState
			waitFor(t, hangGuard, "the task to end", func() bool {
				s = mustReadQueue(t, f.rdb, "dl")
				return len(s.tasks) == 0 || len(s.archived) == 1
			})
			select {
			case r := <-runs:
				t.Errorf("an unexpected extra run: %+v", r)
			case <-time.After(100 * time.Millisecond):
			}
			s = mustReadQueue(t, f.rdb, "dl")
			if tc.wantArch {
				if len(s.archived) != 1 || s.stat("retried") != 0 || len(s.scheduled) != 0 {
					t.Errorf("archived %v, retried %d, scheduled %v: want archived at once, never retried", s.archived, s.stat("retried"), s.scheduled)
				}
				if msg := s.errors[info.ID]; !strings.Contains(msg, tc.wantErrSub) {
					t.Errorf("stored error %q, want it to contain %q", msg, tc.wantErrSub)
				}
			} else if s.stat("processed") != 1 || len(s.archived) != 0 {
				t.Errorf("processed %d, archived %v: want completed", s.stat("processed"), s.archived)
			}
		})
	}
}

// TestFailedRunOutcomes covers the ways a run fails besides a plain error:
// ErrSkipRetry archives at once, a panic is recovered and counts as a
// failure, and a task type without a handler fails with a clear error.
func TestFailedRunOutcomes(t *testing.T) {
	tests := []struct {
		name         string
		taskType     string
		maxRetry     int
		handler      func(ctx context.Context, t *Task) error
		wantRuns     int
		wantErr      string // the stored error, exactly
		wantFailed   int
		wantRetried  int
		wantArchived bool
	}{
		{
			name: "skip retry with retries left", taskType: "job", maxRetry: 5,
			handler:  func(context.Context, *Task) error { return fmt.Errorf("bad input: %w", ErrSkipRetry) },
			wantRuns: 1, wantErr: "bad input: luaq: skip retry", wantFailed: 1, wantArchived: true,
		},
		{
			name: "panic counts as a failure", taskType: "job", maxRetry: 1,
			handler:  func(context.Context, *Task) error { panic("boom") },
			wantRuns: 2, wantErr: "handler panicked: boom", wantFailed: 2, wantRetried: 1, wantArchived: true,
		},
		{
			name: "panic then success", taskType: "job", maxRetry: 3,
			handler: func(_ context.Context, t *Task) error {
				if t.Retried == 0 {
					panic(errors.New("first run explodes"))
				}
				return nil
			},
			wantRuns: 2, wantFailed: 1, wantRetried: 1,
		},
		{
			name: "no handler for the type", taskType: "orphan", maxRetry: 1,
			wantRuns: 0, wantErr: `no handler registered for task type "orphan"`, wantFailed: 2, wantRetried: 1, wantArchived: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			w, logs := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"f": 1}})
			var runs atomic.Int32
			if tc.handler != nil {
				w.HandleFunc(tc.taskType, func(ctx context.Context, task *Task) error {
					runs.Add(1)
					return tc.handler(ctx, task)
				})
			}
			// A healthy task type next to the failing one: the worker
			// keeps working after a panic.
			var healthy atomic.Int32
			w.HandleFunc("healthy", func(context.Context, *Task) error { healthy.Add(1); return nil })
			runWorker(t, w)
			info := f.enqueue(t, "f", tc.taskType, MaxRetry(tc.maxRetry))
			var s *queueState
			waitFor(t, hangGuard, "the task to end", func() bool {
				s = mustReadQueue(t, f.rdb, "f")
				return s.stat("processed")+s.stat("archived") == 1
			})
			f.enqueue(t, "f", "healthy")
			wantProcessed := 1 // the healthy task
			if !tc.wantArchived {
				wantProcessed++
			}
			waitFor(t, hangGuard, "a healthy task to complete afterwards", func() bool {
				return mustReadQueue(t, f.rdb, "f").stat("processed") == wantProcessed
			})
			if healthy.Load() != 1 {
				t.Errorf("healthy handler ran %d times, want 1", healthy.Load())
			}
			s = mustReadQueue(t, f.rdb, "f")
			if got := int(runs.Load()); got != tc.wantRuns {
				t.Errorf("handler ran %d times, want %d", got, tc.wantRuns)
			}
			if tc.wantArchived {
				if len(s.archived) != 1 || s.archived[0] != info.ID {
					t.Errorf("archived %v, want [%s]", s.archived, info.ID)
				}
				if got := s.errors[info.ID]; got != tc.wantErr {
					t.Errorf("stored error %q, want %q", got, tc.wantErr)
				}
			} else if len(s.archived) != 0 || len(s.errors) != 0 || len(s.tasks) != 0 {
				t.Errorf("archived %v, errors %v, tasks %v: want the task completed and gone", s.archived, s.errors, s.tasks)
			}
			if got, want := [2]int{s.stat("failed"), s.stat("retried")}, [2]int{tc.wantFailed, tc.wantRetried}; got != want {
				t.Errorf("failed, retried = %v, want %v", got, want)
			}
			if logs.contains("level=ERROR") {
				t.Errorf("worker logged errors:\n%s", logs)
			}
		})
	}
}

// TestPerTypeBackoff checks that WithBackoff overrides the worker's backoff
// for its task type only: the retry is scheduled at failure + backoff on the
// server clock, and runs no earlier, and no later than the next-due hint
// wakes the idle worker.
func TestPerTypeBackoff(t *testing.T) {
	f := newFixture(t)
	const slowBackoff, maxIdle = 600 * time.Millisecond, 30 * time.Second
	wrdb, scriptCalls := f.srv.Client(t), newCallLog(t)
	wrdb.AddHook(scriptCalls)
	w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{"bo": 1}, Concurrency: 2, Backoff: constBackoff(time.Millisecond), MaxIdleWait: maxIdle})
	type run struct {
		id      string
		retried int
		start   time.Time
		end     time.Time
	}
	runs := make(chan run, 10)
	type backoffCall struct {
		retried int
		err     error
		id      string
	}
	calls := make(chan backoffCall, 10)
	handler := func(ctx context.Context, task *Task) error {
		r := run{id: task.ID, retried: task.Retried, start: time.Now()}
		var err error
		if task.Retried == 0 {
			err = fmt.Errorf("%s fails once", task.Type)
		}
		r.end = time.Now()
		runs <- r
		return err
	}
	w.HandleFunc("fast", handler)
	w.HandleFunc("slow", handler, WithBackoff(func(retried int, err error, task *Task) time.Duration {
		calls <- backoffCall{retried, err, task.ID}
		return slowBackoff
	}))
	runWorker(t, w)
	slow := f.enqueue(t, "bo", "slow", MaxRetry(3))

	// The retry's due time is the failure's server time plus the backoff.
	var due int64
	waitFor(t, hangGuard, "the slow task's retry to be scheduled", func() bool {
		var ok bool
		due, ok = mustReadQueue(t, f.rdb, "bo").scheduled[slow.ID]
		return ok
	})
	observedAt := serverNow(t, f.rdb)
	c := recv(t, calls, hangGuard, "the per-type backoff to be called")
	if c.retried != 0 || c.id != slow.ID || c.err == nil || c.err.Error() != "slow fails once" {
		t.Errorf("backoff called with retried %d, err %v, task %s; want 0, \"slow fails once\", %s", c.retried, c.err, c.id, slow.ID)
	}

	fast := f.enqueue(t, "bo", "fast", MaxRetry(3))
	byID := map[string][]run{}
	for i := 0; i < 4; i++ {
		r := recv(t, runs, hangGuard, "4 runs")
		byID[r.id] = append(byID[r.id], r)
	}
	for _, id := range []string{slow.ID, fast.ID} {
		if rs := byID[id]; len(rs) != 2 || rs[0].retried != 0 || rs[1].retried != 1 {
			t.Fatalf("task %s runs %+v, want two, retried 0 then 1", id, rs)
		}
	}
	// The failure came after the first run's handler returned and before
	// the test saw the retry scheduled.
	failedRun, retry := byID[slow.ID][0], byID[slow.ID][1]
	if due < failedRun.end.Add(slowBackoff).UnixMilli() || due > observedAt.Add(slowBackoff).UnixMilli() {
		t.Errorf("retry due at %d ms, want %s after the failure, between %d and %d ms",
			due, slowBackoff, failedRun.end.Add(slowBackoff).UnixMilli(), observedAt.Add(slowBackoff).UnixMilli())
	}
	if retry.start.UnixMilli() < due {
		t.Errorf("slow task retried at %d ms, before its retry was due at %d ms", retry.start.UnixMilli(), due)
	}
	checkWoken(t, "the slow task's retry", idleSpellStart(t, scriptCalls.of("dequeue"), time.UnixMilli(due)), time.UnixMilli(due), retry.start, maxIdle)
	// Each failure was sent with its own backoff: the type's for the slow
	// task, the worker's 1ms for the fast one.
	backoffs := map[string]string{}
	for _, rc := range scriptCalls.of("retry-or-archive") {
		if len(rc.argv) >= 4 {
			backoffs[rc.argv[0]] = rc.argv[3]
		}
	}
	if want := map[string]string{slow.ID: strconv.FormatInt(slowBackoff.Milliseconds(), 10), fast.ID: "1"}; !maps.Equal(backoffs, want) {
		t.Errorf("retry-or-archive backoff_ms per task %v, want %v", backoffs, want)
	}
	select {
	case c := <-calls:
		t.Errorf("per-type backoff called again (%+v): only the slow task's single failure should use it", c)
	default:
	}
}

// TestStrictPriority checks that with StrictPriority a worker serves every
// task of the higher-weight queue before any of the lower one.
func TestStrictPriority(t *testing.T) {
	f := newFixture(t)
	const n = 10
	// Low first, so FIFO across queues would run low first.
	for _, q := range []string{"low", "high"} {
		tasks := make([]NewTask, n)
		for i := range tasks {
			tasks[i] = NewTask{Type: "job"}
		}
		if _, err := f.c.EnqueueBatch(context.Background(), q, tasks); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"high": 2, "low": 1}, StrictPriority: true, Concurrency: 1})
	var mu sync.Mutex
	var order []string
	w.HandleFunc("job", func(_ context.Context, task *Task) error {
		mu.Lock()
		order = append(order, task.Queue)
		mu.Unlock()
		return nil
	})
	runWorker(t, w)
	waitFor(t, hangGuard, "all tasks to run", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 2*n
	})
	mu.Lock()
	defer mu.Unlock()
	for i, q := range order {
		want := "high"
		if i >= n {
			want = "low"
		}
		if q != want {
			t.Fatalf("run %d came from %s, want %s; order %v", i, q, want, order)
		}
	}
}

// TestWeightedPriority checks that without StrictPriority, queues weighted
// 3:1 are served roughly 3:1 while both have work, and the lighter one is not
// starved.
func TestWeightedPriority(t *testing.T) {
	f := newFixture(t)
	const n, sample = 40, 40
	for _, q := range []string{"low", "high"} {
		tasks := make([]NewTask, n)
		for i := range tasks {
			tasks[i] = NewTask{Type: "job"}
		}
		if _, err := f.c.EnqueueBatch(context.Background(), q, tasks); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{"high": 3, "low": 1}, Concurrency: 1})
	var mu sync.Mutex
	var order []string
	w.HandleFunc("job", func(_ context.Context, task *Task) error {
		mu.Lock()
		order = append(order, task.Queue)
		mu.Unlock()
		return nil
	})
	stop := runWorker(t, w)
	waitFor(t, hangGuard, "the first runs", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) >= sample
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	high := 0
	for _, q := range order[:sample] {
		if q == "high" {
			high++
		}
	}
	// Expected 30 of 40; 20..38 leaves more than 3.5 standard deviations
	// below and 2.9 above (a false failure about once in 7000 runs).
	if high < sample/2 || high > sample*95/100 {
		t.Errorf("high ran %d of the first %d tasks, want about 3/4 (between 50%% and 95%%); order %v", high, sample, order[:sample])
	}
}

// TestLeaseLostFencing makes a worker (A) lose its lease the realistic way:
// its renewals stop reaching Redis (a partition, or a process stall), the
// lease expires, and another worker (B) reclaims the task and leases it under
// a new token. A's handler context is cancelled with cause ErrLeaseLost (when
// A learns it), and nothing A sends with the stale token changes the task:
// B's outcome is the one recorded.
func TestLeaseLostFencing(t *testing.T) {
	tests := []struct {
		name string
		// renewals: "fail" = A's extend calls fail at once (network error);
		// "stall" = they hang until the test lets them through, then reach
		// the server (a paused process).
		renewals string
		// handlerWaits: A's handler waits for its context; otherwise it
		// returns success after B took the task, before A noticed.
		handlerWaits bool
		wantLog      string
	}{
		{"renewals fail, handler cancelled", "fail", true, "lease lost; the task's outcome is not recorded"},
		{"stalled renewal reaches the server late, handler cancelled", "stall", true, "lease lost; the task's outcome is not recorded"},
		{"stalled worker completes after losing the lease", "stall", false, "lease lost when recording the outcome"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			const queue, lease = "fence", 300 * time.Millisecond
			ctx := context.Background()

			// Worker A, on its own connection, with a fault injector.
			ardb := f.srv.Client(t)
			spy := newScriptSpy(t, ardb)
			var faulty atomic.Bool
			gate := make(chan struct{})
			var openOnce sync.Once
			openGate := func() { openOnce.Do(func() { close(gate) }) }
			spy.intercept = func(ctx context.Context, names []string) (context.Context, error) {
				if !faulty.Load() || !hasName(names, "extend") {
					return ctx, nil
				}
				if tc.renewals == "fail" {
					return ctx, errors.New("injected: connection reset")
				}
				<-gate
				return context.WithoutCancel(ctx), nil
			}
			wa, logsA := newTestWorker(t, ardb, WorkerConfig{Queues: map[string]int{queue: 1}, LeaseDuration: lease})
			aStarted := make(chan *Task, 1)
			aCause := make(chan error, 1)
			bHasIt := make(chan struct{})
			aDone := make(chan struct{})
			wa.HandleFunc("job", func(hctx context.Context, task *Task) error {
				defer close(aDone)
				aStarted <- task
				if tc.handlerWaits {
					select {
					case <-hctx.Done():
						aCause <- context.Cause(hctx)
					case <-time.After(10 * time.Second):
						aCause <- errors.New("handler context never cancelled")
					}
				}
				// Do not return (and free A's slot, letting A reclaim
				// the task itself) before B owns it.
				<-bHasIt
				return nil
			})
			info := f.enqueue(t, queue, "job", MaxRetry(3))
			runWorker(t, wa)
			t.Cleanup(openGate) // runs before A's shutdown: A's extender must not hang
			aTask := recv(t, aStarted, hangGuard, "A to lease the task")
			// Let A renew once successfully, then cut its renewals.
			waitFor(t, hangGuard, "A's first renewal", func() bool { return spy.count("extend") >= 1 })
			faulty.Store(true)

			// Worker B: a healthy worker on the same queue.
			wb, logsB := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, LeaseDuration: lease})
			bStarted := make(chan *Task, 1)
			bRelease := make(chan struct{})
			wb.HandleFunc("job", func(hctx context.Context, task *Task) error {
				bStarted <- task
				<-bRelease
				return fmt.Errorf("holder's verdict: %w", ErrSkipRetry)
			})
			runWorker(t, wb)
			bTask := recv(t, bStarted, hangGuard, "B to reclaim and lease the task")
			if bTask.ID != info.ID || bTask.Retried != 1 || bTask.token == aTask.token {
				t.Fatalf("B leased %s retried %d token %s; want %s, retried 1 (the expired lease counts as a failed run), a token other than A's %s",
					bTask.ID, bTask.Retried, bTask.token, info.ID, aTask.token)
			}
			close(bHasIt)

			switch {
			case tc.handlerWaits && tc.renewals == "stall":
				// A's renewal is stuck: A cannot know yet.
				select {
				case c := <-aCause:
					t.Fatalf("A's handler ended (cause %v) before its stalled renewal reached Redis", c)
				case <-time.After(100 * time.Millisecond):
				}
				openGate()
				fallthrough
			case tc.handlerWaits:
				if c := recv(t, aCause, hangGuard, "A's handler context to be cancelled"); !errors.Is(c, ErrLeaseLost) {
					t.Errorf("A's handler context cause %v, want ErrLeaseLost", c)
				}
			}
			recv(t, aDone, hangGuard, "A's handler to return")
			waitFor(t, hangGuard, "A to log the lost lease", func() bool { return logsA.contains(tc.wantLog) })

			// The stale holder's outcome changed nothing: B still holds
			// the task under its own token.
			s := mustReadQueue(t, f.rdb, queue)
			if _, ok := s.active[info.ID]; !ok || s.tokens[info.ID] != bTask.token || s.stat("processed") != 0 {
				t.Fatalf("after A's stale outcome: active %v tokens %v processed %d; want the task active under B's token %s, not processed",
					s.active, s.tokens, s.stat("processed"), bTask.token)
			}
			// And any call A's loader sends with the stale token, now that
			// A's connection works again, is refused whatever the script.
			faulty.Store(false)
			openGate()
			for _, script := range []string{"complete", "retry-or-archive", "extend", "requeue"} {
				var args []string
				switch script {
				case "complete":
					// id, token, result, next_count, lease_ms, promote_limit
					args = []string{info.ID, aTask.token, "", "0", "0", "0"}
				case "retry-or-archive":
					args = []string{info.ID, aTask.token, "stale", "0", "0"}
				case "extend":
					args = []string{info.ID, aTask.token, "60000"}
				case "requeue":
					args = []string{info.ID, aTask.token}
				}
				if _, err := wa.loader.Run(ctx, aTask.q.keys, script, args...); !errors.Is(err, ErrLeaseLost) {
					t.Errorf("%s with A's stale token: err %v, want ErrLeaseLost", script, err)
				}
			}

			// B's verdict is what the queue records.
			close(bRelease)
			waitFor(t, hangGuard, "B's outcome to be recorded", func() bool {
				return len(mustReadQueue(t, f.rdb, queue).archived) == 1
			})
			s = mustReadQueue(t, f.rdb, queue)
			if got := s.errors[info.ID]; got != "holder's verdict: luaq: skip retry" {
				t.Errorf("stored error %q, want B's", got)
			}
			if s.stat("processed") != 0 || s.stat("failed") != 2 || len(s.active) != 0 || len(s.tokens) != 0 || len(s.pending) != 0 || len(s.scheduled) != 0 {
				t.Errorf("final state: stats %v, active %v, tokens %v, pending %v, scheduled %v; want 2 failures (reclaim, B), nothing processed or leased",
					s.stats, s.active, s.tokens, s.pending, s.scheduled)
			}
			if logsB.contains("lease lost") {
				t.Errorf("B, the current holder, reported a lost lease:\n%s", logsB)
			}
		})
	}
}
