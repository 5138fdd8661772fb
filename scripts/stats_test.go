package scripts_test

// Unit tests of the per-day stats (lib/stats.lua): every counter lands on
// the day of the Redis clock beside its lifetime total, clean trims days
// older than the queue's stats_days, configure sets stats_days, and
// daily-stats reads the last N days.

import (
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripttest"
)

// day is one day's counts, as daily-stats reports them.
type day struct {
	Day                                           int64
	Processed, Failed, Retried, Archived, Expired int64
}

// dailyStats runs daily-stats for n days and decodes its reply.
func dailyStats(t *testing.T, env *scripttest.Env, n int) []day {
	t.Helper()
	v := mustRun(t, env, "daily-stats", strconv.Itoa(n))
	arr, ok := v.([]any)
	if !ok || len(arr) != 6*n {
		t.Fatalf("daily-stats %d: reply %#v, want %d integers", n, v, 6*n)
	}
	out := make([]day, n)
	for i := range out {
		var x [6]int64
		for j := range x {
			if x[j], ok = arr[6*i+j].(int64); !ok {
				t.Fatalf("daily-stats reply element %d = %#v, want an integer", 6*i+j, arr[6*i+j])
			}
		}
		out[i] = day{x[0], x[1], x[2], x[3], x[4], x[5]}
	}
	return out
}

// statsFields is a stats hash from counter:day -> count (with day given as
// a number) plus totals, for expectations that span several days.
func statsFields(totals map[string]int64, days map[int64]map[string]int64) keyspace.Value {
	v := hashV()
	for name, n := range totals {
		v.Hash[name] = ms(n)
	}
	for d, counts := range days {
		for name, n := range counts {
			v.Hash[name+":"+ms(d)] = ms(n)
		}
	}
	return v
}

// untilMidnight is the ms from env's clock to the start of the next day.
func untilMidnight(env *scripttest.Env) int64 { return dayMS - nowMS(env)%dayMS }

// TestStatsCountOnTheDayOfTheClock: every counter (processed by complete,
// failed and retried by retry-or-archive, failed and archived by a deadline
// at dequeue, expired at dequeue, failed and retried by the janitor's
// reclaim, expired and archived by its expiry sweep) raises its total and
// the field of the day the harness clock is in, across two midnights.
func TestStatsCountOnTheDayOfTheClock(t *testing.T) {
	env := scripttest.New(t)
	d := epochDay
	// Day d: a completes, b fails at the last ms of the day and is retried.
	mustRun(t, env, "enqueue", enqArgs(tk("a"), tk("b"))...)
	dequeue(t, env, 2, 2*dayMS, 0, 0, 0) // a 1, b 2
	mustRun(t, env, "complete", "a", "1", "", "0", "0", "0")
	advance(env, dayMS-1)
	if dayOf(nowMS(env)) != d {
		t.Fatal("the clock left the first day too early")
	}
	checkOutcome(t, mustRun(t, env, "retry-or-archive", "b", "2", "boom", "0", "0"), "retry", nowMS(env))
	checkKeys(t, env, keyspace.Snapshot{
		key("stats"): statsOn(d, "processed", "1", "failed", "1", "retried", "1"),
	}, "stats")

	// Day d+1, from its first ms: b completes; x misses its deadline before
	// it starts (failed, archived); e expires before it starts.
	advance(env, 1)
	if dayOf(nowMS(env)) != d+1 {
		t.Fatal("the clock did not reach the second day")
	}
	r := dequeue(t, env, 1, 2*dayMS, 10, 0, 0)
	if len(r.Tasks) != 1 || r.Tasks[0].ID != "b" {
		t.Fatalf("dequeue %+v, want b", r)
	}
	mustRun(t, env, "complete", "b", ms(r.Tasks[0].Token), "", "0", "0", "0")
	mustRun(t, env, "enqueue", enqArgs(task{id: "x", typ: "t", maxRetry: 3, deadline: nowMS(env) + 10},
		task{id: "e", typ: "t", expireIn: 10})...)
	advance(env, 10)
	checkDeq(t, deqReply{NextDue: -1}, dequeue(t, env, 2, 1000, 0, 0, 0))

	// Day d+2: the janitor reclaims g's lapsed lease (failed, retried) and
	// sweeps h, which expired and is archived.
	mustRun(t, env, "enqueue", enqArgs(tk("g"), task{id: "h", typ: "t", expireIn: 10, expireArchive: true})...)
	dequeue(t, env, 1, 10, 0, 0, 0) // g
	advance(env, untilMidnight(env))
	if dayOf(nowMS(env)) != d+2 {
		t.Fatal("the clock did not reach the third day")
	}
	acquire(t, env, "j1", 600000)
	checkClean(t, cleanReply{Reclaimed: 1, Expired: 1}, clean(t, env, "j1", 100, 0))

	checkKeys(t, env, keyspace.Snapshot{key("stats"): statsFields(
		map[string]int64{"processed": 2, "failed": 3, "retried": 2, "archived": 2, "expired": 2},
		map[int64]map[string]int64{
			d:     {"processed": 1, "failed": 1, "retried": 1},
			d + 1: {"processed": 1, "failed": 1, "archived": 1, "expired": 1},
			d + 2: {"failed": 1, "retried": 1, "archived": 1, "expired": 1},
		},
	)}, "stats")
	want := []day{
		{Day: d - 1},
		{Day: d, Processed: 1, Failed: 1, Retried: 1},
		{Day: d + 1, Processed: 1, Failed: 1, Archived: 1, Expired: 1},
		{Day: d + 2, Failed: 1, Retried: 1, Archived: 1, Expired: 1},
	}
	unchanged(t, env, func() {
		if diff := cmp.Diff(want, dailyStats(t, env, 4)); diff != "" {
			t.Errorf("daily-stats (-want +got):\n%s", diff)
		}
	})
	info := queueInfo(t, env)
	for name, n := range map[string]int64{"processed": 2, "failed": 3, "retried": 2, "archived_total": 2, "expired": 2} {
		if info[name] != n {
			t.Errorf("queue-info %s = %d, want %d (the lifetime total)", name, info[name], n)
		}
	}
}

