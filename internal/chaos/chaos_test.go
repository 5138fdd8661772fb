//go:build linux

package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

const (
	chaosQueue = "chaos"
	chaosType  = "chaos"
	// chaosLease is the workers' lease. Long enough that a loaded 2-core
	// machine running race-instrumented processes never misses a renewal
	// (every lease/3), so that every lease that does run out owes it to a
	// kill; short enough that a killed worker's tasks come back quickly.
	chaosLease = 2 * time.Second
)

// recorder appends lines to a file, one write(2) per line. It does not
// fsync: what a process passed to write(2) sits in the kernel's page cache
// and survives the process's SIGKILL; only a machine crash, which these
// tests do not simulate, could lose it.
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

func openRecorder(path string) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f}, nil
}

func (r *recorder) write(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.f.WriteString(s); err != nil {
		panic(fmt.Sprintf("chaos: recording %q: %v", s, err))
	}
}

// chaosPayload is what a chaos task asks its handler to do:
// "<ms>,<fail>,<poison>" = work for ms milliseconds, fail the runs with
// Retried < fail, or (poison = 1) fail every run.
type chaosPayload struct {
	ms, fail int
	poison   bool
}

func parseChaosPayload(s string) (chaosPayload, error) {
	f := strings.Split(s, ",")
	if len(f) != 3 {
		return chaosPayload{}, fmt.Errorf("bad payload %q", s)
	}
	ms, e1 := strconv.Atoi(f[0])
	fail, e2 := strconv.Atoi(f[1])
	poison, e3 := strconv.Atoi(f[2])
	if err := errors.Join(e1, e2, e3); err != nil {
		return chaosPayload{}, fmt.Errorf("bad payload %q: %w", s, err)
	}
	return chaosPayload{ms: ms, fail: fail, poison: poison == 1}, nil
}

// causeTag names why a handler's context ended.
func causeTag(err error) string {
	switch {
	case errors.Is(err, sdk.ErrLeaseLost):
		return "lease-lost"
	case errors.Is(err, sdk.ErrWorkerStopping):
		return "stopping"
	default:
		return "other"
	}
}

// runChaosWorker is a worker process. Its handler appends to cfg.Log, before
// doing anything else, "S <id> <pid> <start_ns> <retried>", and before it
// returns "E <id> <pid> <start_ns> <end_ns> <outcome>" with outcome ok,
// fail (a deliberate failure) or cancel:<why> (its context ended). SIGTERM
// shuts it down gracefully.
func runChaosWorker(cfg childConfig) error {
	rec, err := openRecorder(cfg.Log)
	if err != nil {
		return err
	}
	pid := os.Getpid()
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr, DialTimeout: 500 * time.Millisecond})
	defer rdb.Close()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	handler := func(ctx context.Context, t *sdk.Task) error {
		start := time.Now().UnixNano()
		rec.write(fmt.Sprintf("S %s %d %d %d\n", t.ID, pid, start, t.Retried))
		end := func(outcome string) {
			rec.write(fmt.Sprintf("E %s %d %d %d %s\n", t.ID, pid, start, time.Now().UnixNano(), outcome))
		}
		p, err := parseChaosPayload(string(t.Payload))
		if err != nil {
			end("fail")
			return fmt.Errorf("%v: %w", err, sdk.ErrSkipRetry)
		}
		timer := time.NewTimer(time.Duration(p.ms) * time.Millisecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			end("cancel:" + causeTag(context.Cause(ctx)))
			return context.Cause(ctx)
		}
		if p.poison {
			end("fail")
			return errors.New("poison task")
		}
		if t.Retried < p.fail {
			end("fail")
			return fmt.Errorf("deliberate failure %d of %d", t.Retried+1, p.fail)
		}
		end("ok")
		return nil
	}
	for {
		w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
			Queues: map[string]int{cfg.Queue: 1}, Concurrency: cfg.Concurrency,
			LeaseDuration: cfg.Lease, ShutdownTimeout: cfg.ShutdownTimeout,
			JanitorInterval: cfg.JanitorInterval, JanitorLockTTL: cfg.JanitorLockTTL,
			ReclaimBackoff: cfg.ReclaimBackoff, Backoff: sdk.ExponentialBackoff(20*time.Millisecond, 300*time.Millisecond),
			Logger: logger,
		})
		if err != nil {
			return err
		}
		w.HandleFunc(chaosType, handler)
		err = w.Run(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		// Run could not start (the server is down, say): try again.
		logger.Warn("chaos worker: start failed; retrying", "err", err)
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}

