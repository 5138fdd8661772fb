package scripts_test

// Unit tests of the admin scripts: configure, delete-task and run-archived.

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// TestConfigure: configure writes the archive bounds (and the schema of a
// new queue); archiving and the janitor's trim apply them.
func TestConfigure(t *testing.T) {
	env := scripttest.New(t)
	if got := mustRun(t, env, "configure", "2", "60000", "30"); got != int64(1) {
		t.Fatalf("configure = %#v, want 1", got)
	}
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "archive_max", "2", "archive_age_ms", "60000", "stats_days", "30"),
	})
	// Bounds at both ends are accepted, and overwrite.
	mustRun(t, env, "configure", "10000000", "3153600000000", "3650")
	mustRun(t, env, "configure", "0", "1", "1")
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "archive_max", "0", "archive_age_ms", "1", "stats_days", "1"),
	})

	env = scripttest.New(t)
	mustRun(t, env, "configure", "2", "60000", "30")
	a := func(id string) task { return task{id: id, typ: "t", payload: "p-" + id} } // no retries
	mustRun(t, env, "enqueue", enqArgs(a("a1"), a("a2"), a("a3"), a("a4"))...)
	dequeue(t, env, 4, 600000, 0, 0, 0) // tokens 1..4
	for i, id := range []string{"a1", "a2", "a3"} {
		mustRun(t, env, "retry-or-archive", id, strconv.Itoa(i+1), "e-"+id, "0", "0")
		advance(env, 1)
	}
	archived := func(ids ...string) keyspace.Snapshot {
		want := keyspace.Snapshot{}
		if len(ids) == 0 {
			return want
		}
		var zs []zm
		tasks, errs := map[string]string{}, map[string]string{}
		for _, id := range ids {
			n, _ := strconv.Atoi(strings.TrimPrefix(id, "a"))
			zs = append(zs, zm{id, epochMS + int64(n) - 1})
			tasks[id] = a(id).rec(epochMS).enc()
			errs[id] = "e-" + id
		}
		want[key("archived")] = zsetV(zs...)
		want[key("tasks")] = keyspace.Value{Type: keyspace.TypeHash, Hash: tasks}
		want[key("errors")] = keyspace.Value{Type: keyspace.TypeHash, Hash: errs}
		return want
	}
	// The third archived task pushed the oldest out, with all its data.
	want := archived("a2", "a3")
	want[key("tasks")].Hash["a4"] = a("a4").rec(epochMS).enc()
	checkKeys(t, env, want, "archived", "tasks", "errors")
	// A lower bound is not applied by configure itself...
	mustRun(t, env, "configure", "1", "60000", "30")
	checkKeys(t, env, want, "archived", "tasks", "errors")
	// ...but by the janitor's next trim.
	acquire(t, env, "j1", 600000)
	clean(t, env, "j1", 100, 0)
	want = archived("a3")
	want[key("tasks")].Hash["a4"] = a("a4").rec(epochMS).enc()
	checkKeys(t, env, want, "archived", "tasks", "errors")
	// The age bound: a3 (archived at epoch+2) is older than 50 ms at epoch+53.
	mustRun(t, env, "configure", "100", "50", "30")
	advance(env, 50) // now epoch+53
	clean(t, env, "j1", 100, 0)
	want = keyspace.Snapshot{key("tasks"): hashV("a4", a("a4").rec(epochMS).enc())}
	checkKeys(t, env, want, "archived", "tasks", "errors")
	// archive_max 0: an archived task is deleted at once, but still counted.
	mustRun(t, env, "configure", "0", "60000", "30")
	checkOutcome(t, mustRun(t, env, "retry-or-archive", "a4", "4", "e-a4", "0", "0"), "archived", nowMS(env))
	checkKeys(t, env, keyspace.Snapshot{key("stats"): statsV("failed", "4", "archived", "4")}, "archived", "tasks", "errors", "stats")
}

// without is snap with every trace of task id removed: its field of every
// hash, its member of every zset, its element of every list, and its unique
// key k (when id holds it); keys left empty disappear.
func without(snap keyspace.Snapshot, id, k string) keyspace.Snapshot {
	out := keyspace.Snapshot{}
	for name, v := range snap {
		switch v.Type {
		case keyspace.TypeHash:
			h := map[string]string{}
			for f, x := range v.Hash {
				if f == id || (name == key("unique") && f == k && x == id) {
					continue
				}
				h[f] = x
			}
			if len(h) == 0 {
				continue
			}
			v.Hash = h
		case keyspace.TypeZSet:
			holds := k != "" && snap[key("unique")].Hash[k] == id
			v.ZSet = slices.DeleteFunc(slices.Clone(v.ZSet), func(m keyspace.Member) bool {
				return m.Member == id || (name == key("unique_ttl") && holds && m.Member == k)
			})
			if len(v.ZSet) == 0 {
				continue
			}
		case keyspace.TypeList:
			v.List = slices.DeleteFunc(slices.Clone(v.List), func(m string) bool { return m == id })
			if len(v.List) == 0 {
				continue
			}
		}
		out[name] = v
	}
	return out
}

