package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// uniqueKey keeps tests safe on a shared external server.
func uniqueKey(t *testing.T, name string) string {
	return fmt.Sprintf("redistest:%s:%d:%s", t.Name(), time.Now().UnixNano(), name)
}

func TestStartSetGet(t *testing.T) {
	s := Start(t)
	ctx := testContext(t)
	c := s.Client(t)

	if !s.External() {
		if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || strings.HasSuffix(s.Addr(), ":6379") {
			t.Errorf("Addr() = %q, want a 127.0.0.1 port other than 6379", s.Addr())
		}
		if want := "redis://" + s.Addr(); s.URL() != want {
			t.Errorf("URL() = %q, want %q", s.URL(), want)
		}
		if _, err := os.Stat(filepath.Join(s.Dir(), "redis.log")); err != nil {
			t.Errorf("log file: %v", err)
		}
		if tail := s.LogTail(); !strings.Contains(tail, "Ready to accept connections") {
			t.Errorf("LogTail() lacks the ready line:\n%s", tail)
		}
	}
	// The URL must reach the same server as the client.
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	viaURL := redis.NewClient(opt)
	defer viaURL.Close()

	tests := []struct {
		name  string
		value string
	}{
		{"plain", "hello"},
		{"empty", ""},
		{"binary", "\x00\xff\r\n\x01"},
		{"long", strings.Repeat("x", 1<<16)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := uniqueKey(t, tt.name)
			if err := c.Set(ctx, key, tt.value, time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			got, err := viaURL.Get(ctx, key).Result()
			if err != nil {
				t.Fatalf("GET: %v", err)
			}
			if got != tt.value {
				t.Errorf("GET = %q, want %q", got, tt.value)
			}
		})
	}
	if err := c.Get(ctx, uniqueKey(t, "missing")).Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET missing key: err = %v, want redis.Nil", err)
	}
}

func TestStartsDistinctServers(t *testing.T) {
	if os.Getenv(EnvURL) != "" {
		t.Skip("servers are shared when " + EnvURL + " is set")
	}
	ctx := testContext(t)
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() || a.Dir() == b.Dir() {
		t.Fatalf("two servers share addr or dir: %s %s / %s %s", a.Addr(), a.Dir(), b.Addr(), b.Dir())
	}
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("key written to server a is visible on server b (err=%v)", err)
	}
}

// skipIfExternal skips tests that need process control before they write
// anything to a shared server.
func skipIfExternal(t *testing.T, s *Server) {
	t.Helper()
	if s.External() {
		t.Skip("needs a server the test starts; " + EnvURL + " is set")
	}
}

func runID(t *testing.T, ctx context.Context, c *redis.Client) string {
	t.Helper()
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		t.Fatalf("INFO server: %v", err)
	}
	id := infoField(info, "run_id")
	if id == "" {
		t.Fatalf("no run_id in INFO server")
	}
	return id
}

func TestRestart(t *testing.T) {
	tests := []struct {
		name        string
		persistence bool
		down        func(s *Server, t testing.TB) // before Restart; nil: Restart alone
		wantKept    bool
	}{
		{"graceful with persistence", true, nil, true},
		{"graceful without persistence", false, nil, false},
		{"kill then restart with persistence", true, (*Server).Kill, true},
		{"kill then restart without persistence", false, (*Server).Kill, false},
		{"stop then restart with persistence", true, (*Server).Stop, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var opts []Option
			if tt.persistence {
				opts = append(opts, WithPersistence())
			}
			s := Start(t, opts...)
			skipIfExternal(t, s)
			ctx := testContext(t)
			c := s.Client(t)
			key := uniqueKey(t, "k")
			if err := c.Set(ctx, key, "v", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			before := runID(t, ctx, c)
			addr := s.Addr()

			if tt.down != nil {
				tt.down(s, t)
				if conn, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
					conn.Close()
					t.Fatalf("%s accepts connections while the server should be down", s.Addr())
				}
			}
			s.Restart(t)

			if s.Addr() != addr {
				t.Errorf("Addr changed across restart: %s -> %s", addr, s.Addr())
			}
			if after := runID(t, ctx, c); after == before {
				t.Errorf("run_id unchanged (%s): the server was not restarted", after)
			}
			got, err := c.Get(ctx, key).Result()
			switch {
			case tt.wantKept && err != nil:
				t.Errorf("GET after restart: %v, want the value kept\n%s", err, s.LogTail())
			case tt.wantKept && got != "v":
				t.Errorf("GET after restart = %q, want %q", got, "v")
			case !tt.wantKept && !errors.Is(err, redis.Nil):
				t.Errorf("GET after restart = %q, %v; want redis.Nil (no persistence)", got, err)
			}
		})
	}
}

