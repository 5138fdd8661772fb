package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// MasterName is the name the sentinels of [StartSentinel] monitor the
	// master under (FailoverOptions.MasterName).
	MasterName = "luaq"

	numSentinels         = 3
	sentinelQuorum       = 2
	sentinelReadyTimeout = 30 * time.Second
	// sentinelDownAfter is how long an instance may not answer before a
	// sentinel thinks it down. Long, so that a loaded machine does not
	// start failovers of its own; the tests ask for theirs.
	sentinelDownAfter = 10 * time.Second
	// pauseTimeout bounds the write pause of Failover, should the test die
	// before lifting it.
	pauseTimeout   = time.Minute
	rolePollPeriod = 5 * time.Millisecond
)

// Sentinel is a Redis Sentinel deployment for one test, started by
// [StartSentinel]: a master, a replica and three sentinels that monitor the
// master as [MasterName] with quorum 2, every process on its own free
// loopback port with its own temporary directory (and, for a sentinel, its
// own configuration file there).
type Sentinel struct {
	data      []*Server // the initial master, then the replica
	sentinels []*Server
	admin     map[string]*redis.Client // per data node
	watchers  []*redis.SentinelClient  // one per sentinel
}

// StartSentinel starts a master, a replica of it and three sentinels, and
// waits until every sentinel reports the master, knows the replica with an
// up replication link, and knows the two other sentinels. Everything is
// killed when the test ends. opts apply to the initial master only (for
// example WithArgs to rename commands on it).
//
// If redis-server or redis-sentinel is not on PATH the test is skipped, or
// failed when LUAQ_REQUIRE_REDIS=1 (Debian packages redis-server and
// redis-sentinel). LUAQ_REDIS_URL is ignored: the deployment is always
// local.
func StartSentinel(t testing.TB, opts ...Option) *Sentinel {
	t.Helper()
	const skipMsg = "redis-server and redis-sentinel are needed on PATH to start a Sentinel deployment"
	bin := lookBinary(t, "redis-server", skipMsg)
	sbin := lookBinary(t, "redis-sentinel", skipMsg)

	var mcfg config
	for _, o := range opts {
		o(&mcfg)
	}
	// Replicas sync at once instead of after the default 5 s, both ways.
	fast := []string{"--repl-diskless-sync-delay", "0"}
	mcfg.args = append(slices.Clone(fast), mcfg.args...)
	master := startLocal(t, bin, mcfg)
	host, port, _ := net.SplitHostPort(master.Addr())
	replica := startLocal(t, bin, config{args: append(fast, "--replicaof", host, port)})

	s := &Sentinel{data: []*Server{master, replica}, admin: map[string]*redis.Client{}}
	for _, n := range s.data {
		a := redis.NewClient(&redis.Options{Addr: n.Addr(), DisableIdentity: true})
		t.Cleanup(func() { _ = a.Close() })
		s.admin[n.Addr()] = a
	}
	for range numSentinels {
		sn := startProcess(t, func(dir string) (*Server, error) { return newSentinel(sbin, dir, master.Addr()) })
		s.sentinels = append(s.sentinels, sn)
		w := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr(), DisableIdentity: true})
		t.Cleanup(func() { _ = w.Close() })
		s.watchers = append(s.watchers, w)
	}

	ctx, cancel := context.WithTimeout(context.Background(), sentinelReadyTimeout)
	defer cancel()
	err := poll(ctx, clusterPollInterval, func() error { return s.checkMonitored(ctx, master.Addr(), replica.Addr()) })
	if err != nil {
		t.Fatalf("redistest: sentinels not ready within %v: %v%s", sentinelReadyTimeout, err, s.logTails())
	}
	return s
}

// newSentinel prepares (but does not launch) a sentinel in dir on a free
// port, monitoring masterAddr. Its configuration file lives in dir, where
// the sentinel rewrites it as it learns.
func newSentinel(bin, dir, masterAddr string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	host, mport, _ := net.SplitHostPort(masterAddr)
	conf := strings.Join([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + dir,
		"logfile " + filepath.Join(dir, logFileName),
		fmt.Sprintf("sentinel monitor %s %s %s %d", MasterName, host, mport, sentinelQuorum),
		fmt.Sprintf("sentinel down-after-milliseconds %s %d", MasterName, sentinelDownAfter.Milliseconds()),
		"",
	}, "\n")
	path := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write sentinel config: %w", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return &Server{url: "redis://" + addr, addr: addr, dir: dir, bin: bin, args: []string{path}}, nil
}

