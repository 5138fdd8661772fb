package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// plan is what a task's handler does on each run.
type plan struct {
	failRuns  int  // runs that fail before one succeeds
	skipRetry bool // the first failure asks to skip retries
	maxRetry  int
}

// wantArchived reports whether the plan ends in the archive, and after how
// many runs.
func (p plan) outcome() (archived bool, runs int) {
	switch {
	case p.failRuns == 0:
		return false, 1
	case p.skipRetry:
		return true, 1
	case p.failRuns > p.maxRetry:
		return true, p.maxRetry + 1
	default:
		return false, p.failRuns + 1
	}
}

// tracker records every handler run of a load test.
type tracker struct {
	mu        sync.Mutex
	runs      map[string]int
	successes map[string]int
	plans     map[string]plan
	failures  int // runs whose handler returned an error
}

func newTracker() *tracker {
	return &tracker{runs: map[string]int{}, successes: map[string]int{}, plans: map[string]plan{}}
}

func (tr *tracker) handler(ctx context.Context, t *Task) error {
	tr.mu.Lock()
	tr.runs[t.ID]++
	run := tr.runs[t.ID]
	p := tr.plans[t.ID]
	tr.mu.Unlock()
	if run <= p.failRuns {
		tr.mu.Lock()
		tr.failures++
		tr.mu.Unlock()
		if p.skipRetry {
			return fmt.Errorf("bad input: %w", ErrSkipRetry)
		}
		return fmt.Errorf("transient failure %d", run)
	}
	tr.mu.Lock()
	tr.successes[t.ID]++
	tr.mu.Unlock()
	return nil
}

// enqueuePlanned enqueues n tasks with random plans, in batches.
func enqueuePlanned(t *testing.T, c *Client, tr *tracker, queue string, n int, rng *rand.Rand) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for start := 0; start < n; start += MaxBatch {
		end := min(start+MaxBatch, n)
		batch := make([]NewTask, 0, end-start)
		var plans []plan
		for i := start; i < end; i++ {
			p := plan{maxRetry: rng.IntN(3)}
			switch r := rng.IntN(10); {
			case r < 6: // succeeds at once
			case r < 8:
				p.failRuns = 1 + rng.IntN(3)
			case r < 9:
				p.failRuns, p.skipRetry = 1, true
			default:
				p.failRuns = 10 // always fails: archived after its retries
			}
			plans = append(plans, p)
			batch = append(batch, NewTask{Type: "job", Payload: []byte(strconv.Itoa(i)), Options: []Option{MaxRetry(p.maxRetry)}})
		}
		// Register the plans before any worker can see the tasks.
		tr.mu.Lock()
		infos, err := c.EnqueueBatch(ctx, queue, batch)
		if err != nil {
			tr.mu.Unlock()
			t.Fatal(err)
		}
		for i, info := range infos {
			tr.plans[info.ID] = plans[i]
			ids = append(ids, info.ID)
		}
		tr.mu.Unlock()
	}
	return ids
}

