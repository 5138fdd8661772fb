package sdk

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/loader"
	"github.com/redis/go-redis/v9"
)

// Helpers of the janitor, expiry, unique-key, retention and residue tests.

// testQueueKeys returns the key builder of a queue name the test knows is valid.
func testQueueKeys(t *testing.T, queue string) keys.Queue {
	t.Helper()
	q, err := keys.ForQueue(queue)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// newTestJanitor builds a standalone janitor over rdb with a captured log
// (printed when the test fails) and a 1ms reclaim backoff unless cfg sets
// one.
func newTestJanitor(t *testing.T, rdb redis.UniversalClient, cfg JanitorConfig) *Janitor {
	t.Helper()
	logs := &logCapture{}
	if cfg.Logger == nil {
		cfg.Logger = logs.logger()
	}
	if cfg.ReclaimBackoff == 0 {
		cfg.ReclaimBackoff = time.Millisecond
	}
	j, err := NewJanitor(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("janitor %s log:\n%s", j.Owner(), logs)
		}
	})
	return j
}

// cleanOnce runs one janitor round and fails the test on an error.
func cleanOnce(t *testing.T, j *Janitor) JanitorReport {
	t.Helper()
	rep, err := j.RunOnce(context.Background())
	if err != nil {
		t.Fatalf("janitor RunOnce: %v", err)
	}
	return rep
}

// leaseDirect leases up to n tasks of queue through the dequeue script, the
// way a worker process does, without promoting or reclaiming anything. The
// caller never acks them: it plays a worker that crashed right after the
// lease.
func leaseDirect(t *testing.T, l *loader.Loader, queue string, n int, lease time.Duration) []*Task {
	t.Helper()
	wq := &workerQueue{name: queue, keys: testQueueKeys(t, queue), weight: 1}
	v, err := l.Run(context.Background(), wq.keys, "dequeue",
		strconv.Itoa(n), strconv.FormatInt(ceilMs(lease), 10), "0", "0", "0")
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	tasks, _, err := parseLeaseReply(wq, v)
	if err != nil {
		t.Fatal(err)
	}
	return tasks
}

// lockScript calls the janitor-lock script directly with any owner token.
func lockScript(t *testing.T, l *loader.Loader, queue, op, owner string, ttl time.Duration) int64 {
	t.Helper()
	v, err := l.Run(context.Background(), testQueueKeys(t, queue), "janitor-lock", op, owner, strconv.FormatInt(ceilMs(ttl), 10))
	if err != nil {
		t.Fatalf("janitor-lock %s as %s: %v", op, owner, err)
	}
	n, err := loader.Int(v)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// waitServerPast waits until the server clock is past instant at (Unix ms
// precision): expiry, retention and unique TTLs are judged on that clock.
func waitServerPast(t *testing.T, rdb redis.Cmdable, at time.Time) {
	t.Helper()
	for {
		now := serverNow(t, rdb)
		if now.UnixMilli() > at.UnixMilli() {
			return
		}
		time.Sleep(at.Sub(now) + time.Millisecond)
	}
}

// queueKeyNames returns the roles of queue's keys present in snap, sorted.
func queueKeyNames(snap keyspace.Snapshot, queue string) []string {
	prefix := keys.Prefix + "{" + queue + "}:"
	var roles []string
	for k := range snap {
		if role, ok := strings.CutPrefix(k, prefix); ok {
			roles = append(roles, role)
		}
	}
	sort.Strings(roles)
	return roles
}

// onlyBookkeeping reports what is wrong with the keys of queue in snap
// beyond bookkeeping: meta and stats, optionally a wake list (at most one
// token, with a TTL), plus any roles in extra. "" means nothing.
func onlyBookkeeping(snap keyspace.Snapshot, queue string, extra ...string) string {
	allowed := map[string]bool{"meta": true, "stats": true}
	for _, e := range extra {
		allowed[e] = true
	}
	var bad []string
	for _, role := range queueKeyNames(snap, queue) {
		if role == "wake" {
			v := snap[queueKeyName(queue, "wake")]
			if !v.TTL || len(v.List) > 1 {
				bad = append(bad, "wake without TTL or with more than one token")
			}
			continue
		}
		if !allowed[role] {
			bad = append(bad, role)
		}
	}
	if len(bad) == 0 {
		return ""
	}
	sort.Strings(bad)
	return "unexpected keys left: " + strings.Join(bad, ", ")
}

func queueKeyName(queue, role string) string { return keys.Prefix + "{" + queue + "}:" + role }

// stableKeys returns snap without the keys a running worker changes on its
// own: the worker registry (workers, worker_info), which its heartbeats
// renew, and the wake list, which its blocking waits pop.
func stableKeys(snap keyspace.Snapshot) keyspace.Snapshot {
	out := keyspace.Snapshot{}
	for k, v := range snap {
		if !strings.HasSuffix(k, "}:workers") && !strings.HasSuffix(k, "}:worker_info") && !strings.HasSuffix(k, "}:wake") {
			out[k] = v
		}
	}
	return out
}