// runChaosProducer enqueues batches of tasks with ids of its own every
// cfg.Interval for cfg.Duration. Per batch it appends to cfg.Log, before the
// first attempt, one line "T <batch> <id> <payload> <max_retry> <delay_ms>"
// per task and "B <batch> <n> <ns>"; then, once the outcome is known,
// "R <batch> <outcome> <attempts> <ambiguous> <ns>"; and "X <batch> <verdict>"
// when it sent a stored batch again on purpose. An attempt that fails
// without a verdict from the script (a connection error while the server is
// down) is ambiguous: the batch is sent again, and LQ_CONFLICT then means an
// earlier attempt stored it (batches are atomic and ids are never reused;
// every task has a retention, so a completed task still holds its id).
func runChaosProducer(cfg childConfig) error {
	rec, err := openRecorder(cfg.Log)
	if err != nil {
		return err
	}
	// No go-redis retries: every resend is ours, so every ambiguity is seen.
	rdb := redis.NewClient(&redis.Options{Addr: cfg.Addr, DialTimeout: 500 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	c, err := sdk.NewClient(rdb)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rng := rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.Producer)))
	end := time.Now().Add(cfg.Duration)
	next := time.Now()
	seq := 0
	for batch := 0; time.Now().Before(end) && ctx.Err() == nil; batch++ {
		n := 1
		if rng.IntN(10) < 3 {
			n = 2 + rng.IntN(9)
		}
		tasks := make([]sdk.NewTask, n)
		var b strings.Builder
		for i := range tasks {
			id := fmt.Sprintf("p%d-%d", cfg.Producer, seq)
			seq++
			p := chaosPayload{ms: 5 + rng.IntN(56)}
			if rng.IntN(100) < 3 {
				p.ms = 1500 + rng.IntN(1500) // renewed a few times
			}
			switch r := rng.IntN(100); {
			case r < 15:
				p.fail = 1
			case r < 20:
				p.fail = 2
			}
			maxRetry := 25
			if rng.IntN(100) < 5 {
				p.poison, maxRetry = true, rng.IntN(3)
			}
			opts := []sdk.Option{sdk.ID(id), sdk.MaxRetry(maxRetry), sdk.Retention(time.Hour)}
			delay := 0
			if rng.IntN(100) < 15 {
				delay = 1 + rng.IntN(3000)
				opts = append(opts, sdk.ProcessIn(time.Duration(delay)*time.Millisecond))
			}
			poison := 0
			if p.poison {
				poison = 1
			}
			payload := fmt.Sprintf("%d,%d,%d", p.ms, p.fail, poison)
			tasks[i] = sdk.NewTask{Type: chaosType, Payload: []byte(payload), Options: opts}
			fmt.Fprintf(&b, "T %d %s %s %d %d\n", batch, id, payload, maxRetry, delay)
		}
		fmt.Fprintf(&b, "B %d %d %d\n", batch, n, time.Now().UnixNano())
		rec.write(b.String())
		outcome, attempts, ambiguous := enqueueResolved(c, cfg.Queue, tasks)
		rec.write(fmt.Sprintf("R %d %s %d %d %d\n", batch, outcome, attempts, ambiguous, time.Now().UnixNano()))
		if outcome != "stored" && outcome != "conflict" && outcome != "unresolved" {
			return fmt.Errorf("batch %d: %s", batch, outcome)
		}
		if outcome == "stored" && rng.IntN(100) < 2 {
			// As if the reply had been lost in transit: send the batch
			// again. It must be refused with LQ_CONFLICT; "stored" would
			// be a second copy of every task.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			_, err := c.EnqueueBatch(ctx, cfg.Queue, tasks)
			cancel()
			var se *loader.ScriptError
			switch {
			case errors.Is(err, sdk.ErrConflict):
				rec.write(fmt.Sprintf("X %d conflict\n", batch))
			case err == nil:
				rec.write(fmt.Sprintf("X %d stored-twice\n", batch))
				return fmt.Errorf("batch %d: stored a second time when sent again", batch)
			case errors.As(err, &se):
				return fmt.Errorf("batch %d: sent again: %w", batch, err)
			default:
				rec.write(fmt.Sprintf("X %d unreachable\n", batch)) // the server is down: no verdict
			}
		}
		next = next.Add(cfg.Interval)
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		} else {
			next = time.Now()
		}
	}
	rec.write("DONE\n")
	return nil
}

