package sdk

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestExpiry checks ExpireIn / ExpireAt: a task that no worker has started
// by its expiry is dropped unseen (or archived with the error "expired" under
// ArchiveOnExpiry) and counted in QueueInfo.Expired, whether the janitor or a
// dequeue meets it first.
//
// Expiry is not Timeout and not Deadline (both tested in worker_test.go):
//   - Expiry bounds how long a task may WAIT to start. It is "not worth
//     starting any more": the handler never runs, the task is not a failure
//     (no failed or retried count), it is just dropped. Once a worker has
//     started the task in time, its expiry no longer applies, however long
//     the run takes.
//   - Timeout bounds ONE RUN, measured from the moment the handler starts:
//     the handler's context is cancelled, the run fails and is retried
//     (TestTaskTimeout). It says nothing about how long a task may wait.
//   - Deadline is an instant by which a RUN MUST HAVE FINISHED: it cancels a
//     run still going at that instant and archives the task as a failure,
//     never retried; a task still waiting at its deadline is archived as a
//     failure too, not expired (TestTaskDeadline).
func TestExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	t.Run("pending task with no worker is deleted by the janitor", func(t *testing.T) {
		const queue = "exp-pending"
		q := testQueueKeys(t, queue)
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		info := f.enqueue(t, queue, "job", ExpireIn(150*time.Millisecond))
		if at, err := f.rdb.ZScore(ctx, q.Key("expiry"), info.ID).Result(); err != nil || int64(at) != info.EnqueuedAt.Add(150*time.Millisecond).UnixMilli() {
			t.Fatalf("expiry index: %v (%v), want %s at enqueue + 150ms", at, err, info.ID)
		}
		// Not expired yet: the janitor leaves it alone.
		if rep := cleanOnce(t, j); rep.Expired != 0 || f.rdb.LLen(ctx, q.Key("pending")).Val() != 1 {
			t.Fatalf("janitor before the expiry: %+v, pending %d; want nothing expired", rep, f.rdb.LLen(ctx, q.Key("pending")).Val())
		}
		waitServerPast(t, f.rdb, info.EnqueuedAt.Add(150*time.Millisecond))
		if rep := cleanOnce(t, j); rep.Expired != 1 {
			t.Fatalf("janitor after the expiry: %+v, want Expired 1", rep)
		}
		s := mustReadQueue(t, f.rdb, queue)
		if len(s.pending) != 0 || len(s.tasks) != 0 || len(s.errors) != 0 || len(s.archived) != 0 {
			t.Errorf("after expiry: pending %v tasks %v errors %v archived %v; want all empty", s.pending, s.tasks, s.errors, s.archived)
		}
		if n := f.rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
			t.Errorf("expiry index still exists")
		}
		qi := f.queueInfo(t, queue)
		if qi.Expired != 1 || qi.Pending != 0 || qi.Archived != 0 || qi.ArchivedTotal != 0 || qi.Failed != 0 || qi.Processed != 0 {
			t.Errorf("QueueInfo %+v: want Expired 1 and nothing else", qi)
		}
		if msg := onlyBookkeeping(dump(t, f.rdb), queue); msg != "" {
			t.Error(msg)
		}
	})

	t.Run("ArchiveOnExpiry archives it with the error expired", func(t *testing.T) {
		const queue = "exp-archive"
		q := testQueueKeys(t, queue)
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		info, err := f.c.Enqueue(ctx, queue, "job", []byte("kept"), ExpireIn(150*time.Millisecond), ArchiveOnExpiry())
		if err != nil {
			t.Fatal(err)
		}
		waitServerPast(t, f.rdb, info.EnqueuedAt.Add(150*time.Millisecond))
		if rep := cleanOnce(t, j); rep.Expired != 1 {
			t.Fatalf("janitor: %+v, want Expired 1", rep)
		}
		s := mustReadQueue(t, f.rdb, queue)
		if !slices.Equal(s.archived, []string{info.ID}) || s.errors[info.ID] != "expired" || len(s.pending) != 0 {
			t.Errorf("archived %v errors %v pending %v; want %s archived with error \"expired\"", s.archived, s.errors, s.pending, info.ID)
		}
		if rec, err := decodeRecord(s.tasks[info.ID]); err != nil || rec.Payload != "kept" || rec.Retried != 0 {
			t.Errorf("archived record %+v (%v): want the original task, payload kept", rec, err)
		}
		if n := f.rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
			t.Errorf("expiry index still exists")
		}
		qi := f.queueInfo(t, queue)
		if qi.Expired != 1 || qi.Archived != 1 || qi.ArchivedTotal != 1 || qi.Failed != 0 {
			t.Errorf("QueueInfo %+v: want Expired 1, Archived 1, ArchivedTotal 1, no failure", qi)
		}
		if msg := onlyBookkeeping(dump(t, f.rdb), queue, "archived", "errors", "tasks"); msg != "" {
			t.Error(msg)
		}
	})

	t.Run("scheduled task never picked up expires", func(t *testing.T) {
		const queue = "exp-scheduled"
		q := testQueueKeys(t, queue)
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		info := f.enqueue(t, queue, "job", ProcessIn(50*time.Millisecond), ExpireIn(150*time.Millisecond))
		if info.State != "scheduled" {
			t.Fatalf("state %s, want scheduled", info.State)
		}
		waitServerPast(t, f.rdb, info.EnqueuedAt.Add(150*time.Millisecond))
		if rep := cleanOnce(t, j); rep.Expired != 1 {
			t.Fatalf("janitor: %+v, want Expired 1", rep)
		}
		s := mustReadQueue(t, f.rdb, queue)
		if len(s.scheduled) != 0 || len(s.pending) != 0 || len(s.tasks) != 0 {
			t.Errorf("scheduled %v pending %v tasks %v; want all empty", s.scheduled, s.pending, s.tasks)
		}
		if n := f.rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
			t.Errorf("expiry index still exists")
		}
		if qi := f.queueInfo(t, queue); qi.Expired != 1 || qi.Scheduled != 0 {
			t.Errorf("QueueInfo %+v: want Expired 1, nothing scheduled", qi)
		}
		if msg := onlyBookkeeping(dump(t, f.rdb), queue); msg != "" {
			t.Error(msg)
		}
	})

	t.Run("a worker that meets an expired task at dequeue never runs it", func(t *testing.T) {
		const queue = "exp-dequeue"
		q := testQueueKeys(t, queue)
		stale := f.enqueue(t, queue, "job", ExpireIn(150*time.Millisecond))
		staleSched := f.enqueue(t, queue, "job", ProcessIn(50*time.Millisecond), ExpireIn(150*time.Millisecond))
		waitServerPast(t, f.rdb, staleSched.EnqueuedAt.Add(150*time.Millisecond))
		fresh := f.enqueue(t, queue, "job") // behind both in FIFO order
		// No janitor: the dequeue alone must drop the expired tasks.
		w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: -1})
		var mu sync.Mutex
		var ran []string
		freshDone := make(chan struct{})
		w.HandleFunc("job", func(ctx context.Context, task *Task) error {
			mu.Lock()
			ran = append(ran, task.ID)
			mu.Unlock()
			if task.ID == fresh.ID {
				close(freshDone)
			}
			return nil
		})
		runWorker(t, w)
		recv(t, freshDone, hangGuard, "the fresh task to run")
		waitFor(t, hangGuard, "the expired tasks to be dropped", func() bool {
			return f.queueInfo(t, queue).Expired == 2
		})
		mu.Lock()
		got := slices.Clone(ran)
		mu.Unlock()
		if !slices.Equal(got, []string{fresh.ID}) {
			t.Errorf("handler ran %v, want only %s (not the expired %s, %s)", got, fresh.ID, stale.ID, staleSched.ID)
		}
		s := mustReadQueue(t, f.rdb, queue)
		if len(s.tasks) != 0 || len(s.pending) != 0 || len(s.scheduled) != 0 || s.stat("failed") != 0 || s.stat("processed") != 1 {
			t.Errorf("tasks %v pending %v scheduled %v stats %v; want the expired tasks gone, 1 processed, no failure", s.tasks, s.pending, s.scheduled, s.stats)
		}
		if n := f.rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
			t.Errorf("expiry index still exists")
		}
	})

	t.Run("a task started before its expiry runs to the end", func(t *testing.T) {
		const queue = "exp-started"
		wrdb, calls := f.srv.Client(t), newCallLog(t)
		wrdb.AddHook(calls)
		w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: 20 * time.Millisecond})
		started := make(chan string, 10)
		release := make(chan struct{})
		w.HandleFunc("job", func(ctx context.Context, task *Task) error {
			started <- task.ID
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		})
		runWorker(t, w)
		// On a slow machine the worker may not start the task before a
		// short expiry: then it expires unseen (as it must), and the test
		// tries again with a longer one.
		var expireAt time.Time
		expiredUnseen := int64(0)
		for expiry := 150 * time.Millisecond; expireAt.IsZero(); expiry *= 2 {
			info := f.enqueue(t, queue, "job", ExpireIn(expiry))
			waitFor(t, hangGuard, "the task to start or expire", func() bool {
				select {
				case id := <-started:
					if id != info.ID {
						t.Fatalf("task %s started, want %s", id, info.ID)
					}
					expireAt = info.EnqueuedAt.Add(expiry)
					return true
				default:
					return f.queueInfo(t, queue).Expired > expiredUnseen
				}
			})
			if expireAt.IsZero() {
				expiredUnseen++
				t.Logf("the task expired %s after its enqueue before the worker started it; trying a longer expiry", expiry)
			}
		}
		// Outlive the expiry while the janitor runs: past it on the server
		// clock, and two janitor rounds begun after it.
		waitServerPast(t, f.rdb, expireAt)
		waitFor(t, hangGuard, "two janitor rounds after the expiry", func() bool {
			n := 0
			for _, c := range calls.of("clean") {
				if c.start.UnixMilli() > expireAt.UnixMilli() {
					n++
				}
			}
			return n >= 2
		})
		close(release)
		waitFor(t, hangGuard, "the task to complete", func() bool { return f.queueInfo(t, queue).Processed == 1 })
		if qi := f.queueInfo(t, queue); qi.Expired != expiredUnseen || qi.Failed != 0 {
			t.Errorf("QueueInfo %+v: want the started task completed, not expired (%d expired unseen before)", qi, expiredUnseen)
		}
	})

	t.Run("a retry of a task started in time is not expired", func(t *testing.T) {
		// ExpireIn's contract: expiry concerns only tasks that never
		// started. A run that fails after the task started in time is
		// retried like any other, even when the retry is due after the
		// original expiry.
		const queue = "exp-retry"
		w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: -1})
		var expiry atomic.Int64 // of the current attempt; the retry is due twice as late
		var mu sync.Mutex
		runs := map[string]int{}
		w.HandleFunc("job", func(ctx context.Context, task *Task) error {
			mu.Lock()
			defer mu.Unlock()
			runs[task.ID]++
			if runs[task.ID] == 1 {
				return errors.New("first run fails")
			}
			return nil
		}, WithBackoff(func(int, error, *Task) time.Duration { return 2 * time.Duration(expiry.Load()) }))
		runWorker(t, w)
		// On a slow machine the worker may not start the task before a
		// short expiry: then it expires unseen (as it must), and the test
		// tries again with a longer one.
		for attempt := int64(1); ; attempt++ {
			expiry.Store(int64(150*time.Millisecond) << (attempt - 1))
			info := f.enqueue(t, queue, "job", ExpireIn(time.Duration(expiry.Load())), MaxRetry(1))
			var qi *QueueInfo
			waitFor(t, hangGuard, "the task to finish", func() bool {
				qi = f.queueInfo(t, queue)
				return qi.Processed+qi.Expired+qi.ArchivedTotal == attempt
			})
			mu.Lock()
			n := runs[info.ID]
			mu.Unlock()
			if n == 0 && qi.Expired == attempt {
				t.Logf("the task expired %s after its enqueue before the worker started it; trying a longer expiry", time.Duration(expiry.Load()))
				continue
			}
			if n != 2 || qi.Processed != 1 || qi.Expired != attempt-1 {
				t.Errorf("handler ran %d times, QueueInfo %+v: want 2 runs, the retry completed, nothing expired", n, qi)
			}
			break
		}
	})
}
