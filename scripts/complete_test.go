package scripts_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func TestCompleteDeletesEveryByte(t *testing.T) {
	env := scripttest.New(t)
	a, b := tk("a"), tk("b")
	mustRun(t, env, "enqueue", enqArgs(a)...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	// A failed run first, so that a has a last error to delete.
	mustRun(t, env, "retry-or-archive", "a", "1", "first run failed", "0", "0")
	mustRun(t, env, "enqueue", enqArgs(b)...)
	popWake(t, env)
	got := dequeue(t, env, 1, 1000, 10, 0, 0) // b was pending first, then a is promoted behind it
	if got.Tasks[0].ID != "b" {
		t.Fatalf("leased %+v, want b", got.Tasks)
	}
	popWake(t, env)
	got = dequeue(t, env, 1, 1000, 10, 0, 0)
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(a, 3, 1, epochMS+1000)}}, got)

	if d := cmp.Diff([]any{int64(0), int64(-1), int64(0)}, mustRun(t, env, "complete", "a", "3", "", "0", "0", "0")); d != "" {
		t.Errorf("complete reply (-want +got):\n%s", d)
	}
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):   hashV("schema", "1", "fence", "3"),
		key("tasks"):  hashV("b", record(0, 3, 0, 0, epochMS, "t", "p-b")),
		key("active"): zsetV(zm{"b", epochMS + 1000}),
		key("tokens"): hashV("b", "2"),
		key("stats"):  statsV("failed", "1", "retried", "1", "processed", "1"),
	})
	mustRun(t, env, "complete", "b", "2", "", "0", "2147483647", "1000") // lease_ms and promote_limit unused but valid
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):  hashV("schema", "1", "fence", "3"),
		key("stats"): statsV("failed", "1", "retried", "1", "processed", "2"),
	})
	// A second complete of the same lease is refused.
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "complete", "b", "2", "", "0", "0", "0"), codeLeaseLost)
	})
}

func TestCompleteLeaseNext(t *testing.T) {
	env := scripttest.New(t)
	a, b, c := tk("a"), tk("b"), tk("c")
	s := task{id: "s", typ: "t", in: 50}
	mustRun(t, env, "enqueue", enqArgs(a, b, s, c)...)
	dequeue(t, env, 1, 1000, 0, 0, 0) // a, token 1
	advance(env, 100)
	now := nowMS(env)
	popWake(t, env)
	// Lease two more: b from pending, then c; s (due) is promoted behind c.
	got := decodeDeq(t, mustRun(t, env, "complete", "a", "1", "", "2", "5000", "10"))
	checkDeq(t, deqReply{Leased: 2, NextDue: -1, Tasks: []leased{lt(b, 2, 0, now+5000), lt(c, 3, 0, now+5000)}}, got)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3"),
		key("tasks"): hashV(
			"b", record(0, 3, 0, 0, epochMS, "t", "p-b"),
			"c", record(0, 3, 0, 0, epochMS, "t", "p-c"),
			"s", record(0, 0, 0, 0, epochMS, "t", ""),
		),
		key("pending"): listV("s"),
		key("active"):  zsetV(zm{"b", now + 5000}, zm{"c", now + 5000}),
		key("tokens"):  hashV("b", "2", "c", "3"),
		key("stats"):   statsV("processed", "1"),
		key("wake"):    wakeV(),
	})
	// Lease-next with promote_limit 0 still takes what is pending.
	got = decodeDeq(t, mustRun(t, env, "complete", "b", "2", "", "1", "10", "0"))
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(s, 4, 0, now+10)}}, got)
	// Nothing left to lease or scheduled: no hint (c's lease is none).
	got = decodeDeq(t, mustRun(t, env, "complete", "s", "4", "", "1000", "1", "1000"))
	checkDeq(t, deqReply{NextDue: -1}, got)
	// Paused: the completion happens, the lease-next does not.
	mustRun(t, env, "set-paused", "1")
	mustRun(t, env, "enqueue", enqArgs(tk("d"))...)
	got = decodeDeq(t, mustRun(t, env, "complete", "c", "3", "", "5", "1000", "10"))
	checkDeq(t, deqReply{NextDue: -1, Paused: 1}, got)
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):   hashV("d", record(0, 3, 0, 0, now, "t", "p-d")),
		key("pending"): listV("d"),
		key("stats"):   statsV("processed", "4"),
	}, "tasks", "pending", "active", "tokens", "stats")
}

func TestCompleteLeaseLost(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	dequeue(t, env, 1, 100, 0, 0, 0) // a, token 1
	mustRun(t, env, "requeue", "a", "1")
	dequeue(t, env, 2, 100, 0, 0, 0) // a token 2, b token 3
	for _, tc := range []struct{ name, id, token string }{
		{"stale token", "a", "1"},
		{"token of another task", "a", "3"},
		{"future token", "a", "4"},
		{"unknown id", "nope", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "complete", tc.id, tc.token, "", "0", "0", "0"), codeLeaseLost)
				checkCode(t, run(t, env, "complete", tc.id, tc.token, "", "3", "1000", "10"), codeLeaseLost)
			})
		})
	}
}
