package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// ErrEvictionPolicy reports a server whose maxmemory-policy is not
// noeviction (or whose policy could not be read when it was required): such
// a server may delete queue keys when it is full, and tasks with them,
// without a word. Run luaq on servers with maxmemory-policy noeviction.
var ErrEvictionPolicy = errors.New("the Redis server may evict keys")

// NodePolicy is the eviction policy of one server that holds queue keys.
type NodePolicy struct {
	// Addr is the server's address as the client knows it.
	Addr string
	// Policy is its maxmemory-policy, as INFO memory reports it:
	// "noeviction", or an evicting one such as "allkeys-lru".
	Policy string
}

// Evicts reports whether the server may delete keys when it is full.
func (p NodePolicy) Evicts() bool { return p.Policy != "noeviction" }

// EvictionPolicies reads the maxmemory-policy of every server rdb sends
// queue keys to (every master of a Cluster, every shard of a Ring) from
// INFO memory, which works where CONFIG GET is refused (ACLs, managed
// services). A health check can call it at any time.
func EvictionPolicies(ctx context.Context, rdb redis.UniversalClient) ([]NodePolicy, error) {
	policies, err := evictionPolicies(ctx, rdb)
	if err != nil {
		return nil, fmt.Errorf("luaq: eviction policy: %w", err)
	}
	return policies, nil
}

func evictionPolicies(ctx context.Context, rdb redis.UniversalClient) ([]NodePolicy, error) {
	var (
		mu  sync.Mutex
		out []NodePolicy
	)
	read := func(ctx context.Context, node *redis.Client) error {
		p, err := nodePolicy(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		out = append(out, p)
		mu.Unlock()
		return nil
	}
	var err error
	switch c := rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, read)
	case *redis.Ring:
		err = c.ForEachShard(ctx, read)
	case *redis.Client:
		err = read(ctx, c)
	default:
		return nil, fmt.Errorf("client type %T is not supported", rdb)
	}
	return out, err
}

// nodePolicy reads one server's policy.
func nodePolicy(ctx context.Context, node *redis.Client) (NodePolicy, error) {
	addr := node.Options().Addr
	info, err := node.Info(ctx, "memory").Result()
	if err != nil {
		return NodePolicy{}, fmt.Errorf("INFO memory on %s: %w", addr, err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "maxmemory_policy:"); ok {
			return NodePolicy{Addr: addr, Policy: v}, nil
		}
	}
	return NodePolicy{}, fmt.Errorf("INFO memory on %s has no maxmemory_policy", addr)
}

// checkEviction reads the eviction policies under rdb and logs a warning for
// each server that may evict. When noeviction is required it returns an
// error matching ErrEvictionPolicy for such a server, and also when the
// policies could not be read; retry reports whether that was the cause
// (a later check may succeed). Without the requirement, a policy that cannot
// be read is logged and nil returned.
func checkEviction(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger, required bool) (retry bool, err error) {
	policies, err := evictionPolicies(ctx, rdb)
	if err != nil {
		if required {
			return true, fmt.Errorf("%w: noeviction is required but the policy could not be read: %w", ErrEvictionPolicy, err)
		}
		// Not a sign of trouble by itself (an ACL without +info, a server
		// that does not report it), so no warning: say it once, quietly.
		log.Info("luaq: could not read the Redis eviction policy; make sure maxmemory-policy is noeviction, or queue keys may be evicted", "err", err)
		return false, nil
	}
	var evicting []string
	for _, p := range policies {
		if p.Evicts() {
			evicting = append(evicting, p.Addr+" has maxmemory-policy "+p.Policy)
			log.Warn("luaq: Redis may evict queue keys when full, losing tasks silently; set maxmemory-policy noeviction",
				"addr", p.Addr, "maxmemory_policy", p.Policy)
		}
	}
	if required && len(evicting) > 0 {
		return false, fmt.Errorf("%w: %s; set maxmemory-policy noeviction", ErrEvictionPolicy, strings.Join(evicting, ", "))
	}
	return false, nil
}

// evictionGate runs checkEviction once, before a Client's first call, and
// remembers a final verdict.
type evictionGate struct {
	rdb      redis.UniversalClient
	log      *slog.Logger
	required bool

	passed atomic.Bool // fast path: checked, and nothing to refuse
	mu     sync.Mutex
	done   bool
	err    error // the final refusal, when done
}

// check returns nil once the servers were checked and found acceptable (or
// could not be read and noeviction is not required), else the refusal.
func (g *evictionGate) check(ctx context.Context) error {
	if g.passed.Load() {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return g.err
	}
	retry, err := checkEviction(ctx, g.rdb, g.log, g.required)
	if retry {
		return err
	}
	g.done, g.err = true, err
	g.passed.Store(err == nil)
	return err
}
