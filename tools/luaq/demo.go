package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

// Defaults and fixed parameters of the demo.
const (
	defaultDemoTasks       = 3000
	defaultDemoConcurrency = 32
	defaultDemoSeed        = 1
	defaultDemoTimeout     = 2 * time.Minute

	demoPollInterval     = 20 * time.Millisecond // how often QueueInfo is polled
	demoShutdownTimeout  = 15 * time.Second      // bound on Worker.Shutdown
	demoCleanupTimeout   = 30 * time.Second      // bound on deleting the demo's keys
	demoTaskTimeout      = 10 * time.Second      // sdk.Timeout of every task
	demoCriticalPercent  = 30                    // share of tasks sent to "critical"
	demoScheduledPercent = 10                    // share of tasks enqueued with ProcessIn
	demoScheduleMin      = 200 * time.Millisecond
	demoScheduleSpread   = 600 * time.Millisecond // ProcessIn is in [min, min+spread]
	demoMaxWorkMicros    = 2000                   // a handler sleeps 0..this many µs
	demoWebhookSkipPct   = 5                      // webhooks rejected with ErrSkipRetry
	demoReportMaxRetry   = 2                      // report:build always fails: 3 runs
	demoDefaultMaxRetry  = 3                      // MaxRetry of the other types
)

// Task types of the demo.
const (
	typeEmail   = "email:send"   // always succeeds
	typeImage   = "image:resize" // fails its first 1-2 runs, then succeeds
	typeReport  = "report:build" // always fails; archived after its retries
	typeWebhook = "webhook:post" // a few are rejected at once with ErrSkipRetry
)

// demoConfig configures one run of the demo.
type demoConfig struct {
	// Tasks is how many tasks to enqueue (>= 1).
	Tasks int
	// Concurrency is the worker's concurrency (1..1000).
	Concurrency int
	// RedisURL, when set, points the demo at a real server (redis.ParseURL
	// syntax); empty means an embedded miniredis.
	RedisURL string
	// Seed makes the task mix and the failure mix reproducible.
	Seed uint64
	// Timeout bounds the whole demo; 0 means defaultDemoTimeout.
	Timeout time.Duration
	// Logs receives the worker's Warn-level logs; nil discards them.
	Logs io.Writer
}

// demoCounts counts tasks or runs of one type, one queue, or all.
type demoCounts struct {
	Enqueued  int64 // tasks enqueued
	Completed int64 // tasks whose handler finally succeeded
	Retried   int64 // failed runs that were scheduled for a retry
	Archived  int64 // tasks archived (retries used up, or ErrSkipRetry)
	Runs      int64 // handler runs
}

// add adds o to c.
func (c *demoCounts) add(o demoCounts) {
	c.Enqueued += o.Enqueued
	c.Completed += o.Completed
	c.Retried += o.Retried
	c.Archived += o.Archived
	c.Runs += o.Runs
}

// lost is how many enqueued tasks are neither completed nor archived.
func (c demoCounts) lost() int64 { return c.Enqueued - c.Completed - c.Archived }

// demoSummary is the outcome of runDemo.
type demoSummary struct {
	Seed        uint64
	Server      string // where the demo ran, for display
	Concurrency int
	Scheduled   int64 // tasks enqueued with ProcessIn
	Queues      []queueSummary
	Total       demoCounts    // handler-side counts over all queues and types
	Wall        time.Duration // from the first enqueue until every task was terminal
	Lost        int64         // Total.Enqueued - Total.Completed - Total.Archived
	// Problems lists every disagreement between the handler-side counts,
	// the plan and QueueInfo. Empty when all agree.
	Problems []string
}

// queueSummary is the outcome of one queue.
type queueSummary struct {
	Label  string // "critical" or "default"
	Name   string // the queue's real name (prefixed with --redis)
	Weight int
	Types  []typeSummary
	Total  demoCounts     // handler-side counts over the queue's types
	Info   *sdk.QueueInfo // QueueInfo read once every task was terminal
}

// typeSummary is the outcome of one task type on one queue.
type typeSummary struct {
	Type string
	Got  demoCounts // enqueued, and what the handlers saw
	Want demoCounts // what the seeded plan predicts
}

// Throughput is the number of enqueued tasks per second of wall time.
func (s demoSummary) Throughput() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return float64(s.Total.Enqueued) / s.Wall.Seconds()
}

