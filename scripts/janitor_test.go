package scripts_test

// janitor-lock and clean.

import (
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// lockV is the janitor lock held by owner (it always carries a TTL).
func lockV(owner string) keyspace.Value {
	return keyspace.Value{Type: keyspace.TypeString, String: owner, TTL: true}
}

// acquire takes the janitor lock of queue "q" for owner or fails the test.
func acquire(t *testing.T, env *scripttest.Env, owner string, ttl int64) {
	t.Helper()
	if got := mustRun(t, env, "janitor-lock", "acquire", owner, ms(ttl)); got != int64(1) {
		t.Fatalf("janitor-lock acquire %s = %#v, want 1", owner, got)
	}
}

// cleanReply is a decoded clean reply.
type cleanReply struct {
	Reclaimed, Expired, RetentionDeleted, UniqueFreed, StatsTrimmed, More int64
}

// clean runs clean as owner and decodes its reply.
func clean(t *testing.T, env *scripttest.Env, owner string, limit, backoff int64) cleanReply {
	t.Helper()
	v := mustRun(t, env, "clean", owner, ms(limit), ms(backoff))
	arr, ok := v.([]any)
	if !ok || len(arr) != 6 {
		t.Fatalf("clean reply %#v, want 6 integers", v)
	}
	n := make([]int64, 6)
	for i, x := range arr {
		if n[i], ok = x.(int64); !ok {
			t.Fatalf("clean reply element %d = %#v, want an integer", i, x)
		}
	}
	return cleanReply{n[0], n[1], n[2], n[3], n[4], n[5]}
}

func checkClean(t *testing.T, want, got cleanReply) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("clean reply (-want +got):\n%s", d)
	}
}

// cleanAll calls clean until it reports nothing more and returns the sum
// of its counts.
func cleanAll(t *testing.T, env *scripttest.Env, owner string, limit, backoff int64) cleanReply {
	t.Helper()
	var sum cleanReply
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("clean still reports more after 100 calls")
		}
		r := clean(t, env, owner, limit, backoff)
		sum.Reclaimed += r.Reclaimed
		sum.Expired += r.Expired
		sum.RetentionDeleted += r.RetentionDeleted
		sum.UniqueFreed += r.UniqueFreed
		sum.StatsTrimmed += r.StatsTrimmed
		if r.More == 0 {
			return sum
		}
	}
}

func TestJanitorLock(t *testing.T) {
	env := scripttest.New(t)
	steps := []struct {
		name      string
		advance   int64
		op, owner string
		ttl       int64
		want      int64
		wantOwner string        // "" = no lock
		wantTTL   time.Duration // the lock's remaining TTL
	}{
		{"renew a free lock", 0, "renew", "j1", 1000, 0, "", 0},
		{"release a free lock", 0, "release", "j1", 0, 0, "", 0},
		{"acquire a free lock", 0, "acquire", "j1", 30000, 1, "j1", 30 * time.Second},
		{"acquire a held lock", 0, "acquire", "j2", 30000, 0, "j1", 30 * time.Second},
		{"acquire a lock one holds already", 0, "acquire", "j1", 5000, 0, "j1", 30 * time.Second},
		{"renew by another owner", 1000, "renew", "j2", 60000, 0, "j1", 29 * time.Second},
		{"release by another owner", 0, "release", "j2", 0, 0, "j1", 29 * time.Second},
		{"release by an owner prefix", 0, "release", "j", 0, 0, "j1", 29 * time.Second},
		{"renew by the owner", 0, "renew", "j1", 60000, 1, "j1", 60 * time.Second},
		{"renew shorter", 0, "renew", "j1", 1, 1, "j1", time.Millisecond},
		{"renew to the maximum", 0, "renew", "j1", 86400000, 1, "j1", 24 * time.Hour},
		{"release by the owner", 0, "release", "j1", 0, 1, "", 0},
		{"release again", 0, "release", "j1", 0, 0, "", 0},
		{"renew after release", 0, "renew", "j1", 1000, 0, "", 0},
		{"acquire for 1 ms", 0, "acquire", "j2", 1, 1, "j2", time.Millisecond},
		{"renew once the TTL passed", 1, "renew", "j2", 1000, 0, "", 0},
		{"release once the TTL passed", 0, "release", "j2", 0, 0, "", 0},
		{"acquire after the TTL passed", 0, "acquire", "j1", 86400000, 1, "j1", 24 * time.Hour},
		{"release with a ttl (ignored)", 0, "release", "j1", 86400000, 1, "", 0},
	}
	for _, st := range steps {
		advance(env, st.advance)
		before := env.Snapshot(t)
		got := mustRun(t, env, "janitor-lock", st.op, st.owner, ms(st.ttl))
		if got != st.want {
			t.Errorf("%s: reply %#v, want %d", st.name, got, st.want)
		}
		want := keyspace.Snapshot{}
		if st.wantOwner != "" {
			want[key("lock")] = lockV(st.wantOwner)
		}
		if d := cmp.Diff(want, env.Snapshot(t)); d != "" {
			t.Errorf("%s: keyspace (-want +got):\n%s", st.name, d)
		}
		if st.want == 0 {
			if d := cmp.Diff(before, env.Snapshot(t)); d != "" {
				t.Errorf("%s: a refused operation changed the keyspace:\n%s", st.name, d)
			}
		}
		if ttl := env.Miniredis().TTL(key("lock")); ttl != st.wantTTL {
			t.Errorf("%s: lock TTL %v, want %v", st.name, ttl, st.wantTTL)
		}
	}
}

