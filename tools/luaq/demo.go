package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/luaq/luaq/sdk"
)

// The demo subcommand: its flags, its configuration, and runDemo, which runs
// the steps the other demo_*.go files implement.

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
