package scripts_test

// Stale pending entries (lib/expire): the janitor expires a pending task
// behind a backlog longer than its scan budget without taking its entry out
// of the list, and lease calls drop such entries when they pop them.

import (
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// pushFiller appends n ids without records (f0, f1, ...) to pending.
func pushFiller(t *testing.T, env *scripttest.Env, n int) {
	t.Helper()
	filler := make([]string, n)
	for i := range filler {
		filler[i] = "f" + strconv.Itoa(i)
	}
	if _, err := env.Miniredis().Push(key("pending"), filler...); err != nil {
		t.Fatal(err)
	}
}

// pendingOf returns the length and the last element of pending.
func pendingOf(t *testing.T, env *scripttest.Env) (int, string) {
	t.Helper()
	p := env.Snapshot(t)[key("pending")].List
	if len(p) == 0 {
		return 0, ""
	}
	return len(p), p[len(p)-1]
}

// TestCleanPendingScanBudget: clean takes expired ids out of pending while
// a scan of 100000 list elements per call lasts; past it, the task is
// expired all the same and its entry is left behind, stale, counted in the
// stale hash and the meta field 'stale' (which also raises the schema to 2).
// queue-info does not count stale entries as pending.
func TestCleanPendingScanBudget(t *testing.T) {
	env := scripttest.New(t)
	pushFiller(t, env, 60000)
	mustRun(t, env, "enqueue", enqArgs(task{id: "e1", typ: "t", expireIn: 10}, task{id: "e2", typ: "t", expireIn: 10})...)
	acquire(t, env, "j1", 600000)
	advance(env, 10)
	// e1 costs 60002 of the budget; e2 (60001 left to scan) does not fit:
	// expired too, its entry left stale.
	checkClean(t, cleanReply{Expired: 2}, clean(t, env, "j1", 100, 0))
	if n, last := pendingOf(t, env); n != 60001 || last != "e2" {
		t.Fatalf("pending has %d ids ending %q, want 60001 ending e2", n, last)
	}
	checkKeys(t, env, keyspace.Snapshot{
		key("meta"):  hashV("schema", "2", "stale", "1"),
		key("stale"): hashV("e2", "1"),
		key("stats"): statsV("expired", "2"),
	}, "meta", "stale", "stats", "tasks", "expiry")
	if got := queueInfo(t, env)["pending"]; got != 60000 {
		t.Errorf("queue-info pending = %d, want 60000 (the stale entry not counted)", got)
	}
	unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0)) })

	// A backlog longer than the whole budget: nothing leaves the list.
	env2 := scripttest.New(t)
	pushFiller(t, env2, 100000)
	mustRun(t, env2, "enqueue", enqArgs(task{id: "e", typ: "t", expireIn: 10, expireArchive: true})...)
	acquire(t, env2, "j1", 600000)
	advance(env2, 10)
	checkClean(t, cleanReply{Expired: 1}, clean(t, env2, "j1", 100, 0))
	now := nowMS(env2)
	checkKeys(t, env2, keyspace.Snapshot{
		key("meta"):     hashV("schema", "2", "stale", "1"),
		key("stale"):    hashV("e", "1"),
		key("archived"): zsetV(zm{"e", now}),
		key("errors"):   hashV("e", "expired"),
	}, "meta", "stale", "archived", "errors", "expiry")
	if n, last := pendingOf(t, env2); n != 100001 || last != "e" {
		t.Fatalf("pending has %d ids ending %q, want 100001 ending e", n, last)
	}
}

// staleQueue sets up, by hand, the state clean leaves: records for ids,
// pending holding order, and stale counts (id, count, ...).
func staleQueue(t *testing.T, ids []task, order []string, stale ...string) *scripttest.Env {
	t.Helper()
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(ids...)...)
	env.Miniredis().Del(key("pending"))
	if _, err := env.Miniredis().Push(key("pending"), order...); err != nil {
		t.Fatal(err)
	}
	total := 0
	for i := 0; i+1 < len(stale); i += 2 {
		n, _ := strconv.Atoi(stale[i+1])
		total += n
	}
	hset(t, env, "stale", stale...)
	hset(t, env, "meta", "schema", "2", "stale", strconv.Itoa(total))
	popWake(t, env)
	return env
}

