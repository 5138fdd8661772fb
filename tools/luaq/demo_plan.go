package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/luaq/luaq/sdk"
)

// The demo's queues and its seeded plan of tasks, and how the plan is
// enqueued.

// demoQueue is one queue of the demo.
type demoQueue struct {
	label  string // "critical" or "default"
	name   string // the real queue name, prefixed on an external server
	weight int    // the worker's weight for the queue
}

// demoQueues returns the demo's queues, their names prefixed with prefix
// and a colon when prefix is not empty.
func demoQueues(prefix string) []demoQueue {
	qs := []demoQueue{{label: "critical", weight: 3}, {label: "default", weight: 1}}
	for i := range qs {
		qs[i].name = qs[i].label
		if prefix != "" {
			qs[i].name = prefix + ":" + qs[i].label
		}
	}
	return qs
}

// plannedTask is one task of the seeded plan.
type plannedTask struct {
	queue     int // index into the demo's queues
	typ       int // index into the demo's types
	id        string
	payload   demoPayload
	processIn time.Duration // 0: ready at once
}

// planDemo draws the seeded plan: each task's queue, type, payload, and
// whether it is scheduled.
func planDemo(seed uint64, n, nqueues int, types []demoType) []plannedTask {
	rng := rand.New(rand.NewPCG(seed, 0x6c7561712d64656d)) // "luaq-dem"
	totalShare := 0
	for _, t := range types {
		totalShare += t.share
	}
	plan := make([]plannedTask, n)
	for i := range plan {
		p := &plan[i]
		p.queue = nqueues - 1
		if nqueues > 1 && rng.IntN(100) < demoCriticalPercent {
			p.queue = 0
		}
		pick := rng.IntN(totalShare)
		for ti, t := range types {
			if pick < t.share {
				p.typ = ti
				break
			}
			pick -= t.share
		}
		p.id = fmt.Sprintf("%s-%06d", types[p.typ].name, i)
		p.payload = demoPayload{N: i, SleepUS: rng.IntN(demoMaxWorkMicros + 1)}
		if plan := types[p.typ].plan; plan != nil {
			plan(rng, &p.payload)
		}
		if rng.IntN(100) < demoScheduledPercent {
			p.processIn = demoScheduleMin + time.Duration(rng.Int64N(int64(demoScheduleSpread)+1))
		}
	}
	return plan
}

// enqueuePlan enqueues the plan in batches of at most sdk.MaxBatch per
// queue, alternating between the queues, and returns how many tasks of each
// queue and type were stored ([queue][type]).
func enqueuePlan(ctx context.Context, client *sdk.Client, queues []demoQueue, types []demoType, plan []plannedTask) ([][]int64, error) {
	perQueue := make([][]plannedTask, len(queues))
	for _, p := range plan {
		perQueue[p.queue] = append(perQueue[p.queue], p)
	}
	enqueued := make([][]int64, len(queues))
	for qi := range enqueued {
		enqueued[qi] = make([]int64, len(types))
	}
	for more := true; more; {
		more = false
		for qi, q := range queues {
			rest := perQueue[qi]
			if len(rest) == 0 {
				continue
			}
			batch := rest[:min(len(rest), sdk.MaxBatch)]
			perQueue[qi] = rest[len(batch):]
			more = more || len(perQueue[qi]) > 0
			if err := enqueueBatch(ctx, client, q, types, batch); err != nil {
				return enqueued, err
			}
			for _, p := range batch {
				enqueued[qi][p.typ]++
			}
		}
	}
	return enqueued, nil
}

// enqueueBatch stores one batch of planned tasks on queue q.
func enqueueBatch(ctx context.Context, client *sdk.Client, q demoQueue, types []demoType, batch []plannedTask) error {
	tasks := make([]sdk.NewTask, len(batch))
	for i, p := range batch {
		payload, err := json.Marshal(p.payload)
		if err != nil {
			return fmt.Errorf("encoding the payload of %s: %w", p.id, err)
		}
		typ := types[p.typ]
		opts := []sdk.Option{sdk.ID(p.id), sdk.MaxRetry(typ.maxRetry), sdk.Timeout(demoTaskTimeout)}
		if p.processIn > 0 {
			opts = append(opts, sdk.ProcessIn(p.processIn))
		}
		tasks[i] = sdk.NewTask{Type: typ.name, Payload: payload, Options: opts}
	}
	if _, err := client.EnqueueBatch(ctx, q.name, tasks); err != nil {
		return fmt.Errorf("enqueueing %d tasks to %s: %w", len(tasks), q.label, err)
	}
	return nil
}
