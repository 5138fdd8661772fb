package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// NumSlots is the number of hash slots in a Redis Cluster.
	NumSlots = 16384

	clusterCreateTimeout = 60 * time.Second
	clusterReadyTimeout  = 30 * time.Second
	clusterPollInterval  = 50 * time.Millisecond
)

// Role is a cluster node's role.
type Role string

// Cluster node roles.
const (
	RoleMaster  Role = "master"
	RoleReplica Role = "replica"
)

// Node describes one cluster node.
type Node struct {
	// Addr is the node's host:port.
	Addr string
	// ID is the node's cluster node ID.
	ID string
	// Role is the node's role.
	Role Role
	// MasterAddr is the address of the master a replica replicates; "" for
	// a master.
	MasterAddr string
	// Slots lists the hash slot ranges a master serves, as inclusive
	// [first, last] pairs; nil for a replica.
	Slots [][2]int
}

// Cluster is a local Redis Cluster started by [StartCluster] for one test.
type Cluster struct {
	servers      []*Server
	admin        map[string]*redis.Client // per node address, for inspection
	masters      int
	replicas     int
	clientsMu    sync.Mutex
	clients      []*redis.ClusterClient
	nodesMu      sync.Mutex
	nodes        []Node
	failoverLock sync.Mutex // one Failover at a time
}

// StartCluster starts masters*(1+replicasPerMaster) redis-server nodes, each
// on its own free loopback port and in its own temporary directory, joins
// them with `redis-cli --cluster create`, and waits until every node reports
// cluster_state:ok, all nodes agree on who serves all 16384 slots, and every
// replica is attached to its master. Everything is killed when the test
// ends.
//
// Redis Cluster needs at least 3 masters, and the nodes need Redis >= 7
// (the cluster bus port is set with --cluster-port). If redis-server or
// redis-cli is not on PATH the test is skipped, or failed when
// LUAQ_REQUIRE_REDIS=1. LUAQ_REDIS_URL is ignored: the cluster is always
// local.
func StartCluster(t testing.TB, masters, replicasPerMaster int) *Cluster {
	t.Helper()
	if masters < 3 {
		t.Fatalf("redistest: StartCluster(%d, %d): Redis Cluster needs at least 3 masters", masters, replicasPerMaster)
	}
	if replicasPerMaster < 0 {
		t.Fatalf("redistest: StartCluster(%d, %d): negative replica count", masters, replicasPerMaster)
	}
	const skipMsg = "redis-server and redis-cli are needed on PATH to start a local Redis Cluster"
	bin := lookBinary(t, "redis-server", skipMsg)
	cli := lookBinary(t, "redis-cli", skipMsg)

	total := masters * (1 + replicasPerMaster)
	c := &Cluster{masters: masters, replicas: replicasPerMaster, admin: make(map[string]*redis.Client, total)}
	addrs := make([]string, 0, total)
	for range total {
		s := startLocal(t, bin, config{cluster: true})
		c.servers = append(c.servers, s)
		addrs = append(addrs, s.Addr())
		a := redis.NewClient(&redis.Options{Addr: s.Addr(), DisableIdentity: true})
		t.Cleanup(func() { _ = a.Close() })
		c.admin[s.Addr()] = a
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: %s %s: %v\n%s%s", cli, strings.Join(args, " "), err, out, c.logTails())
	}

	ctx, cancel = context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()
	if err := c.waitReady(ctx, nil); err != nil {
		t.Fatalf("redistest: cluster on %v not ready within %v: %v%s", addrs, clusterReadyTimeout, err, c.logTails())
	}
	return c
}

// Addrs returns the addresses of all nodes, masters and replicas, in start
// order.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.servers))
	for i, s := range c.servers {
		addrs[i] = s.Addr()
	}
	return addrs
}

// Server returns the node at addr for process control (Kill, Restart, ...),
// or nil if no node has that address.
func (c *Cluster) Server(addr string) *Server {
	for _, s := range c.servers {
		if s.Addr() == addr {
			return s
		}
	}
	return nil
}

