package sdk

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// TestArchivedTasksRunAgainOrDelete archives tasks, runs one again (it
// completes, retry count reset) and deletes the other with all its data.
func TestArchivedTasksRunAgainOrDelete(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	var mu sync.Mutex
	fail := map[string]bool{"a": true, "b": true}
	w, err := NewWorker(rdb, WorkerConfig{Queues: map[string]int{"adm": 1}, Logger: (&logCapture{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 4)
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		mu.Lock()
		failing := fail[task.ID]
		mu.Unlock()
		if failing {
			done <- "failed " + task.ID
			return ErrSkipRetry
		}
		if task.Retried != 0 {
			done <- "retry count not reset for " + task.ID
			return nil
		}
		done <- "ok " + task.ID
		return nil
	})
	runWorker(t, w)
	for _, id := range []string{"a", "b"} {
		if _, err := c.Enqueue(ctx, "adm", "job", nil, ID(id), MaxRetry(5)); err != nil {
			t.Fatal(err)
		}
		<-done
	}
	waitFor(t, hangGuard, "two archived tasks", func() bool {
		info, err := c.QueueInfo(ctx, "adm")
		return err == nil && info.Archived == 2
	})
	mu.Lock()
	fail["a"] = false
	mu.Unlock()
	if err := c.RunArchived(ctx, "adm", "a"); err != nil {
		t.Fatal(err)
	}
	if got := <-done; got != "ok a" {
		t.Fatalf("after RunArchived: %s", got)
	}
	if err := c.RunArchived(ctx, "adm", "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("RunArchived of a task no longer archived: %v, want ErrNotFound", err)
	}
	state, err := c.DeleteTask(ctx, "adm", "b")
	if err != nil || state != "archived" {
		t.Fatalf("DeleteTask = %q, %v", state, err)
	}
	if _, err := c.DeleteTask(ctx, "adm", "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second DeleteTask: %v, want ErrNotFound", err)
	}
	waitTerminal(t, c, "adm", 3)
	for _, role := range []string{"tasks", "errors", "archived", "pending"} {
		if n, _ := rdb.Exists(ctx, "luaq:{adm}:"+role).Result(); n != 0 {
			t.Errorf("luaq:{adm}:%s left", role)
		}
	}
}

// TestArchiveBounds checks that Configure caps the archive, deleting the
// oldest archived tasks' data.
func TestArchiveBounds(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	cfg := DefaultQueueConfig()
	cfg.ArchiveMaxTasks, cfg.ArchiveMaxAge = 3, time.Hour
	if err := c.Configure(ctx, "bnd", cfg); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []QueueConfig{
		{ArchiveMaxTasks: -1, ArchiveMaxAge: time.Hour, StatsDays: 30},
		{ArchiveMaxTasks: 10000001, ArchiveMaxAge: time.Hour, StatsDays: 30},
		{ArchiveMaxTasks: 3, ArchiveMaxAge: 0, StatsDays: 30},
		{ArchiveMaxTasks: 3, ArchiveMaxAge: 101 * 365 * 24 * time.Hour, StatsDays: 30},
		{ArchiveMaxTasks: 3, ArchiveMaxAge: time.Hour, StatsDays: 0},
		{ArchiveMaxTasks: 3, ArchiveMaxAge: time.Hour, StatsDays: 3651},
		{StatsDays: 7}, // not started from DefaultQueueConfig
	} {
		if err := c.Configure(ctx, "bnd", bad); err == nil {
			t.Errorf("Configure(%+v) accepted", bad)
		}
	}
	meta, err := rdb.HGetAll(ctx, "luaq:{bnd}:meta").Result()
	if err != nil || meta["archive_max"] != "3" || meta["archive_age_ms"] != "3600000" || meta["stats_days"] != "30" {
		t.Errorf("meta %v (%v): want the first configuration only", meta, err)
	}
	w, _ := NewWorker(rdb, WorkerConfig{Queues: map[string]int{"bnd": 1}, Logger: (&logCapture{}).logger()})
	w.HandleFunc("job", func(ctx context.Context, task *Task) error { return ErrSkipRetry })
	runWorker(t, w)
	for i := 0; i < 10; i++ {
		if _, err := c.Enqueue(ctx, "bnd", "job", nil); err != nil {
			t.Fatal(err)
		}
	}
	info := waitTerminal(t, c, "bnd", 10)
	if info.Archived != 3 || info.ArchivedTotal != 10 {
		t.Errorf("archive holds %d (total archived %d), want 3 (10)", info.Archived, info.ArchivedTotal)
	}
	if n, _ := rdb.HLen(ctx, "luaq:{bnd}:tasks").Result(); n != 3 {
		t.Errorf("tasks hash holds %d records, want only the 3 archived ones", n)
	}
}

// TestGetTaskReadsARetainedTask checks that a completed task kept with
// Retention is readable through the SDK: state, result and timings.
func TestGetTaskReadsARetainedTask(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	info, err := c.Enqueue(ctx, "get", "job", []byte("in"), ID("g1"), Retention(time.Minute), MaxRetry(2))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.GetTask(ctx, "get", "g1")
	if err != nil || st.State != "pending" || string(st.Payload) != "in" || st.MaxRetry != 2 || !st.EnqueuedAt.Equal(info.EnqueuedAt) {
		t.Fatalf("pending task: %+v, %v", st, err)
	}
	w, _ := NewWorker(rdb, WorkerConfig{Queues: map[string]int{"get": 1}, Logger: (&logCapture{}).logger()})
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		task.SetResult([]byte("out"))
		return nil
	})
	runWorker(t, w)
	waitTerminal(t, c, "get", 1)
	st, err = c.GetTask(ctx, "get", "g1")
	if err != nil {
		t.Fatal(err)
	}
	if st.State != "completed" || string(st.Result) != "out" || st.Retention != time.Minute ||
		st.StateAt.Before(st.EnqueuedAt) || time.Since(st.StateAt) > time.Minute {
		t.Errorf("completed task: %+v", st)
	}
	if _, err := c.GetTask(ctx, "get", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetTask of an unknown id: %v, want ErrNotFound", err)
	}
}
