package scripts_test

// Unique keys: held from enqueue until the task reaches a terminal state or
// the TTL passes; completion with and without retention; archiving frees
// the key.

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// uniq is a ready task id holding unique key k for ttl ms.
func uniq(id, k string, ttl int64) task {
	x := tk(id)
	x.unique, x.uniqueTTL = k, ttl
	return x
}

func TestUniqueKeyConflictAndTTL(t *testing.T) {
	env := scripttest.New(t)
	a := uniq("a", "k", 10000)
	mustRun(t, env, "enqueue", enqArgs(a)...)
	unchanged(t, env, func() {
		// Held by a live pending task: refused, even with another id, a
		// generated id, or a different TTL, and the whole batch with it.
		checkCode(t, run(t, env, "enqueue", enqArgs(uniq("b", "k", 10000))...), codeConflict)
		checkCode(t, run(t, env, "enqueue", enqArgs(uniq("", "k", 1))...), codeConflict)
		checkCode(t, run(t, env, "enqueue", enqArgs(tk("c"), uniq("", "k2", 5), uniq("b", "k", 10000))...), codeConflict)
	})
	// Keys are compared byte for byte.
	mustRun(t, env, "enqueue", enqArgs(uniq("b", "K", 10000), uniq("c", "k ", 10000))...)
	// Leased (started) it still holds the key, and after a retry too.
	popWake(t, env)
	dequeue(t, env, 1, 1000, 0, 0, 0) // a, token 1
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "enqueue", enqArgs(uniq("d", "k", 10000))...), codeConflict)
	})
	mustRun(t, env, "retry-or-archive", "a", "1", "boom", "100000", "0")
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "enqueue", enqArgs(uniq("d", "k", 10000))...), codeConflict)
	})
	// 1 ms before the TTL ends the key is held; at the TTL it is not,
	// although nobody swept it yet: the new task takes it over.
	advance(env, 9999)
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "enqueue", enqArgs(uniq("d", "k", 10000))...), codeConflict)
	})
	advance(env, 1)
	now := nowMS(env)
	mustRun(t, env, "enqueue", enqArgs(uniq("d", "k", 500))...)
	checkKeys(t, env, keyspace.Snapshot{
		key("unique"):     hashV("k", "d", "K", "b", "k ", "c"),
		key("unique_ttl"): zsetV(zm{"K", epochMS + 10000}, zm{"k ", epochMS + 10000}, zm{"k", now + 500}),
	}, "unique", "unique_ttl")
	// a (the old holder) reaching a terminal state does not free d's key.
	advance(env, 100000-10000)
	r := dequeue(t, env, 10, 1000, 10, 0, 0)
	if r.Tasks[len(r.Tasks)-1].ID != "a" {
		t.Fatalf("leased %+v, want a last", r.Tasks)
	}
	mustRun(t, env, "complete", "a", ms(r.Tasks[len(r.Tasks)-1].Token), "", "0", "0", "0")
	checkKeys(t, env, keyspace.Snapshot{
		key("unique"):     hashV("k", "d", "K", "b", "k ", "c"),
		key("unique_ttl"): zsetV(zm{"K", epochMS + 10000}, zm{"k ", epochMS + 10000}, zm{"k", now + 500}),
	}, "unique", "unique_ttl")
}