// Err reports lost tasks and disagreeing counts, or nil.
func (s demoSummary) Err() error {
	var errs []error
	if s.Lost != 0 {
		errs = append(errs, fmt.Errorf("%d tasks lost", s.Lost))
	}
	if len(s.Problems) > 0 {
		errs = append(errs, fmt.Errorf("counts disagree: %s", strings.Join(s.Problems, "; ")))
	}
	return errors.Join(errs...)
}

// demoQueue is one queue of the demo.
type demoQueue struct {
	label  string // "critical" or "default"
	name   string // the real queue name, prefixed on an external server
	weight int    // the worker's weight for the queue
}

// demoQueues returns the demo's queues, their names prefixed with prefix
// and a colon when prefix is not empty.
func demoQueues(prefix string) []demoQueue {
	qs := []demoQueue{{label: "critical", weight: 3}, {label: "default", weight: 1}}
	for i := range qs {
		qs[i].name = qs[i].label
		if prefix != "" {
			qs[i].name = prefix + ":" + qs[i].label
		}
	}
	return qs
}

// demoPayload is the JSON payload of a demo task. The seeded plan decides
// the failure mix up front, so handlers are deterministic.
type demoPayload struct {
	N       int  `json:"n"`               // index of the task in the plan
	SleepUS int  `json:"sleep_us"`        // simulated work per run, µs
	Fails   int  `json:"fails,omitempty"` // image:resize: runs that fail first
	Skip    bool `json:"skip,omitempty"`  // webhook:post: reject with ErrSkipRetry
}

// demoType describes one task type: its share of the mix, its retry policy,
// how the plan fills its payload, what outcome the plan predicts, and its
// handler.
type demoType struct {
	name     string
	share    int // percent of the tasks
	maxRetry int
	backoff  sdk.BackoffFunc
	// plan fills the type's failure fields of p; nil when there are none.
	plan func(rng *rand.Rand, p *demoPayload)
	// expect predicts how many runs of a task fail and are retried, and
	// whether the task ends archived.
	expect func(p demoPayload) (retried int, archived bool)
	// handle is the type's handler, called after the simulated work.
	handle func(ctx context.Context, t *sdk.Task, p demoPayload) error
}

// demoTypes returns the demo's task types. Their shares add up to 100.
func demoTypes() []demoType {
	return []demoType{
		{
			name: typeEmail, share: 40, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
			expect:  func(demoPayload) (int, bool) { return 0, false },
			handle:  func(context.Context, *sdk.Task, demoPayload) error { return nil },
		},
		{
			name: typeImage, share: 27, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 40*time.Millisecond),
			plan:    func(rng *rand.Rand, p *demoPayload) { p.Fails = 1 + rng.IntN(2) },
			expect:  func(p demoPayload) (int, bool) { return p.Fails, false },
			handle: func(_ context.Context, t *sdk.Task, p demoPayload) error {
				if t.Retried < p.Fails {
					return fmt.Errorf("image %d: resize backend busy (run %d of %d failing)", p.N, t.Retried+1, p.Fails)
				}
				return nil
			},
		},
		{
			name: typeReport, share: 8, maxRetry: demoReportMaxRetry,
			backoff: sdk.ExponentialBackoff(20*time.Millisecond, 50*time.Millisecond),
			expect:  func(demoPayload) (int, bool) { return demoReportMaxRetry, true },
			handle: func(_ context.Context, _ *sdk.Task, p demoPayload) error {
				return fmt.Errorf("report %d: upstream data source unavailable", p.N)
			},
		},
		{
			name: typeWebhook, share: 25, maxRetry: demoDefaultMaxRetry,
			backoff: sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
			plan:    func(rng *rand.Rand, p *demoPayload) { p.Skip = rng.IntN(100) < demoWebhookSkipPct },
			expect:  func(p demoPayload) (int, bool) { return 0, p.Skip },
			handle: func(_ context.Context, _ *sdk.Task, p demoPayload) error {
				if p.Skip {
					return fmt.Errorf("webhook %d: endpoint answered 410 Gone: %w", p.N, sdk.ErrSkipRetry)
				}
				return nil
			},
		},
	}
}

// plannedTask is one task of the seeded plan.
type plannedTask struct {
	queue     int // index into the demo's queues
	typ       int // index into the demo's types
	id        string
	payload   demoPayload
	processIn time.Duration // 0: ready at once
}

