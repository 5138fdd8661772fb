package loader

// Tests against real redis-server processes started by internal/redistest.
// They skip when redis-server is not on PATH (fail with LUAQ_REQUIRE_REDIS=1).

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/redistest"
)

// uniq returns a queue name unique to this test run, so tests are safe on a
// shared server named by LUAQ_REDIS_URL.
func uniq(name string) string {
	return fmt.Sprintf("loadertest-%s-%d", name, time.Now().UnixNano())
}

// ownServer skips t when srv is an external server: these tests flush its
// script cache or restart it.
func ownServer(t *testing.T, srv *redistest.Server) {
	t.Helper()
	if srv.External() {
		t.Skip("flushes or restarts the server; not done to an external LUAQ_REDIS_URL server")
	}
}

func TestRealErrorMappingAndFaults(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	checkErrorMapping(t, client, New(client, bundle(t)), uniq("errs"))
	fc := srv.Client(t)
	checkFaults(context.Background(), t, New(fc, faultBundle(t)))
}

func TestRealScriptFlushMidSequence(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	ownServer(t, srv)
	client := srv.Client(t)
	log := newCmdLog()
	client.AddHook(log)
	b := bundle(t)
	l := New(client, b)
	if err := l.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	q := queue(t, uniq("flush"))
	if _, err := l.Run(ctx, q, "enqueue", enqueueArgs(t, b, "a", "b", "c")...); err != nil {
		t.Fatalf("enqueue: %v", err)
	}

	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	log.reset()
	v, err := l.Run(ctx, q, "dequeue", dequeueArgs(t, b, 1)...)
	if err != nil {
		t.Fatalf("Run after SCRIPT FLUSH: %v", err)
	}
	ls := leases(t, v)
	if len(ls) != 1 || ls[0].id != "a" {
		t.Fatalf("dequeue leased %v, want a", ls)
	}
	if got := log.count("evalsha"); got != 2 {
		t.Errorf("Run sent %d EVALSHAs, want 2 (NOSCRIPT, then success)", got)
	}
	if missing := missingScripts(ctx, t, client, b); len(missing) > 0 {
		t.Errorf("after recovery the server lacks %v", missing)
	}

	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	log.reset()
	calls := []Call{
		{Queue: q, Script: "extend", Args: argv(t, b, "extend", map[string]string{"id": ls[0].id, "token": ls[0].token, "lease_ms": "30000"})},
		{Queue: q, Script: "dequeue", Args: dequeueArgs(t, b, 1)},
		{Queue: q, Script: "dequeue", Args: dequeueArgs(t, b, 1)},
		{Queue: q, Script: "queue-info"},
	}
	res := l.RunPipelined(ctx, calls)
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("pipelined call %d (%s) after SCRIPT FLUSH: %v", i, calls[i].Script, r.Err)
		}
	}
	if _, err := Int(res[0].Value); err != nil {
		t.Errorf("extend reply: %v", err)
	}
	if got := leases(t, res[1].Value); len(got) != 1 || got[0].id != "b" {
		t.Errorf("first pipelined dequeue leased %v, want b", got)
	}
	if got := leases(t, res[2].Value); len(got) != 1 || got[0].id != "c" {
		t.Errorf("second pipelined dequeue leased %v, want c", got)
	}
	if got := info(t, res[3].Value); got["active"] != 3 || got["pending"] != 0 {
		t.Errorf("queue-info = %v, want 3 active, 0 pending", got)
	}
	if got := log.count("evalsha"); got != 2*len(calls) {
		t.Errorf("pipeline sent %d EVALSHAs, want %d", got, 2*len(calls))
	}
	if got := log.count("eval"); got != 0 {
		t.Errorf("sent EVAL %d times", got)
	}
}