// enqueueResolved enqueues tasks until their fate is known: "stored",
// "conflict" (an earlier, ambiguous attempt stored them), "unresolved" (the
// server stayed unreachable for a minute) or "failed:<why>" (a verdict that
// should never come).
func enqueueResolved(c *sdk.Client, queue string, tasks []sdk.NewTask) (outcome string, attempts, ambiguous int) {
	giveUp := time.Now().Add(time.Minute)
	delay := 50 * time.Millisecond
	for {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		var err error
		if len(tasks) == 1 {
			_, err = c.Enqueue(ctx, queue, tasks[0].Type, tasks[0].Payload, tasks[0].Options...)
		} else {
			_, err = c.EnqueueBatch(ctx, queue, tasks)
		}
		cancel()
		var se *loader.ScriptError
		switch {
		case err == nil:
			return "stored", attempts, ambiguous
		case errors.Is(err, sdk.ErrConflict) && ambiguous > 0:
			return "conflict", attempts, ambiguous
		case errors.As(err, &se) || errors.Is(err, loader.ErrInternal) || errors.Is(err, loader.ErrArgCount):
			return "failed:" + strings.ReplaceAll(err.Error(), " ", "_"), attempts, ambiguous
		}
		ambiguous++
		if time.Now().After(giveUp) {
			return "unresolved", attempts, ambiguous
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}

// chaosTask is one task a producer tried to enqueue.
type chaosTask struct {
	id       string
	payload  chaosPayload
	maxRetry int
	delay    time.Duration
	batch    string // "<producer>/<batch>"
	stored   bool
	storedAt int64 // ns when the producer learnt the outcome (0 if resolved later)
}

// chaosBatch is one batch of a producer.
type chaosBatch struct {
	ids                 []string
	outcome             string // "" if the producer never wrote it
	attempts, ambiguous int
	resolvedAt          int64
	resent              string // verdict when the producer sent the stored batch again on purpose
}

// readProducerLog parses a producer's log into tasks (appended to tasks)
// and batches (keyed "<producer>/<batch>").
func readProducerLog(t *testing.T, path string, producer int, tasks map[string]*chaosTask, batches map[string]*chaosBatch) (done bool) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) == 0 {
			continue
		}
		key := func() string { return fmt.Sprintf("%d/%s", producer, fl[1]) }
		batch := func() *chaosBatch {
			b := batches[key()]
			if b == nil {
				b = &chaosBatch{}
				batches[key()] = b
			}
			return b
		}
		switch {
		case fl[0] == "T" && len(fl) == 6:
			p, err := parseChaosPayload(fl[3])
			mr, e1 := strconv.Atoi(fl[4])
			delay, e2 := strconv.Atoi(fl[5])
			if err = errors.Join(err, e1, e2); err != nil {
				t.Fatalf("%s: %q: %v", path, sc.Text(), err)
			}
			tasks[fl[2]] = &chaosTask{id: fl[2], payload: p, maxRetry: mr, delay: time.Duration(delay) * time.Millisecond, batch: key()}
			batch().ids = append(batch().ids, fl[2])
		case fl[0] == "B" && len(fl) == 4:
		case fl[0] == "R" && len(fl) == 6:
			b := batch()
			b.outcome = fl[2]
			b.attempts, _ = strconv.Atoi(fl[3])
			b.ambiguous, _ = strconv.Atoi(fl[4])
			b.resolvedAt, _ = strconv.ParseInt(fl[5], 10, 64)
		case fl[0] == "X" && len(fl) == 3:
			batch().resent = fl[2]
		case fl[0] == "DONE":
			done = true
		default:
			t.Fatalf("%s: unexpected line %q", path, sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return done
}

// chaosRun is one run of a handler.
type chaosRun struct {
	id         string
	pid        int
	start, end int64  // ns; end 0 = the run never returned (its process was killed)
	outcome    string // ok, fail, cancel:<why>, or "" when it never returned
	retried    int
}

// readRuns parses every worker's run log.
func readRuns(t *testing.T, paths []string) map[string][]*chaosRun {
	t.Helper()
	type key struct {
		id    string
		pid   int
		start int64
	}
	byKey := map[key]*chaosRun{}
	runs := map[string][]*chaosRun{}
	for _, path := range paths {
		f, err := os.Open(path)
		if os.IsNotExist(err) {
			continue // a worker killed before its first task
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			bad := func() { t.Fatalf("%s: unexpected line %q", path, sc.Text()) }
			if len(fl) < 5 {
				bad()
			}
			pid, e1 := strconv.Atoi(fl[2])
			start, e2 := strconv.ParseInt(fl[3], 10, 64)
			if e1 != nil || e2 != nil {
				bad()
			}
			k := key{fl[1], pid, start}
			switch {
			case fl[0] == "S" && len(fl) == 5:
				retried, err := strconv.Atoi(fl[4])
				if err != nil {
					bad()
				}
				r := &chaosRun{id: fl[1], pid: pid, start: start, retried: retried}
				byKey[k] = r
				runs[r.id] = append(runs[r.id], r)
			case fl[0] == "E" && len(fl) == 6:
				r := byKey[k]
				if r == nil {
					bad()
				}
				r.end, _ = strconv.ParseInt(fl[4], 10, 64)
				r.outcome = fl[5]
			default:
				bad()
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, rs := range runs {
		sort.Slice(rs, func(i, j int) bool { return rs[i].start < rs[j].start })
	}
	return runs
}

type workerKill struct {
	pid int
	at  int64 // ns, just before SIGKILL was sent
}

type outage struct {
	down, up int64 // ns: just before kill -9; once the restarted server answered PING
}

// explainRerun says why task run next followed prev although prev did not
// end in a deliberate failure. The explanation must fall in the time prev's
// worker held the lease: from prev's start until next's start, and no later
// than one lease after prev's handler returned (by then a live worker on a
// live server has long recorded the outcome, and an unrecorded one has let
// the lease run out). Within that window: prev's process was SIGKILLed, or
// the server was killed (a lease that could not be renewed, an outcome that
// could not be recorded), or prev's worker shut down gracefully and gave the
// task back. "" = no explanation.
func explainRerun(prev, next *chaosRun, kills []workerKill, outages []outage) string {
	holdEnd := next.start
	if prev.end > 0 {
		holdEnd = min(holdEnd, prev.end+int64(chaosLease))
	}
	for _, k := range kills {
		if k.pid == prev.pid && k.at >= prev.start && k.at <= holdEnd {
			return "worker-kill"
		}
	}
	for _, o := range outages {
		if o.down <= holdEnd && prev.start <= o.up {
			return "redis-kill"
		}
	}
	if prev.outcome == "cancel:stopping" {
		return "shutdown"
	}
	return ""
}

// TestChaos runs worker and producer processes against a persistent
// redis-server (appendonly yes, appendfsync always) while it SIGKILLs
// workers (each replaced by a new process) and kill -9s the server twice
// (restarted on the same port and directory). After the producers are done,
// the queue has drained, the workers have stopped and the janitor has run,
// every task a producer stored must be completed, or archived by the rules
// (a poison task, or retries used up); a handler run that follows one that
// did not fail on purpose (a duplicate) must follow a kill during the
// previous run's lease. LUAQ_CHAOS_DURATION sets the active phase (75s).
func TestChaos(t *testing.T) {
	active := envDuration(t, "LUAQ_CHAOS_DURATION", 75*time.Second)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LUAQ_CHAOS_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("LUAQ_CHAOS_SEED=%q: %v", s, err)
		}
	}
	t.Logf("seed %d (LUAQ_CHAOS_SEED), active phase %s (LUAQ_CHAOS_DURATION)", seed, active)
	rng := rand.New(rand.NewPCG(seed, 1))
	srv := redistest.Start(t, redistest.WithPersistence())
	dir := t.TempDir()
	rdb := srv.Client(t)
	client, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}

	const nWorkers, nProducers = 4, 2
	workerCfg := childConfig{
		Mode: "worker", Addr: srv.Addr(), Queue: chaosQueue, Lease: chaosLease, Concurrency: 8,
		JanitorInterval: 300 * time.Millisecond, JanitorLockTTL: 5 * time.Second,
		ReclaimBackoff: 20 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
	}
	live := map[int]*child{}
	var runLogs []string
	nextWorker := 0
	startWorker := func() {
		cfg := workerCfg
		cfg.Log = filepath.Join(dir, fmt.Sprintf("runs-%d.log", nextWorker))
		runLogs = append(runLogs, cfg.Log)
		live[nextWorker] = startChild(t, dir, fmt.Sprintf("worker-%d", nextWorker), cfg, false)
		nextWorker++
	}
	for i := 0; i < nWorkers; i++ {
		startWorker()
	}
	type producer struct {
		c      *child
		log    string
		killed bool
	}
	var producers []*producer
	startProducer := func(d time.Duration) {
		p := len(producers)
		log := filepath.Join(dir, fmt.Sprintf("producer-%d.log", p))
		producers = append(producers, &producer{log: log, c: startChild(t, dir, fmt.Sprintf("producer-%d", p), childConfig{
			Mode: "producer", Addr: srv.Addr(), Queue: chaosQueue, Log: log, Seed: seed,
			Producer: p, Duration: d, Interval: 40 * time.Millisecond,
		}, false)})
	}
	for p := 0; p < nProducers; p++ {
		startProducer(active)
	}

	// The active phase: worker kills every 4-9s, two server kills; during
	// the first one a producer is SIGKILLed (in the middle of resending a
	// batch whose fate it does not know) and replaced.
	began := time.Now()
	var kills []workerKill
	var outages []outage
	redisKills := []time.Duration{active/3 + time.Duration(rng.IntN(2000))*time.Millisecond, 2*active/3 + time.Duration(rng.IntN(2000))*time.Millisecond}
	nextKill := time.Duration(4000+rng.IntN(5000)) * time.Millisecond
	for time.Since(began) < active {
		time.Sleep(50 * time.Millisecond)
		for i, c := range live {
			if c.exited() {
				t.Errorf("worker %d exited by itself: %v\n%s", i, c.err, c.tail())
				delete(live, i)
				startWorker()
			}
		}
		elapsed := time.Since(began)
		if len(redisKills) > 0 && elapsed >= redisKills[0] {
			redisKills = redisKills[1:]
			down := time.Now()
			srv.Kill(t)
			downtime := time.Duration(500+rng.IntN(1500)) * time.Millisecond
			time.Sleep(downtime / 2)
			if len(outages) == 0 {
				victim := producers[rng.IntN(nProducers)]
				victim.killed = true
				victim.c.kill(t)
				startProducer(active - time.Since(began))
				t.Logf("%6.1fs: SIGKILL %s (pid %d) while the server is down, started producer-%d", time.Since(began).Seconds(), victim.c.name, victim.c.pid(), len(producers)-1)
			}
			time.Sleep(downtime - downtime/2)
			srv.Restart(t)
			o := outage{down: down.UnixNano(), up: time.Now().UnixNano()}
			outages = append(outages, o)
			t.Logf("%6.1fs: kill -9 redis-server; back after %s", elapsed.Seconds(), time.Duration(o.up-o.down).Round(time.Millisecond))
		}
		if elapsed >= nextKill {
			nextKill = elapsed + time.Duration(4000+rng.IntN(5000))*time.Millisecond
			idx := make([]int, 0, len(live))
			for i := range live {
				idx = append(idx, i)
			}
			sort.Ints(idx)
			victim := idx[rng.IntN(len(idx))]
			c := live[victim]
			kills = append(kills, workerKill{pid: c.pid(), at: time.Now().UnixNano()})
			c.kill(t)
			delete(live, victim)
			startWorker()
			t.Logf("%6.1fs: SIGKILL worker %d (pid %d), started worker %d", elapsed.Seconds(), victim, c.pid(), nextWorker-1)
		}
	}

	// Drain: producers finish their last batch, workers empty the queue.
	for _, p := range producers {
		if !p.killed {
			p.c.wait(t, 2*time.Minute)
		}
	}
	drainStart := time.Now()
	var info *sdk.QueueInfo
	waitUntil(t, 3*time.Minute, "the queue to drain", func() bool {
		ctx, cancel := bg()
		defer cancel()
		info, err = client.QueueInfo(ctx, chaosQueue)
		return err == nil && info.Pending+info.Scheduled+info.Active == 0
	})
	drain := time.Since(drainStart)
	for _, c := range live {
		c.term()
	}
	for _, c := range live {
		c.stop(t, 30*time.Second)
	}
	// Janitor rounds until no lock is in the way and every registration of
	// a killed worker has lapsed and been pruned.
	j, err := sdk.NewJanitor(rdb, sdk.JanitorConfig{Queues: []string{chaosQueue}, LockTTL: 5 * time.Second, ReclaimBackoff: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rounds := 0
	waitUntil(t, 30*time.Second, "a clean janitor round with no worker registered", func() bool {
		ctx, cancel := bg()
		defer cancel()
		rounds++
		rep, err := j.RunOnce(ctx)
		if err != nil || rep.Skipped > 0 {
			return false
		}
		n, err := rdb.Exists(ctx, "luaq:{"+chaosQueue+"}:workers", "luaq:{"+chaosQueue+"}:worker_info").Result()
		return err == nil && n == 0
	})

	// What was enqueued.
	tasks := map[string]*chaosTask{}
	batches := map[string]*chaosBatch{}
	for i, p := range producers {
		if !readProducerLog(t, p.log, i, tasks, batches) && !p.killed {
			t.Errorf("producer %d did not finish its log", i)
		}
	}
	ctx := context.Background()
	states := map[string]*sdk.TaskState{}
	getTask := func(id string) *sdk.TaskState {
		if st, ok := states[id]; ok {
			return st
		}
		st, err := client.GetTask(ctx, chaosQueue, id)
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("GetTask %s: %v", id, err)
		}
		states[id] = st
		return st
	}
	var ambiguousBatches, conflictBatches, lateResolved, lateStored, resent int
	for key, b := range batches {
		if b.ambiguous > 0 {
			ambiguousBatches++
		}
		if b.resent == "conflict" {
			resent++
		}
		switch b.outcome {
		case "stored", "conflict":
			if b.outcome == "conflict" {
				conflictBatches++
			}
			for _, id := range b.ids {
				tasks[id].stored, tasks[id].storedAt = true, b.resolvedAt
			}
		default:
			// Unresolved by the producer: every task has a retention, so a
			// stored task is still there; a batch is stored all or nothing.
			lateResolved++
			found := 0
			for _, id := range b.ids {
				if getTask(id) != nil {
					tasks[id].stored = true
					found++
				}
			}
			if found != 0 && found != len(b.ids) {
				t.Errorf("batch %s: %d of its %d tasks exist; a batch is stored all or nothing", key, found, len(b.ids))
			}
			if found > 0 {
				lateStored++
			}
		}
	}

	// What ran, and how every stored task ended.
	runs := readRuns(t, runLogs)
	var stored, completed, archived, archivedRetries, lost, okRuns, totalRuns int
	extra := map[string]int{}
	var dupTasks, multiOK int
	var latencies []time.Duration
	for id := range runs {
		if task, ok := tasks[id]; !ok || !task.stored {
			t.Errorf("task %s ran but was never stored by a producer", id)
		}
	}
	ids := make([]string, 0, len(tasks))
	for id := range tasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		task := tasks[id]
		if !task.stored {
			continue
		}
		stored++
		rs := runs[id]
		totalRuns += len(rs)
		oks := 0
		for _, r := range rs {
			if r.outcome == "ok" {
				oks++
			}
		}
		okRuns += oks
		if oks > 1 {
			multiOK++
		}
		if len(rs) > 0 && task.delay == 0 && task.storedAt > 0 {
			latencies = append(latencies, time.Duration(rs[0].start-task.storedAt))
		}
		duplicated := false
		for i := 1; i < len(rs); i++ {
			prev := rs[i-1]
			if prev.outcome == "fail" {
				continue // a retry of a deliberate failure
			}
			duplicated = true
			why := explainRerun(prev, rs[i], kills, outages)
			if why == "" {
				why = "unexplained"
				t.Errorf("task %s: run %d (pid %d, started %s) follows run %d (pid %d, %s, outcome %q) without a kill during its lease",
					id, i+1, rs[i].pid, time.Unix(0, rs[i].start).Format("15:04:05.000"), i, prev.pid,
					time.Unix(0, prev.start).Format("15:04:05.000"), prev.outcome)
			}
			extra[why]++
		}
		if duplicated {
			dupTasks++
		}
		st := getTask(id)
		switch {
		case st == nil:
			lost++
			t.Errorf("task %s lost: stored by batch %s, now gone; runs: %s", id, task.batch, describeRuns(rs))
		case st.State == "completed":
			completed++
			if task.payload.poison {
				t.Errorf("poison task %s completed", id)
			}
			if oks == 0 {
				t.Errorf("task %s completed without a successful handler run; runs: %s", id, describeRuns(rs))
			}
		case st.State == "archived":
			archived++
			switch {
			case task.payload.poison:
				if st.LastError != "poison task" && st.LastError != "lease expired" {
					t.Errorf("poison task %s archived with error %q", id, st.LastError)
				}
			case st.Retried >= st.MaxRetry:
				archivedRetries++ // retries used up (by reclaimed leases): by the rules
			default:
				t.Errorf("task %s archived with %d of %d retries used (error %q); runs: %s", id, st.Retried, st.MaxRetry, st.LastError, describeRuns(rs))
			}
		default:
			lost++
			t.Errorf("task %s is still %s after the drain; runs: %s", id, st.State, describeRuns(rs))
		}
	}
	final, err := client.QueueInfo(ctx, chaosQueue)
	if err != nil {
		t.Fatal(err)
	}
	if final.Processed != int64(completed) || final.Completed != int64(completed) {
		t.Errorf("processed counter %d, retained completed %d, want both %d (each task completed exactly once)", final.Processed, final.Completed, completed)
	}
	if final.ArchivedTotal != int64(archived) || final.Archived != int64(archived) {
		t.Errorf("archived counter %d, archive size %d, want both %d", final.ArchivedTotal, final.Archived, archived)
	}
	if final.Pending+final.Scheduled+final.Active != 0 {
		t.Errorf("queue not empty at the end: %+v", final)
	}

	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[int(p*float64(len(latencies)-1))].Round(time.Millisecond)
	}
	dups := extra["worker-kill"] + extra["redis-kill"] + extra["shutdown"] + extra["unexplained"]
	t.Logf("tasks: %d stored in %d batches; %d batches hit an ambiguous error (%d found stored by an earlier attempt: LQ_CONFLICT on resend; %d left unresolved by a killed producer and resolved by GetTask: %d stored); %d stored batches sent again on purpose, refused with LQ_CONFLICT; %d handler runs",
		stored, len(batches), ambiguousBatches, conflictBatches, lateResolved, lateStored, resent, totalRuns)
	t.Logf("outcome: %d completed, %d archived (%d poison, %d retries used up), %d lost", completed, archived, archived-archivedRetries, archivedRetries, lost)
	t.Logf("kills: %d worker SIGKILLs (%d worker processes in all), %d redis-server kill -9 + restarts, %d producer SIGKILL", len(kills), nextWorker, len(outages), len(producers)-nProducers)
	t.Logf("duplicates: %d extra runs in %d tasks (after a worker kill %d, a redis kill %d, a graceful shutdown %d, unexplained %d); %d tasks had more than one successful run",
		dups, dupTasks, extra["worker-kill"], extra["redis-kill"], extra["shutdown"], extra["unexplained"], multiOK)
	t.Logf("start latency of ready tasks: p50 %s p99 %s max %s; drain %s; %d janitor rounds at the end",
		pct(0.5), pct(0.99), pct(1), drain.Round(time.Millisecond), rounds)
	t.Logf("SUMMARY chaos: tasks=%d worker_kills=%d producer_kills=%d redis_kills=%d redis_restarts=%d lost=%d duplicates=%d unexplained=%d completed=%d archived=%d",
		stored, len(kills), len(producers)-nProducers, len(outages), len(outages), lost, dups, extra["unexplained"], completed, archived)
	if stored == 0 || completed == 0 {
		t.Errorf("nothing was processed")
	}
}

func describeRuns(rs []*chaosRun) string {
	if len(rs) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		outcome := r.outcome
		if outcome == "" {
			outcome = "no end"
		}
		fmt.Fprintf(&b, "[pid %d %s retried %d %s]", r.pid, time.Unix(0, r.start).Format("15:04:05.000"), r.retried, outcome)
	}
	return b.String()
}

