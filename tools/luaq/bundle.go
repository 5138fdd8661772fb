package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
)

// bundleCommand runs "luaq bundle export DIR" and "luaq bundle load ...":
// the bundle as a client of any language needs it, on disk or in Redis.
func bundleCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "luaq bundle: no subcommand given")
		bundleUsage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "export":
		return bundleExportCommand(args[1:], stdout, stderr)
	case "load":
		return bundleLoadCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		bundleUsage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "luaq bundle: unknown subcommand %q\n", args[0])
	bundleUsage(stderr)
	return exitUsage
}

func bundleUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: luaq bundle export DIR")
	fmt.Fprintln(w, "       luaq bundle load --redis URL | --cluster host:port,host:port,...")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "export writes every flattened script (<name>.lua, ready for SCRIPT LOAD) and")
	fmt.Fprintln(w, "manifest.json into DIR: all a client of another language needs, with scripts/SPEC.md.")
	fmt.Fprintln(w, "load runs SCRIPT LOAD for every script on every node (all masters and replicas")
	fmt.Fprintln(w, "of a cluster), checks each SHA against the bundle and prints name and SHA.")
}

// bundleExportCommand writes the bundle into a directory.
func bundleExportCommand(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("luaq bundle export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: luaq bundle export DIR")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Writes every flattened script as DIR/<name>.lua and the manifest as")
		fmt.Fprintln(fs.Output(), "DIR/manifest.json, creating DIR if needed.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		fmt.Fprintln(stderr, "luaq bundle export: want exactly one argument, the directory")
		fs.Usage()
		return exitUsage
	}
	dir := fs.Arg(0)
	b, err := scripts.Load()
	if err != nil {
		fmt.Fprintf(stderr, "luaq bundle export: %v\n", err)
		return exitFailure
	}
	if err := b.Export(dir); err != nil {
		fmt.Fprintf(stderr, "luaq bundle export: %v\n", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "luaq bundle %s: %d scripts and %s written to %s\n", b.Version, len(b.Scripts()), scripts.ManifestFile, dir)
	return exitOK
}

// bundleLoadConfig holds the flags of "luaq bundle load".
type bundleLoadConfig struct {
	RedisURL string
	Cluster  []string
	Timeout  time.Duration
}

func parseBundleLoadFlags(args []string, stderr io.Writer) (bundleLoadConfig, error) {
	fs := flag.NewFlagSet("luaq bundle load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bundleLoadConfig
	var cluster string
	fs.StringVar(&cfg.RedisURL, "redis", "", "Redis URL (redis://...) of a single server")
	fs.StringVar(&cluster, "cluster", "", "comma-separated host:port seed nodes of a Redis Cluster")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: luaq bundle load --redis URL | --cluster host:port,host:port,... [flags]")
		fmt.Fprintln(fs.Output())
		fmt.Fprintln(fs.Output(), "Loads every script of the bundle on every node (SCRIPT LOAD on all masters and")
		fmt.Fprintln(fs.Output(), "replicas of a cluster), checks the SHA each server computed against the bundle,")
		fmt.Fprintln(fs.Output(), "and prints every script's name and SHA.")
		fmt.Fprintln(fs.Output())
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	for _, a := range strings.Split(cluster, ",") {
		if a = strings.TrimSpace(a); a != "" {
			cfg.Cluster = append(cfg.Cluster, a)
		}
	}
	bad := ""
	switch {
	case fs.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case (cfg.RedisURL == "") == (len(cfg.Cluster) == 0):
		bad = "give exactly one of --redis and --cluster"
	case cfg.Timeout <= 0:
		bad = "--timeout must be positive"
	}
	if bad == "" && cfg.RedisURL != "" {
		if _, err := redis.ParseURL(cfg.RedisURL); err != nil {
			bad = fmt.Sprintf("--redis: %v", err)
		}
	}
	for _, a := range cfg.Cluster {
		if bad != "" {
			break
		}
		if i := strings.LastIndexByte(a, ':'); i <= 0 || i == len(a)-1 || strings.Contains(a, "://") {
			bad = fmt.Sprintf("--cluster: %q is not host:port", a)
		}
	}
	if bad != "" {
		fmt.Fprintf(stderr, "luaq bundle load: %s\n", bad)
		fs.Usage()
		return cfg, errors.New(bad)
	}
	return cfg, nil
}

// bundleLoadCommand loads the bundle on a server or a cluster.
func bundleLoadCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseBundleLoadFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		return exitUsage
	}
	if err := loadBundle(ctx, cfg, stdout); err != nil {
		fmt.Fprintf(stderr, "luaq bundle load: %v\n", err)
		return exitFailure
	}
	return exitOK
}

// loadBundle loads every script on every node through loader.Load and
// prints the nodes, then each script's name and SHA.
func loadBundle(ctx context.Context, cfg bundleLoadConfig, out io.Writer) error {
	b, err := scripts.Load()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	var client redis.UniversalClient
	var nodes func(context.Context) ([]string, error)
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		c := redis.NewClient(opt)
		client = c
		nodes = func(context.Context) ([]string, error) { return []string{opt.Addr}, nil }
	} else {
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cfg.Cluster})
		client = c
		nodes = func(ctx context.Context) ([]string, error) { return clusterNodes(ctx, c) }
	}
	defer client.Close()

	// One clear error for an unreachable server rather than one per script.
	if err := client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("cannot reach Redis: %w", err)
	}
	if err := loader.New(client, b).Load(ctx); err != nil {
		return err
	}
	addrs, err := nodes(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "luaq bundle %s: %d scripts loaded on %d node(s): %s\n", b.Version, len(b.Scripts()), len(addrs), strings.Join(addrs, " "))
	width := 0
	for _, s := range b.Scripts() {
		width = max(width, len(s.Name))
	}
	for _, s := range b.Scripts() {
		fmt.Fprintf(out, "%-*s %s\n", width, s.Name, s.SHA)
	}
	return nil
}

// clusterNodes lists the addresses of every node the cluster client knows,
// the nodes Load reached, sorted.
func clusterNodes(ctx context.Context, c *redis.ClusterClient) ([]string, error) {
	var mu sync.Mutex
	var addrs []string
	err := c.ForEachShard(ctx, func(_ context.Context, node *redis.Client) error {
		mu.Lock()
		addrs = append(addrs, node.Options().Addr)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing the cluster's nodes: %w", err)
	}
	sort.Strings(addrs)
	return addrs, nil
}