// TestJanitorLockIsPerQueue: the lock of one queue says nothing about
// another's.
func TestJanitorLockIsPerQueue(t *testing.T) {
	env := scripttest.New(t)
	acquire(t, env, "j1", 1000)
	if got := runOn(t, env, "other", "janitor-lock", "acquire", "j2", "1000"); got.Err != nil || got.Value != int64(1) {
		t.Fatalf("acquire on another queue = %#v, %v; want 1", got.Value, got.Err)
	}
	res := runOn(t, env, "other", "clean", "j1", "10", "0")
	checkCode(t, res, codeNotOwner)
}

// busyQueue builds a queue on which every step of clean has work once the
// clock passed 100 s: an expired lease (a), expired pending (e) and
// scheduled (s) tasks, archived tasks over the bounds, a completed task
// whose retention ended (r) and a unique key past its TTL (held by u).
func busyQueue(t *testing.T) *scripttest.Env {
	t.Helper()
	env := scripttest.New(t)
	hset(t, env, "meta", "archive_max", "1")
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("r0"), tk("z1"), tk("z2"))...)
	dequeue(t, env, 4, 1000, 0, 0, 0)
	mustRun(t, env, "retry-or-archive", "z1", "3", "x", "0", "1")
	hset(t, env, "meta", "archive_max", "10000")
	mustRun(t, env, "retry-or-archive", "z2", "4", "x", "0", "1")
	hset(t, env, "meta", "archive_max", "1")
	mustRun(t, env, "enqueue", enqArgs(
		task{id: "r", typ: "t", retention: 1000},
		task{id: "e", typ: "t", expireIn: 1000},
		task{id: "s", typ: "t", in: 500, expireIn: 1000, expireArchive: true},
		uniq("u", "k", 1000),
	)...)
	r := dequeue(t, env, 1, 100000, 0, 0, 0)
	mustRun(t, env, "complete", "r", ms(r.Tasks[0].Token), "res", "0", "0", "0")
	mustRun(t, env, "complete", "r0", "2", "", "0", "0", "0")
	advance(env, 100000)
	return env
}

