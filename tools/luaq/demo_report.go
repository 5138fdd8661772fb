package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/luaq/luaq/sdk"
)

// The demo's summary and its printed report.

// demoSummary is the outcome of runDemo.
type demoSummary struct {
	Seed        uint64
	Server      string // where the demo ran, for display
	Concurrency int
	Scheduled   int64 // tasks enqueued with ProcessIn
	Queues      []queueSummary
	Total       demoCounts    // handler-side counts over all queues and types
	Wall        time.Duration // from the first enqueue until every task was terminal
	Lost        int64         // Total.Enqueued - Total.Completed - Total.Archived
	// Problems lists every disagreement between the handler-side counts,
	// the plan and QueueInfo. Empty when all agree.
	Problems []string
}

// queueSummary is the outcome of one queue.
type queueSummary struct {
	Label  string // "critical" or "default"
	Name   string // the queue's real name (prefixed with --redis)
	Weight int
	Types  []typeSummary
	Total  demoCounts     // handler-side counts over the queue's types
	Info   *sdk.QueueInfo // QueueInfo read once every task was terminal
}

// typeSummary is the outcome of one task type on one queue.
type typeSummary struct {
	Type string
	Got  demoCounts // enqueued, and what the handlers saw
	Want demoCounts // what the seeded plan predicts
}

// Throughput is the number of enqueued tasks per second of wall time.
func (s demoSummary) Throughput() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return float64(s.Total.Enqueued) / s.Wall.Seconds()
}

// Err reports lost tasks and disagreeing counts, or nil.
func (s demoSummary) Err() error {
	var errs []error
	if s.Lost != 0 {
		errs = append(errs, fmt.Errorf("%d tasks lost", s.Lost))
	}
	if len(s.Problems) > 0 {
		errs = append(errs, fmt.Errorf("counts disagree: %s", strings.Join(s.Problems, "; ")))
	}
	return errors.Join(errs...)
}

// printDemoHeader writes what the demo is about to do.
func printDemoHeader(out io.Writer, cfg demoConfig, sum demoSummary, queues []demoQueue) {
	qs := make([]string, len(queues))
	for i, q := range queues {
		qs[i] = fmt.Sprintf("%s (weight %d)", q.name, q.weight)
	}
	fmt.Fprintf(out, "luaq demo: %d tasks (%d scheduled %s-%s ahead) on %s; concurrency %d, seed %d, server: %s\n",
		cfg.Tasks, sum.Scheduled, demoScheduleMin, demoScheduleMin+demoScheduleSpread,
		strings.Join(qs, " and "), cfg.Concurrency, cfg.Seed, sum.Server)
}

// printDemoSummary writes the summary table, the totals, the cross-check
// result and the final ok/FAIL line; runErr, when not nil, is why the demo
// stopped early.
func printDemoSummary(out io.Writer, s demoSummary, runErr error) {
	fmt.Fprintln(out)
	fmt.Fprintf(out, "%-8s  %-12s  %8s  %9s  %12s  %8s  %12s\n",
		"queue", "type", "enqueued", "completed", "retried runs", "archived", "handler runs")
	row := func(queue, typ string, c demoCounts) {
		fmt.Fprintf(out, "%-8s  %-12s  %8d  %9d  %12d  %8d  %12d\n",
			queue, typ, c.Enqueued, c.Completed, c.Retried, c.Archived, c.Runs)
	}
	for _, q := range s.Queues {
		for _, t := range q.Types {
			row(q.Label, t.Type, t.Got)
		}
		row(q.Label, "all", q.Total)
	}
	byType := map[string]*demoCounts{}
	var order []string
	for _, q := range s.Queues {
		for _, t := range q.Types {
			if byType[t.Type] == nil {
				byType[t.Type] = &demoCounts{}
				order = append(order, t.Type)
			}
			byType[t.Type].add(t.Got)
		}
	}
	for _, typ := range order {
		row("all", typ, *byType[typ])
	}
	row("all", "all", s.Total)
	fmt.Fprintln(out)

	fmt.Fprintf(out, "handler runs: %d (%d retried)\n", s.Total.Runs, s.Total.Retried)
	fmt.Fprintf(out, "wall time: %s, throughput: %.0f tasks/s\n", s.Wall.Round(time.Millisecond), s.Throughput())
	for _, q := range s.Queues {
		if q.Info == nil {
			continue
		}
		fmt.Fprintf(out, "QueueInfo %s: processed=%d retried=%d failed=%d archived_total=%d pending=%d scheduled=%d active=%d\n",
			q.Label, q.Info.Processed, q.Info.Retried, q.Info.Failed, q.Info.ArchivedTotal,
			q.Info.Pending, q.Info.Scheduled, q.Info.Active)
	}
	for _, p := range s.Problems {
		fmt.Fprintf(out, "mismatch: %s\n", p)
	}
	if len(s.Problems) == 0 && runErr == nil {
		fmt.Fprintln(out, "cross-check: handler counts, the seeded plan and QueueInfo agree")
	}
	status := "ok"
	if runErr != nil || s.Err() != nil {
		status = "FAIL"
	}
	fmt.Fprintf(out, "%s: %d tasks, %d completed, %d archived, %d lost\n",
		status, s.Total.Enqueued, s.Total.Completed, s.Total.Archived, s.Lost)
}