// TestDequeueDropsStaleEntries: a lease call drops a popped entry while its
// id's stale count is above 0 (whatever the id is now: a new pending task
// under the same id keeps its own, later entry), lowers the counts, gives
// it no token, and pops on for its place.
func TestDequeueDropsStaleEntries(t *testing.T) {
	x, y, z := tk("x"), tk("y"), tk("z")
	tests := []struct {
		name  string
		order []string
		stale []string
		count int64
		// want is the ids leased, in order, with tokens from 1.
		want      []task
		pending   []string
		meta      keyspace.Value
		staleLeft keyspace.Value
	}{
		{"stale then live entry of one id in one pop", []string{"x", "y", "x", "z"}, []string{"x", "1"}, 3,
			[]task{y, x, z}, nil, hashV("schema", "2", "fence", "3"), keyspace.Value{}},
		{"two stale entries before the live one", []string{"x", "x", "x", "y"}, []string{"x", "2"}, 1,
			[]task{x}, []string{"y"}, hashV("schema", "2", "fence", "1"), keyspace.Value{}},
		{"stale entries of another id left counted", []string{"x", "y", "z"}, []string{"x", "1", "z", "1"}, 1,
			[]task{y}, []string{"z"}, hashV("schema", "2", "fence", "1", "stale", "1"), hashV("z", "1")},
		{"only stale entries", []string{"x", "x"}, []string{"x", "2"}, 5,
			nil, nil, hashV("schema", "2"), keyspace.Value{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := staleQueue(t, []task{x, y, z}, tc.order, tc.stale...)
			want := deqReply{Leased: int64(len(tc.want)), NextDue: -1}
			for i, w := range tc.want {
				want.Tasks = append(want.Tasks, lt(w, int64(i+1), 0, epochMS+1000))
			}
			checkDeq(t, want, dequeue(t, env, tc.count, 1000, 0, 0, 0))
			snap := env.Snapshot(t)
			if d := cmp.Diff(tc.meta, snap[key("meta")]); d != "" {
				t.Errorf("meta (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.staleLeft, snap[key("stale")]); d != "" {
				t.Errorf("stale (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.pending, snap[key("pending")].List); d != "" {
				t.Errorf("pending (-want +got):\n%s", d)
			}
		})
	}
}

// TestStaleEntryOfReusedID: after clean left stale entries for x (deleted
// on expiry) and a (archived on expiry), a new task x under the same id and
// a run again from the archive each get a new entry at the tail; the lease
// calls drop the stale entries and lease each task once, from its own entry.
func TestStaleEntryOfReusedID(t *testing.T) {
	env := scripttest.New(t)
	x := task{id: "x", typ: "t", payload: "old", expireIn: 10}
	a := task{id: "a", typ: "t", payload: "pa", expireIn: 10, expireArchive: true}
	mustRun(t, env, "enqueue", enqArgs(x, a)...)
	pushFiller(t, env, 100000)
	acquire(t, env, "j1", 600000)
	advance(env, 10)
	checkClean(t, cleanReply{Expired: 2}, clean(t, env, "j1", 100, 0))
	checkKeys(t, env, keyspace.Snapshot{key("stale"): hashV("x", "1", "a", "1")}, "stale")

	x2 := task{id: "x", typ: "t", payload: "new"}
	mustRun(t, env, "enqueue", enqArgs(x2)...)
	mustRun(t, env, "run-archived", "a")
	if got := queueInfo(t, env)["pending"]; got != 100002 {
		t.Errorf("queue-info pending = %d, want 100002 (the filler, x and a)", got)
	}
	// The head holds the stale x and a: dropped, no tokens; the pop goes on
	// into the filler (no records: dropped with tokens) up to 1000 extra.
	checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env, 1, 1000, 0, 0, 0))
	checkKeys(t, env, keyspace.Snapshot{key("meta"): hashV("schema", "2", "fence", "999")}, "meta", "stale")
	// Drain the filler; x and a come last, each leased once.
	var got []leased
	for i := 0; i < 200; i++ {
		r := dequeue(t, env, 1000, 1000, 0, 0, 0)
		got = append(got, r.Tasks...)
		if r.NextDue == -1 && r.Leased == 0 {
			break
		}
	}
	// The 100000 filler ids used tokens 1..100000.
	now := nowMS(env)
	want := []leased{lt(x2, 100001, 0, now+1000), lt(task{id: "a", typ: "t", payload: "pa"}, 100002, 0, now+1000)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("leased after the filler (-want +got):\n%s", d)
	}
	if info := queueInfo(t, env); info["pending"] != 0 || info["active"] != 2 || info["expired"] != 2 {
		t.Errorf("queue-info %v: want nothing pending, x and a active, 2 expired", info)
	}
}

// TestDequeuePopsOnBounded: a lease call pops on for the places of entries
// it cannot lease, at most 1000 entries beyond count; when it stops short it
// signals the wake list and replies next_due_in_ms 0, and the next call goes
// on from there.
func TestDequeuePopsOnBounded(t *testing.T) {
	env := scripttest.New(t)
	pushFiller(t, env, 1500)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	popWake(t, env)
	checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env, 1, 1000, 0, 0, 0))
	if n, last := pendingOf(t, env); n != 1502-1001 || last != "b" {
		t.Fatalf("pending has %d ids ending %q, want %d ending b", n, last, 1502-1001)
	}
	checkKeys(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "1001"),
		key("wake"): wakeV(),
	}, "meta", "wake")
	popWake(t, env)
	checkDeq(t, deqReply{Leased: 2, NextDue: -1, Tasks: []leased{lt(tk("a"), 1001+500, 0, epochMS+1000), lt(tk("b"), 1001+501, 0, epochMS+1000)}},
		dequeue(t, env, 2, 1000, 0, 0, 0))
	checkKeys(t, env, keyspace.Snapshot{}, "pending", "wake")
}

// TestCleanReclaimWakesIdleWorkers: idle workers do not wait for lease
// deadlines (a dequeue's hint ignores them), so clean's reclaim of an
// expired lease signals the wake list, and the woken worker's dequeue hint
// is the retry's due time.
func TestCleanReclaimWakesIdleWorkers(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	popWake(t, env)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	unchanged(t, env, func() { checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 1, 1000, 10, 0, 0)) })
	acquire(t, env, "j1", 600000)
	advance(env, 1001)
	checkClean(t, cleanReply{Reclaimed: 1}, clean(t, env, "j1", 100, 250))
	checkKeys(t, env, keyspace.Snapshot{
		key("scheduled"): zsetV(zm{"a", nowMS(env) + 250}),
		key("wake"):      wakeV(),
	}, "scheduled", "active", "wake")
	popWake(t, env)
	checkDeq(t, deqReply{NextDue: 250}, dequeue(t, env, 1, 1000, 10, 0, 0))
	advance(env, 250)
	r := dequeue(t, env, 1, 1000, 10, 0, 0)
	if r.Leased != 1 || r.Tasks[0].ID != "a" || r.Tasks[0].Retried != 1 {
		t.Errorf("dequeue after the backoff: %+v, want a with one retry", r)
	}
}
