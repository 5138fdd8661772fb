package scripts_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func TestEnqueueRecordFormatAndState(t *testing.T) {
	env := scripttest.New(t)
	x := task{id: "job-1", typ: "email", payload: "hello:world\x00\xff", maxRetry: 3, timeout: 5000, deadline: epochMS + 86400000}
	got := mustRun(t, env, "enqueue", enqArgs(x)...)
	want := []any{epochMS, "job-1", "pending", epochMS}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("reply (-want +got):\n%s", d)
	}
	// The record spelled out once by hand, byte for byte (lib/record.lua).
	wantRecord := "0:3:5000:1767312000000:0:0:1767225600000:0:5:email0:hello:world\x00\xff"
	if r := record(0, 3, 5000, epochMS+86400000, epochMS, "email", "hello:world\x00\xff"); r != wantRecord {
		t.Fatalf("test helper record() = %q, want %q", r, wantRecord)
	}
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"):    hashV("schema", "1"),
		key("tasks"):   hashV("job-1", wantRecord),
		key("pending"): listV("job-1"),
		key("wake"):    wakeV(),
	})
}

func TestEnqueueStatesAndDueTimes(t *testing.T) {
	tests := []struct {
		name      string
		x         task
		wantState string
		wantDue   int64
	}{
		{"ready now", task{id: "a", typ: "t"}, "pending", epochMS},
		{"process_in", task{id: "a", typ: "t", in: 5000}, "scheduled", epochMS + 5000},
		{"process_in 1 ms", task{id: "a", typ: "t", in: 1}, "scheduled", epochMS + 1},
		{"process_at future", task{id: "a", typ: "t", at: epochMS + 7000}, "scheduled", epochMS + 7000},
		{"process_at now is ready", task{id: "a", typ: "t", at: epochMS}, "pending", epochMS},
		{"process_at past is ready", task{id: "a", typ: "t", at: epochMS - 1000}, "pending", epochMS}, // due is reported as now: the task is ready at once
		{"empty payload", task{id: "a", typ: "t", payload: ""}, "pending", epochMS},
		{"max values", task{id: "a", typ: "t", maxRetry: 1000000, timeout: 253402300799999, deadline: 253402300799999}, "pending", epochMS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := scripttest.New(t)
			got := mustRun(t, env, "enqueue", enqArgs(tc.x)...)
			if d := cmp.Diff([]any{epochMS, "a", tc.wantState, tc.wantDue}, got); d != "" {
				t.Errorf("reply (-want +got):\n%s", d)
			}
			want := keyspace.Snapshot{
				key("meta"):  hashV("schema", "1"),
				key("tasks"): hashV("a", record(0, tc.x.maxRetry, tc.x.timeout, tc.x.deadline, epochMS, tc.x.typ, tc.x.payload)),
				key("wake"):  wakeV(),
			}
			if tc.wantState == "pending" {
				want[key("pending")] = listV("a")
			} else {
				want[key("scheduled")] = zsetV(zm{"a", tc.wantDue})
			}
			checkSnapshot(t, env, want)
		})
	}
}

func TestEnqueueGeneratedAndUserIDs(t *testing.T) {
	env := scripttest.New(t)
	got := mustRun(t, env, "enqueue", enqArgs(tk(""), tk("x"), tk(""))...)
	want := []any{epochMS, "1", "pending", epochMS, "x", "pending", epochMS, "2", "pending", epochMS}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("first batch reply (-want +got):\n%s", d)
	}
	advance(env, 10)
	got = mustRun(t, env, "enqueue", enqArgs(tk(""))...)
	if d := cmp.Diff([]any{epochMS + 10, "3", "pending", epochMS + 10}, got); d != "" {
		t.Errorf("second batch reply (-want +got):\n%s", d)
	}
	// A user id that is not all digits may contain digits.
	mustRun(t, env, "enqueue", enqArgs(tk("4a"))...)
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "seq", "3"),
		key("tasks"): hashV(
			"1", record(0, 3, 0, 0, epochMS, "t", "p-"),
			"x", record(0, 3, 0, 0, epochMS, "t", "p-x"),
			"2", record(0, 3, 0, 0, epochMS, "t", "p-"),
			"3", record(0, 3, 0, 0, epochMS+10, "t", "p-"),
			"4a", record(0, 3, 0, 0, epochMS+10, "t", "p-4a"),
		),
		key("pending"): listV("1", "x", "2", "3", "4a"),
		key("wake"):    wakeV(),
	})
}

func TestEnqueueFIFOAndMixedBatch(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), task{id: "s2", typ: "t", in: 2000}, tk("b"), task{id: "s1", typ: "t", in: 1000}, tk("c"))...)
	mustRun(t, env, "enqueue", enqArgs(tk("d"))...)
	checkKeys(t, env, keyspace.Snapshot{
		key("pending"):   listV("a", "b", "c", "d"),
		key("scheduled"): zsetV(zm{"s1", epochMS + 1000}, zm{"s2", epochMS + 2000}),
	}, "pending", "scheduled")
	r := dequeue(t, env, 10, 1000, 0, 0, 0)
	var ids []string
	for _, x := range r.Tasks {
		ids = append(ids, x.ID)
	}
	if d := cmp.Diff([]string{"a", "b", "c", "d"}, ids); d != "" {
		t.Errorf("dequeue order (-want +got):\n%s", d)
	}
}

