package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

// janitorConfig holds the janitor command's flags.
type janitorConfig struct {
	RedisURL string
	Queues   []string
	Interval time.Duration
	LockTTL  time.Duration
	Once     bool
}

// janitorCommand runs a standalone janitor over the given queues until
// interrupted (or one round with --once), printing what each round did.
func janitorCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseJanitorFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if err := runJanitor(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "luaq janitor: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// parseJanitorFlags parses the janitor's flags, reporting errors to stderr.
func parseJanitorFlags(args []string, stderr io.Writer) (janitorConfig, error) {
	fs := flag.NewFlagSet("luaq janitor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg janitorConfig
	var queues string
	fs.StringVar(&cfg.RedisURL, "redis", "", "Redis URL (redis://...); required")
	fs.StringVar(&queues, "queues", "", "comma-separated queue names; required")
	fs.DurationVar(&cfg.Interval, "interval", 2*time.Second, "time between cleaning rounds")
	fs.DurationVar(&cfg.LockTTL, "lock-ttl", time.Minute, "lifetime of a queue's janitor lock (a safety net; the lock is released after each round)")
	fs.BoolVar(&cfg.Once, "once", false, "run one round and exit")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: luaq janitor --redis URL --queues a,b [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Cleans queues: reclaims expired leases, expires tasks not started in time, trims")
		fmt.Fprintln(fs.Output(), "archives, deletes completed tasks whose retention ended, frees expired unique keys")
		fmt.Fprintln(fs.Output(), "and removes dead workers. Several janitors (and workers) may run at once.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for _, q := range strings.Split(queues, ",") {
		if q = strings.TrimSpace(q); q != "" {
			cfg.Queues = append(cfg.Queues, q)
		}
	}
	if cfg.RedisURL == "" || len(cfg.Queues) == 0 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "luaq janitor: --redis and --queues are required, and nothing else")
		fs.Usage()
		return cfg, errors.New("bad flags")
	}
	return cfg, nil
}

// runJanitor runs the janitor until ctx is done (or one round with Once).
func runJanitor(ctx context.Context, cfg janitorConfig, out io.Writer) error {
	opt, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return fmt.Errorf("--redis: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	j, err := sdk.NewJanitor(rdb, sdk.JanitorConfig{Queues: cfg.Queues, Interval: cfg.Interval, LockTTL: cfg.LockTTL})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "luaq janitor %s: queues %s, every %s\n", j.Owner(), strings.Join(cfg.Queues, ","), cfg.Interval)
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		rep, err := j.RunOnce(ctx)
		if err != nil {
			if cfg.Once {
				return err
			}
			fmt.Fprintf(out, "round failed: %v\n", err)
		} else if cfg.Once || rep != (sdk.JanitorReport{}) {
			fmt.Fprintf(out, "reclaimed=%d expired=%d retention_deleted=%d unique_freed=%d stats_trimmed=%d workers_pruned=%d skipped=%d\n",
				rep.Reclaimed, rep.Expired, rep.RetentionDeleted, rep.UniqueFreed, rep.StatsTrimmed, rep.WorkersPruned, rep.Skipped)
		}
		if cfg.Once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