func TestCleanRequiresTheLockOwner(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, env *scripttest.Env)
		owner string
	}{
		{"no lock", func(*testing.T, *scripttest.Env) {}, "j1"},
		{"held by another", func(t *testing.T, env *scripttest.Env) { acquire(t, env, "j2", 600000) }, "j1"},
		{"released", func(t *testing.T, env *scripttest.Env) {
			acquire(t, env, "j1", 600000)
			mustRun(t, env, "janitor-lock", "release", "j1", "0")
		}, "j1"},
		{"expired", func(t *testing.T, env *scripttest.Env) {
			acquire(t, env, "j1", 1)
			advance(env, 1)
		}, "j1"},
		{"owner differs in case", func(t *testing.T, env *scripttest.Env) { acquire(t, env, "j1", 600000) }, "J1"},
		{"owner is a prefix", func(t *testing.T, env *scripttest.Env) { acquire(t, env, "j1x", 600000) }, "j1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := busyQueue(t)
			tc.setup(t, env)
			unchanged(t, env, func() {
				checkCode(t, run(t, env, "clean", tc.owner, "1000", "0"), codeNotOwner)
			})
		})
	}
	// The same queue with the lock held: clean does work on every step.
	env := busyQueue(t)
	acquire(t, env, "j1", 600000)
	checkClean(t, cleanReply{Reclaimed: 1, Expired: 2, RetentionDeleted: 1, UniqueFreed: 1}, clean(t, env, "j1", 1000, 0))
	snap := env.Snapshot(t)
	if z := snap[key("archived")].ZSet; len(z) != 1 || z[0].Member != "s" {
		t.Errorf("archived = %+v, want only s (the archive trimmed to 1)", z)
	}
}

func TestCleanEmptyQueueWritesNothing(t *testing.T) {
	env := scripttest.New(t)
	acquire(t, env, "j1", 1000)
	unchanged(t, env, func() {
		checkClean(t, cleanReply{}, clean(t, env, "j1", 1, 0))
		checkClean(t, cleanReply{}, clean(t, env, "j1", 1000, 31536000000))
	})
	checkSnapshot(t, env, keyspace.Snapshot{key("lock"): lockV("j1")})
}

func TestCleanReclaimsExpiredLeases(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", payload: "pa", maxRetry: 1}
	b := task{id: "b", typ: "t", payload: "pb", maxRetry: 0, unique: "kb", uniqueTTL: 86400000}
	c := task{id: "c", typ: "t", payload: "pc", maxRetry: 3}
	mustRun(t, env, "enqueue", enqArgs(a, b, c)...)
	dequeue(t, env, 2, 1000, 0, 0, 0) // a 1, b 2
	dequeue(t, env, 1, 2000, 0, 0, 0) // c 3
	popWake(t, env)
	acquire(t, env, "j1", 600000)
	// A lease whose deadline is now has not expired.
	advance(env, 1000)
	unchanged(t, env, func() {
		checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 500))
	})
	advance(env, 1)
	now := nowMS(env)
	checkClean(t, cleanReply{Reclaimed: 2}, clean(t, env, "j1", 100, 500))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3"),
		key("tasks"): hashV(
			"a", record(1, 1, 0, 0, epochMS, "t", "pa"),
			"b", b.rec(epochMS).enc(),
			"c", record(0, 3, 0, 0, epochMS, "t", "pc"),
		),
		key("scheduled"): zsetV(zm{"a", now + 500}),
		key("active"):    zsetV(zm{"c", epochMS + 2000}),
		key("tokens"):    hashV("c", "3"),
		key("archived"):  zsetV(zm{"b", now}),
		key("errors"):    hashV("a", "lease expired", "b", "lease expired"),
		key("stats"):     statsV("failed", "2", "retried", "1", "archived", "1"),
		key("wake"):      wakeV(),
		key("lock"):      lockV("j1"),
	})
	// The reclaimed leases' tokens are dead.
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "complete", "a", "1", "", "0", "0", "0"), codeLeaseLost)
		checkCode(t, run(t, env, "extend", "b", "2", "1000"), codeLeaseLost)
	})
}

