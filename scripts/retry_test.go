package scripts_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func checkOutcome(t *testing.T, got any, outcome string, at int64) {
	t.Helper()
	if d := cmp.Diff([]any{outcome, at}, got); d != "" {
		t.Errorf("retry-or-archive reply (-want +got):\n%s", d)
	}
}

// TestRetryThenArchiveWhenRetriesRunOut follows one task through two retries
// and the archive, checking the whole keyspace at each step.
func TestRetryThenArchiveWhenRetriesRunOut(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", payload: "pa", maxRetry: 2, timeout: 900}
	mustRun(t, env, "enqueue", enqArgs(a)...)
	dequeue(t, env, 1, 1000, 0, 0, 0) // token 1
	popWake(t, env)
	advance(env, 100)

	checkOutcome(t, mustRun(t, env, "retry-or-archive", "a", "1", "boom 1", "5000", "0"), "retry", epochMS+5100)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):      hashV("schema", "1", "fence", "1"),
		key("tasks"):     hashV("a", record(1, 2, 900, 0, epochMS, "t", "pa")),
		key("scheduled"): zsetV(zm{"a", epochMS + 5100}),
		key("errors"):    hashV("a", "boom 1"),
		key("stats"):     statsV("failed", "1", "retried", "1"),
		key("wake"):      wakeV(),
	})
	// The lease is gone: its token cannot fail the task twice.
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "retry-or-archive", "a", "1", "again", "0", "0"), codeLeaseLost)
	})

	advance(env, 5000)
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(a, 2, 1, epochMS+5100+1000)}}, dequeue(t, env, 1, 1000, 1, 0, 0))
	checkOutcome(t, mustRun(t, env, "retry-or-archive", "a", "2", "", "0", "0"), "retry", epochMS+5100)
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):     hashV("a", record(2, 2, 900, 0, epochMS, "t", "pa")),
		key("scheduled"): zsetV(zm{"a", epochMS + 5100}),
		key("errors"):    hashV("a", ""),
		key("stats"):     statsV("failed", "2", "retried", "2"),
	}, "tasks", "scheduled", "errors", "stats", "active", "tokens")

	dequeue(t, env, 1, 1000, 1, 0, 0) // token 3, retried 2 = max_retry
	msg := strings.Repeat("x", 8192)
	checkOutcome(t, mustRun(t, env, "retry-or-archive", "a", "3", msg, "5000", "0"), "archived", epochMS+5100)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):     hashV("schema", "1", "fence", "3"),
		key("tasks"):    hashV("a", record(2, 2, 900, 0, epochMS, "t", "pa")),
		key("archived"): zsetV(zm{"a", epochMS + 5100}),
		key("errors"):   hashV("a", msg),
		key("stats"):    statsV("failed", "3", "retried", "2", "archived", "1"),
		key("wake"):     wakeV(),
	})
}

func TestRetryOrArchiveDecisions(t *testing.T) {
	const deadline = 10000 // ms after the epoch
	tests := []struct {
		name     string
		x        task
		backoff  int64
		skip     string
		wantOut  string
		wantWhen int64 // ms after the epoch
	}{
		{"retries left", task{id: "a", typ: "t", maxRetry: 1}, 300, "0", "retry", 300},
		{"zero backoff", task{id: "a", typ: "t", maxRetry: 1}, 0, "0", "retry", 0},
		{"max backoff", task{id: "a", typ: "t", maxRetry: 1}, 31536000000, "0", "retry", 31536000000},
		{"no retries allowed", task{id: "a", typ: "t", maxRetry: 0}, 300, "0", "archived", 0},
		{"skip_retry with retries left", task{id: "a", typ: "t", maxRetry: 5}, 300, "1", "archived", 0},
		{"retry due before the deadline", task{id: "a", typ: "t", maxRetry: 5, deadline: epochMS + deadline}, deadline - 1, "0", "retry", deadline - 1},
		{"retry due at the deadline", task{id: "a", typ: "t", maxRetry: 5, deadline: epochMS + deadline}, deadline, "0", "archived", 0},
		{"retry due after the deadline", task{id: "a", typ: "t", maxRetry: 5, deadline: epochMS + deadline}, deadline + 1, "0", "archived", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			mustRun(t, env, "enqueue", enqArgs(tc.x)...)
			dequeue(t, env, 1, 1000, 0, 0, 0)
			checkOutcome(t, mustRun(t, env, "retry-or-archive", "a", "1", "why", ms(tc.backoff), tc.skip), tc.wantOut, epochMS+tc.wantWhen)
			rec := record(0, tc.x.maxRetry, 0, tc.x.deadline, epochMS, "t", "")
			want := keyspace.Snapshot{
				key("meta"):   hashV("schema", "1", "fence", "1"),
				key("errors"): hashV("a", "why"),
				key("wake"):   wakeV(),
			}
			if tc.wantOut == "retry" {
				want[key("tasks")] = hashV("a", record(1, tc.x.maxRetry, 0, tc.x.deadline, epochMS, "t", ""))
				want[key("scheduled")] = zsetV(zm{"a", epochMS + tc.wantWhen})
				want[key("stats")] = statsV("failed", "1", "retried", "1")
			} else {
				want[key("tasks")] = hashV("a", rec)
				want[key("archived")] = zsetV(zm{"a", epochMS + tc.wantWhen})
				want[key("stats")] = statsV("failed", "1", "archived", "1")
			}
			checkSnapshot(t, env, want)
		})
	}
}

