//go:build linux

package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

const soakType = "soak"

// soakQueues are the soak's queues, with their weights.
var soakQueues = map[string]int{"soak-a": 2, "soak-b": 1}

// soakMemTolerance is how far used_memory may end above its baseline.
//
// used_memory counts the bytes Redis has allocated (zmalloc's accounting),
// not the process's RSS, so allocator fragmentation and pages jemalloc keeps
// cached do not show in it; nor does the Lua VM's heap (used_memory_vm_eval,
// a separate allocator). Server statistics are reset before both readings
// (see measureServer). What may still differ once every task is gone, none
// of it proportional to the traffic: the keyspace dict keeps the bucket
// array it grew to while the queues had a dozen keys each until serverCron
// shrinks it (256 bytes here); buffers of server-side clients (the
// measuring connection, the client that scripts run under) are sized by
// their recent replies (they move by up to ~20 KiB between the two
// readings, in opposite directions, and net out); the bookkeeping hashes'
// listpacks gain a few bytes as counters gain digits; and a soak that
// crosses midnight UTC adds a per-day stats field per counter. Measured:
// +1.8 to +2.1 KiB after 10s, 30s and 60s soaks (3,500 to 23,000 tasks), the
// same for every length. 32 KiB leaves room for that and stays below any
// leak that matters: 3 bytes left per task over a default 30s soak (about
// 11,000 tasks), or one stray hash field per task, would exceed it (the test
// logs the resolution of each run in bytes per task).
const soakMemTolerance = 32 << 10

// soakHandler runs a soak task. The payload picks the behaviour: "ok",
// "fail-once" (fails its first run), "skip" (ErrSkipRetry), "panic", or "r"
// for random: 70% success, 15% an error, 3% ErrSkipRetry, 2% a panic, 10%
// a run that waits for its context (ending at the task's Timeout or
// Deadline when it has one, else after 100ms).
func soakHandler(ctx context.Context, t *sdk.Task) error {
	mode := string(t.Payload)
	if mode == "r" {
		switch r := rand.IntN(100); {
		case r < 70:
			mode = "ok"
		case r < 85:
			mode = "fail"
		case r < 88:
			mode = "skip"
		case r < 90:
			mode = "panic"
		default:
			mode = "slow"
		}
	}
	work := time.NewTimer(time.Duration(1+rand.IntN(20)) * time.Millisecond)
	defer work.Stop()
	select {
	case <-work.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	switch mode {
	case "ok":
		t.SetResult([]byte("done " + t.ID))
		return nil
	case "fail-once":
		if t.Retried == 0 {
			return errors.New("first run fails")
		}
		return nil
	case "fail":
		return errors.New("random failure")
	case "skip":
		return fmt.Errorf("random permanent failure: %w", sdk.ErrSkipRetry)
	case "panic":
		panic("random panic")
	case "slow":
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(100 * time.Millisecond):
			return errors.New("slow run")
		}
	}
	return fmt.Errorf("unknown mode %q: %w", mode, sdk.ErrSkipRetry)
}

// logCounter is a slog handler that counts records at Error level and keeps
// the first few.
type logCounter struct {
	mu     sync.Mutex
	errors int
	warns  int
	first  []string
}

func (l *logCounter) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelWarn }
func (l *logCounter) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if r.Level >= slog.LevelError {
		l.errors++
	} else {
		l.warns++
	}
	if len(l.first) < 10 {
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
		l.first = append(l.first, b.String())
	}
	return nil
}
func (l *logCounter) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logCounter) WithGroup(string) slog.Handler      { return l }

// soakWorker is an in-process worker with its own Redis client.
type soakWorker struct {
	rdb  *redis.Client
	w    *sdk.Worker
	done chan error
}

func startSoakWorker(t *testing.T, addr string, logs *logCounter) *soakWorker {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues: soakQueues, Concurrency: 8, LeaseDuration: 2 * time.Second,
		ShutdownTimeout: 500 * time.Millisecond, MaxIdleWait: 5 * time.Second,
		JanitorInterval: 500 * time.Millisecond, ReclaimBackoff: 50 * time.Millisecond,
		Backoff: sdk.ExponentialBackoff(10*time.Millisecond, 200*time.Millisecond),
		Logger:  slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc(soakType, soakHandler)
	sw := &soakWorker{rdb: rdb, w: w, done: make(chan error, 1)}
	go func() { sw.done <- w.Run(context.Background()) }()
	return sw
}