// TestCleanTrimsDailyStats: clean deletes the day fields of days before the
// last stats_days days (default 30, today included), oldest first and at
// most limit per call, and never the totals or fields that are not a
// counter's day.
func TestCleanTrimsDailyStats(t *testing.T) {
	env := scripttest.New(t)
	d := epochDay
	totals := []string{"processed", "40", "failed", "9", "retried", "5", "archived", "4", "expired", "3"}
	hset(t, env, "stats", totals...)
	hset(t, env, "stats",
		"processed:"+ms(d), "1", "failed:"+ms(d), "2",
		"processed:"+ms(d-29), "3", "expired:"+ms(d-29), "4", // the oldest kept day
		"processed:"+ms(d-30), "5", "retried:"+ms(d-30), "6", "archived:"+ms(d-30), "7",
		"failed:"+ms(d-31), "8",
		"expired:"+ms(d-1000), "9",
		"note:"+ms(d-1000), "x", "processed:soon", "y", // not counters' days: left alone
	)
	acquire(t, env, "j1", 600000)
	// Limit 2: the oldest days first (d-1000, then d-31).
	checkClean(t, cleanReply{StatsTrimmed: 2, More: 1}, clean(t, env, "j1", 2, 0))
	snap := env.Snapshot(t)[key("stats")].Hash
	for _, f := range []string{"expired:" + ms(d-1000), "failed:" + ms(d-31)} {
		if _, ok := snap[f]; ok {
			t.Errorf("field %s survived the first trim, which takes the oldest days first", f)
		}
	}
	// Then d-30's three fields in counter order: processed, retried, then archived.
	checkClean(t, cleanReply{StatsTrimmed: 2, More: 1}, clean(t, env, "j1", 2, 0))
	if _, ok := env.Snapshot(t)[key("stats")].Hash["archived:"+ms(d-30)]; !ok {
		t.Error("archived:<d-30> went before processed and retried of the same day")
	}
	checkClean(t, cleanReply{StatsTrimmed: 1}, clean(t, env, "j1", 2, 0))
	want := hashV(append(append([]string(nil), totals...),
		"processed:"+ms(d), "1", "failed:"+ms(d), "2",
		"processed:"+ms(d-29), "3", "expired:"+ms(d-29), "4",
		"note:"+ms(d-1000), "x", "processed:soon", "y")...)
	checkKeys(t, env, keyspace.Snapshot{key("stats"): want}, "stats")
	// Nothing more to trim: a clean leaves the hash as it is.
	unchanged(t, env, func() { checkClean(t, cleanReply{}, clean(t, env, "j1", 1000, 0)) })

	// The next day d-29 falls out of the default 30 days.
	advance(env, dayMS)
	acquire(t, env, "j1", 600000) // the first lock's TTL has passed
	checkClean(t, cleanReply{StatsTrimmed: 2}, clean(t, env, "j1", 1000, 0))
	delete(want.Hash, "processed:"+ms(d-29))
	delete(want.Hash, "expired:"+ms(d-29))
	checkKeys(t, env, keyspace.Snapshot{key("stats"): want}, "stats")

	// stats_days 1 keeps today only (now d+1): d's fields go.
	mustRun(t, env, "configure", "10000", "2592000000", "1")
	checkClean(t, cleanReply{StatsTrimmed: 2}, clean(t, env, "j1", 1000, 0))
	delete(want.Hash, "processed:"+ms(d))
	delete(want.Hash, "failed:"+ms(d))
	checkKeys(t, env, keyspace.Snapshot{key("stats"): want}, "stats")

	// stats_days 3650 keeps ten years: a count of 3649 days ago stays, one of
	// 3650 days ago goes.
	mustRun(t, env, "configure", "10000", "2592000000", "3650")
	now := dayOf(nowMS(env))
	hset(t, env, "stats", "processed:"+ms(now-3649), "1", "processed:"+ms(now-3650), "1")
	checkClean(t, cleanReply{StatsTrimmed: 1}, clean(t, env, "j1", 1000, 0))
	want.Hash["processed:"+ms(now-3649)] = "1"
	checkKeys(t, env, keyspace.Snapshot{key("stats"): want}, "stats")
}