func TestRealServerRestart(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t, redistest.WithPersistence())
	ownServer(t, srv)
	client := srv.Client(t)
	b := bundle(t)
	l := New(client, b)
	if err := l.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	q := queue(t, uniq("restart"))
	if _, err := l.Run(ctx, q, "enqueue", enqueueArgs(t, b, "a")...); err != nil {
		t.Fatalf("enqueue: %v", err)
	}

	srv.Restart(t)
	if missing := missingScripts(ctx, t, client, b); len(missing) != len(b.Scripts()) {
		t.Fatalf("after a restart the server still has some scripts (missing only %v); the test proves nothing", missing)
	}
	v, err := l.Run(ctx, q, "dequeue", dequeueArgs(t, b, 1)...)
	if err != nil {
		t.Fatalf("Run after restart: %v", err)
	}
	if ls := leases(t, v); len(ls) != 1 || ls[0].id != "a" {
		t.Errorf("dequeue after restart leased %v, want a (kept by the AOF)", ls)
	}

	srv.Restart(t)
	res := l.RunPipelined(ctx, []Call{{Queue: q, Script: "queue-info"}, {Queue: q, Script: "queue-info"}})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("pipelined call %d after restart: %v", i, r.Err)
		}
		if got := info(t, r.Value)["active"]; got != 1 {
			t.Errorf("pipelined queue-info %d: active = %d, want 1", i, got)
		}
	}
}

// nodeScripts maps every node ForEachShard reaches to the scripts it lacks.
func nodeScripts(ctx context.Context, t *testing.T, cc *redis.ClusterClient, l *Loader) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string][]string{}
	err := cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
		exists, err := node.ScriptExists(ctx, allSHAs(l.Bundle())...).Result()
		if err != nil {
			return fmt.Errorf("SCRIPT EXISTS on %s: %w", node.Options().Addr, err)
		}
		var missing []string
		for i, s := range l.Bundle().Scripts() {
			if !exists[i] {
				missing = append(missing, s.Name)
			}
		}
		mu.Lock()
		out[node.Options().Addr] = missing
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// checkAllNodes fails unless every node of the cluster is in nodes and
// lacks no script (all = true) or lacks every script (all = false).
func checkAllNodes(t *testing.T, cl *redistest.Cluster, nodes map[string][]string, loaded bool, when string) {
	t.Helper()
	b := bundle(t)
	for _, addr := range cl.Addrs() {
		missing, ok := nodes[addr]
		switch {
		case !ok:
			t.Errorf("%s: ForEachShard did not reach node %s", when, addr)
		case loaded && len(missing) > 0:
			t.Errorf("%s: node %s lacks %v", when, addr, missing)
		case !loaded && len(missing) != len(b.Scripts()):
			t.Errorf("%s: node %s lacks only %v, want all scripts gone", when, addr, missing)
		}
	}
}

