package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/redistest"
)

// TestNoResidueAfterEveryPath sends about two thousand tasks through every
// way a task can end (success; retry then success; archived by a skip or by
// running out of retries; expired while pending or scheduled, deleted or
// archived; refused for a held unique key; leased by a worker that died
// mid-task, then retried or archived; completed with a retention that
// elapsed) and then checks, once the janitor has nothing left to do, that the
// keyspace holds only bookkeeping: the meta and stats hashes and at most one
// wake token with a TTL, plus the archive (archived, errors, tasks) holding
// exactly the archived tasks. Run once with the default archive bound and
// once with archive_max 0, where nothing at all of any task may remain.
func TestNoResidueAfterEveryPath(t *testing.T) {
	for _, tc := range []struct {
		name        string
		archiveNone bool
	}{
		{"archive kept", false},
		{"archive bound 0", true},
	} {
		t.Run(tc.name, func(t *testing.T) { testNoResidue(t, tc.archiveNone) })
	}
}

// residueKind is one path through the queue, with how many tasks take it.
type residueKind struct {
	name     string
	n        int
	runs     int    // handler runs expected per task
	outcome  string // "processed", "archived", "expired", "expired-archived"
	errorMsg string // last error of an archived task
}

func testNoResidue(t *testing.T, archiveNone bool) {
	const (
		queue     = "residue"
		killLease = 300 * time.Millisecond
		expiry    = 100 * time.Millisecond
		uniqueTTL = 100 * time.Millisecond
		retention = 200 * time.Millisecond
		conflicts = 100
		workers   = 3
		perWorker = 16
	)
	kinds := []residueKind{
		{name: "killed-retry", n: 100, runs: 1, outcome: "processed"},
		{name: "killed-archive", n: 100, runs: 0, outcome: "archived", errorMsg: "lease expired"},
		{name: "expire-pending", n: 100, runs: 0, outcome: "expired"},
		{name: "expire-pending-archive", n: 100, runs: 0, outcome: "expired-archived", errorMsg: "expired"},
		{name: "expire-scheduled", n: 100, runs: 0, outcome: "expired"},
		{name: "expire-scheduled-archive", n: 100, runs: 0, outcome: "expired-archived", errorMsg: "expired"},
		{name: "unique", n: 100, runs: 1, outcome: "processed"},
		{name: "unique-ttl-lapsed", n: 100, runs: 1, outcome: "processed"},
		{name: "ok", n: 600, runs: 1, outcome: "processed"},
		{name: "retry", n: 300, runs: 2, outcome: "processed"},
		{name: "skip", n: 100, runs: 1, outcome: "archived", errorMsg: "bad input: luaq: skip retry"},
		{name: "exhaust", n: 100, runs: 2, outcome: "archived", errorMsg: "always fails"},
		{name: "retain", n: 200, runs: 1, outcome: "processed"},
	}
	byName := map[string]residueKind{}
	for _, k := range kinds {
		byName[k.name] = k
	}

	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	q := testQueueKeys(t, queue)
	// The stats days this run may count on (the local server's clock).
	firstDay := time.Now().UnixMilli() / 86400000
	if archiveNone {
		// Read by scripts/lib/archive.lua on every archive: each archived
		// task is trimmed (deleted) at once.
		if err := rdb.HSet(ctx, q.Key("meta"), "archive_max", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	j := newTestJanitor(t, rdb, JanitorConfig{Queues: []string{queue}})

	var mu sync.Mutex
	kindOf := map[string]string{} // task id -> kind name
	runs := map[string]int{}
	var latest time.Time // latest expiry or unique TTL end of phase 1
	enqueue := func(kind string, opts func(i int) []Option) {
		t.Helper()
		n := byName[kind].n
		for start := 0; start < n; start += MaxBatch {
			batch := make([]NewTask, 0, min(MaxBatch, n-start))
			for i := start; i < min(start+MaxBatch, n); i++ {
				var o []Option
				if opts != nil {
					o = opts(i)
				}
				batch = append(batch, NewTask{Type: kind, Options: o})
			}
			mu.Lock() // the handlers must find every id's kind
			infos, err := c.EnqueueBatch(ctx, queue, batch)
			if err != nil {
				mu.Unlock()
				t.Fatalf("enqueue %s: %v", kind, err)
			}
			for _, in := range infos {
				kindOf[in.ID] = kind
			}
			mu.Unlock()
			if end := infos[0].EnqueuedAt.Add(max(expiry, uniqueTTL)); end.After(latest) {
				latest = end
			}
		}
	}

	// Phase 1, no worker running. A worker process leases tasks and dies
	// without acking them.
	enqueue("killed-retry", func(int) []Option { return []Option{MaxRetry(2)} })
	enqueue("killed-archive", func(int) []Option { return []Option{MaxRetry(0)} })
	if got := leaseDirect(t, c.loader, queue, 1000, killLease); len(got) != 200 {
		t.Fatalf("the dying worker leased %d tasks, want 200", len(got))
	}
	// Tasks that expire before any worker runs: pending or scheduled,
	// deleted or archived; the deleted pending ones hold unique keys too.
	enqueue("expire-pending", func(i int) []Option {
		return []Option{ExpireIn(expiry), Unique("exp:"+strconv.Itoa(i), time.Minute)}
	})
	enqueue("expire-pending-archive", func(int) []Option { return []Option{ExpireIn(expiry), ArchiveOnExpiry()} })
	enqueue("expire-scheduled", func(int) []Option { return []Option{ProcessIn(50 * time.Millisecond), ExpireIn(expiry)} })
	enqueue("expire-scheduled-archive", func(int) []Option {
		return []Option{ProcessIn(50 * time.Millisecond), ExpireIn(expiry), ArchiveOnExpiry()}
	})
	// Unique keys: held until completion, and refused meanwhile.
	enqueue("unique", func(i int) []Option { return []Option{Unique("u:"+strconv.Itoa(i), time.Minute)} })
	before := dump(t, rdb)
	for i := 0; i < conflicts; i++ {
		if _, err := c.Enqueue(ctx, queue, "unique", nil, Unique("u:"+strconv.Itoa(i), time.Minute)); !errors.Is(err, ErrConflict) {
			t.Fatalf("enqueue with held unique key u:%d: err %v, want ErrConflict", i, err)
		}
	}
	if diff := cmp.Diff(before, dump(t, rdb)); diff != "" {
		t.Fatalf("refused enqueues changed the keyspace (-before +after):\n%s", diff)
	}
	// Unique keys whose TTL lapses while their tasks wait to be due.
	enqueue("unique-ttl-lapsed", func(i int) []Option {
		return []Option{Unique("s:"+strconv.Itoa(i), uniqueTTL), ProcessIn(400 * time.Millisecond)}
	})
	waitServerPast(t, rdb, latest)
	rep := cleanOnce(t, j)
	if rep.Expired != 400 || rep.UniqueFreed != 100 {
		t.Fatalf("janitor round before any worker ran: %+v, want 400 expired and 100 unique keys freed", rep)
	}

	// Phase 2: live workers, each with its own client and built-in janitor.
	handler := func(hctx context.Context, task *Task) error {
		mu.Lock()
		runs[task.ID]++
		mu.Unlock()
		switch task.Type {
		case "retry":
			if task.Retried == 0 {
				return errors.New("transient failure")
			}
		case "skip":
			return fmt.Errorf("bad input: %w", ErrSkipRetry)
		case "exhaust":
			return errors.New("always fails")
		case "retain":
			task.SetResult([]byte("result of " + task.ID))
		}
		return nil
	}
	var stops []func()
	for i := 0; i < workers; i++ {
		w, _ := newTestWorker(t, srv.Client(t), WorkerConfig{
			Queues: map[string]int{queue: 1}, Concurrency: perWorker,
			LeaseDuration: 2 * time.Second, JanitorInterval: 100 * time.Millisecond,
		})
		for _, k := range kinds {
			w.HandleFunc(k.name, handler)
		}
		stops = append(stops, runWorker(t, w))
	}
	enqueue("ok", nil)
	enqueue("retry", func(int) []Option { return []Option{MaxRetry(2)} })
	enqueue("skip", nil)
	enqueue("exhaust", func(int) []Option { return []Option{MaxRetry(1)} })
	enqueue("retain", func(i int) []Option {
		return []Option{Retention(retention), Unique("r:"+strconv.Itoa(i), time.Minute)}
	})

	// The lifetime counters the paths add up to:
	//   processed 1400 = killed-retry 100 + unique 100 + unique-ttl-lapsed 100 + ok 600 + retry 300 + retain 200
	//   failed     800 = expired leases 200 + retry 300 + skip 100 + exhaust 2*100
	//   retried    500 = killed-retry 100 + retry 300 + exhaust 100
	//   archived   500 = killed-archive 100 + expired-and-archived 200 + skip 100 + exhaust 100
	//   expired    400 = the four expire-* kinds
	want := map[string]int64{"processed": 1400, "failed": 800, "retried": 500, "archived": 500, "expired": 400}
	waitFor(t, hangGuard, "every task to end", func() bool {
		qi, err := c.QueueInfo(ctx, queue)
		return err == nil && qi.Processed == want["processed"] && qi.ArchivedTotal == want["archived"] &&
			qi.Active == 0 && qi.Pending == 0 && qi.Scheduled == 0
	})
	for _, stop := range stops {
		stop()
	}

	// The janitor runs until it has nothing left to do: the retention of
	// the last completed tasks must end first.
	waitFor(t, hangGuard, "the janitor to leave only bookkeeping", func() bool {
		cleanOnce(t, j)
		s := dump(t, rdb)
		for _, role := range []string{"completed", "results", "unique", "unique_ttl", "expiry", "active", "tokens", "pending", "scheduled"} {
			if _, ok := s[q.Key(role)]; ok {
				return false
			}
		}
		return true
	})
	final := dump(t, rdb)

	// Which tasks must be in the archive, with which error.
	wantArchived := map[string]string{}
	mu.Lock()
	for id, kind := range kindOf {
		k := byName[kind]
		if !archiveNone && (k.outcome == "archived" || k.outcome == "expired-archived") {
			wantArchived[id] = k.errorMsg
		}
		if got := runs[id]; got != k.runs {
			t.Errorf("task %s (%s) ran %d times, want %d", id, kind, got, k.runs)
		}
	}
	if len(kindOf) != 2100 {
		t.Errorf("%d tasks enqueued, want 2100", len(kindOf))
	}
	mu.Unlock()

	// Keys: only bookkeeping, plus the archive when kept.
	var gotKeys, wantKeys []string
	for k := range final {
		gotKeys = append(gotKeys, k)
	}
	wantKeys = []string{q.Key("meta"), q.Key("stats")}
	if len(wantArchived) > 0 {
		wantKeys = append(wantKeys, q.Key("archived"), q.Key("errors"), q.Key("tasks"))
	}
	if v, ok := final[q.Key("wake")]; ok {
		wantKeys = append(wantKeys, q.Key("wake"))
		if !v.TTL || len(v.List) > 1 {
			t.Errorf("wake list %+v: want at most one token, with a TTL", v)
		}
	}
	sort.Strings(gotKeys)
	sort.Strings(wantKeys)
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("keys left (-want +got):\n%s", diff)
	}

	// The archive holds exactly the archived tasks: id, error, record.
	var wantIDs []string
	for id := range wantArchived {
		wantIDs = append(wantIDs, id)
	}
	sort.Strings(wantIDs)
	var archivedIDs []string
	for _, m := range final[q.Key("archived")].ZSet {
		archivedIDs = append(archivedIDs, m.Member)
	}
	sort.Strings(archivedIDs)
	if diff := cmp.Diff(wantIDs, archivedIDs); diff != "" {
		t.Errorf("archived ids (-want +got):\n%s", diff)
	}
	for _, role := range []string{"errors", "tasks"} {
		var fields []string
		for f := range final[q.Key(role)].Hash {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		if diff := cmp.Diff(wantIDs, fields); diff != "" {
			t.Errorf("%s hash fields (-want +got):\n%s", role, diff)
		}
	}
	for id, msg := range wantArchived {
		if got := final[q.Key("errors")].Hash[id]; got != msg {
			t.Errorf("archived task %s (%s): error %q, want %q", id, kindOf[id], got, msg)
		}
	}

	// Bookkeeping holds counters and queue settings, never a task.
	meta := final[q.Key("meta")].Hash
	for field := range meta {
		if !slices.Contains([]string{"schema", "seq", "fence", "archive_max"}, field) {
			t.Errorf("meta field %q = %q: not bookkeeping", field, meta[field])
		}
	}
	if meta["seq"] != "2100" {
		t.Errorf("meta seq %q, want 2100: refused enqueues must not use ids", meta["seq"])
	}
	// Each counter is a total plus fields "<counter>:<day>" of the days of
	// this run, which add up to the total.
	lastDay := time.Now().UnixMilli() / 86400000
	stats := final[q.Key("stats")].Hash
	got, byDay := map[string]int64{}, map[string]int64{}
	for field, v := range stats {
		n, err := strconv.ParseInt(v, 10, 64)
		name, dayText, isDay := strings.Cut(field, ":")
		day, derr := strconv.ParseInt(dayText, 10, 64)
		if err != nil || !slices.Contains([]string{"processed", "failed", "retried", "archived", "expired"}, name) ||
			(isDay && (derr != nil || day < firstDay || day > lastDay)) {
			t.Errorf("stats field %q = %q: not a counter of this run", field, v)
		}
		if isDay {
			byDay[name] += n
		} else {
			got[name] = n
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("stats totals (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, byDay); diff != "" {
		t.Errorf("stats per day, summed (-want +got):\n%s", diff)
	}
}