func (sw *soakWorker) stop(t *testing.T) {
	t.Helper()
	if err := sw.w.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	select {
	case err := <-sw.done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("Run did not return after Shutdown")
	}
	if err := sw.rdb.Close(); err != nil {
		t.Errorf("closing a worker's client: %v", err)
	}
}

// soakCounts counts what producers did.
type soakCounts struct {
	tasks, batches, uniqueConflicts atomic.Int64
	lateDeadlines                   atomic.Int64 // batches refused: sent after a Deadline's ready-by time
}

// soakProduce enqueues random tasks on random queues every interval until
// ctx ends.
func soakProduce(ctx context.Context, t *testing.T, c *sdk.Client, seed uint64, interval time.Duration, counts *soakCounts) {
	rng := rand.New(rand.NewPCG(seed, 7))
	names := make([]string, 0, len(soakQueues))
	for q := range soakQueues {
		names = append(names, q)
	}
	sort.Strings(names)
	seq := 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		queue := names[rng.IntN(len(names))]
		n := 1
		if rng.IntN(100) < 20 {
			n = 2 + rng.IntN(19)
		}
		tasks := make([]sdk.NewTask, n)
		// readyBy is the earliest instant by which a task of the batch with
		// a Deadline must be ready (deadline - delay): an enqueue that
		// reaches the server only after it is refused (LQ_BADARG), which a
		// loaded machine can cause however generous the margin.
		var readyBy time.Time
		for i := range tasks {
			seq++
			opts := []sdk.Option{sdk.MaxRetry(rng.IntN(4))}
			if rng.IntN(100) < 30 {
				opts = append(opts, sdk.ID(fmt.Sprintf("s%d-%d", seed, seq)))
			}
			if rng.IntN(100) < 20 {
				opts = append(opts, sdk.Retention(time.Duration(300+rng.IntN(1200))*time.Millisecond))
			}
			if n == 1 && rng.IntN(100) < 10 {
				opts = append(opts, sdk.Unique(fmt.Sprintf("u%d", rng.IntN(50)), time.Duration(500+rng.IntN(1500))*time.Millisecond))
			}
			delay := time.Duration(0)
			if rng.IntN(100) < 10 {
				delay = time.Duration(1+rng.IntN(1000)) * time.Millisecond
				opts = append(opts, sdk.ProcessIn(delay))
			}
			if rng.IntN(100) < 5 {
				opts = append(opts, sdk.ExpireIn(delay+time.Duration(1+rng.IntN(200))*time.Millisecond))
				if rng.IntN(2) == 0 {
					opts = append(opts, sdk.ArchiveOnExpiry())
				}
			}
			if rng.IntN(100) < 10 {
				opts = append(opts, sdk.Timeout(50*time.Millisecond))
			}
			if rng.IntN(100) < 5 {
				deadline := time.Now().Add(delay + time.Duration(200+rng.IntN(1800))*time.Millisecond)
				opts = append(opts, sdk.Deadline(deadline))
				if by := deadline.Add(-delay); readyBy.IsZero() || by.Before(readyBy) {
					readyBy = by
				}
			}
			tasks[i] = sdk.NewTask{Type: soakType, Payload: []byte("r"), Options: opts}
		}
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.EnqueueBatch(cctx, queue, tasks)
		cancel()
		switch {
		case err == nil:
			counts.tasks.Add(int64(n))
			counts.batches.Add(1)
		case errors.Is(err, sdk.ErrConflict):
			counts.uniqueConflicts.Add(1)
		case errors.Is(err, sdk.ErrBadArg) && !readyBy.IsZero() && !time.Now().Before(readyBy) &&
			strings.Contains(err.Error(), "deadline_ms is not after"):
			counts.lateDeadlines.Add(1) // the whole batch was refused; nothing stored
		default:
			t.Errorf("enqueue: %v", err)
			return
		}
	}
}

// serverState is what the soak compares before and after.
type serverState struct {
	usedMemory int64
	memFields  map[string]int64 // more INFO memory fields, for the log
	dbsize     int64
	keys       []string            // every key except the wake lists
	wake       []string            // wake lists present (they expire by themselves)
	fields     map[string][]string // bookkeeping hash -> its field names
	day        int64               // the server's day (stats day number)
}