// TestRestartUnderLoad restarts a persistent server while other goroutines
// write; every acknowledged INCR must survive, and the clients must work
// again afterwards.
func TestRestartUnderLoad(t *testing.T) {
	s := Start(t, WithPersistence())
	skipIfExternal(t, s)
	ctx := testContext(t)
	key := uniqueKey(t, "counter")

	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		c := s.Client(t)
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c.Incr(ctx, key).Err() == nil {
					acked.Add(1)
				}
				_ = s.LogTail() // concurrent reader of server state
			}
		})
	}
	waitAcked := func(n int64) {
		t.Helper()
		err := poll(ctx, time.Millisecond, func() error {
			if acked.Load() < n {
				return fmt.Errorf("only %d INCRs acknowledged", acked.Load())
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	waitAcked(50)
	s.Restart(t)
	afterRestart := acked.Load()
	waitAcked(afterRestart + 50) // clients recovered
	close(stop)
	wg.Wait()

	got, err := s.Client(t).Get(ctx, key).Int64()
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	// Failed INCRs may still have been applied, so got may exceed acked.
	if got < acked.Load() {
		t.Errorf("counter = %d, but %d INCRs were acknowledged", got, acked.Load())
	}
}

func TestExternalURL(t *testing.T) {
	local := Start(t)
	if local.External() {
		t.Skip("already running against " + EnvURL)
	}
	t.Setenv(EnvURL, local.URL())
	ext := Start(t, WithPersistence())
	if !ext.External() || ext.Addr() != local.Addr() || ext.Dir() != "" || ext.LogTail() != "" {
		t.Fatalf("Start with %s=%s: External=%v Addr=%q Dir=%q", EnvURL, local.URL(), ext.External(), ext.Addr(), ext.Dir())
	}
	ctx := testContext(t)
	key := uniqueKey(t, "k")
	if err := ext.Client(t).Set(ctx, key, "via-ext", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := local.Client(t).Get(ctx, key).Result(); err != nil || got != "via-ext" {
		t.Fatalf("GET via local client = %q, %v", got, err)
	}
	for name, f := range map[string]func(testing.TB){"Restart": ext.Restart, "Kill": ext.Kill, "Stop": ext.Stop} {
		var skipped bool
		t.Run(name, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			f(t)
		})
		if !skipped {
			t.Errorf("%s on an external server did not skip", name)
		}
	}
	if err := local.Client(t).Ping(ctx).Err(); err != nil {
		t.Errorf("server behind the external URL was disturbed: %v", err)
	}
}

func TestKeySlot(t *testing.T) {
	// Expected values from CLUSTER KEYSLOT on Redis 7.0.15; TestCluster also
	// cross-checks KeySlot against the live cluster.
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 12739}, // CRC-16/XMODEM check value 0x31C3
		{"foo", 12182},
		{"bar", 5061},
		{"{}", 15257},
		{"foo{}{bar}", 8363}, // empty first tag: whole key is hashed
		{"{user1000}.following", 3443},
		{"user1000", 3443},
		{"{{bar}}", 4015},
		{"a{b}c{d}", 3300},
		{"{b", 6215},
	}
	for _, tt := range tests {
		if got := KeySlot(tt.key); got != tt.want {
			t.Errorf("KeySlot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestCluster(t *testing.T) {
	const masters, replicas = 3, 1
	start := time.Now()
	cl := StartCluster(t, masters, replicas)
	t.Logf("cluster up in %v", time.Since(start))
	ctx := testContext(t)

	nodes := cl.Nodes()
	if len(nodes) != masters*(1+replicas) || len(cl.Addrs()) != len(nodes) {
		t.Fatalf("got %d nodes, %d addrs; want %d", len(nodes), len(cl.Addrs()), masters*(1+replicas))
	}
	roleOf := map[string]Role{}
	for _, n := range nodes {
		roleOf[n.Addr] = n.Role
	}
	var masterAddrs []string
	for _, n := range nodes {
		switch n.Role {
		case RoleMaster:
			masterAddrs = append(masterAddrs, n.Addr)
		case RoleReplica:
			if roleOf[n.MasterAddr] != RoleMaster {
				t.Errorf("replica %s follows %q, which is not a master", n.Addr, n.MasterAddr)
			}
		}
		if cl.Server(n.Addr) == nil {
			t.Errorf("Server(%s) = nil", n.Addr)
		}
	}
	if len(masterAddrs) != masters {
		t.Fatalf("got masters %v, want %d", masterAddrs, masters)
	}

	c := cl.Client(t)
	for _, key := range []string{"foo", "{a}b", "x{}y", "{{z}}", "k{1", "\x00\xff", "queue:{jobs}:ready"} {
		want, err := c.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %q: %v", key, err)
		}
		if got := KeySlot(key); int64(got) != want {
			t.Errorf("KeySlot(%q) = %d, server says %d", key, got, want)
		}
	}
	const nKeys = 500
	slots := map[int]bool{}
	owners := map[string]bool{}
	for i := range nKeys {
		key := fmt.Sprintf("k%d", i)
		slots[KeySlot(key)] = true
		if err := c.Set(ctx, key, fmt.Sprint(i), 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		m, err := c.MasterForKey(ctx, key)
		if err != nil {
			t.Fatalf("MasterForKey(%s): %v", key, err)
		}
		owners[m.Options().Addr] = true
	}
	if len(slots) < nKeys*9/10 || len(owners) != masters {
		t.Fatalf("keys hit %d slots on %d masters; want ~%d slots on all %d", len(slots), len(owners), nKeys, masters)
	}
	// Each master holds only its share: the keys really are spread.
	var sum int64
	for _, addr := range masterAddrs {
		n, err := cl.admin[addr].DBSize(ctx).Result()
		if err != nil {
			t.Fatalf("DBSIZE on %s: %v", addr, err)
		}
		if n == 0 || n == nKeys {
			t.Errorf("master %s holds %d of %d keys", addr, n, nKeys)
		}
		sum += n
	}
	if sum != nKeys {
		t.Errorf("masters hold %d keys in total, want %d", sum, nKeys)
	}

	old := masterAddrs[0]
	var want string
	for _, n := range nodes {
		if n.Role == RoleReplica && n.MasterAddr == old {
			want = n.Addr
		}
	}
	start = time.Now()
	promoted := cl.Failover(t, old)
	t.Logf("failover in %v", time.Since(start))
	if promoted != want {
		t.Errorf("Failover(%s) promoted %s, want its replica %s", old, promoted, want)
	}
	after := map[string]Node{}
	for _, n := range cl.Nodes() {
		after[n.Addr] = n
	}
	if n := after[promoted]; n.Role != RoleMaster {
		t.Errorf("after failover %s is %s, want master", promoted, n.Role)
	}
	if n := after[old]; n.Role != RoleReplica || n.MasterAddr != promoted {
		t.Errorf("after failover old master %s is %s of %q, want replica of %s", old, n.Role, n.MasterAddr, promoted)
	}
	info, err := cl.admin[promoted].Info(ctx, "replication").Result()
	if err != nil || infoField(info, "role") != "master" {
		t.Errorf("INFO replication on %s: role %q, err %v", promoted, infoField(info, "role"), err)
	}

	// No acknowledged write was lost, and the client routes to the new
	// master without needing a MOVED round trip first.
	for i := range nKeys {
		key := fmt.Sprintf("k%d", i)
		got, err := c.Get(ctx, key).Result()
		if err != nil || got != fmt.Sprint(i) {
			t.Fatalf("GET %s after failover = %q, %v; want %d", key, got, err, i)
		}
	}
	for i := range 100 {
		key := fmt.Sprintf("post%d", i)
		if err := c.Set(ctx, key, "x", 0).Err(); err != nil {
			t.Fatalf("SET %s after failover: %v", key, err)
		}
	}
	probe := keyInSlot(after[promoted].Slots[0][0])
	m, err := c.MasterForKey(ctx, probe)
	if err != nil || m.Options().Addr != promoted {
		t.Errorf("client routes %q to %v (err %v), want %s", probe, m, err, promoted)
	}
}
