package scripts_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func checkDeq(t *testing.T, want, got deqReply) {
	t.Helper()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("dequeue reply (-want +got):\n%s", d)
	}
}

// popWake imitates an idle worker's BLPOP taking the wake token.
func popWake(t *testing.T, env *scripttest.Env) {
	t.Helper()
	if _, err := env.Miniredis().Lpop(key("wake")); err != nil {
		t.Fatalf("no wake token to take: %v", err)
	}
}

func TestDequeueEmptyQueueWritesNothing(t *testing.T) {
	env := scripttest.New(t)
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 10, 1000, 100, 100, 0))
	})
	checkSnapshot(t, env, keyspace.Snapshot{})
}

func TestDequeueFIFOTokensAndLeaseDeadlines(t *testing.T) {
	env := scripttest.New(t)
	a, b, c := tk("a"), task{id: "b", typ: "x:y", payload: "", maxRetry: 0, timeout: 700, deadline: epochMS + 999999}, tk("c")
	mustRun(t, env, "enqueue", enqArgs(a, b, c)...)
	popWake(t, env)

	checkDeq(t, deqReply{Leased: 2, NextDue: -1, Tasks: []leased{
		lt(a, 1, 0, epochMS+30000),
		lt(b, 2, 0, epochMS+30000),
	}}, dequeue(t, env, 2, 30000, 0, 0, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "2"),
		key("tasks"): hashV(
			"a", record(0, 3, 0, 0, epochMS, "t", "p-a"),
			"b", record(0, 0, 700, epochMS+999999, epochMS, "x:y", ""),
			"c", record(0, 3, 0, 0, epochMS, "t", "p-c"),
		),
		key("pending"): listV("c"),
		key("active"):  zsetV(zm{"a", epochMS + 30000}, zm{"b", epochMS + 30000}),
		key("tokens"):  hashV("a", "1", "b", "2"),
		key("wake"):    wakeV(), // pending tasks remain: another worker is woken
	})

	popWake(t, env)
	advance(env, 100)
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(c, 3, 0, epochMS+100+1000)}},
		dequeue(t, env, 5, 1000, 0, 0, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("meta"):   hashV("schema", "1", "fence", "3"),
		key("active"): zsetV(zm{"c", epochMS + 1100}, zm{"a", epochMS + 30000}, zm{"b", epochMS + 30000}),
		key("tokens"): hashV("a", "1", "b", "2", "c", "3"),
		// pending is empty, so no wake token is left behind.
	}, "meta", "pending", "active", "tokens", "wake")

	// Nothing pending or scheduled: no hint (-1), although leases run. An
	// idle worker does not wake to reclaim them: the janitor does, and its
	// retry signals the wake list (TestCleanReclaimWakesIdleWorkers).
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 5, 1000, 10, 0, 0))
	})
}

func TestDequeueNextDueIn(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(task{id: "s", typ: "t", in: 5000})...)
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: 5000}, dequeue(t, env, 1, 1000, 10, 10, 0))
	})
	advance(env, 2000)
	checkDeq(t, deqReply{NextDue: 3000}, dequeue(t, env, 1, 1000, 10, 10, 0))
	// Overdue but not promoted (promote_limit 0): due now.
	advance(env, 4000)
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env, 1, 1000, 0, 10, 0))
	})
	// Lease deadlines never count: only the schedule does.
	mustRun(t, env, "enqueue", enqArgs(tk("p"), task{id: "s2", typ: "t", in: 9000})...)
	r := dequeue(t, env, 1, 500, 0, 0, 0)
	if r.Leased != 1 || r.Tasks[0].ID != "p" {
		t.Fatalf("leased %+v, want p", r)
	}
	// s (overdue) is still scheduled: 0 wins.
	checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env, 1, 500, 0, 0, 0))
	// Lease s away (promote it): s2 at 9000 is the hint, not the leases
	// ending at 500.
	r = dequeue(t, env, 1, 500, 1, 0, 0)
	if r.Leased != 1 || r.Tasks[0].ID != "s" {
		t.Fatalf("leased %+v, want s", r)
	}
	checkDeq(t, deqReply{NextDue: 9000}, dequeue(t, env, 1, 500, 0, 0, 0))
	advance(env, 501)
	// Both leases have expired; with reclaim_limit 0 nothing moves and the
	// hint is still s2's due time.
	checkDeq(t, deqReply{NextDue: 9000 - 501}, dequeue(t, env, 1, 500, 0, 0, 0))
}

