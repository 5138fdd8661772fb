package sdk

import (
	"context"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/redistest"
)

// TestWorkerRegistersAndLeavesNoTrace checks that a running worker is listed
// with its description and in-flight task, and that Shutdown removes every
// byte of its registration.
func TestWorkerRegistersAndLeavesNoTrace(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{"reg": 1}, Concurrency: 3, LeaseDuration: time.Second,
		Logger: (&logCapture{}).logger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	started, release := make(chan struct{}), make(chan struct{})
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		close(started)
		<-release
		return nil
	})
	stop := runWorker(t, w)
	if _, err := c.Enqueue(ctx, "reg", "job", nil, ID("t1")); err != nil {
		t.Fatal(err)
	}
	<-started
	var list []WorkerInfo
	waitFor(t, hangGuard, "the heartbeat to list the in-flight task", func() bool {
		list, err = c.Workers(ctx, "reg", 10)
		return err == nil && len(list) == 1 && len(list[0].InFlight) == 1
	})
	got := list[0]
	if got.ID != w.id || got.Concurrency != 3 || len(got.Queues) != 1 || got.Queues[0] != "reg" ||
		got.InFlight[0] != "reg/t1" || got.StartedAt.IsZero() || !got.HeartbeatDeadline.After(time.Now()) {
		t.Errorf("registration %+v", got)
	}
	close(release)
	waitTerminal(t, c, "reg", 1)
	stop()
	for _, role := range []string{"workers", "worker_info", "active", "tokens", "pending"} {
		k := "luaq:{reg}:" + role
		if n, _ := rdb.Exists(ctx, k).Result(); n != 0 {
			t.Errorf("%s still exists after Shutdown", k)
		}
	}
}

// TestJanitorPrunesDeadWorkers checks that a registration whose heartbeat
// lapsed (its process died) is removed by the janitor.
func TestJanitorPrunesDeadWorkers(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, _ := NewClient(rdb)
	ctx := context.Background()
	q, _ := keys.ForQueue("dead")
	if _, err := c.loader.Run(ctx, q, "register", "ghost:1:aa", `{"id":"ghost:1:aa"}`, "50"); err != nil {
		t.Fatal(err)
	}
	if list, _ := c.Workers(ctx, "dead", 10); len(list) != 1 {
		t.Fatalf("ghost not listed: %+v", list)
	}
	time.Sleep(100 * time.Millisecond)
	if list, _ := c.Workers(ctx, "dead", 10); len(list) != 0 {
		t.Fatalf("a lapsed worker is still listed: %+v", list)
	}
	j, err := NewJanitor(rdb, JanitorConfig{Queues: []string{"dead"}, Logger: (&logCapture{}).logger()})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := j.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.WorkersPruned != 1 {
		t.Errorf("WorkersPruned = %d, want 1", rep.WorkersPruned)
	}
	for _, role := range []string{"workers", "worker_info", "lock"} {
		if n, _ := rdb.Exists(ctx, "luaq:{dead}:"+role).Result(); n != 0 {
			t.Errorf("luaq:{dead}:%s still exists after the janitor ran", role)
		}
	}
}