func TestCleanSweepsExpiredTasks(t *testing.T) {
	env := scripttest.New(t)
	l := task{id: "l", typ: "t", expireIn: 1000}
	mustRun(t, env, "enqueue", enqArgs(l)...)
	dequeue(t, env, 1, 86400000, 0, 0, 0) // l started in time: token 1
	p1 := task{id: "p1", typ: "t", payload: "1", expireIn: 1000, unique: "k1", uniqueTTL: 86400000}
	x := tk("x")
	p2 := task{id: "p2", typ: "t", payload: "2", expireIn: 1000, expireArchive: true, unique: "k2", uniqueTTL: 86400000}
	s1 := task{id: "s1", typ: "t", in: 500, expireIn: 1000}
	s2 := task{id: "s2", typ: "t", in: 500, expireIn: 1000, expireArchive: true}
	f := task{id: "f", typ: "t", expireIn: 1001}
	fs := task{id: "fs", typ: "t", in: 500, expireIn: 1001}
	mustRun(t, env, "enqueue", enqArgs(p1, x, p2, s1, s2, f, fs)...)
	popWake(t, env)
	acquire(t, env, "j1", 600000)
	advance(env, 1000)
	now := nowMS(env)
	checkClean(t, cleanReply{Expired: 4}, clean(t, env, "j1", 100, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "1"),
		key("tasks"): hashV(
			"l", l.rec(epochMS).started().enc(), // leased in time: expire_at 0
			"x", x.rec(epochMS).enc(),
			"p2", p2.rec(epochMS).enc(),
			"s2", s2.rec(epochMS).enc(),
			"f", f.rec(epochMS).enc(),
			"fs", fs.rec(epochMS).enc(),
		),
		key("pending"):   listV("x", "f"),
		key("scheduled"): zsetV(zm{"fs", epochMS + 500}),
		key("active"):    zsetV(zm{"l", epochMS + 86400000}),
		key("tokens"):    hashV("l", "1"),
		key("archived"):  zsetV(zm{"p2", now}, zm{"s2", now}),
		key("errors"):    hashV("p2", "expired", "s2", "expired"),
		key("stats"):     statsV("expired", "4", "archived", "2"),
		key("expiry"):    zsetV(zm{"f", epochMS + 1001}, zm{"fs", epochMS + 1001}),
		key("lock"):      lockV("j1"),
	})
	// The freed unique keys can be taken again.
	mustRun(t, env, "enqueue", enqArgs(uniq("n1", "k1", 10), uniq("n2", "k2", 10))...)
}

// TestCleanDropsStaleExpiryEntries: an expiry entry whose task is gone or
// running is dropped without counting anything.
func TestCleanDropsStaleExpiryEntries(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("l"))...)
	dequeue(t, env, 1, 86400000, 0, 0, 0)
	for _, id := range []string{"ghost", "l"} {
		if _, err := env.Miniredis().ZAdd(key("expiry"), float64(epochMS), id); err != nil {
			t.Fatal(err)
		}
	}
	acquire(t, env, "j1", 600000)
	before := env.Snapshot(t)
	checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0))
	delete(before, key("expiry"))
	checkSnapshot(t, env, before)
}

func TestCleanTrimsArchive(t *testing.T) {
	env := scripttest.New(t)
	archiveN(t, env, "a", 3) // a0 +0, a1 +1, a2 +2
	acquire(t, env, "j1", 600000)
	unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0)) })
	hset(t, env, "meta", "archive_max", "2")
	checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):    hashV("a1", record(0, 3, 0, 0, epochMS+1, "t", "p-a1"), "a2", record(0, 3, 0, 0, epochMS+2, "t", "p-a2")),
		key("archived"): zsetV(zm{"a1", epochMS + 1}, zm{"a2", epochMS + 2}),
		key("errors"):   hashV("a1", "err a1", "a2", "err a2"),
	}, "tasks", "archived", "errors")
	// By age: now is epoch+3; a1 is 2 ms old.
	hset(t, env, "meta", "archive_age_ms", "2")
	checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):    hashV("a2", record(0, 3, 0, 0, epochMS+2, "t", "p-a2")),
		key("archived"): zsetV(zm{"a2", epochMS + 2}),
		key("errors"):   hashV("a2", "err a2"),
	}, "tasks", "archived", "errors")
	hset(t, env, "meta", "archive_max", "0")
	checkClean(t, cleanReply{}, clean(t, env, "j1", 1, 0))
	checkKeys(t, env, keyspace.Snapshot{}, "tasks", "archived", "errors")
}

func TestCleanDeletesEndedRetention(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", retention: 1000}
	b := task{id: "b", typ: "t", retention: 2000}
	c := tk("c")
	mustRun(t, env, "enqueue", enqArgs(a, b, c)...)
	dequeue(t, env, 3, 86400000, 0, 0, 0)
	mustRun(t, env, "complete", "a", "1", "ra", "0", "0", "0")
	mustRun(t, env, "complete", "b", "2", "rb", "0", "0", "0")
	acquire(t, env, "j1", 600000)
	advance(env, 999)
	unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 60000)) })
	advance(env, 1)
	checkClean(t, cleanReply{RetentionDeleted: 1}, clean(t, env, "j1", 100, 60000))
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):     hashV("b", b.rec(epochMS).enc(), "c", c.rec(epochMS).enc()),
		key("completed"): zsetV(zm{"b", epochMS + 2000}),
		key("results"):   hashV("b", "rb"),
	}, "tasks", "completed", "results")
	// The id is free again.
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	advance(env, 1000)
	checkClean(t, cleanReply{RetentionDeleted: 1}, clean(t, env, "j1", 100, 60000))
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"): hashV("a", tk("a").rec(epochMS+1000).enc(), "c", c.rec(epochMS).enc()),
	}, "tasks", "completed", "results")
}

