// Package loader puts luaq's Lua bundle into Redis and calls its scripts by
// SHA.
//
// [Loader.Load] runs SCRIPT LOAD for every script of the bundle on every node
// the client knows (all masters and replicas of a cluster, every live shard of
// a ring), and checks that each server computed the SHA the bundle expects.
// [Loader.Run] and [Loader.RunPipelined] send EVALSHA only. The script cache
// of a Redis server is volatile (a restart, SCRIPT FLUSH or a failover empties
// it), so a NOSCRIPT reply makes the loader load the bundle again and re-send
// the failed calls, a bounded number of times. The loader never falls back to
// EVAL: scripts that enter the cache through EVAL may be evicted on Redis 7.4
// and later, and EVAL resends the whole source on every miss.
//
// Errors a script returns on purpose ("<CODE> <message>" with a code from the
// bundle's lib/errors.lua) come back as [*ScriptError], which matches the
// code's sentinel with errors.Is (for example [ErrLeaseLost]). Any other error
// raised inside a script is reported as an internal fault ([ErrInternal]).
package loader

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/scripts"
)

// MaxAttempts is how many times Run and RunPipelined send a call that keeps
// failing with NOSCRIPT (reloading the bundle between attempts) before they
// give up.
const MaxAttempts = 3

// Loader loads one bundle into one Redis deployment and runs its scripts.
// It is safe for concurrent use.
type Loader struct {
	client redis.UniversalClient
	bundle *scripts.Bundle

	// loadSem serialises loads (capacity 1; a channel so waiting honours
	// the context). loads counts completed loads, so a caller that saw
	// NOSCRIPT can tell whether someone else reloaded in the meantime.
	loadSem chan struct{}
	loads   atomic.Uint64
}

// New returns a Loader that runs bundle's scripts on client. client may be a
// *redis.Client (also a failover client from redis.NewFailoverClient), a
// *redis.ClusterClient or a *redis.Ring. New does not talk to Redis; call
// Load before the first Run, or let the first NOSCRIPT trigger it.
func New(client redis.UniversalClient, bundle *scripts.Bundle) *Loader {
	return &Loader{client: client, bundle: bundle, loadSem: make(chan struct{}, 1)}
}

// Bundle returns the bundle the loader runs.
func (l *Loader) Bundle() *scripts.Bundle { return l.bundle }

// Load runs SCRIPT LOAD for every script of the bundle on every node: all
// masters and replicas of a *redis.ClusterClient (ForEachShard, after a fresh
// read of the cluster's slot map), every live shard of a *redis.Ring, and the
// server (the current master, for a failover client) of a *redis.Client. It
// checks that each server returns the SHA the bundle computed. Every failure
// is reported, joined, each naming its node and script. Other client types
// are refused, because the loader could not reach every node through them.
//
// On a cluster, "every node" means every node CLUSTER SLOTS lists, which is
// all go-redis knows. Redis 7 leaves out a replica whose replication offset
// is still 0 (its master has had no write yet); such a replica gets the
// scripts on the first NOSCRIPT after it is promoted, like any node that
// lost its cache.
func (l *Loader) Load(ctx context.Context) error {
	select {
	case l.loadSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("loading bundle %s: %w", l.bundle.Version, ctx.Err())
	}
	defer func() { <-l.loadSem }()
	return l.loadLocked(ctx)
}

// reload loads the bundle after a NOSCRIPT, unless another load completed
// since the caller read seen from l.loads (then the caller just retries).
func (l *Loader) reload(ctx context.Context, seen uint64) error {
	select {
	case l.loadSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("reloading bundle %s: %w", l.bundle.Version, ctx.Err())
	}
	defer func() { <-l.loadSem }()
	if l.loads.Load() != seen {
		return nil
	}
	return l.loadLocked(ctx)
}

func (l *Loader) loadLocked(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	each := func(ctx context.Context, node *redis.Client) error {
		err := l.loadNode(ctx, node)
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return err
	}
	if err := l.eachNode(ctx, each); err != nil {
		if len(errs) == 0 {
			// ForEachShard failed before calling us (e.g. no cluster state).
			errs = append(errs, err)
		}
		return fmt.Errorf("loading bundle %s: %w", l.bundle.Version, errors.Join(errs...))
	}
	l.loads.Add(1)
	return nil
}

