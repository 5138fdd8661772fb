package sdk

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keys"
)

// TestEnqueueReturnsWhatWasStored checks every field of the TaskInfo an
// Enqueue returns against the server's clock and against what the queue
// holds afterwards.
func TestEnqueueReturnsWhatWasStored(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	now := serverNow(t, f.rdb)
	future := time.UnixMilli(now.Add(time.Hour).UnixMilli())
	past := time.UnixMilli(now.Add(-time.Hour).UnixMilli())
	deadline := time.UnixMilli(now.Add(2 * time.Hour).UnixMilli())

	tests := []struct {
		name         string
		payload      string
		opts         []Option
		wantID       string // "1" for a generated id on a fresh queue
		wantState    string
		wantDelay    time.Duration // ProcessAt - EnqueuedAt, unless wantAt is set
		wantAt       time.Time
		wantMaxRetry int
		wantTimeout  time.Duration
		wantDeadline time.Time
		// The lifecycle options: wantExpireIn is expire_at - EnqueuedAt
		// unless wantExpireAt is set; wantUniqueTTL is how long after the
		// enqueue the unique key's hold ends.
		wantExpireIn  time.Duration
		wantExpireAt  time.Time
		wantOnExpiry  int64
		wantRetention time.Duration
		wantUnique    string
		wantUniqueTTL time.Duration
	}{
		{name: "generated id, pending", payload: "hello", wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry},
		{
			name: "given id and run options", payload: "\x00binary\xff",
			opts:   []Option{ID("order-42"), MaxRetry(3), Timeout(1500 * time.Millisecond), Deadline(deadline)},
			wantID: "order-42", wantState: "pending", wantMaxRetry: 3, wantTimeout: 1500 * time.Millisecond, wantDeadline: deadline,
		},
		{
			name: "sub-ms timeout and deadline as stored, in whole ms", opts: []Option{Timeout(1500 * time.Microsecond), Deadline(deadline.Add(999 * time.Microsecond))},
			wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry, wantTimeout: 2 * time.Millisecond, wantDeadline: deadline,
		},
		{name: "ProcessIn", opts: []Option{ProcessIn(300 * time.Millisecond)}, wantID: "1", wantState: "scheduled", wantDelay: 300 * time.Millisecond, wantMaxRetry: DefaultMaxRetry},
		{name: "ProcessIn rounds up to whole ms", opts: []Option{ProcessIn(1500 * time.Microsecond)}, wantID: "1", wantState: "scheduled", wantDelay: 2 * time.Millisecond, wantMaxRetry: DefaultMaxRetry},
		{name: "ProcessIn 0 is now", opts: []Option{ProcessIn(0)}, wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry},
		{name: "ProcessAt in the future", opts: []Option{ProcessAt(future), MaxRetry(0)}, wantID: "1", wantState: "scheduled", wantAt: future},
		{name: "ProcessAt in the past is ready now", opts: []Option{ProcessAt(past)}, wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry},
		{
			// Colons in the unique key and the payload: the key is
			// length-prefixed, so neither can be mistaken for a separator.
			name: "expiry, archive on expiry, retention, unique key", payload: "pay:load",
			opts:   []Option{ExpireIn(90 * time.Second), ArchiveOnExpiry(), Retention(2 * time.Minute), Unique("user:7:welcome", time.Hour)},
			wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry,
			wantExpireIn: 90 * time.Second, wantOnExpiry: 1, wantRetention: 2 * time.Minute,
			wantUnique: "user:7:welcome", wantUniqueTTL: time.Hour,
		},
		{
			name: "ExpireAt after ProcessIn, deleted on expiry", opts: []Option{ProcessIn(time.Minute), ExpireAt(future)},
			wantID: "1", wantState: "scheduled", wantDelay: time.Minute, wantMaxRetry: DefaultMaxRetry, wantExpireAt: future,
		},
		{
			name:   "sub-ms expiry, retention and unique TTL round up to whole ms",
			opts:   []Option{ExpireIn(1500 * time.Microsecond), Retention(1500 * time.Microsecond), Unique("k", 1500*time.Microsecond)},
			wantID: "1", wantState: "pending", wantMaxRetry: DefaultMaxRetry,
			wantExpireIn: 2 * time.Millisecond, wantRetention: 2 * time.Millisecond, wantUnique: "k", wantUniqueTTL: 2 * time.Millisecond,
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			queue := fmt.Sprintf("enq%d", i)
			before := serverNow(t, f.rdb).Truncate(time.Millisecond)
			info, err := f.c.Enqueue(ctx, queue, "email", []byte(tc.payload), tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			after := serverNow(t, f.rdb)
			if info.EnqueuedAt.Before(before) || info.EnqueuedAt.After(after) {
				t.Errorf("EnqueuedAt %s, want the server clock at the call: between %s and %s",
					info.EnqueuedAt.Format(time.StampMicro), before.Format(time.StampMicro), after.Format(time.StampMicro))
			}
			wantAt := tc.wantAt
			if wantAt.IsZero() {
				wantAt = info.EnqueuedAt.Add(tc.wantDelay)
			}
			got := *info
			want := TaskInfo{
				ID: tc.wantID, Queue: queue, Type: "email", Payload: []byte(tc.payload),
				MaxRetry: tc.wantMaxRetry, Timeout: tc.wantTimeout, Deadline: tc.wantDeadline,
				State: tc.wantState, EnqueuedAt: info.EnqueuedAt, ProcessAt: wantAt,
				Retention: tc.wantRetention, UniqueKey: tc.wantUnique,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("TaskInfo (-want +got):\n%s", diff)
			}

			// The queue holds the task where TaskInfo says, with the same
			// options in its record.
			s := mustReadQueue(t, f.rdb, queue)
			switch tc.wantState {
			case "pending":
				if diff := cmp.Diff([]string{info.ID}, s.pending); diff != "" || len(s.scheduled) != 0 {
					t.Errorf("pending (-want +got):\n%s\nscheduled %v", diff, s.scheduled)
				}
			case "scheduled":
				if due, ok := s.scheduled[info.ID]; !ok || due != info.ProcessAt.UnixMilli() || len(s.pending) != 0 {
					t.Errorf("scheduled %v, pending %v: want %s due at %d", s.scheduled, s.pending, info.ID, info.ProcessAt.UnixMilli())
				}
			}
			rec, err := decodeRecord(s.tasks[info.ID])
			if err != nil {
				t.Fatal(err)
			}
			dl := int64(0)
			if !tc.wantDeadline.IsZero() {
				dl = tc.wantDeadline.UnixMilli()
			}
			expireAt := int64(0)
			switch {
			case !tc.wantExpireAt.IsZero():
				expireAt = tc.wantExpireAt.UnixMilli()
			case tc.wantExpireIn > 0:
				expireAt = info.EnqueuedAt.Add(tc.wantExpireIn).UnixMilli()
			}
			wantRec := storedRecord{
				Retried: 0, MaxRetry: int64(tc.wantMaxRetry), Timeout: tc.wantTimeout.Milliseconds(), Deadline: dl,
				ExpireAt: expireAt, Retention: tc.wantRetention.Milliseconds(), Enqueued: info.EnqueuedAt.UnixMilli(),
				OnExpiry: tc.wantOnExpiry, Type: "email", Unique: tc.wantUnique, Payload: tc.payload,
			}
			if diff := cmp.Diff(wantRec, rec); diff != "" {
				t.Errorf("stored record (-want +got):\n%s", diff)
			}

			// The expiry index and the unique-key hold match the record.
			q, _ := keys.ForQueue(queue)
			if expireAt > 0 {
				if at, err := f.rdb.ZScore(ctx, q.Key("expiry"), info.ID).Result(); err != nil || int64(at) != expireAt {
					t.Errorf("expiry index holds %s at %v (%v), want %d", info.ID, at, err, expireAt)
				}
			} else if n := f.rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
				t.Errorf("expiry index exists for a task without expiry")
			}
			if tc.wantUnique != "" {
				holder := f.rdb.HGet(ctx, q.Key("unique"), tc.wantUnique).Val()
				until, err := f.rdb.ZScore(ctx, q.Key("unique_ttl"), tc.wantUnique).Result()
				if holder != info.ID || err != nil || int64(until) != info.EnqueuedAt.Add(tc.wantUniqueTTL).UnixMilli() {
					t.Errorf("unique key %q held by %q until %v (%v), want %s until %d", tc.wantUnique, holder, until, err,
						info.ID, info.EnqueuedAt.Add(tc.wantUniqueTTL).UnixMilli())
				}
			} else if n := f.rdb.Exists(ctx, q.Key("unique"), q.Key("unique_ttl")).Val(); n != 0 {
				t.Errorf("unique keys exist for a task without a unique key")
			}
		})
	}

	t.Run("batch mixes generated and given ids in order", func(t *testing.T) {
		if _, err := f.c.Enqueue(ctx, "batch", "job", nil); err != nil { // takes id 1
			t.Fatal(err)
		}
		infos, err := f.c.EnqueueBatch(ctx, "batch", []NewTask{
			{Type: "a"},
			{Type: "b", Options: []Option{ID("mine")}},
			{Type: "c", Options: []Option{ProcessIn(time.Minute)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var got [][3]string
		for _, in := range infos {
			got = append(got, [3]string{in.ID, in.Type, in.State})
			if !in.EnqueuedAt.Equal(infos[0].EnqueuedAt) {
				t.Errorf("task %s EnqueuedAt %s, want the batch's single time %s", in.ID, in.EnqueuedAt, infos[0].EnqueuedAt)
			}
		}
		want := [][3]string{{"2", "a", "pending"}, {"mine", "b", "pending"}, {"3", "c", "scheduled"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("batch infos (-want +got):\n%s", diff)
		}
		if d := infos[2].ProcessAt.Sub(infos[2].EnqueuedAt); d != time.Minute {
			t.Errorf("ProcessIn(1m) task due %s after the enqueue, want 1m", d)
		}
	})
}

// TestPauseResume checks the return values of Pause and Resume, that a
// paused queue's tasks are not leased (even when an enqueue wakes the
// worker), that an idle worker does not poll a paused queue, and that Resume
// wakes the idle worker at once.
func TestPauseResume(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const queue = "pz"

	steps := []struct {
		op   string
		want bool
	}{
		{"pause", true}, {"pause", false}, {"resume", true}, {"resume", false}, {"pause", true},
	}
	for i, st := range steps {
		var got bool
		var err error
		if st.op == "pause" {
			got, err = f.c.Pause(ctx, queue)
		} else {
			got, err = f.c.Resume(ctx, queue)
		}
		if err != nil || got != st.want {
			t.Fatalf("step %d: %s = %v, %v; want %v (whether the state changed)", i, st.op, got, err, st.want)
		}
		if info := f.queueInfo(t, queue); info.Paused != (st.op == "pause") {
			t.Fatalf("step %d: after %s QueueInfo.Paused = %v", i, st.op, info.Paused)
		}
	}

	const maxIdle = 30 * time.Second
	wrdb, calls := f.srv.Client(t), newCallLog(t)
	spy := newScriptSpy(t, wrdb)
	wrdb.AddHook(calls)
	w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{queue: 1}, Concurrency: 4, MaxIdleWait: maxIdle})
	var ran atomic.Int32
	var mu sync.Mutex
	var ranAt []time.Time
	w.HandleFunc("job", func(context.Context, *Task) error {
		mu.Lock()
		ranAt = append(ranAt, time.Now())
		mu.Unlock()
		ran.Add(1)
		return nil
	})
	f.enqueue(t, queue, "job")
	runWorker(t, w)
	waitFor(t, hangGuard, "the worker's first dequeue", func() bool { return spy.count("dequeue") >= 1 })
	// Enqueues while paused wake the worker, but it must not lease.
	f.enqueue(t, queue, "job")
	time.Sleep(50 * time.Millisecond)
	f.enqueue(t, queue, "job")
	before := spy.count("dequeue")
	time.Sleep(500 * time.Millisecond)
	if n := ran.Load(); n != 0 {
		t.Fatalf("%d tasks of a paused queue ran", n)
	}
	if n := spy.count("dequeue") - before; n > 2 {
		t.Errorf("%d dequeue calls in 500ms on a paused queue, want at most 2 (no polling)", n)
	}
	if info := f.queueInfo(t, queue); info.Pending != 3 || info.Active != 0 || !info.Paused {
		t.Errorf("paused queue: %+v, want 3 pending, none active", info)
	}

	resumed := time.Now()
	if changed, err := f.c.Resume(ctx, queue); err != nil || !changed {
		t.Fatalf("Resume = %v, %v; want true", changed, err)
	}
	waitFor(t, hangGuard, "the resumed queue's tasks to run", func() bool { return ran.Load() == 3 })
	mu.Lock()
	last := ranAt[len(ranAt)-1]
	mu.Unlock()
	// Resume must wake the idle worker.
	checkWoken(t, "the resumed queue's last task", idleSpellStart(t, calls.of("dequeue"), resumed), resumed, last, maxIdle)
	if info := f.queueInfo(t, queue); info.Paused {
		t.Errorf("QueueInfo.Paused after Resume")
	}

	// Pausing again while the worker idles on the queue stops leasing again.
	if changed, err := f.c.Pause(ctx, queue); err != nil || !changed {
		t.Fatalf("second Pause = %v, %v; want true", changed, err)
	}
	f.enqueue(t, queue, "job")
	time.Sleep(300 * time.Millisecond)
	if n := ran.Load(); n != 3 {
		t.Errorf("%d tasks ran, want still 3 while paused", n)
	}
	if _, err := f.c.Resume(ctx, queue); err != nil {
		t.Fatal(err)
	}
	waitFor(t, hangGuard, "the last task to run after Resume", func() bool { return ran.Load() == 4 })
}

// TestQueueInfoCountsAMixedRun checks every QueueInfo field after a run with
// successes, a retried success, a skip-retry, a task that exhausts its
// retries, a scheduled task and one still running.
func TestQueueInfoCountsAMixedRun(t *testing.T) {
	f := newFixture(t)
	const queue = "mixed"
	ctx := context.Background()
	add := func(typ string, opts ...Option) { f.enqueue(t, queue, typ, opts...) }
	for i := 0; i < 3; i++ {
		add("ok")
	}
	add("flaky", MaxRetry(2))       // fails once, then succeeds
	add("bad", MaxRetry(5))         // skip retry: archived at once
	add("broken", MaxRetry(1))      // fails twice: archived
	add("ok", ProcessIn(time.Hour)) // stays scheduled
	add("block")                    // still running at the snapshot

	if info := f.queueInfo(t, queue); info.Pending != 7 || info.Scheduled != 1 || info.Active != 0 {
		t.Fatalf("before the run: %+v, want 7 pending, 1 scheduled", info)
	}

	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, Concurrency: 4})
	w.HandleFunc("ok", func(context.Context, *Task) error { return nil })
	w.HandleFunc("flaky", func(_ context.Context, task *Task) error {
		if task.Retried == 0 {
			return fmt.Errorf("flaky")
		}
		return nil
	})
	w.HandleFunc("bad", func(context.Context, *Task) error { return ErrSkipRetry })
	w.HandleFunc("broken", func(context.Context, *Task) error { return fmt.Errorf("broken") })
	release := make(chan struct{})
	blocking := make(chan struct{}, 1)
	w.HandleFunc("block", func(context.Context, *Task) error {
		blocking <- struct{}{}
		<-release
		return nil
	})
	runWorker(t, w)
	recv(t, blocking, hangGuard, "the blocking task to start")
	want := QueueInfo{
		Queue: queue, Pending: 0, Scheduled: 1, Active: 1, Archived: 2,
		Processed: 4, Failed: 4, Retried: 2, ArchivedTotal: 2,
	}
	var got *QueueInfo
	waitFor(t, hangGuard, "the other tasks to end", func() bool {
		got = f.queueInfo(t, queue)
		return got.Processed+got.ArchivedTotal == want.Processed+want.ArchivedTotal
	})
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("QueueInfo with one task running (-want +got):\n%s", diff)
	}
	close(release)
	want.Active, want.Processed = 0, 5
	waitFor(t, hangGuard, "the blocking task to complete", func() bool {
		got = f.queueInfo(t, queue)
		return got.Processed == 5
	})
	if diff := cmp.Diff(&want, got); diff != "" {
		t.Errorf("final QueueInfo (-want +got):\n%s", diff)
	}
	if _, err := f.c.Pause(ctx, queue); err != nil {
		t.Fatal(err)
	}
	want.Paused = true
	if diff := cmp.Diff(&want, f.queueInfo(t, queue)); diff != "" {
		t.Errorf("QueueInfo after Pause (-want +got):\n%s", diff)
	}
	if info := f.queueInfo(t, "never-used"); *info != (QueueInfo{Queue: "never-used"}) {
		t.Errorf("QueueInfo of an unknown queue: %+v, want all zero", info)
	}
}
