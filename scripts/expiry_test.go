package scripts_test

// Expiry (expire_at / expire_in), retention and unique keys as enqueue
// records them, and expiry as dequeue meets it.

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// TestEnqueueExpiryRetentionUnique checks the record, the indexes and the
// reply enqueue writes for each of the new per-task options.
func TestEnqueueExpiryRetentionUnique(t *testing.T) {
	bin := "k:\x00\xff" + strings.Repeat("u", 1019) // 1024 bytes, with a colon and binary
	tests := []struct {
		name      string
		x         task
		wantState string
		wantDue   int64
		// wantID is the id enqueue gives the task (x.id unless generated).
		wantID string
		// extra keys beyond meta, tasks, pending/scheduled and wake.
		extra func(id string) keyspace.Snapshot
	}{
		{"expire_in", task{id: "a", typ: "t", expireIn: 5000}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 5000})}
			}},
		{"expire_in 1 ms", task{id: "a", typ: "t", expireIn: 1}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 1})}
			}},
		{"expire_at 1 ms after now", task{id: "a", typ: "t", expireAt: epochMS + 1}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 1})}
			}},
		{"expire_at max", task{id: "a", typ: "t", expireAt: 253402300799999}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, 253402300799999})}
			}},
		{"expire_at after process_in", task{id: "a", typ: "t", in: 1000, expireAt: epochMS + 1001}, "scheduled", epochMS + 1000, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 1001})}
			}},
		{"expire_in after process_at", task{id: "a", typ: "t", at: epochMS + 1000, expireIn: 1001}, "scheduled", epochMS + 1000, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 1001})}
			}},
		{"expire_at with a past process_at", task{id: "a", typ: "t", at: epochMS - 5000, expireAt: epochMS + 1}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 1})}
			}},
		{"expire_archive", task{id: "a", typ: "t", expireIn: 5000, expireArchive: true}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("expiry"): zsetV(zm{id, epochMS + 5000})}
			}},
		{"expire_archive without an expiry", task{id: "a", typ: "t", expireArchive: true}, "pending", epochMS, "a", nil},
		{"retention", task{id: "a", typ: "t", retention: 60000}, "pending", epochMS, "a", nil},
		{"retention max", task{id: "a", typ: "t", retention: 253402300799999}, "pending", epochMS, "a", nil},
		{"unique key", task{id: "a", typ: "t", unique: "k", uniqueTTL: 5000}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("unique"): hashV("k", id), key("unique_ttl"): zsetV(zm{"k", epochMS + 5000})}
			}},
		{"unique key of 1024 binary bytes", task{id: "a", typ: "t", payload: "12:x", unique: bin, uniqueTTL: 1}, "pending", epochMS, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("unique"): hashV(bin, id), key("unique_ttl"): zsetV(zm{bin, epochMS + 1})}
			}},
		{"unique key with a generated id", task{typ: "t", unique: "k", uniqueTTL: 5000}, "pending", epochMS, "1",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("unique"): hashV("k", id), key("unique_ttl"): zsetV(zm{"k", epochMS + 5000})}
			}},
		{"unique key on a scheduled task", task{id: "a", typ: "t", in: 10000, unique: "k", uniqueTTL: 5000}, "scheduled", epochMS + 10000, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{key("unique"): hashV("k", id), key("unique_ttl"): zsetV(zm{"k", epochMS + 5000})}
			}},
		{"everything", task{id: "a", typ: "t", payload: "p", maxRetry: 2, timeout: 10, deadline: epochMS + 9000, in: 1000,
			expireIn: 3000, expireArchive: true, retention: 7000, unique: "k", uniqueTTL: 8000}, "scheduled", epochMS + 1000, "a",
			func(id string) keyspace.Snapshot {
				return keyspace.Snapshot{
					key("expiry"):     zsetV(zm{id, epochMS + 3000}),
					key("unique"):     hashV("k", id),
					key("unique_ttl"): zsetV(zm{"k", epochMS + 8000}),
				}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			got := mustRun(t, env, "enqueue", enqArgs(tc.x)...)
			if d := cmp.Diff([]any{epochMS, tc.wantID, tc.wantState, tc.wantDue}, got); d != "" {
				t.Errorf("reply (-want +got):\n%s", d)
			}
			meta := hashV("schema", "1")
			if tc.x.id == "" {
				meta = hashV("schema", "1", "seq", "1")
			}
			want := keyspace.Snapshot{
				key("meta"):  meta,
				key("tasks"): hashV(tc.wantID, tc.x.rec(epochMS).enc()),
				key("wake"):  wakeV(),
			}
			if tc.wantState == "pending" {
				want[key("pending")] = listV(tc.wantID)
			} else {
				want[key("scheduled")] = zsetV(zm{tc.wantID, tc.wantDue})
			}
			if tc.extra != nil {
				for k, v := range tc.extra(tc.wantID) {
					want[k] = v
				}
			}
			checkSnapshot(t, env, want)
		})
	}
}