func TestDequeuePromoteLimitAndOrder(t *testing.T) {
	env := scripttest.New(t)
	p := tk("p")
	s1, s2, s3 := task{id: "s1", typ: "t", in: 1000}, task{id: "s2", typ: "t", in: 2000}, task{id: "s3", typ: "t", in: 3000}
	mustRun(t, env, "enqueue", enqArgs(s3, p, s2, s1)...)
	advance(env, 5000)
	now := nowMS(env)
	checkDeq(t, deqReply{Leased: 3, NextDue: -1, Tasks: []leased{
		lt(p, 1, 0, now+1000), lt(s1, 2, 0, now+1000), lt(s2, 3, 0, now+1000),
	}}, dequeue(t, env, 10, 1000, 2, 0, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("scheduled"): zsetV(zm{"s3", epochMS + 3000}),
	}, "scheduled", "pending")

	// Promotion goes to the tail of pending, behind tasks already there.
	mustRun(t, env, "enqueue", enqArgs(tk("q1"))...)
	r := dequeue(t, env, 1, 1000, 5, 0, 0)
	if r.Leased != 1 || r.Tasks[0].ID != "q1" {
		t.Fatalf("leased %+v, want q1", r.Tasks)
	}
	checkKeys(t, env, keyspace.Snapshot{key("pending"): listV("s3")}, "scheduled", "pending")
}

func TestDequeuePaused(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"), task{id: "s", typ: "t", in: 10})...)
	r := dequeue(t, env, 1, 1000, 0, 0, 0)
	if mustRun(t, env, "set-paused", "1") != int64(1) {
		t.Fatal("set-paused 1 did not report a change")
	}
	advance(env, 2000)
	// Paused: no lease, no promotion, but the expired lease of a is still reclaimed.
	checkDeq(t, deqReply{NextDue: -1, Paused: 1}, dequeue(t, env, 5, 1000, 10, 10, 60000))
	now := nowMS(env)
	checkKeys(t, env, keyspace.Snapshot{
		key("pending"):   listV("b"),
		key("scheduled"): zsetV(zm{"s", epochMS + 10}, zm{"a", now + 60000}),
		key("errors"):    hashV("a", "lease expired"),
		key("stats"):     statsV("failed", "1", "retried", "1"),
		key("meta"):      hashV("schema", "1", "fence", "1", "paused", "1"),
	}, "pending", "scheduled", "active", "tokens", "errors", "stats", "meta")
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: -1, Paused: 1}, dequeue(t, env, 5, 1000, 10, 10, 0))
	})
	mustRun(t, env, "set-paused", "0")
	got := dequeue(t, env, 5, 1000, 10, 10, 0)
	if got.Leased != 2 || got.Tasks[0].ID != "b" || got.Tasks[1].ID != "s" || got.Tasks[1].Token != 3 {
		t.Errorf("after resume leased %+v, want b then s (token 3)", got.Tasks)
	}
	_ = r
}

func TestDequeueArchivesTasksPastDeadline(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", maxRetry: 5, deadline: epochMS + 1000}
	b := tk("b")
	c := task{id: "c", typ: "t", deadline: epochMS + 1001}
	mustRun(t, env, "enqueue", enqArgs(a, b, c)...)
	advance(env, 1000)
	now := nowMS(env)
	// a's deadline is now: archived. Its token (1) is burnt; b gets 2, c (deadline now+1) gets 3.
	checkDeq(t, deqReply{Leased: 2, NextDue: -1, Tasks: []leased{lt(b, 2, 0, now+5000), lt(c, 3, 0, now+5000)}},
		dequeue(t, env, 3, 5000, 0, 0, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3"),
		key("tasks"): hashV(
			"a", record(0, 5, 0, epochMS+1000, epochMS, "t", ""),
			"b", record(0, 3, 0, 0, epochMS, "t", "p-b"),
			"c", record(0, 0, 0, epochMS+1001, epochMS, "t", ""),
		),
		key("active"):   zsetV(zm{"b", now + 5000}, zm{"c", now + 5000}),
		key("tokens"):   hashV("b", "2", "c", "3"),
		key("archived"): zsetV(zm{"a", now}),
		key("errors"):   hashV("a", "deadline exceeded before the task started"),
		key("stats"):    statsV("failed", "1", "archived", "1"),
		key("wake"):     wakeV(),
	})

	// Only expired tasks popped: nothing leased, and the hint is computed.
	env2 := scripttest.New(t)
	mustRun(t, env2, "enqueue", enqArgs(task{id: "d", typ: "t", deadline: epochMS + 10}, task{id: "s", typ: "t", in: 800})...)
	advance(env2, 10)
	checkDeq(t, deqReply{NextDue: 790}, dequeue(t, env2, 3, 5000, 0, 0, 0))
	checkKeys(t, env2, keyspace.Snapshot{key("archived"): zsetV(zm{"d", epochMS + 10})}, "archived", "pending", "active")
}

