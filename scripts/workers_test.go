package scripts_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// TestWorkerRegistry covers register (and its renewal as a heartbeat),
// list-workers and prune-workers.
func TestWorkerRegistry(t *testing.T) {
	env := scripttest.New(t)
	now := nowMS(env)
	if got := mustRun(t, env, "register", "w1", "host=a pid=1", "1000"); got != now+1000 {
		t.Fatalf("register w1 = %v, want deadline %d", got, now+1000)
	}
	mustRun(t, env, "register", "w2", "host=b pid=2", "5000")
	checkSnapshot(t, env, keyspace.Snapshot{
		key("workers"):     zsetV(zm{"w1", now + 1000}, zm{"w2", now + 5000}),
		key("worker_info"): hashV("w1", "host=a pid=1", "w2", "host=b pid=2"),
	})
	want := []any{"w1", now + 1000, "host=a pid=1", "w2", now + 5000, "host=b pid=2"}
	if d := cmp.Diff(want, mustRun(t, env, "list-workers", "10")); d != "" {
		t.Errorf("list-workers (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]any{"w1", now + 1000, "host=a pid=1"}, mustRun(t, env, "list-workers", "1")); d != "" {
		t.Errorf("list-workers limit 1 (-want +got):\n%s", d)
	}

	// w1 misses its heartbeat; w2 renews with a new description.
	advance(env, 1500)
	mustRun(t, env, "register", "w2", "host=b pid=2 inflight=1", "5000")
	if d := cmp.Diff([]any{"w2", now + 6500, "host=b pid=2 inflight=1"}, mustRun(t, env, "list-workers", "10")); d != "" {
		t.Errorf("list-workers after w1 died (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]any{"w1"}, mustRun(t, env, "prune-workers", "10")); d != "" {
		t.Errorf("prune-workers (-want +got):\n%s", d)
	}
	checkSnapshot(t, env, keyspace.Snapshot{
		key("workers"):     zsetV(zm{"w2", now + 6500}),
		key("worker_info"): hashV("w2", "host=b pid=2 inflight=1"),
	})
	if d := cmp.Diff([]any{}, mustRun(t, env, "prune-workers", "10")); d != "" {
		t.Errorf("second prune-workers (-want +got):\n%s", d)
	}
}

// TestPruneWorkersIsBounded checks the limit of prune-workers.
func TestPruneWorkersIsBounded(t *testing.T) {
	env := scripttest.New(t)
	for _, w := range []string{"a", "b", "c"} {
		mustRun(t, env, "register", w, "", "10")
	}
	advance(env, 20)
	if d := cmp.Diff([]any{"a", "b"}, mustRun(t, env, "prune-workers", "2")); d != "" {
		t.Errorf("prune-workers 2 (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]any{"c"}, mustRun(t, env, "prune-workers", "2")); d != "" {
		t.Errorf("prune-workers again (-want +got):\n%s", d)
	}
}

// TestDeregisterRequeuesInFlight checks that a leaving worker's tasks go back
// to the head of pending without a retry counted, that a task whose lease the
// worker lost is left alone, and that deregistering twice is harmless.
func TestDeregisterRequeuesInFlight(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"), tk("c"), tk("d"))...)
	d := dequeue(t, env, 3, 1000, 10, 10, 0) // leases a, b, c
	if len(d.Tasks) != 3 {
		t.Fatalf("leased %d tasks, want 3", len(d.Tasks))
	}
	mustRun(t, env, "register", "w1", "", "5000")
	popWake(t, env)
	before := env.Snapshot(t)
	tokA, tokB := tokenOf(t, env, "a"), tokenOf(t, env, "b")
	// "c" is passed with a stale token: it stays leased.
	got := mustRun(t, env, "deregister", "w1", "a", tokA, "b", tokB, "c", "999")
	if d := cmp.Diff([]any{int64(2), int64(1)}, got); d != "" {
		t.Errorf("deregister reply (-want +got):\n%s", d)
	}
	after := env.Snapshot(t)
	if d := cmp.Diff(listV("a", "b", "d"), after[key("pending")]); d != "" {
		t.Errorf("pending (-want +got):\n%s", d)
	}
	if _, ok := after[key("workers")]; ok {
		t.Errorf("workers key left: %+v", after[key("workers")])
	}
	if d := cmp.Diff(before[key("tasks")], after[key("tasks")]); d != "" {
		t.Errorf("task records changed (retry counted?) (-before +after):\n%s", d)
	}
	if got := after[key("tokens")].Hash; len(got) != 1 || got["c"] == "" {
		t.Errorf("tokens = %v, want only c", got)
	}
	// The whole keyspace: the registration is gone (info too), c's lease
	// is intact, and idle workers are woken for a and b.
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):    hashV("schema", "1", "fence", "3"),
		key("tasks"):   before[key("tasks")],
		key("pending"): listV("a", "b", "d"),
		key("active"):  zsetV(zm{"c", epochMS + 1000}),
		key("tokens"):  hashV("c", tokenOf(t, env, "c")),
		key("wake"):    wakeV(),
	})
	popWake(t, env)
	unchanged(t, env, func() {
		got := mustRun(t, env, "deregister", "w1", "a", tokA)
		if d := cmp.Diff([]any{int64(0), int64(0)}, got); d != "" {
			t.Errorf("second deregister (-want +got):\n%s", d)
		}
	})
}

// TestWorkerHeartbeatBoundary: a worker is live up to and including its
// heartbeat deadline, and dead (listed no more, pruned) 1 ms after it.
func TestWorkerHeartbeatBoundary(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "register", "w1", "i", "1000")
	advance(env, 1000)
	unchanged(t, env, func() {
		if d := cmp.Diff([]any{"w1", epochMS + 1000, "i"}, mustRun(t, env, "list-workers", "10")); d != "" {
			t.Errorf("list-workers at the deadline (-want +got):\n%s", d)
		}
		if d := cmp.Diff([]any{}, mustRun(t, env, "prune-workers", "10")); d != "" {
			t.Errorf("prune-workers at the deadline (-want +got):\n%s", d)
		}
	})
	advance(env, 1)
	if d := cmp.Diff([]any{}, mustRun(t, env, "list-workers", "10")); d != "" {
		t.Errorf("list-workers after the deadline (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]any{"w1"}, mustRun(t, env, "prune-workers", "10")); d != "" {
		t.Errorf("prune-workers after the deadline (-want +got):\n%s", d)
	}
	checkSnapshot(t, env, keyspace.Snapshot{})
}

func TestRegistryBadInput(t *testing.T) {
	tests := []struct {
		script string
		args   []string
	}{
		{"register", []string{"w 1", "", "1000"}},
		{"register", []string{"w1", "", "0"}},
		{"register", []string{"w1", ""}},
		{"deregister", []string{}},
		{"deregister", []string{"w1", "a"}},
		{"deregister", []string{"w1", "a", "x"}},
		{"prune-workers", []string{"0"}},
		{"list-workers", []string{"1001"}},
	}
	for _, tc := range tests {
		t.Run(tc.script, func(t *testing.T) {
			env := scripttest.New(t)
			mustRun(t, env, "register", "w0", "x", "1000")
			unchanged(t, env, func() { checkCode(t, run(t, env, tc.script, tc.args...), "LQ_BADARG") })
		})
	}
}