// TestDeleteTask deletes a task in each state it may be deleted in and
// checks that every trace of it, and nothing else, is gone: afterwards its id
// and its unique key can be taken again.
func TestDeleteTask(t *testing.T) {
	tests := []struct {
		name string
		// setup leaves task x (unique key "k" unless noted) in a state,
		// next to other tasks.
		setup func(t *testing.T, env *scripttest.Env)
		state string
		k     string // x's unique key
	}{
		{"pending", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("x"), tk("c"))...)
		}, "pending", ""},
		{"pending, expiry and unique key", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(tk("a"),
				task{id: "x", typ: "t", payload: "px", expireIn: 5000, unique: "k", uniqueTTL: 60000}, tk("c"))...)
		}, "pending", "k"},
		{"pending, unique key since taken by another task", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(uniq("x", "k", 10))...)
			advance(env, 20)
			mustRun(t, env, "enqueue", enqArgs(uniq("y", "k", 60000))...)
		}, "pending", "k"},
		{"scheduled", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(tk("a"),
				task{id: "x", typ: "t", in: 5000, expireIn: 10000, unique: "k", uniqueTTL: 60000})...)
		}, "scheduled", "k"},
		{"scheduled for a retry", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(uniq("x", "k", 60000), tk("b"))...)
			dequeue(t, env, 2, 1000, 0, 0, 0)
			mustRun(t, env, "retry-or-archive", "x", "1", "boom", "5000", "0")
		}, "scheduled", "k"},
		{"archived", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(uniq("x", "k", 60000), tk("b"))...)
			dequeue(t, env, 2, 1000, 0, 0, 0)
			mustRun(t, env, "retry-or-archive", "x", "1", "fatal", "0", "1")
		}, "archived", "k"},
		{"archived on expiry", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(
				task{id: "x", typ: "t", expireIn: 10, expireArchive: true, unique: "k", uniqueTTL: 60000}, tk("b"))...)
			advance(env, 10)
			dequeue(t, env, 2, 1000, 0, 0, 0)
		}, "archived", "k"},
		{"completed, kept for its retention", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "enqueue", enqArgs(task{id: "x", typ: "t", retention: 60000, unique: "k", uniqueTTL: 60000}, tk("b"))...)
			dequeue(t, env, 2, 1000, 0, 0, 0)
			mustRun(t, env, "complete", "x", "1", "res\x00", "0", "0", "0")
		}, "completed", "k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			tc.setup(t, env)
			before := env.Snapshot(t)
			if _, ok := before[key("tasks")].Hash["x"]; !ok {
				t.Fatal("setup left no task x")
			}
			if got := mustRun(t, env, "delete-task", "x"); got != tc.state {
				t.Errorf("delete-task = %#v, want %q", got, tc.state)
			}
			want := without(before, "x", tc.k)
			if cmp.Equal(want, before) {
				t.Fatal("test bug: without removed nothing")
			}
			checkSnapshot(t, env, want)
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "delete-task", "x"), codeNotFound)
			})
			// The id, and the unique key unless another task holds it, are free.
			if holder := want[key("unique")].Hash["k"]; holder != "" {
				checkCode(t, run(t, env, "enqueue", enqArgs(uniq("z", "k", 10))...), codeConflict)
				mustRun(t, env, "enqueue", enqArgs(tk("x"))...)
			} else {
				mustRun(t, env, "enqueue", enqArgs(uniq("x", "k", 10))...)
			}
		})
	}
}

// TestDeleteTaskRefusals: a running task, even with an expired lease, is
// refused; and a pending task while pending holds more than 100000 ids.
func TestDeleteTaskRefusals(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	advance(env, 5000)
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "delete-task", "a"), codeConflict)
	})

	env = scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("b"), task{id: "s", typ: "t", in: 5000})...)
	fill := make([]string, 100000)
	for i := range fill {
		fill[i] = "f" + strconv.Itoa(i)
	}
	if _, err := env.Miniredis().Push(key("pending"), fill...); err != nil { // 100001 ids
		t.Fatal(err)
	}
	unchanged(t, env, func() {
		res := run(t, env, "delete-task", "b")
		checkCode(t, res, codeBadArg)
		if !strings.Contains(res.Err.Error(), "100000") {
			t.Errorf("error %q does not name the bound", res.Err)
		}
	})
	// A scheduled task is not in pending: deleted whatever its length.
	if got := mustRun(t, env, "delete-task", "s"); got != "scheduled" {
		t.Errorf("delete-task s = %#v, want scheduled", got)
	}
	// Exactly 100000 ids: deleted.
	if _, err := env.Miniredis().Pop(key("pending")); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, env, "delete-task", "b"); got != "pending" {
		t.Errorf("delete-task b = %#v, want pending", got)
	}
	snap := env.Snapshot(t)
	if n := len(snap[key("pending")].List); n != 99999 || slices.Contains(snap[key("pending")].List, "b") {
		t.Errorf("pending holds %d ids (b: %v), want the 99999 others", n, slices.Contains(snap[key("pending")].List, "b"))
	}
	if _, ok := snap[key("tasks")].Hash["b"]; ok {
		t.Error("b's record left")
	}
}