func TestCleanFreesUniqueKeysPastTTL(t *testing.T) {
	env := scripttest.New(t)
	a, b := uniq("a", "k1", 1000), uniq("b", "k2", 2000)
	mustRun(t, env, "enqueue", enqArgs(a, b)...)
	acquire(t, env, "j1", 600000)
	advance(env, 999)
	unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", 100, 0)) })
	advance(env, 1)
	checkClean(t, cleanReply{UniqueFreed: 1}, clean(t, env, "j1", 100, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):      hashV("a", a.rec(epochMS).enc(), "b", b.rec(epochMS).enc()), // a keeps its record, key and all
		key("pending"):    listV("a", "b"),
		key("unique"):     hashV("k2", "b"),
		key("unique_ttl"): zsetV(zm{"k2", epochMS + 2000}),
	}, "tasks", "pending", "unique", "unique_ttl")
	// Another task takes k1; a completing later leaves it alone.
	mustRun(t, env, "enqueue", enqArgs(uniq("c", "k1", 5000))...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	mustRun(t, env, "complete", "a", "1", "", "0", "0", "0")
	checkKeys(t, env, keyspace.Snapshot{
		key("unique"):     hashV("k1", "c", "k2", "b"),
		key("unique_ttl"): zsetV(zm{"k2", epochMS + 2000}, zm{"k1", epochMS + 6000}),
	}, "unique", "unique_ttl")
}