// TestExplainRerun checks the duplicate analysis of TestChaos on made-up
// runs: a rerun is explained only by a kill within the previous run's lease.
func TestExplainRerun(t *testing.T) {
	const s = int64(time.Second)
	lease := int64(chaosLease)
	cut := &chaosRun{pid: 1, start: 10 * s}                              // killed mid-run
	done := &chaosRun{pid: 1, start: 10 * s, end: 11 * s, outcome: "ok"} // returned ok
	stop := &chaosRun{pid: 1, start: 10 * s, end: 11 * s, outcome: "cancel:stopping"}
	next := &chaosRun{pid: 2, start: 20 * s}
	for _, tc := range []struct {
		name    string
		prev    *chaosRun
		kills   []workerKill
		outages []outage
		want    string
	}{
		{"nothing happened", done, nil, nil, ""},
		{"its worker was killed mid-run", cut, []workerKill{{pid: 1, at: 12 * s}}, nil, "worker-kill"},
		{"another worker was killed", cut, []workerKill{{pid: 3, at: 12 * s}}, nil, ""},
		{"its worker was killed before the run", cut, []workerKill{{pid: 1, at: 9 * s}}, nil, ""},
		{"its worker was killed right after the handler returned", done, []workerKill{{pid: 1, at: 11*s + lease/2}}, nil, "worker-kill"},
		{"its worker was killed long after the handler returned", done, []workerKill{{pid: 1, at: 11*s + 2*lease}}, nil, ""},
		{"server down during the run", done, nil, []outage{{down: 10*s + s/2, up: 12 * s}}, "redis-kill"},
		{"server down long after the run", done, nil, []outage{{down: 11*s + 2*lease, up: 19 * s}}, ""},
		{"server down before the run", done, nil, []outage{{down: 5 * s, up: 6 * s}}, ""},
		{"server down after the next run started", cut, nil, []outage{{down: 21 * s, up: 22 * s}}, ""},
		{"graceful shutdown", stop, nil, nil, "shutdown"},
	} {
		if got := explainRerun(tc.prev, next, tc.kills, tc.outages); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