// eachNode calls fn for every node of the client (see Load), concurrently on
// a cluster or ring.
func (l *Loader) eachNode(ctx context.Context, fn func(context.Context, *redis.Client) error) error {
	switch c := l.client.(type) {
	case *redis.ClusterClient:
		return c.ForEachShard(ctx, fn)
	case *redis.Ring:
		return c.ForEachShard(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("client type %T is not supported (want *redis.Client, *redis.ClusterClient or *redis.Ring)", l.client)
	}
}

// ErrNotLoaded reports a node that does not hold every script of the bundle
// (see Check).
var ErrNotLoaded = errors.New("bundle not loaded")

// Check reports whether every node Load would reach (see Load) answers and
// holds every script of the bundle, with SCRIPT EXISTS; it changes nothing.
// A node that lacks scripts is reported with an error matching ErrNotLoaded
// that names the node and the scripts; an unreachable node with its network
// error. Every failure is reported, joined.
func (l *Loader) Check(ctx context.Context) error {
	var (
		mu   sync.Mutex
		errs []error
	)
	each := func(ctx context.Context, node *redis.Client) error {
		err := l.checkNode(ctx, node)
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		return err
	}
	if err := l.eachNode(ctx, each); err != nil {
		if len(errs) == 0 {
			errs = append(errs, err)
		}
		return fmt.Errorf("checking bundle %s: %w", l.bundle.Version, errors.Join(errs...))
	}
	return nil
}

// checkNode sends one SCRIPT EXISTS with every script's SHA to one node.
func (l *Loader) checkNode(ctx context.Context, node *redis.Client) error {
	addr := node.Options().Addr
	list := l.bundle.Scripts()
	shas := make([]string, len(list))
	for i, s := range list {
		shas[i] = s.SHA
	}
	exists, err := node.ScriptExists(ctx, shas...).Result()
	if err != nil {
		return fmt.Errorf("node %s: SCRIPT EXISTS: %w", addr, err)
	}
	if len(exists) != len(list) {
		return fmt.Errorf("node %s: SCRIPT EXISTS answered %d flags for %d scripts", addr, len(exists), len(list))
	}
	var missing []string
	for i, ok := range exists {
		if !ok {
			missing = append(missing, list[i].Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("node %s: %w: missing %s", addr, ErrNotLoaded, strings.Join(missing, ", "))
	}
	return nil
}

// loadNode sends SCRIPT LOAD for every script to one node in one pipeline.
func (l *Loader) loadNode(ctx context.Context, node *redis.Client) error {
	addr := node.Options().Addr
	list := l.bundle.Scripts()
	cmds := make([]*redis.StringCmd, len(list))
	_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, s := range list {
			cmds[i] = p.ScriptLoad(ctx, s.Source)
		}
		return nil
	})
	var errs []error
	for i, s := range list {
		sha, cerr := cmds[i].Result()
		switch {
		case cerr != nil:
			errs = append(errs, fmt.Errorf("node %s: SCRIPT LOAD %s: %w", addr, s.Name, cerr))
		case sha != s.SHA:
			errs = append(errs, fmt.Errorf("node %s: SCRIPT LOAD %s: server computed SHA %s, bundle expects %s", addr, s.Name, sha, s.SHA))
		}
	}
	if len(errs) == 0 && err != nil {
		errs = append(errs, fmt.Errorf("node %s: %w", addr, err))
	}
	return errors.Join(errs...)
}

// prepared is a call checked against its script's header, ready to send.
type prepared struct {
	script *scripts.Script
	keys   []string
	args   []any
}

// prepare resolves the script, checks the queue and the argument count, and
// builds KEYS from the script's roles.
func (l *Loader) prepare(q keys.Queue, name string, args []string) (*prepared, error) {
	s, err := l.bundle.Script(name)
	if err != nil {
		return nil, err
	}
	if q.Name() == "" {
		return nil, fmt.Errorf("script %s: the queue is the zero keys.Queue; build it with keys.ForQueue", name)
	}
	if err := checkArgCount(s, len(args)); err != nil {
		return nil, err
	}
	argv := make([]any, len(args))
	for i, a := range args {
		argv[i] = a
	}
	return &prepared{script: s, keys: q.Keys(s.Roles()), args: argv}, nil
}

// checkArgCount checks n against the ARGV the script's header declares: the
// exact count when no group repeats, else the fixed arguments followed by
// any whole number of repeated groups.
func checkArgCount(s *scripts.Script, n int) error {
	fixed, group := 0, 0
	for _, a := range s.Args {
		if a.Repeated {
			group++
		} else {
			fixed++
		}
	}
	if group == 0 {
		if n != fixed {
			return fmt.Errorf("script %s takes %d arguments, got %d: %w", s.Name, fixed, n, ErrArgCount)
		}
		return nil
	}
	if n < fixed || (n-fixed)%group != 0 {
		return fmt.Errorf("script %s takes %d arguments plus groups of %d, got %d: %w", s.Name, fixed, group, n, ErrArgCount)
	}
	return nil
}

// ErrArgCount is returned (wrapped) by Run and RunPipelined, before anything
// is sent, when the number of arguments does not fit the script's header.
var ErrArgCount = errors.New("wrong number of script arguments")

// Run calls script on queue q with args by EVALSHA. KEYS are the queue's keys
// for the roles the script's header lists, in order. When Redis answers
// NOSCRIPT, Run loads the bundle on every node (see Load) and sends the call
// again, at most MaxAttempts times in all; it never sends EVAL. Other errors,
// connection errors included, are returned at once.
//
// An unknown script name, a zero Queue or an argument count that does not
// match the header (ErrArgCount) fail before anything is sent. A script's
// error reply is decoded as described in the package documentation. A nil
// reply gives (nil, nil).
func (l *Loader) Run(ctx context.Context, q keys.Queue, script string, args ...string) (any, error) {
	p, err := l.prepare(q, script, args)
	if err != nil {
		return nil, err
	}
	var last error
	for attempt := 1; attempt <= MaxAttempts; attempt++ {
		seen := l.loads.Load()
		v, err := l.client.EvalSha(ctx, p.script.SHA, p.keys, p.args...).Result()
		if !isNoScript(err) {
			return decodeReply(p.script.Name, v, err)
		}
		last = err
		if attempt == MaxAttempts {
			break
		}
		if err := l.reload(ctx, seen); err != nil {
			return nil, fmt.Errorf("script %s on queue %s: NOSCRIPT, and reloading failed: %w", script, q.Name(), err)
		}
	}
	return nil, fmt.Errorf("script %s on queue %s: still NOSCRIPT after %d attempts with a reload before each retry: %w", script, q.Name(), MaxAttempts, last)
}

// Call is one script call of a pipeline.
type Call struct {
	// Queue is the queue whose keys the script gets.
	Queue keys.Queue
	// Script is the script's name, e.g. "enqueue".
	Script string
	// Args is the script's ARGV.
	Args []string
}

// Result is the outcome of one Call: its decoded reply or its error, which
// is decoded like Run's.
type Result struct {
	Value any
	Err   error
}

// RunPipelined sends every call by EVALSHA in one go-redis pipeline (on a
// ClusterClient go-redis splits it per node) and returns one Result per call,
// in call order. There is no overall error: every failure, including a
// connection error or a failed reload, is reported in the Result of each call
// it affected.
//
// Calls that fail validation (unknown script, zero Queue, wrong argument
// count) get their error without being sent. When any call fails with
// NOSCRIPT, RunPipelined loads the bundle once and re-sends only the calls
// that failed with NOSCRIPT, again pipelined, at most MaxAttempts sends per
// call. It never sends EVAL. Calls are not atomic together: each script runs
// atomically on its own.
func (l *Loader) RunPipelined(ctx context.Context, calls []Call) []Result {
	results := make([]Result, len(calls))
	preps := make([]*prepared, len(calls))
	var todo []int
	for i, c := range calls {
		p, err := l.prepare(c.Queue, c.Script, c.Args)
		if err != nil {
			results[i].Err = err
			continue
		}
		preps[i] = p
		todo = append(todo, i)
	}
	var seen uint64
	for attempt := 1; attempt <= MaxAttempts && len(todo) > 0; attempt++ {
		if attempt > 1 {
			if err := l.reload(ctx, seen); err != nil {
				for _, i := range todo {
					results[i].Err = fmt.Errorf("script %s on queue %s: NOSCRIPT, and reloading failed: %w", calls[i].Script, calls[i].Queue.Name(), err)
				}
				return results
			}
		}
		seen = l.loads.Load()
		pipe := l.client.Pipeline()
		cmds := make([]*redis.Cmd, len(todo))
		for j, i := range todo {
			cmds[j] = pipe.EvalSha(ctx, preps[i].script.SHA, preps[i].keys, preps[i].args...)
		}
		// Exec's error is the first command's error; each cmd holds its own.
		_, _ = pipe.Exec(ctx)
		var again []int
		for j, i := range todo {
			v, err := cmds[j].Result()
			if isNoScript(err) {
				again = append(again, i)
				results[i] = Result{Err: fmt.Errorf("script %s on queue %s: still NOSCRIPT after %d attempts with a reload before each retry: %w", calls[i].Script, calls[i].Queue.Name(), attempt, err)}
				continue
			}
			v, err = decodeReply(calls[i].Script, v, err)
			results[i] = Result{Value: v, Err: err}
		}
		todo = again
	}
	return results
}

// isNoScript reports whether err says the server does not have the script.
// go-redis normalises NOSCRIPT to redis.ErrNoScript outside pipelines only.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// decodeReply turns a go-redis EVALSHA result into Run's result.
func decodeReply(script string, v any, err error) (any, error) {
	if err == nil {
		return v, nil
	}
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	return nil, mapError(script, err)
}
