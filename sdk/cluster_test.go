package sdk

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// TestWorkerOnCluster runs a worker over queues whose hash tags land on
// different masters of a real cluster: leasing, completing, retrying and the
// per-queue wake lists (BLPOP cannot span slots) all work there.
func TestWorkerOnCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3, 0)
	rdb := cl.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	queues := map[string]int{}
	masters := map[int]bool{}
	for i := 0; len(queues) < 6; i++ {
		name := fmt.Sprintf("cq%d", i)
		slot := redistest.KeySlot("luaq:{" + name + "}:meta")
		masters[slot*3/16384] = true
		queues[name] = 1
	}
	if len(masters) < 2 {
		t.Fatalf("queues landed on %d slot ranges only", len(masters))
	}
	var mu sync.Mutex
	runs := map[string]int{}
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: queues, Concurrency: 8, Logger: (&logCapture{}).logger(),
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		mu.Lock()
		defer mu.Unlock()
		key := task.Queue + "/" + task.ID
		runs[key]++
		if runs[key] == 1 && len(task.ID)%2 == 0 {
			return fmt.Errorf("first run of %s fails", key)
		}
		return nil
	})
	runWorker(t, w)
	// Let the worker go idle first, so the tasks arrive through the wake lists.
	time.Sleep(100 * time.Millisecond)
	const perQueue = 50
	ctx := context.Background()
	for q := range queues {
		for i := 0; i < perQueue; i++ {
			if _, err := c.Enqueue(ctx, q, "job", nil, ID(fmt.Sprintf("t-%d", i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for q := range queues {
		waitTerminal(t, c, q, perQueue)
		info, err := c.QueueInfo(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Processed != perQueue || info.ArchivedTotal != 0 {
			t.Errorf("queue %s: processed %d archived %d, want %d and 0", q, info.Processed, info.ArchivedTotal, perQueue)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(runs) != perQueue*len(queues) {
		t.Errorf("%d distinct tasks ran, want %d", len(runs), perQueue*len(queues))
	}
}
