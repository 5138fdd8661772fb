//go:build linux

package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

const (
	fenceQueue = "fence"
	fenceType  = "fence"
	fenceLease = 500 * time.Millisecond
)

// staleCalls are the calls a worker makes on a task it holds, in the form
// the SDK sends them, to be replayed with a stale token.
var staleCalls = []string{"extend", "complete", "retry-or-archive", "requeue", "deregister"}

// runFenceWorker is a worker process with concurrency 1 whose handler prints
// "started <id> pid=<pid> retried=<n> token=<token>" (the token read from
// the queue's tokens hash, which any client may read), then:
//
//   - role "frozen": waits for its context to end and prints
//     "ctx-done <id> leaselost=<bool> cause=<cause>". Then, from this same
//     process, it replays with its (now stale) token every call a worker
//     makes on a task it holds (extend, complete, retry-or-archive, requeue,
//     deregister), printing "stale <script> leaselost=<bool> ..." for each,
//     prints "probe-done <id>" and returns nil: a success claimed after the
//     lease was lost, which the SDK must not record.
//   - role "holder": waits until the key cfg.ReleaseKey exists, prints
//     "finishing <id>" and returns nil; if its context ends first it prints
//     "ctx-done ..." and fails.
//
// It prints "stopped" once Run returned (SIGTERM).
func runFenceWorker(cfg childConfig) error {
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr})
	defer rdb.Close()
	q, err := keys.ForQueue(cfg.Queue)
	if err != nil {
		return err
	}
	bundle, err := scripts.Load()
	if err != nil {
		return err
	}
	probe := loader.New(rdb, bundle)
	pid := os.Getpid()
	var outMu sync.Mutex
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Printf(format+"\n", a...)
	}
	errText := func(err error) string {
		if err == nil {
			return "<nil>"
		}
		return err.Error()
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues: map[string]int{cfg.Queue: 1}, Concurrency: 1, LeaseDuration: cfg.Lease,
		JanitorInterval: cfg.JanitorInterval, ReclaimBackoff: cfg.ReclaimBackoff,
		ShutdownTimeout: 500 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		return err
	}
	leaseMs := strconv.FormatInt(cfg.Lease.Milliseconds(), 10)
	w.HandleFunc(fenceType, func(ctx context.Context, t *sdk.Task) error {
		token, err := rdb.HGet(ctx, q.Key("tokens"), t.ID).Result()
		if err != nil {
			say("error reading the token of %s: %v", t.ID, err)
			return err
		}
		say("started %s pid=%d retried=%d token=%s", t.ID, pid, t.Retried, token)
		switch cfg.Role {
		case "frozen":
			select {
			case <-ctx.Done():
			case <-time.After(time.Minute):
				say("timeout %s: the context was never cancelled", t.ID)
				return errors.New("context never cancelled")
			}
			cause := context.Cause(ctx)
			say("ctx-done %s leaselost=%t cause=%q", t.ID, errors.Is(cause, sdk.ErrLeaseLost), errText(cause))
			pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			args := map[string][]string{
				"extend":           {t.ID, token, leaseMs},
				"complete":         {t.ID, token, "stale result", "0", leaseMs, "100"},
				"retry-or-archive": {t.ID, token, "stale failure", "0", "0"},
				"requeue":          {t.ID, token},
				"deregister":       {fmt.Sprintf("stale-probe-%d", pid), t.ID, token},
			}
			for _, script := range staleCalls {
				v, err := probe.Run(pctx, q, script, args[script]...)
				say("stale %s leaselost=%t reply=%v err=%q", script, errors.Is(err, sdk.ErrLeaseLost), v, errText(err))
			}
			say("probe-done %s", t.ID)
			return nil
		case "holder":
			for {
				n, err := rdb.Exists(ctx, cfg.ReleaseKey).Result()
				if err == nil && n == 1 {
					say("finishing %s", t.ID)
					return nil
				}
				select {
				case <-ctx.Done():
					say("ctx-done %s leaselost=%t cause=%q", t.ID, errors.Is(context.Cause(ctx), sdk.ErrLeaseLost), errText(context.Cause(ctx)))
					return context.Cause(ctx)
				case <-time.After(20 * time.Millisecond):
				}
			}
		}
		return fmt.Errorf("unknown role %q", cfg.Role)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = w.Run(ctx)
	say("stopped")
	return err
}

// fenceState is the part of a queue's keyspace that only task operations
// change: the worker registry, the wake list and the janitor lock (which
// live workers touch all the time) are left out, and the lease deadlines of
// active tasks (which the holder renews) are zeroed.
func fenceState(t *testing.T, rdb redis.Cmdable) keyspace.Snapshot {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	snap, err := keyspace.Dump(ctx, rdb, "luaq:*")
	if err != nil {
		t.Fatal(err)
	}
	q, _ := keys.ForQueue(fenceQueue)
	for _, role := range []string{"workers", "worker_info", "wake", "lock"} {
		delete(snap, q.Key(role))
	}
	if v, ok := snap[q.Key("active")]; ok {
		for i := range v.ZSet {
			v.ZSet[i].Score = 0
		}
		snap[q.Key("active")] = v
	}
	return snap
}

// field returns the value of "name=value" in a line of space-separated
// fields.
func field(t *testing.T, line, name string) string {
	t.Helper()
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s= in %q", name, line)
	return ""
}

// TestFencingSIGSTOP freezes a worker process (SIGSTOP) in the middle of a
// task, past its 500ms lease, until a second worker process has reclaimed
// the lease and is running the task, then thaws it (SIGCONT). The thawed
// worker's handler context is cancelled with cause ErrLeaseLost; every call
// it then makes on the task with its stale token (extend, complete,
// retry-or-archive, requeue, deregister) is refused with LQ_LEASE_LOST or
// ignored, and changes nothing; the success its handler then claims is not
// recorded. The second worker completes the task: processed exactly once.
// Three rounds, frozen lease + 0.5s, + 1s and + 1.5s or more.
func TestFencingSIGSTOP(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	client, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	base := childConfig{
		Mode: "fence", Addr: srv.Addr(), Queue: fenceQueue, Lease: fenceLease,
		JanitorInterval: 100 * time.Millisecond, ReclaimBackoff: time.Millisecond,
	}
	q, _ := keys.ForQueue(fenceQueue)
	registered := func(pid int) func() bool {
		return func() bool {
			ctx, cancel := bg()
			defer cancel()
			list, err := client.Workers(ctx, fenceQueue, 100)
			if err != nil {
				return false
			}
			for _, w := range list {
				if w.PID == pid {
					return true
				}
			}
			return false
		}
	}
	ctx := context.Background()
	for round := 1; round <= 3; round++ {
		id := fmt.Sprintf("f%d", round)
		release := "chaos:fence:release:" + id // outside luaq's prefix
		// How long the first worker stays frozen once the second one runs
		// the task: the whole freeze outlasts the lease by far.
		extraFreeze := time.Duration(round) * fenceLease

		frozenCfg := base
		frozenCfg.Role = "frozen"
		frozen := startChild(t, dir, "frozen-"+id, frozenCfg, true)
		waitUntil(t, 20*time.Second, "the first worker to register", registered(frozen.pid()))
		if _, err := client.Enqueue(ctx, fenceQueue, fenceType, nil, sdk.ID(id), sdk.MaxRetry(5), sdk.Retention(time.Hour)); err != nil {
			t.Fatal(err)
		}
		line := frozen.expect(t, "started "+id+" ", 10*time.Second, nil)
		token1, _ := strconv.Atoi(field(t, line, "token"))

		// Only the frozen worker's lease has to be short; the holder's is
		// longer so that a loaded machine cannot make it miss a renewal.
		holderCfg := base
		holderCfg.Role, holderCfg.ReleaseKey, holderCfg.Lease = "holder", release, 2*time.Second
		holder := startChild(t, dir, "holder-"+id, holderCfg, true)
		waitUntil(t, 20*time.Second, "the second worker to register", registered(holder.pid()))

		if err := frozen.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		stoppedAt := time.Now()
		line = holder.expect(t, "started "+id+" ", 10*time.Second, nil)
		took := time.Since(stoppedAt)
		token2, _ := strconv.Atoi(field(t, line, "token"))
		if token2 <= token1 {
			t.Errorf("round %d: the holder's token %d is not above the frozen worker's %d", round, token2, token1)
		}
		if field(t, line, "retried") != "1" {
			t.Errorf("round %d: the reclaimed run should count one retry: %q", round, line)
		}
		time.Sleep(extraFreeze)
		st, err := client.GetTask(ctx, fenceQueue, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != "active" || st.LastError != "lease expired" || st.Retried != 1 {
			t.Errorf("round %d: task while the first worker is frozen: state %s, retried %d, error %q; want active, 1, \"lease expired\"", round, st.State, st.Retried, st.LastError)
		}
		if tok, _ := rdb.HGet(ctx, q.Key("tokens"), id).Result(); tok != strconv.Itoa(token2) {
			t.Errorf("round %d: current token %q, want the holder's %d", round, tok, token2)
		}
		before := fenceState(t, rdb)

		if err := frozen.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		frozenFor := time.Since(stoppedAt)
		line = frozen.expect(t, "ctx-done "+id+" ", 10*time.Second, nil)
		t.Logf("round %d: frozen %s; lease reclaimed and task started by the other worker %s after SIGSTOP (tokens %d -> %d); thawed worker: %s",
			round, frozenFor.Round(time.Millisecond), took.Round(time.Millisecond), token1, token2, line)
		if field(t, line, "leaselost") != "true" {
			t.Errorf("round %d: the thawed worker's handler context ended with another cause: %q", round, line)
		}
		for _, script := range staleCalls {
			line = frozen.expect(t, "stale "+script+" ", 10*time.Second, nil)
			t.Logf("round %d: %s", round, line)
			if script == "deregister" {
				// deregister skips pairs whose token is stale: nothing given
				// back, and the probe's worker id was never registered.
				if !strings.Contains(line, "reply=[0 0]") || !strings.Contains(line, `err="<nil>"`) {
					t.Errorf("round %d: stale deregister: %q, want reply [0 0] and no error", round, line)
				}
			} else if field(t, line, "leaselost") != "true" {
				t.Errorf("round %d: stale %s was not refused with LQ_LEASE_LOST: %q", round, script, line)
			}
		}
		frozen.expect(t, "probe-done "+id, 10*time.Second, nil)
		// Leave the thawed worker time to do whatever it would with the
		// success its handler claimed, and to renew, reclaim or clean.
		time.Sleep(4 * fenceLease)
		if diff := cmp.Diff(before, fenceState(t, rdb)); diff != "" {
			t.Errorf("round %d: the thawed worker changed the queue (-before +after):\n%s", round, diff)
		}
	drain:
		for {
			select {
			case l := <-holder.lines:
				if strings.HasPrefix(l, "ctx-done") {
					t.Errorf("round %d: the holder lost its task: %q", round, l)
				}
			default:
				break drain
			}
		}

		if err := rdb.Set(ctx, release, "1", time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		holder.expect(t, "finishing "+id, 10*time.Second, nil)
		waitUntil(t, 10*time.Second, "the task to complete", func() bool {
			st, err := client.GetTask(ctx, fenceQueue, id)
			return err == nil && st.State == "completed"
		})
		info, err := client.QueueInfo(ctx, fenceQueue)
		if err != nil {
			t.Fatal(err)
		}
		if info.Processed != int64(round) || info.Completed != int64(round) {
			t.Errorf("round %d: processed %d, completed %d; want %d (each task completed exactly once)", round, info.Processed, info.Completed, round)
		}
		frozen.stop(t, 20*time.Second)
		holder.stop(t, 20*time.Second)
		for l := range frozen.lines {
			if strings.HasPrefix(l, "started ") {
				t.Errorf("round %d: the thawed worker started another task: %q", round, l)
			}
		}
		out, _ := os.ReadFile(frozen.out)
		if !strings.Contains(string(out), "lease lost; the task's outcome is not recorded") {
			t.Errorf("round %d: the thawed worker did not report dropping its handler's outcome\n%s", round, frozen.tail())
		}
	}
}