// demoCommand is the "demo" subcommand: it parses the flags, runs the demo
// and returns the exit code.
func demoCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseDemoFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage // parseDemoFlags reported it
	}
	cfg.Logs = stderr
	if _, err := runDemo(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "luaq demo: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// parseDemoFlags parses the demo's flags, reporting errors and the usage to
// stderr. It returns flag.ErrHelp when -h was given.
func parseDemoFlags(args []string, stderr io.Writer) (demoConfig, error) {
	fs := flag.NewFlagSet("luaq demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := demoConfig{Timeout: defaultDemoTimeout}
	fs.IntVar(&cfg.Tasks, "tasks", defaultDemoTasks, "number of tasks to enqueue")
	fs.IntVar(&cfg.Concurrency, "concurrency", defaultDemoConcurrency, "worker concurrency (1..1000)")
	fs.StringVar(&cfg.RedisURL, "redis", "", "Redis URL (redis://...) to run against instead of an embedded server;\nthe demo uses uniquely named queues there and deletes only their keys")
	fs.Uint64Var(&cfg.Seed, "seed", defaultDemoSeed, "seed of the task and failure mix")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: luaq demo [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Enqueues a seeded mix of tasks on two queues, runs a worker until every task is")
		fmt.Fprintln(fs.Output(), "completed or archived, and checks the counts against QueueInfo.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	var bad error
	switch {
	case fs.NArg() > 0:
		bad = fmt.Errorf("unexpected arguments: %q", fs.Args())
	case cfg.Tasks < 1:
		bad = fmt.Errorf("--tasks %d: want at least 1", cfg.Tasks)
	case cfg.Concurrency < 1 || cfg.Concurrency > 1000:
		bad = fmt.Errorf("--concurrency %d: want 1..1000", cfg.Concurrency)
	}
	if bad != nil {
		fmt.Fprintf(stderr, "luaq demo: %v\n", bad)
		fs.Usage()
		return cfg, bad
	}
	return cfg, nil
}

// runDemo runs the demo described by cfg, writing its progress and summary
// to out. It returns the summary (also when the run failed part way, as far
// as it got) and an error when the demo could not run, timed out, lost
// tasks, or saw counts that disagree.
func runDemo(ctx context.Context, cfg demoConfig, out io.Writer) (demoSummary, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultDemoTimeout
	}
	if cfg.Logs == nil {
		cfg.Logs = io.Discard
	}
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout,
		fmt.Errorf("the demo did not finish within %s", cfg.Timeout))
	defer cancel()

	srv, err := openDemoServer(ctx, cfg)
	if err != nil {
		return demoSummary{}, err
	}
	queues := demoQueues(srv.prefix)
	defer srv.close(out, queues)

	types := demoTypes()
	plan := planDemo(cfg.Seed, cfg.Tasks, len(queues), types)
	sum := demoSummary{Seed: cfg.Seed, Server: srv.desc, Concurrency: cfg.Concurrency}
	for _, p := range plan {
		if p.processIn > 0 {
			sum.Scheduled++
		}
	}
	printDemoHeader(out, cfg, sum, queues)

	client, err := sdk.NewClient(srv.rdb)
	if err != nil {
		return sum, fmt.Errorf("creating the client: %w", err)
	}
	t := newDemoTally(queues, types)
	worker, err := newDemoWorker(srv.rdb, cfg, queues, types, t)
	if err != nil {
		return sum, err
	}
	rw := startWorker(ctx, worker)

	start := time.Now()
	enqueued, runErr := enqueuePlan(ctx, client, queues, types, plan)
	var infos []*sdk.QueueInfo
	if runErr == nil {
		infos, runErr = waitTerminal(ctx, client, queues, enqueued, rw)
	}
	sum.Wall = time.Since(start)
	if err := rw.stop(context.WithoutCancel(ctx)); err != nil && runErr == nil {
		runErr = err
	}
	if runErr == nil {
		// Final read, after the worker is gone.
		infos, runErr = readQueueInfos(context.WithoutCancel(ctx), client, queues)
	}
	fillSummary(&sum, queues, types, plan, enqueued, t, infos)
	printDemoSummary(out, sum, runErr)
	if runErr != nil {
		return sum, runErr
	}
	return sum, sum.Err()
}

// demoServer is the Redis server the demo runs against.
type demoServer struct {
	rdb    *redis.Client // client for the SDK and the cleanup
	desc   string        // where the server is, for display
	prefix string        // queue name prefix; empty on the embedded server
	// cleanup deletes what the demo wrote (only on an external server) and
	// releases the server.
	cleanup func(ctx context.Context, queues []demoQueue) (deleted int, err error)
	// external is true for a --redis server, whose keys must be cleaned up.
	external bool
}

// openDemoServer starts the embedded server, or connects to cfg.RedisURL.
func openDemoServer(ctx context.Context, cfg demoConfig) (*demoServer, error) {
	if cfg.RedisURL == "" {
		return openEmbeddedServer(cfg)
	}
	return openExternalServer(ctx, cfg)
}

// openEmbeddedServer starts an in-process miniredis and a client to it.
func openEmbeddedServer(cfg demoConfig) (*demoServer, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("starting the embedded server: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: cfg.Concurrency + 8})
	return &demoServer{
		rdb:  rdb,
		desc: "embedded miniredis",
		cleanup: func(context.Context, []demoQueue) (int, error) {
			err := rdb.Close()
			mr.Close()
			if err != nil {
				return 0, fmt.Errorf("closing the client: %w", err)
			}
			return 0, nil
		},
	}, nil
}

// openExternalServer connects to cfg.RedisURL and picks a unique queue
// name prefix, so the demo never touches keys it did not create.
func openExternalServer(ctx context.Context, cfg demoConfig) (*demoServer, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parsing --redis: %w", err)
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = cfg.Concurrency + 8
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connecting to %s: %w", opts.Addr, err)
	}
	return &demoServer{
		rdb:      rdb,
		desc:     fmt.Sprintf("redis %s db %d", opts.Addr, opts.DB),
		prefix:   fmt.Sprintf("demo-%d", time.Now().UnixNano()),
		external: true,
		cleanup: func(ctx context.Context, queues []demoQueue) (int, error) {
			n, err := deleteQueueKeys(ctx, rdb, queues)
			if cerr := rdb.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("closing the client: %w", cerr)
			}
			return n, err
		},
	}, nil
}

// close cleans up the server, reporting what it deleted and any error to
// out. It runs with its own timeout, so it also works after the demo's
// context is done.
func (s *demoServer) close(out io.Writer, queues []demoQueue) {
	ctx, cancel := context.WithTimeout(context.Background(), demoCleanupTimeout)
	defer cancel()
	n, err := s.cleanup(ctx, queues)
	switch {
	case err != nil:
		fmt.Fprintf(out, "cleanup: %v\n", err)
	case s.external:
		names := make([]string, len(queues))
		for i, q := range queues {
			names[i] = q.name
		}
		fmt.Fprintf(out, "cleanup: deleted %d keys of queues %s\n", n, strings.Join(names, ", "))
	}
}

// deleteQueueKeys deletes every key of the given queues (SCAN MATCH on each
// queue's key pattern, then DEL) and returns how many it deleted. It never
// touches other keys.
func deleteQueueKeys(ctx context.Context, rdb *redis.Client, queues []demoQueue) (int, error) {
	total := 0
	for _, q := range queues {
		kq, err := keys.ForQueue(q.name)
		if err != nil {
			return total, fmt.Errorf("cleanup of queue %q: %w", q.name, err)
		}
		var found []string
		iter := rdb.Scan(ctx, 0, kq.Pattern(), 1000).Iterator()
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return total, fmt.Errorf("cleanup of queue %q: scanning its keys: %w", q.name, err)
		}
		for len(found) > 0 {
			chunk := found[:min(len(found), 500)]
			found = found[len(chunk):]
			n, err := rdb.Del(ctx, chunk...).Result()
			if err != nil {
				return total, fmt.Errorf("cleanup of queue %q: deleting its keys: %w", q.name, err)
			}
			total += int(n)
		}
	}
	return total, nil
}