// TestUniqueKeyFreedAtTerminalStates drives a task holding unique key "k"
// (and an expiry) into each terminal state and checks that the key, its TTL
// entry and the expiry entry are gone and the key can be taken again; and
// that non-terminal transitions keep it.
func TestUniqueKeyFreedAtTerminalStates(t *testing.T) {
	a := task{id: "a", typ: "t", payload: "pa", maxRetry: 1, deadline: epochMS + 50000, expireIn: 60000, unique: "k", uniqueTTL: 86400000}
	// lease leases a (token 1) for 1000 ms.
	lease := func(t *testing.T, env *scripttest.Env) {
		t.Helper()
		r := dequeue(t, env, 1, 1000, 10, 0, 0)
		if r.Leased != 1 || r.Tasks[0].ID != "a" || r.Tasks[0].Token != 1 {
			t.Fatalf("leased %+v, want a with token 1", r.Tasks)
		}
	}
	tests := []struct {
		name     string
		terminal bool
		drive    func(t *testing.T, env *scripttest.Env)
	}{
		{"completed", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "complete", "a", "1", "r", "0", "0", "0")
		}},
		{"completed with lease-next", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "complete", "a", "1", "r", "5", "1000", "10")
		}},
		{"archived by skip_retry", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "retry-or-archive", "a", "1", "fatal", "0", "1")
		}},
		{"archived out of retries", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "retry-or-archive", "a", "1", "boom", "0", "0")
			r := dequeue(t, env, 1, 1000, 10, 0, 0)
			mustRun(t, env, "retry-or-archive", "a", ms(r.Tasks[0].Token), "boom", "0", "0")
		}},
		{"archived when the retry would miss the deadline", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "retry-or-archive", "a", "1", "boom", "50000", "0")
		}},
		{"archived at dequeue past its deadline", true, func(t *testing.T, env *scripttest.Env) {
			advance(env, 50000)
			dequeue(t, env, 1, 1000, 0, 0, 0)
		}},
		{"reclaimed and archived", true, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			advance(env, 1001)
			dequeue(t, env, 1, 1000, 10, 10, 0) // reclaim: retry now, leased again (token 2)
			advance(env, 1001)
			dequeue(t, env, 1, 1000, 0, 10, 0) // reclaim again: out of retries
		}},
		{"expired at dequeue", true, func(t *testing.T, env *scripttest.Env) {
			advance(env, 60000)
			dequeue(t, env, 1, 1000, 0, 0, 0)
		}},
		{"leased", false, lease},
		{"retried", false, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "retry-or-archive", "a", "1", "boom", "10", "0")
		}},
		{"requeued", false, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "requeue", "a", "1")
		}},
		{"extended", false, func(t *testing.T, env *scripttest.Env) {
			lease(t, env)
			mustRun(t, env, "extend", "a", "1", "5000")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			mustRun(t, env, "enqueue", enqArgs(a)...)
			tc.drive(t, env)
			snap := env.Snapshot(t)
			if !tc.terminal {
				if d := cmp.Diff(hashV("k", "a"), snap[key("unique")]); d != "" {
					t.Errorf("unique (-want +got):\n%s", d)
				}
				checkCode(t, run(t, env, "enqueue", enqArgs(uniq("b", "k", 10))...), codeConflict)
				return
			}
			for _, role := range []string{"unique", "unique_ttl", "expiry", "active", "tokens", "pending", "scheduled"} {
				if v, ok := snap[key(role)]; ok {
					t.Errorf("%s = %+v after a reached a terminal state, want no key", role, v)
				}
			}
			mustRun(t, env, "enqueue", enqArgs(uniq("b", "k", 10))...)
		})
	}
}

// TestCompleteRetention: without retention, complete deletes the record and
// ignores the result; with it, the record stays, the result is stored and
// the completed zset says when the retention ends. Either way the unique
// key is freed and the task counts as processed.
func TestCompleteRetention(t *testing.T) {
	bin := "res:\x00\xff" + strings.Repeat("r", 1<<20)
	tests := []struct {
		name      string
		retention int64
		result    string
	}{
		{"no retention", 0, "ignored"},
		{"no retention, empty result", 0, ""},
		{"retention", 60000, "the result"},
		{"retention 1 ms", 1, "r"},
		{"retention, empty result", 60000, ""},
		{"retention, 1 MiB binary result", 60000, bin},
		{"retention max", 253402300799999 - epochMS - 100, "r"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			a := task{id: "a", typ: "t", payload: "pa", maxRetry: 3, expireIn: 5000, retention: tc.retention, unique: "k", uniqueTTL: 60000}
			mustRun(t, env, "enqueue", enqArgs(a)...)
			dequeue(t, env, 1, 1000, 0, 0, 0)
			mustRun(t, env, "retry-or-archive", "a", "1", "first run failed", "0", "0") // leaves an error to delete
			popWake(t, env)
			advance(env, 100)
			now := nowMS(env)
			r := dequeue(t, env, 1, 1000, 10, 0, 0)
			if r.Leased != 1 || r.Tasks[0].Token != 2 {
				t.Fatalf("leased %+v, want a with token 2", r.Tasks)
			}
			if d := cmp.Diff([]any{int64(0), int64(-1), int64(0)}, mustRun(t, env, "complete", "a", "2", tc.result, "0", "0", "0")); d != "" {
				t.Errorf("complete reply (-want +got):\n%s", d)
			}
			want := keyspace.Snapshot{
				key("meta"):  hashV("schema", "1", "fence", "2"),
				key("stats"): statsV("failed", "1", "retried", "1", "processed", "1"),
			}
			if tc.retention > 0 {
				rec := a.rec(epochMS).started() // leased in time: expire_at 0
				rec.retried = 1
				want[key("tasks")] = hashV("a", rec.enc())
				want[key("completed")] = zsetV(zm{"a", now + tc.retention})
				want[key("results")] = hashV("a", tc.result)
			}
			checkSnapshot(t, env, want)
			// The lease is over either way.
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "complete", "a", "2", "", "0", "0", "0"), codeLeaseLost)
				checkCode(t, run(t, env, "extend", "a", "2", "1000"), codeLeaseLost)
				checkCode(t, run(t, env, "retry-or-archive", "a", "2", "x", "0", "1"), codeLeaseLost)
			})
			// The unique key is free; the id is taken while the record is kept.
			mustRun(t, env, "enqueue", enqArgs(uniq("b", "k", 10))...)
			if tc.retention > 0 {
				unchanged(t, env, func() {
					checkCode(t, run(t, env, "enqueue", enqArgs(tk("a"))...), codeConflict)
				})
			} else {
				mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
			}
		})
	}
}