// TestCleanMoreFlag: each step handles at most limit items, and the reply
// says more (1) exactly when a step left due items behind: a call that says
// more is followed by one that handles something, and a call after one that
// says done handles nothing.
func TestCleanMoreFlag(t *testing.T) {
	tests := []struct {
		name  string
		n     int // items of the kind the step handles
		setup func(t *testing.T, env *scripttest.Env, n int)
		// one is the reply of a call that handles one item.
		one cleanReply
	}{
		{"reclaim", 0, func(t *testing.T, env *scripttest.Env, n int) {
			mustRun(t, env, "enqueue", enqArgs(batchOf("a", n, task{typ: "t", maxRetry: 3})...)...)
			dequeue(t, env, int64(n), 10, 0, 0, 0)
			advance(env, 11)
		}, cleanReply{Reclaimed: 1}},
		{"expired", 0, func(t *testing.T, env *scripttest.Env, n int) {
			mustRun(t, env, "enqueue", enqArgs(batchOf("e", n, task{typ: "t", expireIn: 10})...)...)
			advance(env, 10)
		}, cleanReply{Expired: 1}},
		{"expired scheduled", 0, func(t *testing.T, env *scripttest.Env, n int) {
			mustRun(t, env, "enqueue", enqArgs(batchOf("e", n, task{typ: "t", in: 5, expireIn: 10})...)...)
			advance(env, 10)
		}, cleanReply{Expired: 1}},
		{"retention", 0, func(t *testing.T, env *scripttest.Env, n int) {
			mustRun(t, env, "enqueue", enqArgs(batchOf("r", n, task{typ: "t", retention: 10})...)...)
			r := dequeue(t, env, int64(n), 1000, 0, 0, 0)
			for _, x := range r.Tasks {
				mustRun(t, env, "complete", x.ID, ms(x.Token), "", "0", "0", "0")
			}
			advance(env, 10)
		}, cleanReply{RetentionDeleted: 1}},
		{"unique", 0, func(t *testing.T, env *scripttest.Env, n int) {
			ts := batchOf("u", n, task{typ: "t", uniqueTTL: 10})
			for i := range ts {
				ts[i].unique = "k" + ts[i].id
			}
			mustRun(t, env, "enqueue", enqArgs(ts...)...)
			advance(env, 10)
		}, cleanReply{UniqueFreed: 1}},
	}
	for _, tc := range tests {
		for _, c := range []struct {
			n     int
			limit int64
			// calls is the expected number of items handled per call,
			// and whether that call says more.
			calls []int64
			more  []int64
		}{
			{3, 2, []int64{2, 1}, []int64{1, 0}},
			{2, 2, []int64{2}, []int64{0}}, // exactly the limit: done, no empty call after it
			{1, 2, []int64{1}, []int64{0}},
			{5, 1, []int64{1, 1, 1, 1, 1}, []int64{1, 1, 1, 1, 0}},
		} {
			t.Run(tc.name+"/"+strconv.Itoa(c.n)+" items, limit "+ms(c.limit), func(t *testing.T) {
				env := scripttest.New(t)
				tc.setup(t, env, c.n)
				acquire(t, env, "j1", 600000)
				for i, k := range c.calls {
					want := cleanReply{
						Reclaimed:        tc.one.Reclaimed * k,
						Expired:          tc.one.Expired * k,
						RetentionDeleted: tc.one.RetentionDeleted * k,
						UniqueFreed:      tc.one.UniqueFreed * k,
						More:             c.more[i],
					}
					checkClean(t, want, clean(t, env, "j1", c.limit, 60000))
				}
				unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", c.limit, 60000)) })
			})
		}
	}
	// The archive trim has its own batch of 100 per bound.
	t.Run("archive", func(t *testing.T) {
		env := scripttest.New(t)
		var ts []task
		for i := 0; i < 105; i++ {
			ts = append(ts, task{id: "d" + strconv.Itoa(1000+i), typ: "t", deadline: epochMS + 1})
		}
		mustRun(t, env, "enqueue", enqArgs(ts...)...)
		advance(env, 1)
		dequeue(t, env, 1000, 1000, 0, 0, 0) // all 105 archived for their deadline
		hset(t, env, "meta", "archive_max", "0")
		acquire(t, env, "j1", 600000)
		checkClean(t, cleanReply{More: 1}, clean(t, env, "j1", 1000, 0))
		if n := len(env.Snapshot(t)[key("archived")].ZSet); n != 5 {
			t.Fatalf("%d archived after one clean, want 5", n)
		}
		checkClean(t, cleanReply{}, clean(t, env, "j1", 1000, 0))
		checkKeys(t, env, keyspace.Snapshot{}, "archived", "tasks", "errors")
	})
	// Exactly one batch past the age bound: trimmed in one call that says done.
	t.Run("archive age, exactly one batch", func(t *testing.T) {
		env := scripttest.New(t)
		archiveN(t, env, "a", 100)
		hset(t, env, "meta", "archive_age_ms", "1")
		advance(env, 100)
		acquire(t, env, "j1", 600000)
		checkClean(t, cleanReply{}, clean(t, env, "j1", 1000, 0))
		checkKeys(t, env, keyspace.Snapshot{}, "archived", "tasks", "errors")
	})
}

// batchOf returns n copies of x with ids prefix0..prefix<n-1>.
func batchOf(prefix string, n int, x task) []task {
	out := make([]task, n)
	for i := range out {
		out[i] = x
		out[i].id = prefix + strconv.Itoa(i)
	}
	return out
}

