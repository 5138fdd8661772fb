package redistest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestSentinel starts a deployment, writes through a go-redis Sentinel
// client, fails the master over, and checks that the sentinels and the
// client moved to the promoted replica, that no acknowledged write was lost,
// and that the old master refuses writes.
func TestSentinel(t *testing.T) {
	start := time.Now()
	s := StartSentinel(t)
	t.Logf("master, replica and 3 sentinels up in %v", time.Since(start).Round(time.Millisecond))
	ctx := testContext(t)

	data, sentinels := s.Addrs(), s.SentinelAddrs()
	all := append(slices.Clone(data), sentinels...)
	if len(data) != 2 || len(sentinels) != 3 || len(slices.Compact(slices.Sorted(slices.Values(all)))) != 5 {
		t.Fatalf("data nodes %v, sentinels %v: want 2 and 3 distinct addresses", data, sentinels)
	}
	confs := map[string]bool{}
	for _, a := range sentinels {
		conf := filepath.Join(s.Server(a).Dir(), "sentinel.conf")
		text, err := os.ReadFile(conf)
		if err != nil || !strings.Contains(string(text), "sentinel monitor "+MasterName) {
			t.Errorf("sentinel %s: config %s: %v\n%s", a, conf, err, text)
		}
		confs[conf] = true
	}
	if len(confs) != 3 {
		t.Errorf("sentinels share config files: %v", confs)
	}
	for i, want := range []string{"master", "slave"} {
		if role, err := s.Role(ctx, data[i]); err != nil || role != want {
			t.Errorf("%s reports role %q (%v), want %s", data[i], role, err, want)
		}
	}

	c := s.FailoverClient(t, nil)
	const n = 200
	for i := range n {
		if err := c.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the Sentinel client: %v", err)
		}
	}

	asked := time.Now()
	sw := s.Failover(t)
	t.Logf("%s promoted %v after the failover began; all sentinels switched %v later",
		sw.New, sw.Promoted.Sub(asked).Round(time.Millisecond), sw.Switched.Sub(sw.Promoted).Round(time.Millisecond))
	if sw.Old != data[0] || sw.New != data[1] || sw.Switched.Before(sw.Promoted) {
		t.Fatalf("Failover: %+v, want %s -> %s", sw, data[0], data[1])
	}
	if role, err := s.Role(ctx, sw.New); err != nil || role != "master" {
		t.Errorf("%s reports role %q (%v) after the failover, want master", sw.New, role, err)
	}
	err := s.admin[sw.Old].Set(ctx, "fenced", "x", 0).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Errorf("SET on the old master: %v, want NOREPLICAS", err)
	}
	// The client moves to the new master once its sentinel tells it.
	err = poll(ctx, 20*time.Millisecond, func() error { return c.Set(ctx, "after", "x", 0).Err() })
	if err != nil {
		t.Fatalf("SET through the Sentinel client after the failover: %v", err)
	}
	newMaster := redis.NewClient(&redis.Options{Addr: sw.New})
	defer newMaster.Close()
	for i := range n {
		if got, err := newMaster.Get(ctx, fmt.Sprintf("k%d", i)).Int(); err != nil || got != i {
			t.Fatalf("GET k%d on the new master: %d, %v", i, got, err)
		}
	}
	if got, err := newMaster.Get(ctx, "after").Result(); err != nil || got != "x" {
		t.Errorf("the write after the failover is not on the new master: %q, %v", got, err)
	}
}