// checkMonitored reports why the sentinels do not yet all agree that master
// is the master with replica attached, or nil.
func (s *Sentinel) checkMonitored(ctx context.Context, master, replica string) error {
	for i, w := range s.watchers {
		at := s.sentinels[i].Addr()
		got, err := s.reportedMaster(ctx, w)
		if err != nil {
			return fmt.Errorf("sentinel %s: %w", at, err)
		}
		if got != master {
			return fmt.Errorf("sentinel %s reports master %s, want %s", at, got, master)
		}
		m, err := w.Master(ctx, MasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL MASTER: %w", at, err)
		}
		if m["flags"] != "master" || m["num-other-sentinels"] != strconv.Itoa(numSentinels-1) {
			return fmt.Errorf("sentinel %s: master flags %q, %s other sentinels, want master and %d", at, m["flags"], m["num-other-sentinels"], numSentinels-1)
		}
		replicas, err := w.Replicas(ctx, MasterName).Result()
		if err != nil {
			return fmt.Errorf("sentinel %s: SENTINEL REPLICAS: %w", at, err)
		}
		if !slices.ContainsFunc(replicas, func(r map[string]string) bool {
			return net.JoinHostPort(r["ip"], r["port"]) == replica && r["flags"] == "slave" && r["master-link-status"] == "ok"
		}) {
			return fmt.Errorf("sentinel %s does not list %s as a healthy replica: %v", at, replica, replicas)
		}
	}
	return nil
}

// reportedMaster returns the master address a sentinel reports.
func (s *Sentinel) reportedMaster(ctx context.Context, w *redis.SentinelClient) (string, error) {
	hp, err := w.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	if len(hp) != 2 {
		return "", fmt.Errorf("SENTINEL GET-MASTER-ADDR-BY-NAME: reply %v", hp)
	}
	return net.JoinHostPort(hp[0], hp[1]), nil
}

// SentinelAddrs returns the sentinels' addresses (FailoverOptions.SentinelAddrs).
func (s *Sentinel) SentinelAddrs() []string {
	addrs := make([]string, len(s.sentinels))
	for i, sn := range s.sentinels {
		addrs[i] = sn.Addr()
	}
	return addrs
}

// Addrs returns the data nodes' addresses: the initial master, then the
// initial replica.
func (s *Sentinel) Addrs() []string {
	return []string{s.data[0].Addr(), s.data[1].Addr()}
}