// Nodes returns every node with its role as of startup or the last
// Failover, masters first, each group sorted by address.
func (c *Cluster) Nodes() []Node {
	c.nodesMu.Lock()
	defer c.nodesMu.Unlock()
	out := make([]Node, len(c.nodes))
	for i, n := range c.nodes {
		n.Slots = slices.Clone(n.Slots)
		out[i] = n
	}
	return out
}

// Client returns a new go-redis cluster client seeded with all node
// addresses, closed when the test ends. Failover refreshes its slot map.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	c.clientsMu.Lock()
	c.clients = append(c.clients, cc)
	c.clientsMu.Unlock()
	t.Cleanup(func() {
		c.clientsMu.Lock()
		c.clients = slices.DeleteFunc(c.clients, func(x *redis.ClusterClient) bool { return x == cc })
		c.clientsMu.Unlock()
		_ = cc.Close()
	})
	return cc
}

// Failover promotes one of masterAddr's replicas with CLUSTER FAILOVER (the
// coordinated manual failover: the master stops accepting writes until the
// replica has caught up, so no acknowledged write is lost). It waits until
// the replica reports role master, every node agrees on the new slot owner
// and all replicas (the old master included) are attached again, then
// reloads the slot map of every client from Client and waits until each
// routes the moved slots to the new master. It returns the new master's
// address. The old master must be up; the cluster must have replicas.
func (c *Cluster) Failover(t testing.TB, masterAddr string) string {
	t.Helper()
	c.failoverLock.Lock()
	defer c.failoverLock.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
	defer cancel()

	var master *Node
	var replica string
	for _, n := range c.Nodes() {
		if n.Addr == masterAddr && n.Role == RoleMaster {
			master = &n
		}
		if n.Role == RoleReplica && n.MasterAddr == masterAddr && replica == "" {
			replica = n.Addr
		}
	}
	if master == nil {
		t.Fatalf("redistest: Failover(%s): not a master of this cluster; nodes: %+v", masterAddr, c.Nodes())
	}
	if replica == "" {
		t.Fatalf("redistest: Failover(%s): master has no replica", masterAddr)
	}
	if err := c.admin[replica].ClusterFailover(ctx).Err(); err != nil {
		t.Fatalf("redistest: CLUSTER FAILOVER on %s (replica of %s): %v", replica, masterAddr, err)
	}
	promoted := func(nodes []Node) error {
		for _, n := range nodes {
			if n.Addr == replica && n.Role != RoleMaster {
				return fmt.Errorf("%s is still %s", replica, n.Role)
			}
			if n.Addr == masterAddr && (n.Role != RoleReplica || n.MasterAddr != replica) {
				return fmt.Errorf("old master %s is %s of %q, want replica of %s", masterAddr, n.Role, n.MasterAddr, replica)
			}
		}
		return nil
	}
	if err := c.waitReady(ctx, promoted); err != nil {
		t.Fatalf("redistest: failover of %s to %s did not complete within %v: %v%s", masterAddr, replica, clusterReadyTimeout, err, c.logTails())
	}

	// A key in one of the moved slots: clients must route it to the replica.
	probe := keyInSlot(master.Slots[0][0])
	c.clientsMu.Lock()
	clients := slices.Clone(c.clients)
	c.clientsMu.Unlock()
	for i, cc := range clients {
		err := poll(ctx, clusterPollInterval, func() error {
			cc.ReloadState(ctx) // asynchronous; poll for its effect
			node, err := cc.MasterForKey(ctx, probe)
			if err != nil {
				return fmt.Errorf("MasterForKey(%q): %w", probe, err)
			}
			if got := node.Options().Addr; got != replica {
				return fmt.Errorf("client routes slot %d to %s, want %s", master.Slots[0][0], got, replica)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("redistest: failover to %s: cluster client %d did not refresh its slot map: %v", replica, i, err)
		}
	}
	return replica
}

// waitReady polls until the cluster is healthy (see checkReady) and extra,
// if not nil, accepts the agreed node list; then it records that list.
func (c *Cluster) waitReady(ctx context.Context, extra func([]Node) error) error {
	var nodes []Node
	err := poll(ctx, clusterPollInterval, func() error {
		var err error
		if nodes, err = c.checkReady(ctx); err != nil {
			return err
		}
		if extra != nil {
			return extra(nodes)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.nodesMu.Lock()
	c.nodes = nodes
	c.nodesMu.Unlock()
	return nil
}

// checkReady returns the cluster's node list if every node reports a
// healthy cluster of the expected shape, all nodes describe it identically,
// and every replica's replication link is up.
func (c *Cluster) checkReady(ctx context.Context) ([]Node, error) {
	total := len(c.servers)
	var agreed []Node
	var agreedBy string
	for _, s := range c.servers {
		a := c.admin[s.Addr()]
		info, err := a.ClusterInfo(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER INFO on %s: %w", s.Addr(), err)
		}
		for _, want := range []struct{ key, val string }{
			{"cluster_state", "ok"},
			{"cluster_slots_assigned", strconv.Itoa(NumSlots)},
			{"cluster_slots_ok", strconv.Itoa(NumSlots)},
			{"cluster_known_nodes", strconv.Itoa(total)},
			{"cluster_size", strconv.Itoa(c.masters)},
		} {
			if got := infoField(info, want.key); got != want.val {
				return nil, fmt.Errorf("%s reports %s:%s, want %s", s.Addr(), want.key, got, want.val)
			}
		}
		text, err := a.ClusterNodes(ctx).Result()
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES on %s: %w", s.Addr(), err)
		}
		nodes, err := parseClusterNodes(text)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES on %s: %w", s.Addr(), err)
		}
		if err := checkShape(nodes, c.masters, c.replicas); err != nil {
			return nil, fmt.Errorf("view of %s: %w", s.Addr(), err)
		}
		if agreed == nil {
			agreed, agreedBy = nodes, s.Addr()
		} else if !nodesEqual(agreed, nodes) {
			return nil, fmt.Errorf("%s and %s disagree:\n%+v\n%+v", agreedBy, s.Addr(), agreed, nodes)
		}
	}
	for _, n := range agreed {
		info, err := c.admin[n.Addr].Info(ctx, "replication").Result()
		if err != nil {
			return nil, fmt.Errorf("INFO replication on %s: %w", n.Addr, err)
		}
		switch n.Role {
		case RoleMaster:
			if got := infoField(info, "connected_slaves"); got != strconv.Itoa(c.replicas) {
				return nil, fmt.Errorf("master %s has %s connected replicas, want %d", n.Addr, got, c.replicas)
			}
		case RoleReplica:
			if got := infoField(info, "role"); got != "slave" {
				return nil, fmt.Errorf("replica %s reports role %s", n.Addr, got)
			}
			if got := infoField(info, "master_link_status"); got != "up" {
				return nil, fmt.Errorf("replica %s: master_link_status:%s", n.Addr, got)
			}
			if got := "127.0.0.1:" + infoField(info, "master_port"); got != n.MasterAddr {
				return nil, fmt.Errorf("replica %s replicates %s, cluster says %s", n.Addr, got, n.MasterAddr)
			}
		}
	}
	return agreed, nil
}

// checkShape verifies one node's view: masters serving all slots without
// overlap, each with the expected number of replicas, and no failing nodes.
func checkShape(nodes []Node, masters, replicas int) error {
	var covered [NumSlots]bool
	perMaster := map[string]int{}
	nMasters := 0
	for _, n := range nodes {
		switch n.Role {
		case RoleMaster:
			nMasters++
			if len(n.Slots) == 0 {
				return fmt.Errorf("master %s serves no slots", n.Addr)
			}
			for _, r := range n.Slots {
				for s := r[0]; s <= r[1]; s++ {
					if covered[s] {
						return fmt.Errorf("slot %d served twice", s)
					}
					covered[s] = true
				}
			}
		case RoleReplica:
			perMaster[n.MasterAddr]++
		}
	}
	if nMasters != masters {
		return fmt.Errorf("%d masters, want %d", nMasters, masters)
	}
	if i := slices.Index(covered[:], false); i >= 0 {
		return fmt.Errorf("slot %d not served", i)
	}
	for _, n := range nodes {
		if n.Role == RoleMaster && perMaster[n.Addr] != replicas {
			return fmt.Errorf("master %s has %d replicas, want %d", n.Addr, perMaster[n.Addr], replicas)
		}
	}
	return nil
}

// parseClusterNodes parses a CLUSTER NODES reply into nodes sorted masters
// first, then by address. Nodes flagged as failing, in handshake or without
// address are reported as errors: the cluster is not settled.
func parseClusterNodes(text string) ([]Node, error) {
	type raw struct {
		node     Node
		masterID string
	}
	var raws []raw
	addrOf := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("short line %q", line)
		}
		// <id> <ip:port@cport[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
		addr, _, _ := strings.Cut(f[1], "@")
		flags := strings.Split(f[2], ",")
		for _, bad := range []string{"fail", "fail?", "handshake", "noaddr"} {
			if slices.Contains(flags, bad) {
				return nil, fmt.Errorf("node %s flagged %s", addr, f[2])
			}
		}
		if f[7] != "connected" {
			return nil, fmt.Errorf("node %s link %s", addr, f[7])
		}
		r := raw{node: Node{Addr: addr, ID: f[0]}}
		switch {
		case slices.Contains(flags, "master"):
			r.node.Role = RoleMaster
			for _, spec := range f[8:] {
				if strings.HasPrefix(spec, "[") {
					return nil, fmt.Errorf("node %s has slot migration %s in progress", addr, spec)
				}
				lo, hi, isRange := strings.Cut(spec, "-")
				if !isRange {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 != nil || err2 != nil || a < 0 || b >= NumSlots || a > b {
					return nil, fmt.Errorf("node %s: bad slot range %q", addr, spec)
				}
				r.node.Slots = append(r.node.Slots, [2]int{a, b})
			}
		case slices.Contains(flags, "slave"):
			r.node.Role = RoleReplica
			r.masterID = f[3]
		default:
			return nil, fmt.Errorf("node %s has no role in flags %s", addr, f[2])
		}
		addrOf[r.node.ID] = addr
		raws = append(raws, r)
	}
	nodes := make([]Node, 0, len(raws))
	for _, r := range raws {
		if r.node.Role == RoleReplica {
			m, ok := addrOf[r.masterID]
			if !ok {
				return nil, fmt.Errorf("replica %s follows unknown node %s", r.node.Addr, r.masterID)
			}
			r.node.MasterAddr = m
		}
		nodes = append(nodes, r.node)
	}
	slices.SortFunc(nodes, func(a, b Node) int {
		if a.Role != b.Role {
			if a.Role == RoleMaster {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Addr, b.Addr)
	})
	return nodes, nil
}

func nodesEqual(a, b []Node) bool {
	return slices.EqualFunc(a, b, func(x, y Node) bool {
		return x.Addr == y.Addr && x.ID == y.ID && x.Role == y.Role &&
			x.MasterAddr == y.MasterAddr && slices.Equal(x.Slots, y.Slots)
	})
}

// logTails formats every node's log tail for a failure message.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, s := range c.servers {
		fmt.Fprintf(&b, "\n--- %s log tail ---\n%s", s.Addr(), s.LogTail())
	}
	return b.String()
}

// poll calls check until it returns nil or ctx ends, returning the last
// error in the latter case.
func poll(ctx context.Context, every time.Duration, check func() error) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		err := check()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// KeySlot returns the Redis Cluster hash slot of key, honouring {hash tags}.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key) % NumSlots)
}

// keyInSlot returns a short key that hashes to slot.
func keyInSlot(slot int) string {
	for i := 0; ; i++ {
		k := "redistest:probe:" + strconv.Itoa(i)
		if KeySlot(k) == slot {
			return k
		}
	}
}

// crc16 is CRC-16/XMODEM, the checksum Redis Cluster hashes keys with.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