// waitReplicasRoutable waits until CLUSTER SLOTS on every node lists every
// node. Redis 7 leaves a replica out of CLUSTER SLOTS until it has a
// non-zero replication offset (its master has had a write) and gossip has
// spread that, and go-redis (ForEachShard included) only knows the nodes
// CLUSTER SLOTS lists.
func waitReplicasRoutable(ctx context.Context, t *testing.T, cl *redistest.Cluster) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		short := ""
		for _, addr := range cl.Addrs() {
			c := redis.NewClient(&redis.Options{Addr: addr})
			// go-redis's ClusterClient builds its routing from CLUSTER SLOTS
			// (its osscluster.go), so this waits on that very view.
			//lint:ignore SA1019 the client under test still reads CLUSTER SLOTS, not CLUSTER SHARDS.
			slots, err := c.ClusterSlots(ctx).Result()
			_ = c.Close()
			if err != nil {
				t.Fatalf("CLUSTER SLOTS on %s: %v", addr, err)
			}
			seen := map[string]bool{}
			for _, r := range slots {
				for _, n := range r.Nodes {
					seen[n.Addr] = true
				}
			}
			if len(seen) != len(cl.Addrs()) {
				short = fmt.Sprintf("node %s lists %d of %d nodes", addr, len(seen), len(cl.Addrs()))
				break
			}
		}
		if short == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas never became routable: %s", short)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRealCluster(t *testing.T) {
	ctx := context.Background()
	start := time.Now()
	cl := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster of %d nodes up in %v", len(cl.Addrs()), time.Since(start).Round(time.Millisecond))
	cc := cl.Client(t)
	b := bundle(t)
	l := New(cc, b)

	// One queue per master: their hash tags land in slots each master owns.
	var masters []redistest.Node
	for _, n := range cl.Nodes() {
		if n.Role == redistest.RoleMaster {
			masters = append(masters, n)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("cluster has %d masters, want 3", len(masters))
	}
	owner := func(q keys.Queue) int {
		slot := redistest.KeySlot(q.Key("meta"))
		for i, m := range masters {
			for _, r := range m.Slots {
				if slot >= r[0] && slot <= r[1] {
					return i
				}
			}
		}
		t.Fatalf("no master owns slot %d", slot)
		return -1
	}
	queues := make([]keys.Queue, len(masters))
	found := 0
	for i := 0; found < len(masters); i++ {
		q := queue(t, "cluster-"+strconv.Itoa(i))
		if o := owner(q); queues[o].Name() == "" {
			queues[o] = q
			found++
		}
	}

	// On the fresh cluster no master has had a write, so CLUSTER SLOTS (and
	// thus ForEachShard) shows the masters only; Load reaches all of them.
	if err := l.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	nodes := nodeScripts(ctx, t, cc, l)
	for _, m := range masters {
		if missing, ok := nodes[m.Addr]; !ok || len(missing) > 0 {
			t.Errorf("after Load: master %s reached %v, lacks %v", m.Addr, ok, missing)
		}
	}

	for i, q := range queues {
		if _, err := l.Run(ctx, q, "enqueue", enqueueArgs(t, b, "a", "b")...); err != nil {
			t.Fatalf("enqueue on %s: %v", q.Name(), err)
		}
		// The task landed on the master that owns the queue's slot.
		direct := redis.NewClient(&redis.Options{Addr: masters[i].Addr})
		n, err := direct.LLen(ctx, q.Key("pending")).Result()
		_ = direct.Close()
		if err != nil || n != 2 {
			t.Errorf("LLEN %s on master %s = %d, %v; want 2", q.Key("pending"), masters[i].Addr, n, err)
		}
	}

	// Now every master has had a write; once the replicas show up in
	// CLUSTER SLOTS, Load reaches every node, replicas included.
	waitReplicasRoutable(ctx, t, cl)
	if err := l.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	checkAllNodes(t, cl, nodeScripts(ctx, t, cc, l), true, "after Load")

	dequeueAll := func(when string) {
		t.Helper()
		calls := make([]Call, len(queues))
		for i, q := range queues {
			calls[i] = Call{Queue: q, Script: "dequeue", Args: dequeueArgs(t, b, 1)}
		}
		for i, r := range l.RunPipelined(ctx, calls) {
			if r.Err != nil {
				t.Fatalf("%s: pipelined dequeue on %s: %v", when, queues[i].Name(), r.Err)
			}
			if ls := leases(t, r.Value); len(ls) != 1 {
				t.Errorf("%s: dequeue on %s leased %v, want one task", when, queues[i].Name(), ls)
			}
		}
	}
	dequeueAll("pipeline across masters")

	flushAll := func() {
		t.Helper()
		err := cc.ForEachShard(ctx, func(ctx context.Context, node *redis.Client) error {
			return node.ScriptFlush(ctx).Err()
		})
		if err != nil {
			t.Fatalf("SCRIPT FLUSH on all nodes: %v", err)
		}
		checkAllNodes(t, cl, nodeScripts(ctx, t, cc, l), false, "after SCRIPT FLUSH")
	}

	flushAll()
	for _, q := range queues {
		v, err := l.Run(ctx, q, "queue-info")
		if err != nil {
			t.Fatalf("Run on %s after SCRIPT FLUSH: %v", q.Name(), err)
		}
		if got := info(t, v); got["pending"] != 1 || got["active"] != 1 {
			t.Errorf("queue-info on %s = %v, want 1 pending, 1 active", q.Name(), got)
		}
	}
	checkAllNodes(t, cl, nodeScripts(ctx, t, cc, l), true, "after NOSCRIPT recovery")

	flushAll()
	dequeueAll("pipeline after SCRIPT FLUSH")
	checkAllNodes(t, cl, nodeScripts(ctx, t, cc, l), true, "after pipelined NOSCRIPT recovery")

	// Replicas were loaded too: after a failover the promoted replica runs
	// the scripts without a NOSCRIPT, so no reload happens.
	loads := l.loads.Load()
	start = time.Now()
	promoted := cl.Failover(t, masters[0].Addr)
	t.Logf("failover %s -> %s in %v", masters[0].Addr, promoted, time.Since(start).Round(time.Millisecond))
	v, err := l.Run(ctx, queues[0], "queue-info")
	if err != nil {
		t.Fatalf("Run after failover: %v", err)
	}
	if got := info(t, v); got["active"] != 2 {
		t.Errorf("queue-info after failover = %v, want 2 active", got)
	}
	if got := l.loads.Load(); got != loads {
		t.Errorf("Run after failover reloaded the bundle (%d loads, was %d): the replica had not been loaded", got, loads)
	}
}