func TestDequeueDropsPendingIDsWithoutRecord(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	if _, err := env.Miniredis().Push(key("pending"), "ghost"); err != nil {
		t.Fatal(err)
	}
	// pending is [a, ghost]; both are popped, ghost is dropped, tokens 1 and 2 are used.
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(tk("a"), 1, 0, epochMS+100)}},
		dequeue(t, env, 2, 100, 0, 0, 0))
	checkKeys(t, env, keyspace.Snapshot{
		key("meta"):   hashV("schema", "1", "fence", "2"),
		key("tokens"): hashV("a", "1"),
	}, "meta", "pending", "tokens")
}

func TestDequeueReclaimsExpiredLeases(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", payload: "pa", maxRetry: 1}
	b := task{id: "b", typ: "t", payload: "pb", maxRetry: 0}
	c := task{id: "c", typ: "t", payload: "pc", maxRetry: 3}
	mustRun(t, env, "enqueue", enqArgs(a, b, c)...)
	dequeue(t, env, 3, 1000, 0, 0, 0) // tokens 1, 2, 3; leases until epoch+1000

	// A lease whose deadline is now has not expired yet (and is no hint).
	advance(env, 1000)
	unchanged(t, env, func() {
		checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 1, 1000, 0, 10, 0))
	})

	// One ms later all three have expired; reclaim_limit 2 takes a and b
	// (equal deadlines, so by id), leaving c.
	advance(env, 1)
	now := nowMS(env)
	checkDeq(t, deqReply{NextDue: 500}, dequeue(t, env, 1, 1000, 0, 2, 500)) // a's retry
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "3"),
		key("tasks"): hashV(
			"a", record(1, 1, 0, 0, epochMS, "t", "pa"), // retried
			"b", record(0, 0, 0, 0, epochMS, "t", "pb"), // archived as it was
			"c", record(0, 3, 0, 0, epochMS, "t", "pc"),
		),
		key("scheduled"): zsetV(zm{"a", now + 500}),
		key("active"):    zsetV(zm{"c", epochMS + 1000}),
		key("tokens"):    hashV("c", "3"),
		key("archived"):  zsetV(zm{"b", now}),
		key("errors"):    hashV("a", "lease expired", "b", "lease expired"),
		key("stats"):     statsV("failed", "2", "retried", "1", "archived", "1"),
		key("wake"):      wakeV(),
	})

	// Reclaim c with backoff 0: it is due at once, promoted and leased again in
	// the same call with a new token and its retry counted.
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(c, 4, 1, now+1000)}},
		dequeue(t, env, 5, 1000, 10, 10, 0))
	// c's old token is dead.
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "extend", "c", "3", "1000"), codeLeaseLost)
	})

	// a comes back after its backoff, with its retry count.
	advance(env, 500)
	got := dequeue(t, env, 5, 1000, 10, 0, 0)
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(a, 5, 1, now+500+1000)}}, got)

	// a is out of retries now: when its lease expires again it is archived.
	advance(env, 1001)
	now = nowMS(env)
	dequeue(t, env, 5, 1000, 0, 1, 0) // reclaims c (expired first, earlier deadline)
	dequeue(t, env, 5, 1000, 0, 1, 0) // then a
	snap := env.Snapshot(t)
	if s, ok := snap[key("archived")]; !ok || len(s.ZSet) != 2 || s.ZSet[1] != (keyspace.Member{Member: "a", Score: float64(now)}) {
		t.Errorf("archived = %+v, want b then a at %d", snap[key("archived")], now)
	}
	if e := snap[key("errors")].Hash["a"]; e != "lease expired" {
		t.Errorf("error of a = %q, want 'lease expired'", e)
	}
}