// measureServer reads the server's state once the measuring client is the
// only one connected.
func measureServer(t *testing.T, m *redis.Client) serverState {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	waitUntil(t, 10*time.Second, "the measuring client to be the only client", func() bool {
		info, err := m.Info(ctx, "clients").Result()
		return err == nil && infoInt(info, "connected_clients") == 1
	})
	// Server statistics unrelated to luaq's data, reset on both sides: the
	// slow log (up to 128 entries with their arguments), and the per-command
	// statistics, of which Redis 7's latency tracking allocates a ~24 KiB
	// histogram the first time each command name runs (also inside a
	// script), so any command the soak uses and the warm-up did not would
	// add 24 KiB.
	for _, cmd := range [][]any{{"SLOWLOG", "RESET"}, {"CONFIG", "RESETSTAT"}} {
		if err := m.Do(ctx, cmd...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var st serverState
	var err error
	st.dbsize, err = m.DBSize(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	all, err := m.Keys(ctx, "*").Result() // a test server with a handful of keys
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(all)
	st.fields = map[string][]string{}
	for _, k := range all {
		if strings.HasSuffix(k, ":wake") {
			st.wake = append(st.wake, k)
			continue
		}
		st.keys = append(st.keys, k)
		if typ, _ := m.Type(ctx, k).Result(); typ == "hash" {
			f, err := m.HKeys(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			sort.Strings(f)
			st.fields[k] = f
		}
	}
	now, err := m.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	st.day = now.Unix() / 86400
	if os.Getenv("LUAQ_SOAK_MEMDEBUG") != "" { // details when investigating a difference
		ms, _ := m.Do(ctx, "MEMORY", "STATS").Result()
		t.Logf("MEMORY STATS: %v", ms)
		for _, k := range all {
			u, _ := m.MemoryUsage(ctx, k).Result()
			t.Logf("MEMORY USAGE %s = %d", k, u)
		}
	}
	// used_memory moves by a few hundred bytes between calls (the INFO
	// reply itself is allocated): take the smallest of a few readings.
	for i := 0; i < 5; i++ {
		info, err := m.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		if u := infoInt(info, "used_memory"); i == 0 || u < st.usedMemory {
			st.usedMemory = u
			st.memFields = map[string]int64{}
			for _, f := range []string{"used_memory_dataset", "used_memory_overhead", "mem_clients_normal", "used_memory_scripts", "used_memory_vm_eval", "used_memory_rss"} {
				st.memFields[f] = infoInt(info, f)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return st
}

// infoInt returns an integer field of an INFO reply (-1 if absent).
func infoInt(info, name string) int64 {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// settledGoroutines waits until the number of goroutines is at most want
// (or, with want < 0, stops changing) and returns it.
func settledGoroutines(want int, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	last, stable := runtime.NumGoroutine(), 0
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		n := runtime.NumGoroutine()
		if want >= 0 && n <= want {
			return n
		}
		if n == last {
			stable++
		} else {
			stable = 0
		}
		if want < 0 && stable >= 10 {
			return n
		}
		last = n
	}
	return runtime.NumGoroutine()
}

// soakQueuesEmpty reports whether no soak queue has a task pending,
// scheduled or running, nor (with alsoKept) archived or retained.
func soakQueuesEmpty(t *testing.T, c *sdk.Client, alsoKept bool) bool {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	for q := range soakQueues {
		info, err := c.QueueInfo(ctx, q)
		if err != nil {
			return false
		}
		if info.Pending+info.Scheduled+info.Active != 0 {
			return false
		}
		if alsoKept && info.Archived+info.Completed != 0 {
			return false
		}
	}
	return true
}

// cleanUp drains the soak queues with a janitor of its own once retention,
// archive age and unique holds have passed.
func cleanUp(t *testing.T, addr string) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(soakQueues))
	for q := range soakQueues {
		names = append(names, q)
	}
	j, err := sdk.NewJanitor(rdb, sdk.JanitorConfig{Queues: names})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "the janitor to empty the archives and retained tasks and free the unique keys", func() bool {
		ctx, cancel := bg()
		defer cancel()
		rep, err := j.RunOnce(ctx)
		if err != nil || rep.Skipped > 0 || !soakQueuesEmpty(t, c, true) {
			return false
		}
		for _, q := range names {
			k, _ := keys.ForQueue(q)
			n, err := rdb.Exists(ctx, k.Key("unique"), k.Key("unique_ttl"), k.Key("expiry"), k.Key("tasks"), k.Key("workers")).Result()
			if err != nil || n != 0 {
				return false
			}
		}
		return true
	})
}

// soakConfigure sets every soak queue's archive to keep tasks for 1s, so
// the janitor empties it soon after the traffic ends.
func soakConfigure(t *testing.T, c *sdk.Client) {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	for q := range soakQueues {
		cfg := sdk.DefaultQueueConfig()
		cfg.ArchiveMaxAge = time.Second
		if err := c.Configure(ctx, q, cfg); err != nil {
			t.Fatal(err)
		}
	}
}

// soakWarmUp takes every soak queue through every path once (an expiry, a
// success with a result, a retry, an archived failure), so that the scripts
// are loaded and the bookkeeping keys and today's stats fields exist before
// the baseline is taken; then it cleans everything up.
func soakWarmUp(t *testing.T, addr string, logs *logCounter) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	c, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	soakConfigure(t, c)
	ctx, cancel := bg()
	defer cancel()
	for q := range soakQueues {
		// Expires before any worker runs (the janitor of cleanUp, or the
		// worker's first dequeue, drops it).
		if _, err := c.Enqueue(ctx, q, soakType, []byte("ok"), sdk.ExpireIn(time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(20 * time.Millisecond)
	for q := range soakQueues {
		for _, p := range []string{"ok", "fail-once", "skip", "panic"} {
			if _, err := c.Enqueue(ctx, q, soakType, []byte(p), sdk.MaxRetry(2), sdk.Retention(100*time.Millisecond),
				sdk.Unique("warm-"+p, time.Second)); err != nil {
				t.Fatal(err)
			}
		}
	}
	sw := startSoakWorker(t, addr, logs)
	waitUntil(t, 30*time.Second, "the warm-up tasks to run", func() bool { return soakQueuesEmpty(t, c, false) })
	sw.stop(t)
	cleanUp(t, addr)
}

// TestSoak runs steady traffic through in-process workers for
// LUAQ_SOAK_DURATION (30s): two producers enqueue single tasks and batches
// with random options (ids, retention, unique keys, delays, expiry, timeouts,
// deadlines) on two weighted queues; handlers succeed, fail, skip retries,
// panic or overrun their timeout at random; every 3s a worker is shut down
// and a new one started. After the drain and the janitor, Redis must be back
// to its baseline: the same keys (each queue's meta and stats hashes, with
// the same fields), used_memory within soakMemTolerance, and the test process
// must have no more goroutines than before the first SDK object was created.
func TestSoak(t *testing.T) {
	dur := envDuration(t, "LUAQ_SOAK_DURATION", 30*time.Second)
	srv := redistest.Start(t)
	meter := srv.Client(t)
	if err := meter.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	// Goroutine baseline: before any SDK object or client of the soak.
	g0 := settledGoroutines(-1, 3*time.Second)
	logs := &logCounter{}

	soakWarmUp(t, srv.Addr(), logs)
	base := measureServer(t, meter)
	want := []string{}
	for q := range soakQueues {
		k, _ := keys.ForQueue(q)
		want = append(want, k.Key("meta"), k.Key("stats"))
	}
	sort.Strings(want)
	if !slices.Equal(base.keys, want) {
		t.Fatalf("baseline keys %v, want the bookkeeping keys %v", base.keys, want)
	}

	// The soak.
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d, soak %s (LUAQ_SOAK_DURATION)", seed, dur)
	prodRDB := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	c, err := sdk.NewClient(prodRDB)
	if err != nil {
		t.Fatal(err)
	}
	workers := []*soakWorker{}
	for i := 0; i < 3; i++ {
		workers = append(workers, startSoakWorker(t, srv.Addr(), logs))
	}
	var counts soakCounts
	pctx, stopProducers := context.WithCancel(context.Background())
	var producers sync.WaitGroup
	for p := 0; p < 2; p++ {
		producers.Add(1)
		go func() {
			defer producers.Done()
			soakProduce(pctx, t, c, seed+uint64(p), 15*time.Millisecond, &counts)
		}()
	}
	began := time.Now()
	churned := 0
	rng := rand.New(rand.NewPCG(seed, 3))
	for time.Since(began) < dur {
		time.Sleep(min(3*time.Second, dur-time.Since(began)))
		if time.Since(began) >= dur {
			break
		}
		i := rng.IntN(len(workers))
		workers[i].stop(t)
		workers[i] = startSoakWorker(t, srv.Addr(), logs)
		churned++
	}
	stopProducers()
	producers.Wait()
	waitUntil(t, 2*time.Minute, "the soak queues to drain", func() bool { return soakQueuesEmpty(t, c, false) })
	var processed, failed, archived, expired int64
	{
		ctx, cancel := bg()
		for q := range soakQueues {
			info, err := c.QueueInfo(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			processed += info.Processed
			failed += info.Failed
			archived += info.ArchivedTotal
			expired += info.Expired
		}
		cancel()
	}
	for _, sw := range workers {
		sw.stop(t)
	}
	if err := prodRDB.Close(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // longest retention (1.5s), archive age (1s), unique hold (2s) since the drain began
	cleanUp(t, srv.Addr())
	after := measureServer(t, meter)

	// Keys and fields.
	if !slices.Equal(after.keys, base.keys) {
		t.Errorf("keys after the soak %v, want the baseline's %v", after.keys, base.keys)
	}
	for k, f := range base.fields {
		got := after.fields[k]
		if base.day != after.day && strings.HasSuffix(k, ":stats") {
			continue // a new day adds per-day fields
		}
		if !slices.Equal(got, f) {
			t.Errorf("fields of %s after the soak %v, want the baseline's %v", k, got, f)
		}
	}
	dbBase, dbAfter := base.dbsize-int64(len(base.wake)), after.dbsize-int64(len(after.wake))
	if dbAfter != dbBase {
		t.Errorf("DBSIZE without wake lists %d, baseline %d", dbAfter, dbBase)
	}
	// Memory.
	diff := after.usedMemory - base.usedMemory
	tasks := counts.tasks.Load()
	t.Logf("soak: %d tasks in %d enqueue calls (%d refused: unique key held; %d refused: sent after a deadline's ready-by time), %d worker restarts; processed %d, failed runs %d, archived %d, expired %d",
		tasks, counts.batches.Load(), counts.uniqueConflicts.Load(), counts.lateDeadlines.Load(), churned, processed, failed, archived, expired)
	t.Logf("keys: before %d (%d luaq bookkeeping keys %v, wake lists %v), after %d (wake lists %v)",
		base.dbsize, len(base.keys), base.keys, base.wake, after.dbsize, after.wake)
	t.Logf("used_memory: before %d, after %d, diff %+d bytes (tolerance %d: %.1f bytes per task); before %v; after %v",
		base.usedMemory, after.usedMemory, diff, soakMemTolerance, float64(soakMemTolerance)/float64(max(tasks, 1)), base.memFields, after.memFields)
	if diff > soakMemTolerance {
		t.Errorf("used_memory grew by %d bytes over the soak (tolerance %d)", diff, soakMemTolerance)
	}
	if tasks == 0 || processed == 0 {
		t.Errorf("the soak did nothing")
	}

	// Goroutines.
	g1 := settledGoroutines(g0, 15*time.Second)
	t.Logf("goroutines: %d before the first SDK object, %d after every worker and client was closed", g0, g1)
	if g1 > g0 {
		var b bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
		t.Errorf("%d goroutines left over (%d before, %d after):\n%s", g1-g0, g0, g1, b.String())
	}
	logs.mu.Lock()
	t.Logf("SUMMARY soak: tasks=%d used_memory_before=%d used_memory_after=%d diff=%+d keys_before=%d keys_after=%d goroutines_before=%d goroutines_after=%d sdk_log_errors=%d sdk_log_warnings=%d",
		tasks, base.usedMemory, after.usedMemory, diff, base.dbsize, after.dbsize, g0, g1, logs.errors, logs.warns)
	if logs.errors > 0 {
		t.Errorf("the SDK logged %d errors during the soak, first ones: %q", logs.errors, logs.first)
	} else if len(logs.first) > 0 {
		t.Logf("first SDK log records: %q", logs.first)
	}
	logs.mu.Unlock()
}