// planDemo draws the seeded plan: each task's queue, type, payload, and
// whether it is scheduled.
func planDemo(seed uint64, n, nqueues int, types []demoType) []plannedTask {
	rng := rand.New(rand.NewPCG(seed, 0x6c7561712d64656d)) // "luaq-dem"
	totalShare := 0
	for _, t := range types {
		totalShare += t.share
	}
	plan := make([]plannedTask, n)
	for i := range plan {
		p := &plan[i]
		p.queue = nqueues - 1
		if nqueues > 1 && rng.IntN(100) < demoCriticalPercent {
			p.queue = 0
		}
		pick := rng.IntN(totalShare)
		for ti, t := range types {
			if pick < t.share {
				p.typ = ti
				break
			}
			pick -= t.share
		}
		p.id = fmt.Sprintf("%s-%06d", types[p.typ].name, i)
		p.payload = demoPayload{N: i, SleepUS: rng.IntN(demoMaxWorkMicros + 1)}
		if plan := types[p.typ].plan; plan != nil {
			plan(rng, &p.payload)
		}
		if rng.IntN(100) < demoScheduledPercent {
			p.processIn = demoScheduleMin + time.Duration(rng.Int64N(int64(demoScheduleSpread)+1))
		}
	}
	return plan
}

// demoCell holds the handler-side counters of one type on one queue.
type demoCell struct {
	completed, retried, archived, runs atomic.Int64
}