func TestDequeueReclaimLimitBound(t *testing.T) {
	env := scripttest.New(t)
	var ts []task
	for i := 0; i < 5; i++ {
		ts = append(ts, tk("t"+strconv.Itoa(i)))
	}
	mustRun(t, env, "enqueue", enqArgs(ts...)...)
	for i := 0; i < 5; i++ {
		dequeue(t, env, 1, int64(100+i), 0, 0, 0) // t_i leased until epoch+100+i
	}
	advance(env, 1000)
	for _, tc := range []struct{ limit, left int }{{0, 5}, {2, 3}, {2, 1}, {1000, 0}} {
		dequeue(t, env, 1, 1000, 0, int64(tc.limit), 60000)
		if got := len(env.Snapshot(t)[key("active")].ZSet); got != tc.left {
			t.Fatalf("after reclaim_limit %d: %d active, want %d", tc.limit, got, tc.left)
		}
	}
	checkKeys(t, env, keyspace.Snapshot{
		key("stats"): statsV("failed", "5", "retried", "5"),
	}, "stats")
}

func TestDequeueReclaimLeaseWithoutRecord(t *testing.T) {
	env := scripttest.New(t)
	hset(t, env, "tokens", "z", "9")
	if _, err := env.Miniredis().ZAdd(key("active"), float64(epochMS-1), "z"); err != nil {
		t.Fatal(err)
	}
	checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 1, 1000, 0, 1, 0))
	checkSnapshot(t, env, keyspace.Snapshot{})
}

func TestDequeueWakeSignal(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	popWake(t, env)
	dequeue(t, env, 1, 1000, 0, 0, 0) // b remains
	checkKeys(t, env, keyspace.Snapshot{key("wake"): wakeV()}, "wake")
	// A token already there is not doubled.
	mustRun(t, env, "enqueue", enqArgs(tk("c"))...)
	dequeue(t, env, 1, 1000, 0, 0, 0)
	checkKeys(t, env, keyspace.Snapshot{key("wake"): wakeV()}, "wake")
	popWake(t, env)
	dequeue(t, env, 1, 1000, 0, 0, 0) // c was the last one
	checkKeys(t, env, keyspace.Snapshot{}, "wake")
}

// TestRecordRoundTrip checks that types and payloads of every shape survive
// the record format (length-prefixed type, payload to the end) from enqueue
// to the dequeue reply.
func TestRecordRoundTrip(t *testing.T) {
	big := make([]byte, 1<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tests := []struct{ name, id, typ, payload string }{
		{"one-byte type", "a", "t", "p"},
		{"nine-byte type", "a", "123456789", ":"},
		{"ten-byte type", "a", "1234567890", "0:0:0:"},
		{"type of colons", "a", ":::", ":::"},
		{"128-byte id and type", long128, strings.Repeat("T", 128), "x"},
		{"printable edges", "!~", "!~", "\x00\x01\r\n\xff"},
		{"1 MiB binary payload", "a", "t", string(big)},
		{"empty payload", "a", "t", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			x := task{id: tc.id, typ: tc.typ, payload: tc.payload, maxRetry: 7, timeout: 12345}
			mustRun(t, env, "enqueue", enqArgs(x)...)
			checkKeys(t, env, keyspace.Snapshot{
				key("tasks"): hashV(tc.id, record(0, 7, 12345, 0, epochMS, tc.typ, tc.payload)),
			}, "tasks")
			checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(x, 1, 0, epochMS+10)}}, dequeue(t, env, 1, 10, 0, 0, 0))
			// And through a retry, which decodes and re-encodes the record.
			mustRun(t, env, "retry-or-archive", tc.id, "1", "m", "0", "0")
			checkKeys(t, env, keyspace.Snapshot{
				key("tasks"): hashV(tc.id, record(1, 7, 12345, 0, epochMS, tc.typ, tc.payload)),
			}, "tasks")
			checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(x, 2, 1, epochMS+10)}}, dequeue(t, env, 1, 10, 1, 0, 0))
		})
	}
}
