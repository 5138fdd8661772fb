package main

import (
	"fmt"

	"github.com/luaq/luaq/sdk"
)

// The demo's cross-check: the counts the handlers saw against the seeded
// plan's prediction and QueueInfo.

// demoCounts counts tasks or runs of one type, one queue, or all.
type demoCounts struct {
	Enqueued  int64 // tasks enqueued
	Completed int64 // tasks whose handler finally succeeded
	Retried   int64 // failed runs that were scheduled for a retry
	Archived  int64 // tasks archived (retries used up, or ErrSkipRetry)
	Runs      int64 // handler runs
}

// add adds o to c.
func (c *demoCounts) add(o demoCounts) {
	c.Enqueued += o.Enqueued
	c.Completed += o.Completed
	c.Retried += o.Retried
	c.Archived += o.Archived
	c.Runs += o.Runs
}

// lost is how many enqueued tasks are neither completed nor archived.
func (c demoCounts) lost() int64 { return c.Enqueued - c.Completed - c.Archived }

// fillSummary computes the per-queue and per-type counts, the plan's
// predictions and the totals into sum, and records every disagreement
// between the handlers, the plan and QueueInfo (infos may be nil when the
// demo failed before reading them).
func fillSummary(sum *demoSummary, queues []demoQueue, types []demoType, plan []plannedTask, enqueued [][]int64, t *demoTally, infos []*sdk.QueueInfo) {
	want := predict(len(queues), types, plan)
	for qi, q := range queues {
		qs := queueSummary{Label: q.label, Name: q.name, Weight: q.weight}
		if infos != nil {
			qs.Info = infos[qi]
		}
		for ti, typ := range types {
			got := t.cells[qi][ti].counts()
			got.Enqueued = enqueued[qi][ti]
			ts := typeSummary{Type: typ.name, Got: got, Want: want[qi][ti]}
			sum.Problems = append(sum.Problems, compareCounts(q.label+"/"+typ.name, ts.Got, ts.Want)...)
			qs.Types = append(qs.Types, ts)
			qs.Total.add(got)
		}
		if qs.Info != nil {
			sum.Problems = append(sum.Problems, compareQueueInfo(q.label, qs.Total, qs.Info)...)
		}
		sum.Queues = append(sum.Queues, qs)
		sum.Total.add(qs.Total)
	}
	sum.Lost = sum.Total.lost()
}

// predict returns what the plan expects per queue and type ([queue][type]).
func predict(nqueues int, types []demoType, plan []plannedTask) [][]demoCounts {
	want := make([][]demoCounts, nqueues)
	for qi := range want {
		want[qi] = make([]demoCounts, len(types))
	}
	for _, p := range plan {
		c := &want[p.queue][p.typ]
		retried, archived := types[p.typ].expect(p.payload)
		c.Enqueued++
		c.Retried += int64(retried)
		c.Runs += int64(retried) + 1
		if archived {
			c.Archived++
		} else {
			c.Completed++
		}
	}
	return want
}

// compareCounts lists the fields where the handler-side counts differ from
// the plan's.
func compareCounts(what string, got, want demoCounts) []string {
	var out []string
	check := func(field string, g, w int64) {
		if g != w {
			out = append(out, fmt.Sprintf("%s: %s %d, the plan expects %d", what, field, g, w))
		}
	}
	check("enqueued", got.Enqueued, want.Enqueued)
	check("completed", got.Completed, want.Completed)
	check("retried", got.Retried, want.Retried)
	check("archived", got.Archived, want.Archived)
	check("runs", got.Runs, want.Runs)
	return out
}

// compareQueueInfo lists where a queue's QueueInfo disagrees with the
// handler-side counts, or shows tasks not yet terminal.
func compareQueueInfo(queue string, got demoCounts, info *sdk.QueueInfo) []string {
	var out []string
	check := func(field string, g, w int64) {
		if g != w {
			out = append(out, fmt.Sprintf("%s: QueueInfo %s %d, handlers counted %d", queue, field, g, w))
		}
	}
	check("processed", info.Processed, got.Completed)
	check("retried", info.Retried, got.Retried)
	check("archived_total", info.ArchivedTotal, got.Archived)
	check("failed", info.Failed, got.Retried+got.Archived)
	check("lost (enqueued-processed-archived_total)", got.Enqueued-info.Processed-info.ArchivedTotal, got.lost())
	check("pending", info.Pending, 0)
	check("scheduled", info.Scheduled, 0)
	check("active", info.Active, 0)
	return out
}