// TestCompleteRetentionLeaseNext: completing with retention and leasing the
// next task in the same call.
func TestCompleteRetentionLeaseNext(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", retention: 1000}
	b := tk("b")
	mustRun(t, env, "enqueue", enqArgs(a, b)...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	popWake(t, env)
	got := decodeDeq(t, mustRun(t, env, "complete", "a", "1", "ok", "1", "500", "0"))
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(b, 2, 0, epochMS+500)}}, got)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):      hashV("schema", "1", "fence", "2"),
		key("tasks"):     hashV("a", a.rec(epochMS).enc(), "b", b.rec(epochMS).enc()),
		key("active"):    zsetV(zm{"b", epochMS + 500}),
		key("tokens"):    hashV("b", "2"),
		key("completed"): zsetV(zm{"a", epochMS + 1000}),
		key("results"):   hashV("a", "ok"),
		key("stats"):     statsV("processed", "1"),
	})
}

// TestRetryOrArchiveArchivingFreesUnique: archiving through
// retry-or-archive frees the unique key (the expiry entry went at the
// lease, which also set the record's expire_at to 0); a retry keeps the key
// and the record as the lease left it.
func TestRetryOrArchiveArchivingFreesUnique(t *testing.T) {
	for _, skip := range []string{"0", "1"} {
		t.Run("skip_retry "+skip, func(t *testing.T) {
			env := scripttest.New(t)
			a := task{id: "a", typ: "t", payload: "pa", maxRetry: 1, expireIn: 60000, unique: "k", uniqueTTL: 60000}
			mustRun(t, env, "enqueue", enqArgs(a)...)
			popWake(t, env)
			dequeue(t, env, 1, 1000, 0, 0, 0)
			outcome := "archived"
			if skip == "0" {
				outcome = "retry"
			}
			checkOutcome(t, mustRun(t, env, "retry-or-archive", "a", "1", "why", "100", skip), outcome, map[string]int64{"retry": epochMS + 100, "archived": epochMS}[outcome])
			want := keyspace.Snapshot{
				key("meta"):   hashV("schema", "1", "fence", "1"),
				key("errors"): hashV("a", "why"),
			}
			if outcome == "archived" {
				want[key("tasks")] = hashV("a", a.rec(epochMS).started().enc())
				want[key("archived")] = zsetV(zm{"a", epochMS})
				want[key("stats")] = statsV("failed", "1", "archived", "1")
			} else {
				r := a.rec(epochMS).started()
				r.retried = 1
				want[key("tasks")] = hashV("a", r.enc())
				want[key("scheduled")] = zsetV(zm{"a", epochMS + 100})
				want[key("stats")] = statsV("failed", "1", "retried", "1")
				want[key("unique")] = hashV("k", "a")
				want[key("unique_ttl")] = zsetV(zm{"k", epochMS + 60000})
				want[key("wake")] = wakeV()
			}
			checkSnapshot(t, env, want)
		})
	}
}