// TestRecordFormatNewFields spells one record with every new field out by
// hand, byte for byte (lib/record.lua), and checks it survives a dequeue and
// a retry (decode, re-encode); the lease sets expire_at to 0 (the task
// started in time).
func TestRecordFormatNewFields(t *testing.T) {
	env := scripttest.New(t)
	x := task{id: "a", typ: "ty:pe", payload: "pay:load\x00", maxRetry: 2, timeout: 10, deadline: epochMS + 9000,
		expireIn: 3000, expireArchive: true, retention: 7000, unique: "u:1", uniqueTTL: 8000}
	mustRun(t, env, "enqueue", enqArgs(x)...)
	want := "0:2:10:1767225609000:1767225603000:7000:1767225600000:1:5:ty:pe3:u:1pay:load\x00"
	if got := x.rec(epochMS).enc(); got != want {
		t.Fatalf("test helper rec.enc() = %q, want %q", got, want)
	}
	checkKeys(t, env, keyspace.Snapshot{key("tasks"): hashV("a", want)}, "tasks")
	checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(x, 1, 0, epochMS+100)}}, dequeue(t, env, 1, 100, 0, 0, 0))
	mustRun(t, env, "retry-or-archive", "a", "1", "m", "0", "0")
	r := x.rec(epochMS).started()
	r.retried = 1
	if got, want := r.enc(), "1:2:10:1767225609000:0:7000:1767225600000:1:5:ty:pe3:u:1pay:load\x00"; got != want {
		t.Fatalf("test helper rec.enc() after the lease = %q, want %q", got, want)
	}
	checkKeys(t, env, keyspace.Snapshot{
		key("tasks"):      hashV("a", r.enc()),
		key("unique"):     hashV("u:1", "a"), // a retry keeps the key
		key("unique_ttl"): zsetV(zm{"u:1", epochMS + 8000}),
	}, "tasks", "unique", "unique_ttl", "expiry")
}

// expireCase is a task that expires when dequeue meets it.
type expireCase struct {
	name string
	x    task
	// wait is how long after the enqueue the dequeue runs.
	wait    int64
	promote int64
	archive bool // the task asked to be archived on expiry
}

