package sdk

import (
	"context"
	"testing"
	"time"
)

// TestRetentionKeepsResultUntilJanitorDeletes checks the Retention option
// with Task.SetResult: a completed task with retention stays readable (its
// record in the tasks hash, its result in the results hash, its id in the
// completed zset until the retention ends) and the janitor deletes all of it
// once the retention has passed. A task without retention is deleted on
// completion and its result dropped.
func TestRetentionKeepsResultUntilJanitorDeletes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	const queue, retention = "retain", 300 * time.Millisecond
	q := testQueueKeys(t, queue)
	j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})

	// No built-in janitor: the test decides when cleaning happens.
	w, _ := newTestWorker(t, f.rdb, WorkerConfig{Queues: map[string]int{queue: 1}, JanitorInterval: -1})
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		task.SetResult([]byte("out:" + task.ID))
		return nil
	})
	kept := f.enqueue(t, queue, "job", ID("kept"), Retention(retention))
	dropped := f.enqueue(t, queue, "job", ID("dropped"))
	runWorker(t, w)
	waitFor(t, hangGuard, "both tasks to complete", func() bool { return f.queueInfo(t, queue).Processed == 2 })

	// Readable now, as completed.
	until, err := f.rdb.ZScore(ctx, q.Key("completed"), kept.ID).Result()
	if err != nil {
		t.Fatalf("completed zset has no %s: %v", kept.ID, err)
	}
	end := time.UnixMilli(int64(until))
	if now := serverNow(t, f.rdb); end.Before(kept.EnqueuedAt.Add(retention)) || end.After(now.Add(retention)) {
		t.Errorf("retention ends at %s, want completion + %s (between %s and %s)", end, retention, kept.EnqueuedAt.Add(retention), now.Add(retention))
	}
	results := f.rdb.HGetAll(ctx, q.Key("results")).Val()
	if len(results) != 1 || results[kept.ID] != "out:kept" {
		t.Errorf("results hash %v, want only %s -> out:kept", results, kept.ID)
	}
	s := mustReadQueue(t, f.rdb, queue)
	rec, err := decodeRecord(s.tasks[kept.ID])
	if err != nil || rec.Retention != retention.Milliseconds() {
		t.Errorf("retained record %+v (%v), want retention %d", rec, err, retention.Milliseconds())
	}
	if _, ok := s.tasks[dropped.ID]; ok || len(s.tasks) != 1 {
		t.Errorf("tasks hash %v: want only the retained task", s.tasks)
	}
	if len(s.pending) != 0 || len(s.active) != 0 || len(s.tokens) != 0 || len(s.errors) != 0 {
		t.Errorf("pending %v active %v tokens %v errors %v: want none", s.pending, s.active, s.tokens, s.errors)
	}
	if qi := f.queueInfo(t, queue); qi.Completed != 1 || qi.Processed != 2 {
		t.Errorf("QueueInfo %+v: want Completed 1, Processed 2", qi)
	}
	// A janitor round before the retention ends keeps it. Whether the round
	// ran before the end is judged by the server clock read after it: on a
	// slow machine it may have run after, and then it may delete.
	early := cleanOnce(t, j)
	if ranBy := serverNow(t, f.rdb); ranBy.UnixMilli() < end.UnixMilli() &&
		(early.RetentionDeleted != 0 || !f.rdb.HExists(ctx, q.Key("results"), kept.ID).Val()) {
		t.Errorf("janitor before the retention ended (%s left): %+v; want nothing deleted", end.Sub(ranBy), early)
	}

	// Gone after the retention and a janitor round.
	waitServerPast(t, f.rdb, end)
	if rep := cleanOnce(t, j); early.RetentionDeleted+rep.RetentionDeleted != 1 {
		t.Errorf("janitor after the retention: %+v (and %+v in the round before), want RetentionDeleted 1 in all", rep, early)
	}
	if n := f.rdb.Exists(ctx, q.Key("tasks"), q.Key("results"), q.Key("completed")).Val(); n != 0 {
		t.Errorf("%d of tasks, results, completed still exist", n)
	}
	if qi := f.queueInfo(t, queue); qi.Completed != 0 || qi.Processed != 2 {
		t.Errorf("QueueInfo %+v: want Completed 0, Processed 2", qi)
	}
	if msg := onlyBookkeeping(stableKeys(dump(t, f.rdb)), queue); msg != "" {
		t.Error(msg)
	}
}