func TestEnqueueWakeHoldsOneTokenWithTTL(t *testing.T) {
	env := scripttest.New(t)
	for i := 0; i < 3; i++ {
		mustRun(t, env, "enqueue", enqArgs(tk(fmt.Sprintf("a%d", i)))...)
		checkKeys(t, env, keyspace.Snapshot{key("wake"): wakeV()}, "wake")
	}
	if ttl := env.Miniredis().TTL(key("wake")); ttl.Milliseconds() != 60000 {
		t.Errorf("wake TTL = %v, want 60s", ttl)
	}
	// Nobody listened: the token expires on its own.
	advance(env, 60000)
	checkKeys(t, env, keyspace.Snapshot{}, "wake")
	mustRun(t, env, "enqueue", enqArgs(task{id: "later", typ: "t", in: 10})...)
	checkKeys(t, env, keyspace.Snapshot{key("wake"): wakeV()}, "wake")
}

// A batch of exactly 1000 tasks is accepted (push_all chunks it); 1001 is refused.
func TestEnqueueBatchLimit(t *testing.T) {
	batch := func(n int, scheduled bool) []task {
		ts := make([]task, n)
		for i := range ts {
			ts[i] = tk("t" + strconv.Itoa(i))
			if scheduled && i%2 == 1 {
				ts[i].in = int64(1 + i)
			}
		}
		return ts
	}
	t.Run("1000 pending", func(t *testing.T) {
		env := scripttest.New(t)
		got := mustRun(t, env, "enqueue", enqArgs(batch(1000, false)...)...).([]any)
		if len(got) != 1+3*1000 {
			t.Fatalf("reply has %d elements, want 3001", len(got))
		}
		snap := env.Snapshot(t)
		if n := len(snap[key("tasks")].Hash); n != 1000 {
			t.Errorf("tasks hash has %d fields, want 1000", n)
		}
		p := snap[key("pending")].List
		if len(p) != 1000 || p[0] != "t0" || p[999] != "t999" {
			t.Errorf("pending has %d ids (first %q), want t0..t999 in order", len(p), p[:1])
		}
		// And a dequeue of 1000 at once leases them all in order.
		r := dequeue(t, env, 1000, 1000, 0, 0, 0)
		if r.Leased != 1000 || r.Tasks[0].ID != "t0" || r.Tasks[999].ID != "t999" || r.Tasks[999].Token != 1000 {
			t.Errorf("dequeue of 1000: leased %d, first %+v, last %+v", r.Leased, r.Tasks[0], r.Tasks[len(r.Tasks)-1])
		}
		snap = env.Snapshot(t)
		if len(snap[key("active")].ZSet) != 1000 || len(snap[key("tokens")].Hash) != 1000 {
			t.Errorf("after dequeue: %d active, %d tokens, want 1000 each", len(snap[key("active")].ZSet), len(snap[key("tokens")].Hash))
		}
	})
	t.Run("1000 mixed", func(t *testing.T) {
		env := scripttest.New(t)
		mustRun(t, env, "enqueue", enqArgs(batch(1000, true)...)...)
		snap := env.Snapshot(t)
		if len(snap[key("pending")].List) != 500 || len(snap[key("scheduled")].ZSet) != 500 {
			t.Errorf("%d pending, %d scheduled, want 500 each", len(snap[key("pending")].List), len(snap[key("scheduled")].ZSet))
		}
	})
	t.Run("1001 refused", func(t *testing.T) {
		env := scripttest.New(t)
		mustRun(t, env, "enqueue", enqArgs(tk("before"))...)
		unchanged(t, env, func() {
			checkCode(t, run(t, env, "enqueue", enqArgs(batch(1001, false)...)...), codeBadArg)
		})
	})
}

func TestEnqueueConflict(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	unchanged(t, env, func() {
		// The duplicate comes second: the first task of the batch must not be written either.
		checkCode(t, run(t, env, "enqueue", enqArgs(tk("b"), tk("a"))...), codeConflict)
		// Generated ids do not consume the sequence when the batch is refused.
		checkCode(t, run(t, env, "enqueue", enqArgs(tk(""), tk("a"))...), codeConflict)
	})
	// An archived task keeps its id taken.
	r := dequeue(t, env, 1, 1000, 0, 0, 0)
	mustRun(t, env, "retry-or-archive", "a", ms(r.Tasks[0].Token), "boom", "0", "1")
	unchanged(t, env, func() {
		checkCode(t, run(t, env, "enqueue", enqArgs(tk("a"))...), codeConflict)
	})
	// A completed task frees its id.
	mustRun(t, env, "enqueue", enqArgs(tk("c"))...)
	r = dequeue(t, env, 1, 1000, 0, 0, 0)
	mustRun(t, env, "complete", "c", ms(r.Tasks[0].Token), "", "0", "0", "0")
	mustRun(t, env, "enqueue", enqArgs(tk("c"))...)
}