// TestDequeueDiscardsExpiredTasks: a pending task, or a scheduled one that
// the same call promotes, whose expiry has come is discarded instead of
// leased: deleted (or archived with the error 'expired'), counted as
// expired, its unique key freed and its expiry entry removed. Its fencing
// token is burnt; the task behind it is leased.
func TestDequeueDiscardsExpiredTasks(t *testing.T) {
	tests := []expireCase{
		{"pending, expiry now", task{id: "a", typ: "t", payload: "pa", expireIn: 1000}, 1000, 0, false},
		{"pending, expiry long past", task{id: "a", typ: "t", payload: "pa", expireAt: epochMS + 1}, 86400000, 0, false},
		{"pending, archived", task{id: "a", typ: "t", payload: "pa", expireIn: 1000, expireArchive: true}, 1000, 0, true},
		{"promoted scheduled", task{id: "a", typ: "t", payload: "pa", in: 500, expireIn: 1000}, 1000, 10, false},
		{"promoted scheduled, archived", task{id: "a", typ: "t", payload: "pa", in: 500, expireIn: 1000, expireArchive: true}, 1000, 10, true},
		{"expiry before a deadline", task{id: "a", typ: "t", payload: "pa", expireIn: 1000, deadline: epochMS + 1000}, 1000, 0, false},
		{"retention does not keep an expired task", task{id: "a", typ: "t", payload: "pa", expireIn: 1000, retention: 60000}, 1000, 0, false},
	}
	for _, tc := range tests {
		for _, withUnique := range []bool{false, true} {
			name := tc.name
			x := tc.x
			if withUnique {
				name += ", unique key"
				x.unique, x.uniqueTTL = "k", 86400000
			}
			t.Run(name, func(t *testing.T) {
				env := scripttest.New(t)
				b := tk("b")
				mustRun(t, env, "enqueue", enqArgs(x)...)
				mustRun(t, env, "enqueue", enqArgs(b)...)
				popWake(t, env)
				advance(env, tc.wait)
				now := nowMS(env)
				// a is first in pending (or promoted behind b): either way
				// it burns a token and b is leased.
				r := dequeue(t, env, 2, 1000, tc.promote, 0, 0)
				wantTok := int64(2)
				if tc.x.in > 0 {
					wantTok = 1 // b was pending first; a was promoted behind it
				}
				checkDeq(t, deqReply{Leased: 1, NextDue: -1, Tasks: []leased{lt(b, wantTok, 0, now+1000)}}, r)
				want := keyspace.Snapshot{
					key("meta"):   hashV("schema", "1", "fence", "2"),
					key("tasks"):  hashV("b", record(0, 3, 0, 0, epochMS, "t", "p-b")),
					key("active"): zsetV(zm{"b", now + 1000}),
					key("tokens"): hashV("b", ms(wantTok)),
					key("stats"):  statsOn(dayOf(now), "expired", "1"), // wait may cross midnight
				}
				if tc.archive {
					want[key("tasks")].Hash["a"] = x.rec(epochMS).enc()
					want[key("archived")] = zsetV(zm{"a", now})
					want[key("errors")] = hashV("a", "expired")
					want[key("stats")] = statsOn(dayOf(now), "expired", "1", "archived", "1")
				}
				checkSnapshot(t, env, want)
				// The unique key is free again.
				mustRun(t, env, "enqueue", enqArgs(task{id: "c", typ: "t", unique: "k", uniqueTTL: 10})...)
			})
		}
	}
}

// TestDequeueExpiryBoundaries: a task is leased up to 1 ms before its
// expiry, and leasing it removes its expiry entry and sets the record's
// expire_at to 0 (the expiry no longer applies) while the rest of the
// record and the unique key stay as they were.
func TestDequeueExpiryBoundaries(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", payload: "pa", expireIn: 1000, unique: "k", uniqueTTL: 60000}
	s := task{id: "s", typ: "t", in: 500, expireIn: 1000}
	f := task{id: "f", typ: "t", in: 3000, expireIn: 5000}
	mustRun(t, env, "enqueue", enqArgs(a, s, f)...)
	popWake(t, env)
	checkKeys(t, env, keyspace.Snapshot{
		key("expiry"): zsetV(zm{"a", epochMS + 1000}, zm{"s", epochMS + 1000}, zm{"f", epochMS + 5000}),
	}, "expiry")
	advance(env, 999)
	now := nowMS(env)
	checkDeq(t, deqReply{Leased: 2, NextDue: -1, Tasks: []leased{lt(a, 1, 0, now+1000), lt(s, 2, 0, now+1000)}},
		dequeue(t, env, 2, 1000, 10, 0, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "2"),
		key("tasks"): hashV(
			"a", a.rec(epochMS).started().enc(),
			"s", s.rec(epochMS).started().enc(),
			"f", f.rec(epochMS).enc(),
		),
		key("scheduled"):  zsetV(zm{"f", epochMS + 3000}),
		key("active"):     zsetV(zm{"a", now + 1000}, zm{"s", now + 1000}),
		key("tokens"):     hashV("a", "1", "s", "2"),
		key("expiry"):     zsetV(zm{"f", epochMS + 5000}),
		key("unique"):     hashV("k", "a"),
		key("unique_ttl"): zsetV(zm{"k", epochMS + 60000}),
	})
	// A scheduled task that is not promoted (promote_limit 0) is not
	// expired by dequeue either: it waits for a promotion or the janitor.
	env2 := scripttest.New(t)
	mustRun(t, env2, "enqueue", enqArgs(s)...)
	advance(env2, 2000)
	unchanged(t, env2, func() {
		checkDeq(t, deqReply{NextDue: 0}, dequeue(t, env2, 1, 1000, 0, 0, 0))
	})
	// Paused: nothing is popped, so nothing expires.
	mustRun(t, env2, "set-paused", "1")
	unchanged(t, env2, func() {
		checkDeq(t, deqReply{NextDue: -1, Paused: 1}, dequeue(t, env2, 1, 1000, 10, 0, 0))
	})
}

