package sdk

import (
	"context"
	"maps"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// cmdCounter is a go-redis hook that counts every command a client sends, a
// script call under its script's name and any other command as "cmd:<name>".
type cmdCounter struct {
	names map[string]string // SHA -> script name

	mu    sync.Mutex
	calls map[string]int
}

func newCmdCounter(t *testing.T, rdb *redis.Client) *cmdCounter {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	l := &cmdCounter{names: map[string]string{}, calls: map[string]int{}}
	for _, s := range b.Scripts() {
		l.names[s.SHA] = s.Name
	}
	rdb.AddHook(l)
	return l
}

func (l *cmdCounter) add(cmds ...redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cmds {
		name := "cmd:" + c.Name()
		if args := c.Args(); c.Name() == "evalsha" && len(args) > 1 {
			if sha, ok := args[1].(string); ok && l.names[sha] != "" {
				name = l.names[sha]
			}
		}
		l.calls[name]++
	}
}

// snapshot returns the counts so far.
func (l *cmdCounter) snapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.calls)
}

func (l *cmdCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *cmdCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.add(cmd)
		return next(ctx, cmd)
	}
}

func (l *cmdCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.add(cmds...)
		return next(ctx, cmds)
	}
}

// diffCounts returns after - before, per name, without zero entries.
func diffCounts(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// TestIdleWorkerDoesNotPoll: while another worker runs long tasks (its
// leases renewed normally), an idle worker sends nothing but its heartbeats
// (register, every LeaseDuration/3) and its janitor rounds (janitor-lock,
// prune-workers, clean, every JanitorInterval): no dequeue at each lease
// deadline. Counted with a hook on the idle worker's client over several
// lease periods, against bounds derived from the elapsed time. Then a task
// whose lease is abandoned (leased by a "dead worker", renewed one last time
// and then never again) is reclaimed by the first janitor round after the
// lease expired, and the idle worker, woken without polling, runs it.
func TestIdleWorkerDoesNotPoll(t *testing.T) {
	const (
		queue    = "idle"
		lease    = 1500 * time.Millisecond
		interval = 500 * time.Millisecond
		window   = 3 * lease
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := WorkerConfig{
		Queues: map[string]int{queue: 1}, Concurrency: 2, LeaseDuration: lease,
		JanitorInterval: interval, MaxIdleWait: time.Hour,
	}

	// The busy worker: two long tasks fill both of its slots.
	release := make(chan struct{})
	started := make(chan string, 2)
	busy, _ := newTestWorker(t, srv.Client(t), cfg)
	busy.HandleFunc("long", func(hctx context.Context, task *Task) error {
		started <- task.ID
		select {
		case <-release:
		case <-hctx.Done():
		}
		return nil
	})
	if _, err := c.EnqueueBatch(ctx, queue, []NewTask{{Type: "long"}, {Type: "long"}}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, busy)
	defer close(release)
	recv(t, started, 5*time.Second, "the first long task to start")
	recv(t, started, 5*time.Second, "the second long task to start")
	// The dead worker's task, leased before the idle worker starts (or the
	// idle worker would take it), for longer than the test: it is abandoned
	// later, by a last renewal for one lease.
	info := enqueueOne(t, c, queue, "orphan", MaxRetry(5))
	got := leaseDirect(t, c.loader, queue, 1, time.Hour)
	if len(got) != 1 || got[0].ID != info.ID {
		t.Fatalf("the dead worker leased %v, want %s", got, info.ID)
	}
	orphan := got[0]
	// The enqueues' wake token is still there (nobody waited): drop it, or
	// the idle worker's first wait would end at once.
	rdb.Del(ctx, testQueueKeys(t, queue).Key("wake"))

	// The idle worker, on its own counted client.
	irdb := srv.Client(t)
	calls := newCmdCounter(t, irdb)
	ran := make(chan time.Time, 1)
	idle, _ := newTestWorker(t, irdb, cfg)
	idle.HandleFunc("orphan", func(context.Context, *Task) error {
		ran <- time.Now()
		return nil
	})
	runWorker(t, idle)
	waitFor(t, 5*time.Second, "the idle worker's first dequeue", func() bool { return calls.snapshot()["dequeue"] > 0 })
	time.Sleep(100 * time.Millisecond) // let that first fetch settle into its wait
	before, t0 := calls.snapshot(), time.Now()
	time.Sleep(window)
	counts, elapsed := diffCounts(before, calls.snapshot()), time.Since(t0)
	total := 0
	for _, n := range counts {
		total += n
	}
	t.Logf("idle worker over %s: %v (%.1f calls per minute)", elapsed.Round(time.Millisecond), counts,
		float64(total)/elapsed.Minutes())
	checkIdleCalls(t, counts, elapsed, lease/3, interval)

	checkAbandonedLeaseRuns(t, c, rdb, orphan, lease, calls, ran)
}

// checkIdleCalls checks the commands an idle worker sent over elapsed:
// heartbeats at most every heartbeat, janitor rounds at most every interval
// (each: janitor-lock acquire, then, if it got the lock, prune-workers,
// clean and janitor-lock release), and nothing else.
func checkIdleCalls(t *testing.T, got map[string]int, elapsed, heartbeat, interval time.Duration) {
	t.Helper()
	// Ticks of a period p in elapsed, plus one for a tick at each end.
	ticks := func(p time.Duration) int { return int(elapsed/p) + 2 }
	if got["register"] < 1 || got["register"] > ticks(heartbeat) {
		t.Errorf("%d heartbeats in %s, want 1..%d (one per %s)", got["register"], elapsed, ticks(heartbeat), heartbeat)
	}
	// A round is a janitor-lock acquire and, when it gets the lock,
	// prune-workers, one clean (there is nothing to clean) and a
	// janitor-lock release. A round may straddle either end of the window.
	rounds := ticks(interval)
	locks, prunes, cleans := got["janitor-lock"], got["prune-workers"], got["clean"]
	acquires := locks - prunes // releases: one per round that got the lock
	if acquires < 1 || acquires > rounds || prunes > acquires+1 || cleans > prunes+1 || cleans < prunes-1 {
		t.Errorf("janitor calls in %s: %d janitor-lock, %d prune-workers, %d clean; want at most %d rounds (one per %s), one clean in each that got the lock",
			elapsed, locks, prunes, cleans, rounds, interval)
	}
	for name, n := range got {
		switch name {
		case "register", "janitor-lock", "prune-workers", "clean":
		case "cmd:hello", "cmd:client", "cmd:auth", "cmd:select":
			// A new pooled connection's handshake (go-redis replaces a
			// connection now and then): not a call about the queue.
		default:
			t.Errorf("the idle worker sent %s %d times; an idle worker sends only heartbeats and janitor calls", name, n)
		}
	}
}

// checkAbandonedLeaseRuns renews the lease of task info for lease one last
// time, as a worker that dies right after, and checks that the idle
// worker's janitor reclaims it in the first round that starts after the
// lease expired (a round may straddle the expiry, so by the second clean
// call counted from then: a bound in janitor rounds, which a loaded machine
// slows as much as everything else, not in wall-clock time), and that the
// idle worker then runs it (its handler reports on ran).
func checkAbandonedLeaseRuns(t *testing.T, c *Client, rdb *redis.Client, info *Task, lease time.Duration, calls *cmdCounter, ran <-chan time.Time) {
	t.Helper()
	queue := info.Queue
	active := testQueueKeys(t, queue).Key("active")
	if _, err := c.loader.Run(context.Background(), testQueueKeys(t, queue), "extend", info.ID, info.token, strconv.FormatInt(ceilMs(lease), 10)); err != nil {
		t.Fatalf("the last renewal: %v", err)
	}
	t0 := time.Now()
	deadline, err := rdb.ZScore(context.Background(), active, info.ID).Result()
	if err != nil {
		t.Fatalf("reading the lease deadline: %v", err)
	}
	expired := time.UnixMilli(int64(deadline))
	waitFor(t, hangGuard, "the lease to expire on the server clock", func() bool {
		return !serverNow(t, rdb).Before(expired)
	})
	cleansAtExpiry := calls.snapshot()["clean"]
	var reclaimed time.Duration
	var cleans int
	waitFor(t, hangGuard, "the abandoned lease to be reclaimed", func() bool {
		cleans = calls.snapshot()["clean"] - cleansAtExpiry
		_, err := rdb.ZScore(context.Background(), active, info.ID).Result()
		reclaimed = time.Since(t0)
		return err == redis.Nil
	})
	at := recv(t, ran, hangGuard, "the idle worker to run the reclaimed task")
	t.Logf("abandoned lease reclaimed %s after it was granted (%d clean calls after it expired), run %s after",
		reclaimed.Round(time.Millisecond), cleans, at.Sub(t0).Round(time.Millisecond))
	if cleans > 2 {
		t.Errorf("reclaimed only after %d clean calls that followed the lease's expiry, want the first janitor round after it (at most 2 counted)", cleans)
	}
}