func TestRetryOrArchiveNotFound(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	// A lease whose record is gone.
	env.Miniredis().HDel(key("tasks"), "a")
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "retry-or-archive", "a", "1", "x", "0", "0"), codeNotFound)
		checkCode(t, run(t, env, "retry-or-archive", "a", "1", "x", "0", "1"), codeNotFound)
	})
}

func TestRetryOrArchiveLeaseLost(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	dequeue(t, env, 1, 100, 0, 0, 0) // a 1
	advance(env, 101)
	dequeue(t, env, 2, 100, 0, 10, 0) // reclaims a (retry now), leases b 2, a 3
	for _, tc := range []struct{ name, id, token string }{
		{"token of a reclaimed lease", "a", "1"},
		{"token of another task", "a", "2"},
		{"unknown id", "nope", "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "retry-or-archive", tc.id, tc.token, "x", "0", "0"), codeLeaseLost)
				checkCode(t, run(t, env, "retry-or-archive", tc.id, tc.token, "x", "0", "1"), codeLeaseLost)
			})
		})
	}
}

// archiveN enqueues n tasks with ids prefix0..prefix<n-1> and archives each
// (skip_retry) one ms apart.
func archiveN(t *testing.T, env *scripttest.Env, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		id := prefix + strconv.Itoa(i)
		mustRun(t, env, "enqueue", enqArgs(tk(id))...)
		r := dequeue(t, env, 1, 1000, 0, 0, 0)
		if r.Leased != 1 || r.Tasks[0].ID != id {
			t.Fatalf("leased %+v, want %s", r.Tasks, id)
		}
		mustRun(t, env, "retry-or-archive", id, ms(r.Tasks[0].Token), "err "+id, "0", "1")
		advance(env, 1)
	}
}

func TestArchiveTrimByCount(t *testing.T) {
	env := scripttest.New(t)
	hset(t, env, "meta", "archive_max", "2")
	archiveN(t, env, "a", 2) // a0 at +0, a1 at +1
	checkKeys(t, env, keyspace.Snapshot{
		key("archived"): zsetV(zm{"a0", epochMS}, zm{"a1", epochMS + 1}),
	}, "archived")
	archiveN(t, env, "b", 1) // b0 at +2: a0, the oldest, goes with all its data
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3", "archive_max", "2"),
		key("tasks"): hashV(
			"a1", record(0, 3, 0, 0, epochMS+1, "t", "p-a1"),
			"b0", record(0, 3, 0, 0, epochMS+2, "t", "p-b0"),
		),
		key("archived"): zsetV(zm{"a1", epochMS + 1}, zm{"b0", epochMS + 2}),
		key("errors"):   hashV("a1", "err a1", "b0", "err b0"),
		key("stats"):    statsV("failed", "3", "archived", "3"),
		key("wake"):     wakeV(),
	})
	// archive_max 0 keeps nothing, not even the task just archived.
	hset(t, env, "meta", "archive_max", "0")
	archiveN(t, env, "c", 1)
	checkKeys(t, env, keyspace.Snapshot{
		key("stats"): statsV("failed", "4", "archived", "4"),
	}, "tasks", "archived", "errors", "stats")
}