// counts returns the cell's counters.
func (c *demoCell) counts() demoCounts {
	return demoCounts{
		Completed: c.completed.Load(), Retried: c.retried.Load(),
		Archived: c.archived.Load(), Runs: c.runs.Load(),
	}
}

// demoTally holds the handler-side counters of every queue and type. Its
// maps are fixed at construction; only the atomic counters change.
type demoTally struct {
	queueIndex map[string]int // real queue name -> index
	typeIndex  map[string]int // type name -> index
	cells      [][]*demoCell  // [queue][type]
}

// newDemoTally returns zeroed counters for queues x types.
func newDemoTally(queues []demoQueue, types []demoType) *demoTally {
	t := &demoTally{queueIndex: map[string]int{}, typeIndex: map[string]int{}}
	for i, q := range queues {
		t.queueIndex[q.name] = i
		row := make([]*demoCell, len(types))
		for j := range row {
			row[j] = &demoCell{}
		}
		t.cells = append(t.cells, row)
	}
	for j, typ := range types {
		t.typeIndex[typ.name] = j
	}
	return t
}

// cell returns the counters of a task's queue and type, or nil for a task
// the demo did not enqueue.
func (t *demoTally) cell(queue, typ string) *demoCell {
	qi, ok1 := t.queueIndex[queue]
	ti, ok2 := t.typeIndex[typ]
	if !ok1 || !ok2 {
		return nil
	}
	return t.cells[qi][ti]
}

// newDemoWorker creates the worker over both queues and registers a
// counting handler, with its own backoff, for every type.
func newDemoWorker(rdb *redis.Client, cfg demoConfig, queues []demoQueue, types []demoType, t *demoTally) (*sdk.Worker, error) {
	weights := make(map[string]int, len(queues))
	for _, q := range queues {
		weights[q.name] = q.weight
	}
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues:          weights,
		Concurrency:     cfg.Concurrency,
		ShutdownTimeout: demoShutdownTimeout,
		Backoff:         sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
		Logger:          slog.New(slog.NewTextHandler(cfg.Logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the worker: %w", err)
	}
	for _, typ := range types {
		w.HandleFunc(typ.name, countingHandler(t, typ), sdk.WithBackoff(typ.backoff))
	}
	return w, nil
}

// countingHandler wraps a type's handler: it decodes the payload, simulates
// the work, runs the handler, and counts the run as completed, retried or
// archived, predicting the worker's decision from the task's retry budget.
func countingHandler(t *demoTally, typ demoType) func(ctx context.Context, task *sdk.Task) error {
	return func(ctx context.Context, task *sdk.Task) error {
		c := t.cell(task.Queue, task.Type)
		if c == nil {
			return fmt.Errorf("task %s of queue %q: not a demo task: %w", task.ID, task.Queue, sdk.ErrSkipRetry)
		}
		c.runs.Add(1)
		err := runDemoTask(ctx, typ, task)
		switch {
		case err == nil:
			c.completed.Add(1)
		case errors.Is(err, sdk.ErrSkipRetry) || task.Retried >= task.MaxRetry:
			c.archived.Add(1)
		default:
			c.retried.Add(1)
		}
		return err
	}
}

// runDemoTask decodes a task's payload, sleeps for its simulated work and
// calls the type's handler.
func runDemoTask(ctx context.Context, typ demoType, task *sdk.Task) error {
	var p demoPayload
	if err := json.Unmarshal(task.Payload, &p); err != nil {
		return fmt.Errorf("task %s: decoding its payload: %v: %w", task.ID, err, sdk.ErrSkipRetry)
	}
	if p.SleepUS > 0 {
		timer := time.NewTimer(time.Duration(p.SleepUS) * time.Microsecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("task %s: interrupted: %w", task.ID, context.Cause(ctx))
		}
	}
	return typ.handle(ctx, task, p)
}

// runningWorker is a worker whose Run is in progress.
type runningWorker struct {
	w    *sdk.Worker
	done chan struct{} // closed when Run has returned
	err  error         // Run's error; read only after done is closed
}

// startWorker runs w in the background.
func startWorker(ctx context.Context, w *sdk.Worker) *runningWorker {
	rw := &runningWorker{w: w, done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		rw.err = w.Run(ctx)
	}()
	return rw
}

// stop shuts the worker down (bounded by demoShutdownTimeout) and waits for
// Run to return.
func (rw *runningWorker) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, demoShutdownTimeout)
	defer cancel()
	if err := rw.w.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down the worker: %w", err)
	}
	select {
	case <-rw.done:
	case <-time.After(demoShutdownTimeout):
		return errors.New("shutting down the worker: Run did not return")
	}
	if rw.err != nil {
		return fmt.Errorf("worker: %w", rw.err)
	}
	return nil
}

