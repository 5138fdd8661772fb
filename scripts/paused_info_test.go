package scripts_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

func TestSetPaused(t *testing.T) {
	env := scripttest.New(t)
	steps := []struct {
		name     string
		flag     string
		want     int64
		wantMeta keyspace.Value // zero Type: no meta key
		wantWake bool
	}{
		{"pause", "1", 1, hashV("paused", "1"), false},
		{"pause again", "1", 0, hashV("paused", "1"), false},
		{"resume", "0", 1, keyspace.Value{}, true},
		{"resume again", "0", 0, keyspace.Value{}, true},
	}
	for _, st := range steps {
		before := env.Snapshot(t)
		if got := mustRun(t, env, "set-paused", st.flag); got != st.want {
			t.Errorf("%s: reply %#v, want %d", st.name, got, st.want)
		}
		want := keyspace.Snapshot{}
		if st.wantMeta.Type != "" {
			want[key("meta")] = st.wantMeta
		}
		if st.wantWake {
			want[key("wake")] = wakeV()
		}
		checkSnapshot(t, env, want)
		if st.want == 0 {
			if d := cmp.Diff(before, env.Snapshot(t)); d != "" {
				t.Errorf("%s: a no-op changed the keyspace:\n%s", st.name, d)
			}
		}
	}
	// A resume that changes nothing does not signal a worker.
	popWake(t, env)
	unchanged(t, env, func() { mustRun(t, env, "set-paused", "0") })

	// A paused queue keeps accepting tasks and keeps its schema.
	mustRun(t, env, "set-paused", "1")
	mustRun(t, env, "enqueue", enqArgs(tk("a"))...)
	checkKeys(t, env, keyspace.Snapshot{
		key("meta"):    hashV("paused", "1", "schema", "1"),
		key("pending"): listV("a"),
	}, "meta", "pending")
}

// queueInfo decodes the queue-info reply into a map, checking the field order.
func queueInfo(t *testing.T, env *scripttest.Env) map[string]int64 {
	t.Helper()
	arr, ok := mustRun(t, env, "queue-info").([]any)
	names := []string{"pending", "scheduled", "active", "archived", "completed", "paused", "processed", "failed", "retried", "archived_total", "expired"}
	if !ok || len(arr) != 2*len(names) {
		t.Fatalf("queue-info reply %#v, want %d name/value pairs", arr, len(names))
	}
	out := map[string]int64{}
	for i, n := range names {
		if arr[2*i] != n {
			t.Fatalf("queue-info field %d is %#v, want %q", i, arr[2*i], n)
		}
		v, ok := arr[2*i+1].(int64)
		if !ok {
			t.Fatalf("queue-info %s = %#v, want an integer", n, arr[2*i+1])
		}
		out[n] = v
	}
	return out
}

func TestQueueInfo(t *testing.T) {
	env := scripttest.New(t)
	zero := map[string]int64{"pending": 0, "scheduled": 0, "active": 0, "archived": 0, "completed": 0, "paused": 0,
		"processed": 0, "failed": 0, "retried": 0, "archived_total": 0, "expired": 0}
	unchanged(t, env, func() {
		if d := cmp.Diff(zero, queueInfo(t, env)); d != "" {
			t.Errorf("empty queue (-want +got):\n%s", d)
		}
	})
	checkSnapshot(t, env, keyspace.Snapshot{})

	hset(t, env, "meta", "archive_max", "1")
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"), tk("c"), tk("d"), tk("e"), tk("f"), task{id: "s", typ: "t", in: 100000})...)
	dequeue(t, env, 5, 1000, 0, 0, 0) // a1 b2 c3 d4 e5; f pending
	mustRun(t, env, "complete", "a", "1", "", "0", "0", "0")
	mustRun(t, env, "retry-or-archive", "b", "2", "x", "500", "0") // retry
	mustRun(t, env, "retry-or-archive", "c", "3", "x", "0", "1")   // archived
	mustRun(t, env, "retry-or-archive", "d", "4", "x", "0", "1")   // archived, c trimmed
	mustRun(t, env, "set-paused", "1")
	unchanged(t, env, func() {
		want := map[string]int64{"pending": 1, "scheduled": 2, "active": 1, "archived": 1, "completed": 0, "paused": 1,
			"processed": 1, "failed": 3, "retried": 1, "archived_total": 2, "expired": 0}
		if d := cmp.Diff(want, queueInfo(t, env)); d != "" {
			t.Errorf("queue-info (-want +got):\n%s", d)
		}
	})
}