func TestArchiveTrimByAge(t *testing.T) {
	env := scripttest.New(t)
	hset(t, env, "meta", "archive_age_ms", "1000")
	archiveN(t, env, "a", 1) // a0 archived at epoch
	advance(env, 998)        // now epoch+999
	archiveN(t, env, "b", 1) // b0 at +999; a0 is 999 ms old: kept
	checkKeys(t, env, keyspace.Snapshot{
		key("archived"): zsetV(zm{"a0", epochMS}, zm{"b0", epochMS + 999}),
	}, "archived")
	// now epoch+1000: a0 is exactly 1000 ms old and goes when c0 is archived.
	archiveN(t, env, "c", 1)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3", "archive_age_ms", "1000"),
		key("tasks"): hashV(
			"b0", record(0, 3, 0, 0, epochMS+999, "t", "p-b0"),
			"c0", record(0, 3, 0, 0, epochMS+1000, "t", "p-c0"),
		),
		key("archived"): zsetV(zm{"b0", epochMS + 999}, zm{"c0", epochMS + 1000}),
		key("errors"):   hashV("b0", "err b0", "c0", "err c0"),
		key("stats"):    statsV("failed", "3", "archived", "3"),
		key("wake"):     wakeV(),
	})
}

func TestArchiveDefaultBoundsKeepTasks(t *testing.T) {
	env := scripttest.New(t)
	archiveN(t, env, "a", 3)
	advance(env, 2592000000-4) // now a0 is 30 days minus 1 ms old
	archiveN(t, env, "b", 1)
	if n := len(env.Snapshot(t)[key("archived")].ZSet); n != 4 {
		t.Errorf("%d archived, want 4 (nothing old enough to trim)", n)
	}
	archiveN(t, env, "c", 1) // now a0 is 30 days old
	got := env.Snapshot(t)[key("archived")].ZSet
	if len(got) != 4 || got[0].Member != "a1" {
		t.Errorf("archived = %+v, want a0 trimmed by the default age", got)
	}
}

// One trim pass deletes at most 100 tasks per bound.
func TestArchiveTrimIsBounded(t *testing.T) {
	setup := func(t *testing.T) *scripttest.Env {
		env := scripttest.New(t)
		var ts []task
		for i := 0; i < 105; i++ {
			ts = append(ts, task{id: "d" + strconv.Itoa(1000+i), typ: "t", deadline: epochMS + 1})
		}
		mustRun(t, env, "enqueue", enqArgs(ts...)...)
		advance(env, 1)
		// All 105 miss their deadline at dequeue and are archived in one call.
		checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 1000, 1000, 0, 0, 0))
		snap := env.Snapshot(t)
		if len(snap[key("archived")].ZSet) != 105 || len(snap[key("tasks")].Hash) != 105 {
			t.Fatalf("%d archived, want 105", len(snap[key("archived")].ZSet))
		}
		return env
	}
	check := func(t *testing.T, env *scripttest.Env, wantArchived int, first string) {
		t.Helper()
		snap := env.Snapshot(t)
		z := snap[key("archived")].ZSet
		if len(z) != wantArchived || z[0].Member != first {
			t.Fatalf("%d archived (first %v), want %d starting at %s", len(z), z[:1], wantArchived, first)
		}
		if len(snap[key("tasks")].Hash) != wantArchived || len(snap[key("errors")].Hash) != wantArchived {
			t.Errorf("%d records and %d errors, want %d each", len(snap[key("tasks")].Hash), len(snap[key("errors")].Hash), wantArchived)
		}
	}
	t.Run("count", func(t *testing.T) {
		env := setup(t)
		hset(t, env, "meta", "archive_max", "2")
		archiveN(t, env, "x", 1) // 106 archived, 104 too many: 100 go
		check(t, env, 6, "d1100")
		archiveN(t, env, "y", 1) // 7, 5 too many
		check(t, env, 2, "x0")
	})
	t.Run("age", func(t *testing.T) {
		env := setup(t)
		hset(t, env, "meta", "archive_age_ms", "1000")
		advance(env, 1000)
		archiveN(t, env, "x", 1) // 105 old ones: 100 go
		check(t, env, 6, "d1100")
		archiveN(t, env, "y", 1)
		check(t, env, 2, "x0")
	})
}