// checkOutcomes verifies every task ran as its plan says and ended in the
// right terminal state, and that the keyspace holds only bookkeeping keys.
//
// With faults set (the server was restarted), a reply cut by the restart may
// leave a lease nobody holds; it is reclaimed as a failed run with the error
// "lease expired". Then a task may run more often than planned, or reach the
// archive early, but only with that error: every task still ends completed or
// archived, none is lost.
func checkOutcomes(t *testing.T, rdb redis.Cmdable, tr *tracker, queue string, ids []string, faults bool) {
	t.Helper()
	snap := dump(t, rdb)
	prefix := "luaq:{" + queue + "}:"
	archived := map[string]bool{}
	for _, m := range snap[prefix+"archived"].ZSet {
		archived[m.Member] = true
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	var wantArchived []string
	deviations := 0
	for _, id := range ids {
		p := tr.plans[id]
		wantArch, wantRuns := p.outcome()
		if faults {
			if !checkFaultOutcome(t, tr, id, archived[id], &deviations) {
				continue
			}
			if archived[id] {
				wantArchived = append(wantArchived, id)
			}
			continue
		}
		if archived[id] != wantArch {
			t.Errorf("task %s (plan %+v): archived=%v, want %v", id, p, archived[id], wantArch)
		}
		runs := tr.runs[id]
		if runs != wantRuns && !(faults && runs > wantRuns) {
			t.Errorf("task %s (plan %+v): ran %d times, want %d", id, p, runs, wantRuns)
		}
		wantSucc := 1
		if wantArch {
			wantSucc = 0
			wantArchived = append(wantArchived, id)
		}
		if s := tr.successes[id]; s != wantSucc && !(faults && s > wantSucc) {
			t.Errorf("task %s: %d successful runs, want %d", id, s, wantSucc)
		}
	}
	if faults {
		// Every deviation from a plan needs a reclaimed lease, and reclaims
		// are exactly the failures the handlers did not report.
		var stats map[string]string = snap[prefix+"stats"].Hash
		failed, _ := strconv.Atoi(stats["failed"])
		reclaims := failed - tr.failures
		t.Logf("restart: %d reclaimed leases, %d tasks deviated from their plan", reclaims, deviations)
		if reclaims < 0 || deviations > reclaims || reclaims > 100 {
			t.Errorf("reclaims %d (failed %d - handler failures %d), deviations %d: want 0 <= deviations <= reclaims <= 100",
				reclaims, failed, tr.failures, deviations)
		}
	}
	if len(archived) != len(wantArchived) {
		t.Errorf("archive holds %d tasks, want %d", len(archived), len(wantArchived))
	}
	// Only bookkeeping keys may remain: the README's list.
	gotKeys := snap.Keys()
	wantKeys := []string{prefix + "meta", prefix + "stats"}
	if len(wantArchived) > 0 {
		wantKeys = append(wantKeys, prefix+"archived", prefix+"errors", prefix+"tasks")
	}
	if _, ok := snap[prefix+"wake"]; ok {
		wantKeys = append(wantKeys, prefix+"wake")
		if v := snap[prefix+"wake"]; !v.TTL || len(v.List) > 1 {
			t.Errorf("wake list %+v: want at most one token, with a TTL", v)
		}
	}
	sort.Strings(wantKeys)
	if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
		t.Errorf("keys left (-want +got):\n%s", diff)
	}
	// The tasks and errors hashes hold exactly the archived tasks.
	sort.Strings(wantArchived)
	for _, key := range []string{"tasks", "errors"} {
		var fields []string
		for f := range snap[prefix+key].Hash {
			fields = append(fields, f)
		}
		sort.Strings(fields)
		if len(wantArchived) == 0 {
			wantArchived = nil
		}
		if diff := cmp.Diff(wantArchived, fields); diff != "" {
			t.Errorf("%s hash fields (-want +got):\n%s", key, diff)
		}
	}
}

// checkFaultOutcome checks one task of a run with faults: it must be terminal
// (completed at least once, or archived without a success), and any
// difference from its plan is counted as a deviation. It reports whether the
// task is consistent.
func checkFaultOutcome(t *testing.T, tr *tracker, id string, archived bool, deviations *int) bool {
	t.Helper()
	p := tr.plans[id]
	wantArch, wantRuns := p.outcome()
	succ, runs := tr.successes[id], tr.runs[id]
	if archived && succ > 0 {
		t.Errorf("task %s is archived but succeeded %d times", id, succ)
		return false
	}
	if !archived && succ == 0 {
		t.Errorf("task %s is neither archived nor completed (ran %d times): lost", id, runs)
		return false
	}
	if archived != wantArch || (archived && runs < wantRuns) {
		*deviations++
	}
	return true
}