// enqueuePlan enqueues the plan in batches of at most sdk.MaxBatch per
// queue, alternating between the queues, and returns how many tasks of each
// queue and type were stored ([queue][type]).
func enqueuePlan(ctx context.Context, client *sdk.Client, queues []demoQueue, types []demoType, plan []plannedTask) ([][]int64, error) {
	perQueue := make([][]plannedTask, len(queues))
	for _, p := range plan {
		perQueue[p.queue] = append(perQueue[p.queue], p)
	}
	enqueued := make([][]int64, len(queues))
	for qi := range enqueued {
		enqueued[qi] = make([]int64, len(types))
	}
	for more := true; more; {
		more = false
		for qi, q := range queues {
			rest := perQueue[qi]
			if len(rest) == 0 {
				continue
			}
			batch := rest[:min(len(rest), sdk.MaxBatch)]
			perQueue[qi] = rest[len(batch):]
			more = more || len(perQueue[qi]) > 0
			if err := enqueueBatch(ctx, client, q, types, batch); err != nil {
				return enqueued, err
			}
			for _, p := range batch {
				enqueued[qi][p.typ]++
			}
		}
	}
	return enqueued, nil
}

// enqueueBatch stores one batch of planned tasks on queue q.
func enqueueBatch(ctx context.Context, client *sdk.Client, q demoQueue, types []demoType, batch []plannedTask) error {
	tasks := make([]sdk.NewTask, len(batch))
	for i, p := range batch {
		payload, err := json.Marshal(p.payload)
		if err != nil {
			return fmt.Errorf("encoding the payload of %s: %w", p.id, err)
		}
		typ := types[p.typ]
		opts := []sdk.Option{sdk.ID(p.id), sdk.MaxRetry(typ.maxRetry), sdk.Timeout(demoTaskTimeout)}
		if p.processIn > 0 {
			opts = append(opts, sdk.ProcessIn(p.processIn))
		}
		tasks[i] = sdk.NewTask{Type: typ.name, Payload: payload, Options: opts}
	}
	if _, err := client.EnqueueBatch(ctx, q.name, tasks); err != nil {
		return fmt.Errorf("enqueueing %d tasks to %s: %w", len(tasks), q.label, err)
	}
	return nil
}

// waitTerminal polls QueueInfo until every enqueued task of every queue is
// completed or archived and nothing is pending, scheduled or active. It
// fails when ctx is done or the worker stops early.
func waitTerminal(ctx context.Context, client *sdk.Client, queues []demoQueue, enqueued [][]int64, rw *runningWorker) ([]*sdk.QueueInfo, error) {
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	for {
		infos, err := readQueueInfos(ctx, client, queues)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
			return nil, fmt.Errorf("waiting for the tasks to finish: %w", err)
		}
		if allTerminal(infos, enqueued) {
			return infos, nil
		}
		select {
		case <-ctx.Done():
			return infos, fmt.Errorf("waiting for the tasks to finish: %w (%s)", context.Cause(ctx), describeInfos(queues, infos))
		case <-rw.done:
			return infos, fmt.Errorf("the worker stopped before the tasks finished: %v", rw.err)
		case <-tick.C:
		}
	}
}

