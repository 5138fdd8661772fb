package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

// The demo's worker: its configuration, its run in the background, and the
// wait until every task is terminal.

// newDemoWorker creates the worker over both queues and registers a
// counting handler, with its own backoff, for every type.
func newDemoWorker(rdb *redis.Client, cfg demoConfig, queues []demoQueue, types []demoType, t *demoTally) (*sdk.Worker, error) {
	weights := make(map[string]int, len(queues))
	for _, q := range queues {
		weights[q.name] = q.weight
	}
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues:          weights,
		Concurrency:     cfg.Concurrency,
		ShutdownTimeout: demoShutdownTimeout,
		Backoff:         sdk.ExponentialBackoff(10*time.Millisecond, 50*time.Millisecond),
		Logger:          slog.New(slog.NewTextHandler(cfg.Logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return nil, fmt.Errorf("creating the worker: %w", err)
	}
	for _, typ := range types {
		w.HandleFunc(typ.name, countingHandler(t, typ), sdk.WithBackoff(typ.backoff))
	}
	return w, nil
}

// runningWorker is a worker whose Run is in progress.
type runningWorker struct {
	w    *sdk.Worker
	done chan struct{} // closed when Run has returned
	err  error         // Run's error; read only after done is closed
}

// startWorker runs w in the background.
func startWorker(ctx context.Context, w *sdk.Worker) *runningWorker {
	rw := &runningWorker{w: w, done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		rw.err = w.Run(ctx)
	}()
	return rw
}

// stop shuts the worker down (bounded by demoShutdownTimeout) and waits for
// Run to return.
func (rw *runningWorker) stop(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, demoShutdownTimeout)
	defer cancel()
	if err := rw.w.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutting down the worker: %w", err)
	}
	select {
	case <-rw.done:
	case <-time.After(demoShutdownTimeout):
		return errors.New("shutting down the worker: Run did not return")
	}
	if rw.err != nil {
		return fmt.Errorf("worker: %w", rw.err)
	}
	return nil
}

// waitTerminal polls QueueInfo until every enqueued task of every queue is
// completed or archived and nothing is pending, scheduled or active. It
// fails when ctx is done or the worker stops early.
func waitTerminal(ctx context.Context, client *sdk.Client, queues []demoQueue, enqueued [][]int64, rw *runningWorker) ([]*sdk.QueueInfo, error) {
	tick := time.NewTicker(demoPollInterval)
	defer tick.Stop()
	for {
		infos, err := readQueueInfos(ctx, client, queues)
		if err != nil {
			if cause := context.Cause(ctx); cause != nil {
				err = cause
			}
			return nil, fmt.Errorf("waiting for the tasks to finish: %w", err)
		}
		if allTerminal(infos, enqueued) {
			return infos, nil
		}
		select {
		case <-ctx.Done():
			return infos, fmt.Errorf("waiting for the tasks to finish: %w (%s)", context.Cause(ctx), describeInfos(queues, infos))
		case <-rw.done:
			return infos, fmt.Errorf("the worker stopped before the tasks finished: %v", rw.err)
		case <-tick.C:
		}
	}
}

// readQueueInfos reads QueueInfo of every queue.
func readQueueInfos(ctx context.Context, client *sdk.Client, queues []demoQueue) ([]*sdk.QueueInfo, error) {
	infos := make([]*sdk.QueueInfo, len(queues))
	for i, q := range queues {
		info, err := client.QueueInfo(ctx, q.name)
		if err != nil {
			return nil, fmt.Errorf("reading the state of %s: %w", q.label, err)
		}
		infos[i] = info
	}
	return infos, nil
}

// allTerminal reports whether every queue has processed or archived all its
// enqueued tasks and holds nothing pending, scheduled or active.
func allTerminal(infos []*sdk.QueueInfo, enqueued [][]int64) bool {
	for i, info := range infos {
		var n int64
		for _, c := range enqueued[i] {
			n += c
		}
		if info.Processed+info.ArchivedTotal != n || info.Active != 0 || info.Pending != 0 || info.Scheduled != 0 {
			return false
		}
	}
	return true
}

// describeInfos renders the queues' states for an error message.
func describeInfos(queues []demoQueue, infos []*sdk.QueueInfo) string {
	parts := make([]string, len(infos))
	for i, info := range infos {
		parts[i] = fmt.Sprintf("%s: pending=%d scheduled=%d active=%d processed=%d archived_total=%d",
			queues[i].label, info.Pending, info.Scheduled, info.Active, info.Processed, info.ArchivedTotal)
	}
	return strings.Join(parts, ", ")
}