// TestCleanLeavesOnlyBookkeeping: once every task of a queue reached a
// terminal state (completed with and without retention, expired at dequeue
// and by the janitor, archived and trimmed) and the janitor ran, only the
// queue's bookkeeping is left: meta, stats and the wake token (with its
// TTL). No task id appears anywhere.
func TestCleanLeavesOnlyBookkeeping(t *testing.T) {
	for _, bound := range []struct{ field, value string }{{"archive_max", "0"}, {"archive_age_ms", "1000"}} {
		t.Run(bound.field+" "+bound.value, func(t *testing.T) {
			env := scripttest.New(t)
			hset(t, env, "meta", bound.field, bound.value)
			ids := []string{"c1", "c2", "x1", "x2", "u4", "e3", "x3", "e1", "e2"}
			mustRun(t, env, "enqueue", enqArgs(
				uniq("c1", "u1", 86400000),
				task{id: "c2", typ: "t", retention: 500, unique: "u2", uniqueTTL: 86400000},
				tk("x1"),
				task{id: "x2", typ: "t", maxRetry: 0, expireIn: 5000},
				uniq("u4", "u4", 100),
			)...)
			dequeue(t, env, 5, 1000, 0, 0, 0) // c1 1, c2 2, x1 3, x2 4, u4 5
			mustRun(t, env, "complete", "c1", "1", "r1", "0", "0", "0")
			mustRun(t, env, "complete", "c2", "2", "r2", "0", "0", "0")
			mustRun(t, env, "retry-or-archive", "x1", "3", "fatal", "0", "1")
			mustRun(t, env, "enqueue", enqArgs(
				task{id: "e3", typ: "t", expireIn: 1000},
				task{id: "x3", typ: "t", deadline: epochMS + 1000},
				task{id: "e1", typ: "t", expireIn: 1000, unique: "u3", uniqueTTL: 86400000},
				task{id: "e2", typ: "t", in: 500, expireIn: 1000, expireArchive: true},
			)...)
			acquire(t, env, "j1", 600000)
			advance(env, 100)
			checkClean(t, cleanReply{UniqueFreed: 1}, clean(t, env, "j1", 1000, 0)) // u4's key
			mustRun(t, env, "complete", "u4", "5", "", "0", "0", "0")
			advance(env, 900)
			// e3 expired, x3 archived (deadline), then, popping on for their
			// places, e1 expired too; e2 (scheduled, overdue) makes the hint 0.
			checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env, 2, 1000, 0, 0, 0))
			advance(env, 1)
			checkClean(t, cleanReply{Reclaimed: 1, Expired: 1, RetentionDeleted: 1}, cleanAll(t, env, "j1", 1000, 0))
			advance(env, 1000)
			cleanAll(t, env, "j1", 1000, 0)
			if got := mustRun(t, env, "janitor-lock", "release", "j1", "0"); got != int64(1) {
				t.Fatalf("release = %#v, want 1", got)
			}
			snap := env.Snapshot(t)
			checkSnapshot(t, env, keyspace.Snapshot{
				key("meta"):  hashV("schema", "1", "fence", "8", bound.field, bound.value),
				key("stats"): statsV("processed", "3", "failed", "3", "archived", "4", "expired", "3"),
				key("wake"):  wakeV(),
			})
			for k, v := range snap {
				for _, id := range ids {
					if mentions(v, id) {
						t.Errorf("key %s still mentions task %s: %+v", k, id, v)
					}
				}
			}
			info := queueInfo(t, env)
			for _, n := range []string{"pending", "scheduled", "active", "archived", "completed"} {
				if info[n] != 0 {
					t.Errorf("queue-info %s = %d, want 0", n, info[n])
				}
			}
		})
	}
}

// mentions reports whether v holds s as a string, hash field or value, list
// element, set member or zset member.
func mentions(v keyspace.Value, s string) bool {
	if v.String == s {
		return true
	}
	for f, x := range v.Hash {
		if f == s || x == s {
			return true
		}
	}
	for _, x := range append(append([]string(nil), v.List...), v.Set...) {
		if x == s {
			return true
		}
	}
	for _, m := range v.ZSet {
		if m.Member == s {
			return true
		}
	}
	return false
}

// TestQueueInfoCompletedAndExpired: queue-info reports the retained
// completed tasks and the expired counter.
func TestQueueInfoCompletedAndExpired(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(
		task{id: "r", typ: "t", retention: 1000},
		task{id: "e", typ: "t", expireIn: 10},
		task{id: "ea", typ: "t", expireIn: 10, expireArchive: true},
	)...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	mustRun(t, env, "complete", "r", "1", "", "0", "0", "0")
	advance(env, 10)
	dequeue(t, env, 5, 1000, 0, 0, 0)
	unchanged(t, env, func() {
		want := map[string]int64{"pending": 0, "scheduled": 0, "active": 0, "archived": 1, "completed": 1, "paused": 0,
			"processed": 1, "failed": 0, "retried": 0, "archived_total": 1, "expired": 2}
		if d := cmp.Diff(want, queueInfo(t, env)); d != "" {
			t.Errorf("queue-info (-want +got):\n%s", d)
		}
	})
}