// waitTerminal waits until n tasks of queue have ended (completed or
// archived) and none is active. It fails only when no task has ended for
// hangGuard: a long run on a slow machine keeps making progress.
func waitTerminal(t *testing.T, c *Client, queue string, n int64) *QueueInfo {
	t.Helper()
	var info *QueueInfo
	ended, progressAt := int64(-1), time.Now()
	for {
		var err error
		info, err = c.QueueInfo(context.Background(), queue)
		if err == nil && info.Processed+info.ArchivedTotal >= n && info.Active == 0 {
			return info
		}
		if err == nil && info.Processed+info.ArchivedTotal != ended {
			ended, progressAt = info.Processed+info.ArchivedTotal, time.Now()
		}
		if time.Since(progressAt) > hangGuard {
			t.Fatalf("waiting for %d tasks of %s to finish: none ended for %s (%+v, %v)", n, queue, hangGuard, info, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestTenThousandTasksEndExactlyOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	tr := newTracker()
	const queue, n = "load", 10000
	rng := rand.New(rand.NewPCG(1, 2))
	logs := &logCapture{}
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{queue: 1}, Concurrency: 32, Logger: logs.logger(),
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc("job", tr.handler)
	stop := runWorker(t, w)
	ids := enqueuePlanned(t, c, tr, queue, n, rng)
	info := waitTerminal(t, c, queue, n)
	stop()
	if info.Processed+info.ArchivedTotal != n {
		t.Errorf("processed %d + archived %d != %d", info.Processed, info.ArchivedTotal, n)
	}
	checkOutcomes(t, rdb, tr, queue, ids, false)
	if logs.contains("level=ERROR") {
		t.Errorf("worker logged errors:\n%s", logs)
	}
}

func TestScriptFlushMidRunLosesNothing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	tr := newTracker()
	const queue, n = "flush", 3000
	logs := &logCapture{}
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{queue: 1}, Concurrency: 16, Logger: logs.logger(),
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	var flushes atomic.Int32
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		if task.ID == "500" || task.ID == "1500" || task.ID == "2500" {
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				return err
			}
			flushes.Add(1)
		}
		return tr.handler(ctx, task)
	})
	stop := runWorker(t, w)
	ids := enqueuePlanned(t, c, tr, queue, n, rand.New(rand.NewPCG(3, 4)))
	waitTerminal(t, c, queue, n)
	// Stop the worker first: a running worker's registration (workers,
	// worker_info) is not residue; it must be gone once the worker stopped.
	stop()
	if flushes.Load() < 3 {
		t.Fatalf("only %d script flushes happened", flushes.Load())
	}
	checkOutcomes(t, rdb, tr, queue, ids, false)
	if logs.contains("NOSCRIPT") || logs.contains("level=ERROR") {
		t.Errorf("an operation failed during the flushes:\n%s", logs)
	}
}

func TestServerRestartMidRunLosesNothing(t *testing.T) {
	srv := redistest.Start(t, redistest.WithPersistence())
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	tr := newTracker()
	const queue, n = "restart", 3000
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{queue: 1}, Concurrency: 16, Logger: (&logCapture{}).logger(),
		LeaseDuration: 3 * time.Second, ReclaimBackoff: time.Millisecond,
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	var started atomic.Int32
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		started.Add(1)
		time.Sleep(200 * time.Microsecond)
		return tr.handler(ctx, task)
	})
	stop := runWorker(t, w)
	ids := enqueuePlanned(t, c, tr, queue, n, rand.New(rand.NewPCG(5, 6)))
	waitFor(t, hangGuard, "a third of the tasks to start", func() bool { return started.Load() > n/3 })
	srv.Restart(t)
	waitTerminal(t, c, queue, n)
	stop() // its registration goes with it (see TestScriptFlushMidRunLosesNothing)
	// A restart may cut a reply after the server applied the call; the task
	// then runs again once its lease is reclaimed. Nothing may be lost.
	checkOutcomes(t, rdb, tr, queue, ids, true)
}

func TestEnqueueRejectsBadInputAndWritesNothing(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	if _, err := c.Enqueue(ctx, "q", "job", nil, ID("dup")); err != nil {
		t.Fatal(err)
	}
	before := dump(t, rdb)
	tests := []struct {
		name  string
		queue string
		tasks []NewTask
		want  error // nil: only a Go-side error is expected
	}{
		{"duplicate id", "q", []NewTask{{Type: "job"}, {Type: "job", Options: []Option{ID("dup")}}}, ErrConflict},
		{"id repeated in batch", "q", []NewTask{{Type: "job", Options: []Option{ID("a")}}, {Type: "job", Options: []Option{ID("a")}}}, ErrBadArg},
		{"all-digit id", "q", []NewTask{{Type: "job", Options: []Option{ID("42")}}}, ErrBadArg},
		{"empty type", "q", []NewTask{{Type: "job"}, {Type: ""}}, ErrBadArg},
		{"type with space", "q", []NewTask{{Type: "a b"}}, ErrBadArg},
		{"deadline in the past", "q", []NewTask{{Type: "job", Options: []Option{Deadline(time.Now().Add(-time.Hour))}}}, ErrBadArg},
		{"process at and in", "q", []NewTask{{Type: "job", Options: []Option{ProcessAt(time.Now()), ProcessIn(time.Second)}}}, nil},
		{"negative retry", "q", []NewTask{{Type: "job", Options: []Option{MaxRetry(-1)}}}, nil},
		{"bad queue name", "a{b}", []NewTask{{Type: "job"}}, nil},
		{"empty batch", "q", nil, nil},
		{"batch too big", "q", make([]NewTask, MaxBatch+1), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.EnqueueBatch(ctx, tc.queue, tc.tasks)
			if err == nil {
				t.Fatal("EnqueueBatch succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, dump(t, rdb)); diff != "" {
				t.Errorf("keyspace changed (-before +after):\n%s", diff)
			}
		})
	}
}
