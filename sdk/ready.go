package sdk

import (
	"context"
	"fmt"

	"github.com/luaq/luaq/loader"
)

// ErrNotLoaded reports a server that answers but does not hold every script
// of the bundle (see Client.Ready).
var ErrNotLoaded = loader.ErrNotLoaded

// Load puts the script bundle into every server the Client sends queue keys
// to (every master and replica of a Cluster, every shard of a Ring, the
// current master behind Sentinel), and checks the servers' eviction policy
// as the first call would (see ClientRequireNoEviction). Calling it is
// optional: the Client loads the scripts on first use, and again whenever a
// server has lost them. Call it at start-up to fail fast on an unreachable
// or refusing server instead of on the first enqueue.
func (c *Client) Load(ctx context.Context) error {
	if err := c.eviction.check(ctx); err != nil {
		return fmt.Errorf("luaq: load: %w", err)
	}
	if err := c.loader.Load(ctx); err != nil {
		return fmt.Errorf("luaq: load: %w", err)
	}
	return nil
}

// Ready reports whether the Client can serve calls now: it returns nil when
// every server answers and holds the whole script bundle, and the eviction
// policy is acceptable (see ClientRequireNoEviction). It changes nothing on
// the servers, so it suits a readiness probe. A server that answers but has
// lost scripts (a restart, SCRIPT FLUSH, a failover) gives an error matching
// ErrNotLoaded: calls would still succeed, reloading the scripts first, and
// Load makes Ready pass again.
func (c *Client) Ready(ctx context.Context) error {
	if err := c.eviction.check(ctx); err != nil {
		return fmt.Errorf("luaq: ready: %w", err)
	}
	if err := c.loader.Check(ctx); err != nil {
		return fmt.Errorf("luaq: ready: %w", err)
	}
	return nil
}