// Server returns the data node or sentinel at addr for process control, or
// nil if none has that address.
func (s *Sentinel) Server(addr string) *Server {
	for _, n := range append(slices.Clone(s.data), s.sentinels...) {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

// FailoverClient returns a new go-redis Sentinel client (NewFailoverClient)
// over all three sentinels, closed when the test ends. extra, if not nil,
// may change the options first.
func (s *Sentinel) FailoverClient(t testing.TB, extra func(*redis.FailoverOptions)) *redis.Client {
	t.Helper()
	opt := &redis.FailoverOptions{MasterName: MasterName, SentinelAddrs: s.SentinelAddrs()}
	if extra != nil {
		extra(opt)
	}
	c := redis.NewFailoverClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Role returns the role the data node at addr reports in ROLE: "master" or
// "slave".
func (s *Sentinel) Role(ctx context.Context, addr string) (string, error) {
	a, ok := s.admin[addr]
	if !ok {
		return "", fmt.Errorf("%s is not a data node of this deployment", addr)
	}
	v, err := a.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", fmt.Errorf("ROLE on %s: %w", addr, err)
	}
	if len(v) == 0 {
		return "", fmt.Errorf("ROLE on %s: empty reply", addr)
	}
	role, _ := v[0].(string)
	return role, nil
}

// Switchover describes a failover done by [Sentinel.Failover].
type Switchover struct {
	// Old is the address of the master before the failover.
	Old string
	// New is the address of the promoted replica.
	New string
	// Promoted is when the replica was first seen reporting role master
	// (it is polled every 5 ms, so this is at most that late).
	Promoted time.Time
	// Switched is when every sentinel was first seen reporting New.
	Switched time.Time
}

// Failover has the sentinels fail the master over to the replica with
// SENTINEL FAILOVER, as a planned switchover in which no acknowledged write
// can be lost: it pauses writes on the master (CLIENT PAUSE WRITE), waits
// until the replica has everything, sends SENTINEL FAILOVER, waits until
// the replica reports role master and every sentinel reports it as the
// master, then fences the old master (min-replicas-to-write 1: having no
// replica, it refuses every write with NOREPLICAS) and lifts the pause.
// Writes sent to the old master meanwhile wait, and fail unless their
// client moves them to the new master first. Whether the sentinels later
// turn the old master into a replica (about 8 s on) is up to them: they
// cannot if it was started with REPLICAOF and SLAVEOF renamed away.
func (s *Sentinel) Failover(t testing.TB) Switchover {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sentinelReadyTimeout)
	defer cancel()
	old, err := s.reportedMaster(ctx, s.watchers[0])
	if err != nil {
		t.Fatalf("redistest: Failover: %v", err)
	}
	var sw Switchover
	for _, a := range s.Addrs() {
		if a != old {
			sw = Switchover{Old: old, New: a}
		}
	}
	if sw.New == "" {
		t.Fatalf("redistest: Failover: sentinels report %s, not one of %v", old, s.Addrs())
	}
	if err := s.pauseAndSync(ctx, sw); err != nil {
		t.Fatalf("redistest: Failover: %v%s", err, s.logTails())
	}
	if err := s.watchers[0].Failover(ctx, MasterName).Err(); err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER on %s: %v", s.sentinels[0].Addr(), err)
	}
	err = poll(ctx, rolePollPeriod, func() error {
		role, err := s.Role(ctx, sw.New)
		if err == nil && role != "master" {
			err = fmt.Errorf("%s is still %s", sw.New, role)
		}
		return err
	})
	if err != nil {
		t.Fatalf("redistest: Failover: replica not promoted: %v%s", err, s.logTails())
	}
	sw.Promoted = time.Now()
	err = poll(ctx, rolePollPeriod, func() error {
		for i, w := range s.watchers {
			if got, err := s.reportedMaster(ctx, w); err != nil || got != sw.New {
				return fmt.Errorf("sentinel %s reports %s (%v), want %s", s.sentinels[i].Addr(), got, err, sw.New)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("redistest: Failover: sentinels did not switch: %v%s", err, s.logTails())
	}
	sw.Switched = time.Now()
	if err := s.fence(ctx, sw.Old); err != nil {
		t.Fatalf("redistest: Failover: %v", err)
	}
	return sw
}

// pauseAndSync pauses writes on sw.Old and waits until sw.New has
// replicated everything up to the pause.
func (s *Sentinel) pauseAndSync(ctx context.Context, sw Switchover) error {
	m := s.admin[sw.Old]
	if err := m.Do(ctx, "CLIENT", "PAUSE", pauseTimeout.Milliseconds(), "WRITE").Err(); err != nil {
		return fmt.Errorf("CLIENT PAUSE WRITE on %s: %w", sw.Old, err)
	}
	info, err := m.Info(ctx, "replication").Result()
	if err != nil {
		return fmt.Errorf("INFO replication on %s: %w", sw.Old, err)
	}
	want, err := strconv.ParseInt(infoField(info, "master_repl_offset"), 10, 64)
	if err != nil {
		return fmt.Errorf("INFO replication on %s: master_repl_offset: %w", sw.Old, err)
	}
	// At least: the master still sends its periodic PING to the replica
	// while paused, which moves both offsets on.
	return poll(ctx, rolePollPeriod, func() error {
		info, err := s.admin[sw.New].Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("INFO replication on %s: %w", sw.New, err)
		}
		got, err := strconv.ParseInt(infoField(info, "slave_repl_offset"), 10, 64)
		if err != nil || got < want {
			return fmt.Errorf("replica %s at offset %d (%v), master %s at %d", sw.New, got, err, sw.Old, want)
		}
		return nil
	})
}

// fence makes the old master refuse writes for good, then lifts the pause.
func (s *Sentinel) fence(ctx context.Context, old string) error {
	m := s.admin[old]
	if err := m.ConfigSet(ctx, "min-replicas-to-write", "1").Err(); err != nil {
		return fmt.Errorf("fence %s: %w", old, err)
	}
	if err := m.Do(ctx, "CLIENT", "UNPAUSE").Err(); err != nil {
		return fmt.Errorf("CLIENT UNPAUSE on %s: %w", old, err)
	}
	return nil
}

// WaitRole waits until the data node at addr reports role ("master" or
// "slave") or ctx ends, and returns when it was first seen so (it polls
// every 5 ms).
func (s *Sentinel) WaitRole(ctx context.Context, addr, role string) (time.Time, error) {
	err := poll(ctx, rolePollPeriod, func() error {
		got, err := s.Role(ctx, addr)
		if err == nil && got != role {
			err = fmt.Errorf("%s is %s, want %s", addr, got, role)
		}
		return err
	})
	if err != nil {
		return time.Time{}, err
	}
	return time.Now(), nil
}

// logTails formats every process's log tail for a failure message.
func (s *Sentinel) logTails() string {
	var b strings.Builder
	for _, n := range append(slices.Clone(s.data), s.sentinels...) {
		fmt.Fprintf(&b, "\n--- %s log tail ---\n%s", n.Addr(), n.LogTail())
	}
	return b.String()
}