// TestRunArchived: an archived task goes to the tail of pending with its
// retry count reset, its error, expiry and unique key cleared, the rest of
// its record as it was; it is then leased like a new task.
func TestRunArchived(t *testing.T) {
	t.Run("after failures", func(t *testing.T) {
		env := scripttest.New(t)
		x := task{id: "x", typ: "t", payload: "px", maxRetry: 1, timeout: 10, expireIn: 60000, retention: 5000,
			unique: "k", uniqueTTL: 60000}
		mustRun(t, env, "enqueue", enqArgs(x, tk("b"))...)
		dequeue(t, env, 1, 1000, 0, 0, 0)                              // x 1
		mustRun(t, env, "retry-or-archive", "x", "1", "one", "0", "0") // retried 1
		dequeue(t, env, 2, 1000, 10, 0, 0)                             // b 2, x 3
		checkOutcome(t, mustRun(t, env, "retry-or-archive", "x", "3", "two", "0", "0"), "archived", epochMS)
		popWake(t, env)
		before := env.Snapshot(t)
		if got := mustRun(t, env, "run-archived", "x"); got != int64(1) {
			t.Fatalf("run-archived = %#v, want 1", got)
		}
		r := x.rec(epochMS).started()
		r.unique = ""
		want := keyspace.Snapshot{}
		for k, v := range before {
			want[k] = v
		}
		delete(want, key("archived"))
		delete(want, key("errors"))
		want[key("tasks")] = hashV("x", r.enc(), "b", tk("b").rec(epochMS).enc())
		want[key("pending")] = listV("x")
		want[key("wake")] = wakeV()
		checkSnapshot(t, env, want)
		// Its old unique key is not taken again.
		mustRun(t, env, "enqueue", enqArgs(uniq("y", "k", 60000))...)
		d := dequeue(t, env, 1, 1000, 0, 0, 0)
		if d.Leased != 1 || d.Tasks[0].ID != "x" || d.Tasks[0].Retried != 0 {
			t.Fatalf("dequeue after run-archived = %+v, want x with retried 0", d)
		}
	})
	t.Run("after its expiry", func(t *testing.T) {
		env := scripttest.New(t)
		x := task{id: "x", typ: "t", payload: "px", expireIn: 10, expireArchive: true, unique: "k", uniqueTTL: 60000}
		mustRun(t, env, "enqueue", enqArgs(tk("a"), x)...)
		advance(env, 10)
		dequeue(t, env, 2, 1000, 0, 0, 0) // a leased, x archived ('expired')
		mustRun(t, env, "run-archived", "x")
		r := x.rec(epochMS)
		r.expireAt, r.unique = 0, ""
		checkKeys(t, env, keyspace.Snapshot{
			key("tasks"):   hashV("a", tk("a").rec(epochMS).enc(), "x", r.enc()),
			key("pending"): listV("x"),
		}, "tasks", "pending", "archived", "errors", "expiry", "unique", "unique_ttl")
		advance(env, 1000)
		d := dequeue(t, env, 1, 1000, 0, 0, 0)
		if d.Leased != 1 || d.Tasks[0].ID != "x" {
			t.Fatalf("dequeue after run-archived = %+v, want x leased: its expiry was cleared", d)
		}
	})
}

// TestRunArchivedLeavesOthers: the archive's other members, and a task holding
// x's old unique key, are left alone.
func TestRunArchivedLeavesOthers(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(task{id: "x", typ: "t", unique: "k", uniqueTTL: 60000}, task{id: "y", typ: "t"})...)
	dequeue(t, env, 2, 1000, 0, 0, 0)
	mustRun(t, env, "retry-or-archive", "x", "1", "ex", "0", "0")
	mustRun(t, env, "retry-or-archive", "y", "2", "ey", "0", "0")
	mustRun(t, env, "enqueue", enqArgs(uniq("z", "k", 60000))...)
	mustRun(t, env, "run-archived", "x")
	snap := env.Snapshot(t)
	if d := cmp.Diff(zsetV(zm{"y", epochMS}), snap[key("archived")]); d != "" {
		t.Errorf("archived (-want +got):\n%s", d)
	}
	if d := cmp.Diff(hashV("y", "ey"), snap[key("errors")]); d != "" {
		t.Errorf("errors (-want +got):\n%s", d)
	}
	if d := cmp.Diff(hashV("k", "z"), snap[key("unique")]); d != "" {
		t.Errorf("unique (-want +got):\n%s", d)
	}
}