// TestDequeueOnlyExpiredTasks: when every popped task expired, nothing is
// leased and the reply carries the next-due hint.
func TestDequeueOnlyExpiredTasks(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(
		task{id: "a", typ: "t", expireIn: 10},
		task{id: "b", typ: "t", expireIn: 10, expireArchive: true},
		task{id: "s", typ: "t", in: 800},
	)...)
	popWake(t, env)
	advance(env, 10)
	checkDeq(t, deqReply{NextDue: 790}, dequeue(t, env, 5, 1000, 10, 0, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "fence", "2"),
		key("tasks"): hashV(
			"b", task{id: "b", typ: "t", expireIn: 10, expireArchive: true}.rec(epochMS).enc(),
			"s", task{id: "s", typ: "t", in: 800}.rec(epochMS).enc(),
		),
		key("scheduled"): zsetV(zm{"s", epochMS + 800}),
		key("archived"):  zsetV(zm{"b", epochMS + 10}),
		key("errors"):    hashV("b", "expired"),
		key("stats"):     statsV("expired", "2", "archived", "1"),
	})
}

// TestDequeueDeadlineArchiveFreesExpiryAndUnique: a task archived at
// dequeue for its deadline (before its expiry) leaves the expiry index and
// frees its unique key.
func TestDequeueDeadlineArchiveFreesExpiryAndUnique(t *testing.T) {
	env := scripttest.New(t)
	a := task{id: "a", typ: "t", deadline: epochMS + 1000, expireIn: 5000, unique: "k", uniqueTTL: 60000}
	mustRun(t, env, "enqueue", enqArgs(a)...)
	popWake(t, env)
	advance(env, 1000)
	checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 1, 1000, 0, 0, 0))
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):     hashV("schema", "1", "fence", "1"),
		key("tasks"):    hashV("a", a.rec(epochMS).enc()),
		key("archived"): zsetV(zm{"a", epochMS + 1000}),
		key("errors"):   hashV("a", "deadline exceeded before the task started"),
		key("stats"):    statsV("failed", "1", "archived", "1"),
	})
}

// TestExpiryNoLongerAppliesOnceStarted: a task that was leased before its
// expiry has started in time. Leasing removed its expiry entry (so the
// janitor no longer sweeps it); a retry or a requeue that brings it back
// after its expire_at must lease it again, not discard it as expired.
func TestExpiryNoLongerAppliesOnceStarted(t *testing.T) {
	tests := []struct {
		name string
		// back returns the leased task a (token 1) to the queue.
		back func(t *testing.T, env *scripttest.Env)
		// retried is a's retry count when it is leased again.
		retried int64
	}{
		{"retry", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "retry-or-archive", "a", "1", "boom", "2000", "0")
		}, 1},
		{"requeue", func(t *testing.T, env *scripttest.Env) {
			mustRun(t, env, "requeue", "a", "1")
		}, 0},
		{"reclaimed lease", func(t *testing.T, env *scripttest.Env) {
			advance(env, 101)
			dequeue(t, env, 1, 100, 10, 10, 0) // reclaims a for a retry in 0 ms; a is leased at once (token 2)
			mustRun(t, env, "requeue", "a", "2")
		}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			a := task{id: "a", typ: "t", payload: "pa", maxRetry: 3, expireIn: 1000, unique: "k", uniqueTTL: 60000}
			mustRun(t, env, "enqueue", enqArgs(a)...)
			dequeue(t, env, 1, 100, 0, 0, 0) // started in time: token 1
			checkKeys(t, env, keyspace.Snapshot{}, "expiry")
			tc.back(t, env)
			advance(env, 5000) // past a's expire_at and any backoff
			r := dequeue(t, env, 1, 1000, 10, 0, 0)
			if r.Leased != 1 || r.Tasks[0].ID != "a" || r.Tasks[0].Retried != tc.retried {
				t.Fatalf("dequeue after the expiry = %+v, want a leased again (retried %d): it started in time", r, tc.retried)
			}
			checkKeys(t, env, keyspace.Snapshot{key("unique"): hashV("k", "a")}, "unique", "archived")
		})
	}
}