// readQueueInfos reads QueueInfo of every queue.
func readQueueInfos(ctx context.Context, client *sdk.Client, queues []demoQueue) ([]*sdk.QueueInfo, error) {
	infos := make([]*sdk.QueueInfo, len(queues))
	for i, q := range queues {
		info, err := client.QueueInfo(ctx, q.name)
		if err != nil {
			return nil, fmt.Errorf("reading the state of %s: %w", q.label, err)
		}
		infos[i] = info
	}
	return infos, nil
}

// allTerminal reports whether every queue has processed or archived all its
// enqueued tasks and holds nothing pending, scheduled or active.
func allTerminal(infos []*sdk.QueueInfo, enqueued [][]int64) bool {
	for i, info := range infos {
		var n int64
		for _, c := range enqueued[i] {
			n += c
		}
		if info.Processed+info.ArchivedTotal != n || info.Active != 0 || info.Pending != 0 || info.Scheduled != 0 {
			return false
		}
	}
	return true
}

// describeInfos renders the queues' states for an error message.
func describeInfos(queues []demoQueue, infos []*sdk.QueueInfo) string {
	parts := make([]string, len(infos))
	for i, info := range infos {
		parts[i] = fmt.Sprintf("%s: pending=%d scheduled=%d active=%d processed=%d archived_total=%d",
			queues[i].label, info.Pending, info.Scheduled, info.Active, info.Processed, info.ArchivedTotal)
	}
	return strings.Join(parts, ", ")
}

// fillSummary computes the per-queue and per-type counts, the plan's
// predictions and the totals into sum, and records every disagreement
// between the handlers, the plan and QueueInfo (infos may be nil when the
// demo failed before reading them).
func fillSummary(sum *demoSummary, queues []demoQueue, types []demoType, plan []plannedTask, enqueued [][]int64, t *demoTally, infos []*sdk.QueueInfo) {
	want := predict(len(queues), types, plan)
	for qi, q := range queues {
		qs := queueSummary{Label: q.label, Name: q.name, Weight: q.weight}
		if infos != nil {
			qs.Info = infos[qi]
		}
		for ti, typ := range types {
			got := t.cells[qi][ti].counts()
			got.Enqueued = enqueued[qi][ti]
			ts := typeSummary{Type: typ.name, Got: got, Want: want[qi][ti]}
			sum.Problems = append(sum.Problems, compareCounts(q.label+"/"+typ.name, ts.Got, ts.Want)...)
			qs.Types = append(qs.Types, ts)
			qs.Total.add(got)
		}
		if qs.Info != nil {
			sum.Problems = append(sum.Problems, compareQueueInfo(q.label, qs.Total, qs.Info)...)
		}
		sum.Queues = append(sum.Queues, qs)
		sum.Total.add(qs.Total)
	}
	sum.Lost = sum.Total.lost()
}

// predict returns what the plan expects per queue and type ([queue][type]).
func predict(nqueues int, types []demoType, plan []plannedTask) [][]demoCounts {
	want := make([][]demoCounts, nqueues)
	for qi := range want {
		want[qi] = make([]demoCounts, len(types))
	}
	for _, p := range plan {
		c := &want[p.queue][p.typ]
		retried, archived := types[p.typ].expect(p.payload)
		c.Enqueued++
		c.Retried += int64(retried)
		c.Runs += int64(retried) + 1
		if archived {
			c.Archived++
		} else {
			c.Completed++
		}
	}
	return want
}

// compareCounts lists the fields where the handler-side counts differ from
// the plan's.
func compareCounts(what string, got, want demoCounts) []string {
	var out []string
	check := func(field string, g, w int64) {
		if g != w {
			out = append(out, fmt.Sprintf("%s: %s %d, the plan expects %d", what, field, g, w))
		}
	}
	check("enqueued", got.Enqueued, want.Enqueued)
	check("completed", got.Completed, want.Completed)
	check("retried", got.Retried, want.Retried)
	check("archived", got.Archived, want.Archived)
	check("runs", got.Runs, want.Runs)
	return out
}

