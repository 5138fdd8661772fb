package sdk

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestUniqueKey checks the Unique option: while a live task holds a key, an
// enqueue with the same key fails with ErrConflict and writes nothing; the
// key is free again once the holder completes, is archived or expires, or
// once its TTL passes (the janitor then sweeps the hold).
func TestUniqueKey(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// enqueueUnique enqueues one task holding key and checks the hold.
	enqueueUnique := func(t *testing.T, queue, taskType, key string, opts ...Option) *TaskInfo {
		t.Helper()
		info := f.enqueue(t, queue, taskType, append([]Option{Unique(key, time.Minute)}, opts...)...)
		q := testQueueKeys(t, queue)
		if holder := f.rdb.HGet(ctx, q.Key("unique"), key).Val(); holder != info.ID {
			t.Fatalf("unique key %q held by %q, want %s", key, holder, info.ID)
		}
		return info
	}
	// wantConflict checks that an enqueue with key fails with ErrConflict
	// and changes nothing.
	wantConflict := func(t *testing.T, queue, key string) {
		t.Helper()
		before := stableKeys(dump(t, f.rdb))
		_, err := f.c.EnqueueBatch(ctx, queue, []NewTask{
			{Type: "other"}, // an innocent task in the same batch is refused too
			{Type: "job", Options: []Option{Unique(key, time.Hour)}},
		})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("enqueue with held key %q: err %v, want ErrConflict", key, err)
		}
		if diff := cmp.Diff(before, stableKeys(dump(t, f.rdb))); diff != "" {
			t.Fatalf("refused enqueue changed the keyspace (-before +after):\n%s", diff)
		}
	}
	// wantFree checks that key can be taken again, then that the hold of
	// the new task is the one recorded.
	wantFree := func(t *testing.T, queue, key string) {
		t.Helper()
		info, err := f.c.Enqueue(ctx, queue, "later", nil, Unique(key, time.Minute), ProcessIn(time.Hour))
		if err != nil {
			t.Fatalf("enqueue with freed key %q: %v", key, err)
		}
		if holder := f.rdb.HGet(ctx, testQueueKeys(t, queue).Key("unique"), key).Val(); holder != info.ID {
			t.Errorf("unique key %q held by %q, want the new task %s", key, holder, info.ID)
		}
	}
	// startWorker runs a worker over queue whose "job" handler returns
	// result, with no janitor (the tests run it themselves).
	startWorker := func(t *testing.T, queue string, result error) {
		t.Helper()
		w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: -1})
		w.HandleFunc("job", func(context.Context, *Task) error { return result })
		runWorker(t, w)
	}

	t.Run("second enqueue conflicts while the first is live", func(t *testing.T) {
		const queue = "uniq-conflict"
		enqueueUnique(t, queue, "job", "report:42")
		wantConflict(t, queue, "report:42")
		// Another key, or the same key in another queue, is independent.
		f.enqueue(t, queue, "job", Unique("report:43", time.Minute))
		f.enqueue(t, "uniq-conflict-other", "job", Unique("report:42", time.Minute))
	})

	t.Run("freed when the holder completes", func(t *testing.T) {
		const queue = "uniq-complete"
		enqueueUnique(t, queue, "job", "k")
		wantConflict(t, queue, "k")
		startWorker(t, queue, nil)
		waitFor(t, hangGuard, "the holder to complete", func() bool { return f.queueInfo(t, queue).Processed == 1 })
		wantFree(t, queue, "k")
	})

	t.Run("a retry keeps the key held", func(t *testing.T) {
		const queue = "uniq-retry"
		enqueueUnique(t, queue, "job", "k", MaxRetry(1))
		w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: -1})
		w.HandleFunc("job", func(context.Context, *Task) error { return errors.New("flaky") }, WithBackoff(constBackoff(time.Hour)))
		runWorker(t, w)
		waitFor(t, hangGuard, "the first run to fail", func() bool { return f.queueInfo(t, queue).Retried == 1 })
		wantConflict(t, queue, "k")
	})

	t.Run("freed when the holder is archived", func(t *testing.T) {
		const queue = "uniq-archive"
		enqueueUnique(t, queue, "job", "k")
		startWorker(t, queue, fmt.Errorf("give up: %w", ErrSkipRetry))
		waitFor(t, hangGuard, "the holder to be archived", func() bool { return f.queueInfo(t, queue).Archived == 1 })
		wantFree(t, queue, "k")
	})

	t.Run("freed when the holder expires", func(t *testing.T) {
		const queue = "uniq-expire"
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		info := enqueueUnique(t, queue, "job", "k", ExpireIn(100*time.Millisecond))
		waitServerPast(t, f.rdb, info.EnqueuedAt.Add(100*time.Millisecond))
		if rep := cleanOnce(t, j); rep.Expired != 1 {
			t.Fatalf("janitor %+v, want Expired 1", rep)
		}
		wantFree(t, queue, "k")
	})

	t.Run("freed when its TTL passes, and the old holder cannot free the new hold", func(t *testing.T) {
		// The hold must refuse an enqueue before its TTL passes. On a slow
		// machine that enqueue may come after a short TTL passed (the
		// server clock read after it tells): then the test tries again on a
		// fresh queue with a longer TTL.
		var queue string
		var first *TaskInfo
		var heldFor time.Duration
		for ttl := 150 * time.Millisecond; first == nil; ttl *= 2 {
			queue = fmt.Sprintf("uniq-ttl-%d", ttl.Milliseconds())
			held := f.enqueue(t, queue, "job", Unique("k", ttl))
			_, err := f.c.Enqueue(ctx, queue, "job", nil, Unique("k", time.Hour))
			switch lapsed := !serverNow(t, f.rdb).Before(held.EnqueuedAt.Add(ttl)); {
			case errors.Is(err, ErrConflict):
				first, heldFor = held, ttl
			case err == nil && lapsed:
				t.Logf("the enqueue came after the %s hold had lapsed; trying a longer TTL", ttl)
			default:
				t.Fatalf("enqueue with key \"k\" held for %s: err %v, want ErrConflict", ttl, err)
			}
		}
		q := testQueueKeys(t, queue)
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		waitServerPast(t, f.rdb, first.EnqueuedAt.Add(heldFor))
		if rep := cleanOnce(t, j); rep.UniqueFreed != 1 {
			t.Fatalf("janitor %+v, want UniqueFreed 1", rep)
		}
		if n := f.rdb.Exists(ctx, q.Key("unique"), q.Key("unique_ttl")).Val(); n != 0 {
			t.Errorf("%d unique keys left after the sweep", n)
		}
		// The task itself is untouched: only its hold ended.
		if s := mustReadQueue(t, f.rdb, queue); len(s.pending) != 1 || s.pending[0] != first.ID {
			t.Fatalf("pending %v, want the first task still waiting", s.pending)
		}
		second := f.enqueue(t, queue, "job", Unique("k", time.Minute), ProcessIn(time.Hour))
		// The first task completing must not free the second's hold.
		startWorker(t, queue, nil)
		waitFor(t, hangGuard, "the first task to complete", func() bool { return f.queueInfo(t, queue).Processed == 1 })
		if holder := f.rdb.HGet(ctx, q.Key("unique"), "k").Val(); holder != second.ID {
			t.Fatalf("unique key held by %q after the old holder completed, want %s", holder, second.ID)
		}
		wantConflict(t, queue, "k")
	})
}
