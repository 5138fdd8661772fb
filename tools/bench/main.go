// Command bench compares luaq with asynq on one private redis-server.
//
//	cd tools/bench && go run . [--scale 1] [--only enqueue,drain] [--json out.json] [--png out.png]
//
// It starts one redis-server on a free loopback port (no persistence), runs
// every scenario on luaq and on asynq in turn (which one goes first
// alternates from scenario to scenario) with FLUSHALL in between, and prints
// a table of results against the targets. Both systems run with their
// defaults except concurrency, queue and log level (warn).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// scenarioNames in run order.
var scenarioNames = []string{"ceiling", "enqueue", "batch", "drain", "e2e", "idle", "scheduled", "memory", "scaling", "recovery"}

type config struct {
	Scale           float64
	Only            map[string]bool // nil = all
	JSON, PNG       string
	RedisServer     string
	PprofDir        string // CPU profile of each measured part, "<scenario>-<system>.pprof"
	RecoveryTimeout time.Duration
	Progress        io.Writer
	Command         string
	// onServer, if set, is called with the server once it runs (for
	// cleanup on a signal).
	onServer func(*redisServer)
}

func parseOnly(s string) (map[string]bool, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	known := map[string]bool{}
	for _, n := range scenarioNames {
		known[n] = true
	}
	aliases := map[string]string{"end-to-end": "e2e", "enqueue-batch": "batch", "latency": "idle", "lateness": "scheduled"}
	out := map[string]bool{}
	for _, n := range strings.Split(s, ",") {
		n = strings.TrimSpace(strings.ToLower(n))
		if a, ok := aliases[n]; ok {
			n = a
		}
		if !known[n] {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", n, strings.Join(scenarioNames, ","))
		}
		out[n] = true
	}
	return out, nil
}

func main() {
	if childMode() {
		return
	}
	var (
		cfg        config
		only       string
		cpuprofile string
		fromJSON   string
	)
	flag.Float64Var(&cfg.Scale, "scale", 1, "multiplies task counts (0.02 for a quick run)")
	flag.StringVar(&only, "only", "", "comma-separated scenarios: "+strings.Join(scenarioNames, ","))
	flag.StringVar(&cfg.JSON, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&cfg.PNG, "png", "", "also draw a chart to this PNG file")
	flag.StringVar(&cfg.RedisServer, "redis-server", "", "redis-server binary (default: from PATH)")
	flag.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", 4*time.Minute, "longest wait for a killed worker's task to run again")
	flag.StringVar(&cfg.PprofDir, "pprof-dir", "", "write a CPU profile of this process for the measured part of each throughput run to this directory")
	flag.StringVar(&cpuprofile, "cpuprofile", "", "write a CPU profile of the bench process (both systems' client side) to this file")
	flag.StringVar(&fromJSON, "from-json", "", "run nothing: print the table of a report written by --json (and draw --png from it)")
	flag.Parse()
	if fromJSON != "" {
		rep, err := readReport(fromJSON)
		if err == nil && cfg.PNG != "" {
			err = rep.writePNG(cfg.PNG)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		rep.printTable(os.Stdout)
		printFooter(rep)
		return
	}
	var err error
	if cfg.Only, err = parseOnly(only); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if cfg.Scale <= 0 {
		fmt.Fprintln(os.Stderr, "--scale must be positive")
		os.Exit(2)
	}
	cfg.Progress = os.Stderr
	cfg.Command = "go run . " + strings.Join(os.Args[1:], " ")
	if cpuprofile != "" && cfg.PprofDir != "" {
		fmt.Fprintln(os.Stderr, "--cpuprofile and --pprof-dir cannot be combined")
		os.Exit(2)
	}
	if cfg.PprofDir != "" {
		if err := os.MkdirAll(cfg.PprofDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	// On SIGINT/SIGTERM stop the private server before exiting.
	var (
		srvMu sync.Mutex
		srv   *redisServer
	)
	cfg.onServer = func(s *redisServer) { srvMu.Lock(); srv = s; srvMu.Unlock() }
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		srvMu.Lock()
		srv.stop()
		srvMu.Unlock()
		fmt.Fprintln(os.Stderr, "interrupted")
		os.Exit(130)
	}()

	rep, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if cpuprofile != "" {
			pprof.StopCPUProfile()
		}
		os.Exit(1)
	}
	fmt.Println()
	rep.printTable(os.Stdout)
	printFooter(rep)
}

func printFooter(rep *report) {
	fmt.Printf("\ncommand: %s\nwall time: %.1f s (scale %g, %d CPUs, %s, redis %s, asynq %s; load average at start %s, at end %s)\n",
		rep.Command, rep.WallSeconds, rep.Scale, rep.CPUs, rep.GoVersion, rep.RedisVersion, rep.AsynqVersion, rep.LoadStart, rep.LoadEnd)
}

// run executes the selected scenarios and returns the report (also written
// to cfg.JSON and cfg.PNG when set).
func run(cfg config) (*report, error) {
	if cfg.RecoveryTimeout <= 0 {
		cfg.RecoveryTimeout = 4 * time.Minute
	}
	bin := cfg.RedisServer
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, fmt.Errorf("redis-server not found: %w", err)
		}
	}
	start := time.Now()
	srv, err := startRedis(bin)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	if cfg.onServer != nil {
		cfg.onServer(srv)
	}
	admin := redis.NewClient(&redis.Options{Addr: srv.addr})
	defer admin.Close()
	info, err := admin.Info(context.Background(), "server").Result()
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, srv: srv, admin: admin}
	b.rep = &report{
		Command: cfg.Command, Scale: cfg.Scale, Started: start, GoVersion: runtime.Version(),
		CPUs: runtime.NumCPU(), RedisVersion: infoField(info, "redis_version"), AsynqVersion: depVersion("github.com/hibiken/asynq"),
	}
	b.rep.LoadStart = loadavg()
	b.logf("redis-server %s on %s (dir %s); scale %g", b.rep.RedisVersion, srv.addr, srv.dir, cfg.Scale)
	b.payloads = randomPayloads(max(b.n(100000), b.n(50000)))
	if err := b.warmup(); err != nil {
		return nil, err
	}
	steps := map[string]func(){
		"ceiling": b.ceiling, "enqueue": b.scEnqueue, "batch": b.scBatch, "drain": b.scDrain,
		"e2e": b.scE2E, "idle": b.scIdle, "scheduled": b.scScheduled, "memory": b.scMemory,
		"scaling": b.scScaling, "recovery": b.scRecovery,
	}
	for _, name := range scenarioNames {
		if cfg.Only == nil || cfg.Only[name] {
			steps[name]()
		}
	}
	b.rep.WallSeconds = time.Since(start).Seconds()
	b.rep.LoadEnd = loadavg()
	b.rep.buildRows()
	var errs []error
	if cfg.JSON != "" {
		errs = append(errs, b.rep.writeJSON(cfg.JSON))
	}
	if cfg.PNG != "" {
		errs = append(errs, b.rep.writePNG(cfg.PNG))
	}
	return b.rep, errors.Join(errs...)
}

// loadavg returns the first three fields of /proc/loadavg, or "".
func loadavg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func depVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "?"
	}
	for _, d := range bi.Deps {
		if d.Path == path {
			return d.Version
		}
	}
	return "?"
}