// TestConfigureStatsDays: configure stores stats_days beside the archive
// bounds; a bad value is refused with the keyspace unchanged.
func TestConfigureStatsDays(t *testing.T) {
	env := scripttest.New(t)
	mustRun(t, env, "configure", "10000", "2592000000", "7")
	checkSnapshot(t, env, keyspace.Snapshot{
		key("meta"): hashV("schema", "1", "archive_max", "10000", "archive_age_ms", "2592000000", "stats_days", "7"),
	})
	for _, bad := range [][]string{
		{"10000", "2592000000", "0"},
		{"10000", "2592000000", "3651"},
		{"10000", "2592000000", "-7"},
		{"10000", "2592000000", "seven"},
		{"10000", "2592000000"},
		{"-1", "2592000000", "7"}, // a bad bound with a good stats_days writes nothing either
	} {
		unchanged(t, env, func() { checkCode(t, run(t, env, "configure", bad...), codeBadArg) })
	}
}

// TestDailyStats: daily-stats reads the last N days ending today, oldest
// first, with zeros for days without counts, ignoring fields outside the
// range (older, or of a later day), and writes nothing.
func TestDailyStats(t *testing.T) {
	env := scripttest.New(t)
	advance(env, 5*dayMS+12345) // mid-day, 5 days after the epoch
	d := dayOf(nowMS(env))
	hset(t, env, "stats",
		"processed", "100", "failed", "100", // totals are not a day
		"processed:"+ms(d), "1", "expired:"+ms(d), "2",
		"failed:"+ms(d-2), "3", "retried:"+ms(d-2), "4", "archived:"+ms(d-2), "5",
		"processed:"+ms(d-3), "6", // outside a 3-day window
		"processed:"+ms(d+1), "7", // a later day than the server's today
	)
	unchanged(t, env, func() {
		for _, tc := range []struct {
			n    int
			want []day
		}{
			{1, []day{{Day: d, Processed: 1, Expired: 2}}},
			{3, []day{
				{Day: d - 2, Failed: 3, Retried: 4, Archived: 5},
				{Day: d - 1},
				{Day: d, Processed: 1, Expired: 2},
			}},
			{5, []day{
				{Day: d - 4},
				{Day: d - 3, Processed: 6},
				{Day: d - 2, Failed: 3, Retried: 4, Archived: 5},
				{Day: d - 1},
				{Day: d, Processed: 1, Expired: 2},
			}},
		} {
			if diff := cmp.Diff(tc.want, dailyStats(t, env, tc.n)); diff != "" {
				t.Errorf("daily-stats %d (-want +got):\n%s", tc.n, diff)
			}
		}
		// The largest window: 3650 days, the first 3649 days ago.
		all := dailyStats(t, env, 3650)
		if all[0].Day != d-3649 || all[3649].Day != d {
			t.Errorf("daily-stats 3650 spans days %d..%d, want %d..%d", all[0].Day, all[3649].Day, d-3649, d)
		}
		for i, x := range all {
			if x.Day != d-3649+int64(i) {
				t.Fatalf("daily-stats 3650: element %d is day %d, want %d", i, x.Day, d-3649+int64(i))
			}
		}
		if all[3646] != (day{Day: d - 3, Processed: 6}) {
			t.Errorf("daily-stats 3650: day d-3 = %+v", all[3646])
		}
	})
	// A queue nothing wrote: all zeros, no keys created.
	fresh := scripttest.New(t)
	unchanged(t, fresh, func() {
		got := dailyStats(t, fresh, 2)
		want := []day{{Day: epochDay - 1}, {Day: epochDay}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("daily-stats of an empty queue (-want +got):\n%s", diff)
		}
	})
}
