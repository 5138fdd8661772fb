package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/luaq/luaq/sdk"
)

// The demo's handlers and the tally of what they saw, per queue and type.

// demoCell holds the handler-side counters of one type on one queue.
type demoCell struct {
	completed, retried, archived, runs atomic.Int64
}

// counts returns the cell's counters.
func (c *demoCell) counts() demoCounts {
	return demoCounts{
		Completed: c.completed.Load(), Retried: c.retried.Load(),
		Archived: c.archived.Load(), Runs: c.runs.Load(),
	}
}

// demoTally holds the handler-side counters of every queue and type. Its
// maps are fixed at construction; only the atomic counters change.
type demoTally struct {
	queueIndex map[string]int // real queue name -> index
	typeIndex  map[string]int // type name -> index
	cells      [][]*demoCell  // [queue][type]
}

// newDemoTally returns zeroed counters for queues x types.
func newDemoTally(queues []demoQueue, types []demoType) *demoTally {
	t := &demoTally{queueIndex: map[string]int{}, typeIndex: map[string]int{}}
	for i, q := range queues {
		t.queueIndex[q.name] = i
		row := make([]*demoCell, len(types))
		for j := range row {
			row[j] = &demoCell{}
		}
		t.cells = append(t.cells, row)
	}
	for j, typ := range types {
		t.typeIndex[typ.name] = j
	}
	return t
}

// cell returns the counters of a task's queue and type, or nil for a task
// the demo did not enqueue.
func (t *demoTally) cell(queue, typ string) *demoCell {
	qi, ok1 := t.queueIndex[queue]
	ti, ok2 := t.typeIndex[typ]
	if !ok1 || !ok2 {
		return nil
	}
	return t.cells[qi][ti]
}

// countingHandler wraps a type's handler: it decodes the payload, simulates
// the work, runs the handler, and counts the run as completed, retried or
// archived, predicting the worker's decision from the task's retry budget.
func countingHandler(t *demoTally, typ demoType) func(ctx context.Context, task *sdk.Task) error {
	return func(ctx context.Context, task *sdk.Task) error {
		c := t.cell(task.Queue, task.Type)
		if c == nil {
			return fmt.Errorf("task %s of queue %q: not a demo task: %w", task.ID, task.Queue, sdk.ErrSkipRetry)
		}
		c.runs.Add(1)
		err := runDemoTask(ctx, typ, task)
		switch {
		case err == nil:
			c.completed.Add(1)
		case errors.Is(err, sdk.ErrSkipRetry) || task.Retried >= task.MaxRetry:
			c.archived.Add(1)
		default:
			c.retried.Add(1)
		}
		return err
	}
}

// runDemoTask decodes a task's payload, sleeps for its simulated work and
// calls the type's handler.
func runDemoTask(ctx context.Context, typ demoType, task *sdk.Task) error {
	var p demoPayload
	if err := json.Unmarshal(task.Payload, &p); err != nil {
		return fmt.Errorf("task %s: decoding its payload: %v: %w", task.ID, err, sdk.ErrSkipRetry)
	}
	if p.SleepUS > 0 {
		timer := time.NewTimer(time.Duration(p.SleepUS) * time.Microsecond)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("task %s: interrupted: %w", task.ID, context.Cause(ctx))
		}
	}
	return typ.handle(ctx, task, p)
}