// compareQueueInfo lists where a queue's QueueInfo disagrees with the
// handler-side counts, or shows tasks not yet terminal.
func compareQueueInfo(queue string, got demoCounts, info *sdk.QueueInfo) []string {
	var out []string
	check := func(field string, g, w int64) {
		if g != w {
			out = append(out, fmt.Sprintf("%s: QueueInfo %s %d, handlers counted %d", queue, field, g, w))
		}
	}
	check("processed", info.Processed, got.Completed)
	check("retried", info.Retried, got.Retried)
	check("archived_total", info.ArchivedTotal, got.Archived)
	check("failed", info.Failed, got.Retried+got.Archived)
	check("lost (enqueued-processed-archived_total)", got.Enqueued-info.Processed-info.ArchivedTotal, got.lost())
	check("pending", info.Pending, 0)
	check("scheduled", info.Scheduled, 0)
	check("active", info.Active, 0)
	return out
}

// printDemoHeader writes what the demo is about to do.
func printDemoHeader(out io.Writer, cfg demoConfig, sum demoSummary, queues []demoQueue) {
	qs := make([]string, len(queues))
	for i, q := range queues {
		qs[i] = fmt.Sprintf("%s (weight %d)", q.name, q.weight)
	}
	fmt.Fprintf(out, "luaq demo: %d tasks (%d scheduled %s-%s ahead) on %s; concurrency %d, seed %d, server: %s\n",
		cfg.Tasks, sum.Scheduled, demoScheduleMin, demoScheduleMin+demoScheduleSpread,
		strings.Join(qs, " and "), cfg.Concurrency, cfg.Seed, sum.Server)
}

// printDemoSummary writes the summary table, the totals, the cross-check
// result and the final ok/FAIL line; runErr, when not nil, is why the demo
// stopped early.
func printDemoSummary(out io.Writer, s demoSummary, runErr error) {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-8s  %-12s  %8s  %9s  %12s  %8s  %12s\n",
		"queue", "type", "enqueued", "completed", "retried runs", "archived", "handler runs")
	row := func(queue, typ string, c demoCounts) {
		fmt.Fprintf(out, "%-8s  %-12s  %8d  %9d  %12d  %8d  %12d\n",
			queue, typ, c.Enqueued, c.Completed, c.Retried, c.Archived, c.Runs)
	}
	for _, q := range s.Queues {
		for _, t := range q.Types {
			row(q.Label, t.Type, t.Got)
		}
		row(q.Label, "all", q.Total)
	}
	byType := map[string]*demoCounts{}
	var order []string
	for _, q := range s.Queues {
		for _, t := range q.Types {
			if byType[t.Type] == nil {
				byType[t.Type] = &demoCounts{}
				order = append(order, t.Type)
			}
			byType[t.Type].add(t.Got)
		}
	}
	for _, typ := range order {
		row("all", typ, *byType[typ])
	}
	row("all", "all", s.Total)
	fmt.Fprintln(out)

	fmt.Fprintf(out, "handler runs: %d (%d retried)\n", s.Total.Runs, s.Total.Retried)
	fmt.Fprintf(out, "wall time: %s, throughput: %.0f tasks/s\n", s.Wall.Round(time.Millisecond), s.Throughput())
	for _, q := range s.Queues {
		if q.Info == nil {
			continue
		}
		fmt.Fprintf(out, "QueueInfo %s: processed=%d retried=%d failed=%d archived_total=%d pending=%d scheduled=%d active=%d\n",
			q.Label, q.Info.Processed, q.Info.Retried, q.Info.Failed, q.Info.ArchivedTotal,
			q.Info.Pending, q.Info.Scheduled, q.Info.Active)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(out, "mismatch: %s\n", p)
	}
	if len(s.Problems) == 0 && runErr == nil {
		fmt.Fprintln(out, "cross-check: handler counts, the seeded plan and QueueInfo agree")
	}
	status := "ok"
	if runErr != nil || s.Err() != nil {
		status = "FAIL"
	}
	fmt.Fprintf(out, "%s: %d tasks, %d completed, %d archived, %d lost\n",
		status, s.Total.Enqueued, s.Total.Completed, s.Total.Archived, s.Lost)
}
