package scripts_test

import (
	"testing"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func TestExtend(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	dequeue(t, env, 2, 1000, 0, 0, 0) // a 1, b 2
	before := env.Snapshot(t)
	advance(env, 500)
	if got := mustRun(t, env, "extend", "a", "1", "3000"); got != epochMS+3500 {
		t.Errorf("extend reply = %v, want %d", got, epochMS+3500)
	}
	// Only a's lease deadline moved.
	want := before
	want[key("active")] = zsetV(zm{"b", epochMS + 1000}, zm{"a", epochMS + 3500})
	checkSnapshot(t, env, want)

	// Shortening works too (lease_ms 1), and a lease past its deadline but not
	// yet reclaimed can still be extended by its holder.
	advance(env, 5000)
	if got := mustRun(t, env, "extend", "b", "2", "1"); got != epochMS+5501 {
		t.Errorf("extend reply = %v, want %d", got, epochMS+5501)
	}
	if got := mustRun(t, env, "extend", "a", "1", "2147483647"); got != epochMS+5500+2147483647 {
		t.Errorf("extend reply = %v, want %d", got, epochMS+5500+2147483647)
	}
	checkKeys(t, env, keyspace.Snapshot{
		key("active"): zsetV(zm{"b", epochMS + 5501}, zm{"a", epochMS + 5500 + 2147483647}),
	}, "active")
	// An extended lease is not reclaimed.
	advance(env, 2)
	dequeue(t, env, 1, 1000, 0, 10, 0)
	checkKeys(t, env, keyspace.Snapshot{
		key("active"): zsetV(zm{"a", epochMS + 5500 + 2147483647}),
		key("tokens"): hashV("a", "1"),
	}, "active", "tokens")
}

func TestExtendLeaseLost(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"), tk("done"))...)
	dequeue(t, env, 1, 100, 0, 0, 0) // a 1
	mustRun(t, env, "requeue", "a", "1")
	dequeue(t, env, 3, 100, 0, 0, 0) // a 2, b 3, done 4
	mustRun(t, env, "complete", "done", "4", "", "0", "0", "0")
	for _, tc := range []struct{ name, id, token string }{
		{"stale token", "a", "1"},
		{"token of another task", "a", "3"},
		{"unknown id", "nope", "2"},
		{"completed task", "done", "4"},
		{"all-digit unknown id", "12", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "extend", tc.id, tc.token, "1000"), codeLeaseLost)
			})
		})
	}
}

func TestRequeue(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", payload: "pa", maxRetry: 2}
	mustRun(t, env, "enqueue", enqArgs(a)...)
	dequeue(t, env, 1, 1000, 0, 0, 0)                               // token 1
	mustRun(t, env, "retry-or-archive", "a", "1", "oops", "0", "0") // retried 1
	dequeue(t, env, 1, 1000, 10, 0, 0)                              // token 2
	mustRun(t, env, "enqueue", enqArgs(tk("b"), tk("c"))...)
	popWake(t, env)

	if got := mustRun(t, env, "requeue", "a", "2"); got != int64(1) {
		t.Errorf("requeue reply = %#v, want 1", got)
	}
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "2"),
		key("tasks"): hashV(
			"a", record(1, 2, 0, 0, epochMS, "t", "pa"), // retry count unchanged
			"b", record(0, 3, 0, 0, epochMS, "t", "p-b"),
			"c", record(0, 3, 0, 0, epochMS, "t", "p-c"),
		),
		key("pending"): listV("a", "b", "c"), // at the head
		key("errors"):  hashV("a", "oops"),
		key("stats"):   statsV("failed", "1", "retried", "1"),
		key("wake"):    wakeV(),
	})
	// It runs next, under a new token, with the same retry count.
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(a, 3, 1, epochMS+1000)}}, dequeue(t, env, 1, 1000, 0, 0, 0))
	// The requeued lease's token is dead.
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "requeue", "a", "2"), codeLeaseLost)
		checkCode(t, run(t, env, "requeue", "a", "1"), codeLeaseLost)
		checkCode(t, run(t, env, "requeue", "b", "3"), codeLeaseLost)
		checkCode(t, run(t, env, "requeue", "nope", "3"), codeLeaseLost)
	})
}
