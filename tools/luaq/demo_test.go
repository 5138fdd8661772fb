package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunDemoEmbedded runs the demo on the embedded server with a small
// number of tasks and checks that its summary adds up.
func TestRunDemoEmbedded(t *testing.T) {
	var out, logs bytes.Buffer
	cfg := demoConfig{Tasks: 300, Concurrency: 16, Seed: 42, Timeout: time.Minute, Logs: &logs}
	sum, err := runDemo(context.Background(), cfg, &out)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatalf("runDemo: %v\nworker logs:\n%s", err, logs.String())
	}

	if sum.Lost != 0 || len(sum.Problems) != 0 {
		t.Errorf("lost %d, problems %q", sum.Lost, sum.Problems)
	}
	if sum.Total.Enqueued != int64(cfg.Tasks) {
		t.Errorf("enqueued %d tasks, want %d", sum.Total.Enqueued, cfg.Tasks)
	}
	if len(sum.Queues) != 2 {
		t.Fatalf("got %d queues, want 2", len(sum.Queues))
	}

	var total demoCounts
	perType := map[string]*typeSummary{}
	for _, q := range sum.Queues {
		var qTotal demoCounts
		for _, ts := range q.Types {
			got := ts.Got
			if got.Enqueued != got.Completed+got.Archived {
				t.Errorf("%s/%s: enqueued %d != completed %d + archived %d", q.Label, ts.Type, got.Enqueued, got.Completed, got.Archived)
			}
			if got.Runs != got.Completed+got.Retried+got.Archived {
				t.Errorf("%s/%s: runs %d != completed %d + retried %d + archived %d", q.Label, ts.Type, got.Runs, got.Completed, got.Retried, got.Archived)
			}
			if got != ts.Want {
				t.Errorf("%s/%s: got %+v, the plan expects %+v", q.Label, ts.Type, got, ts.Want)
			}
			qTotal.add(got)
			if perType[ts.Type] == nil {
				perType[ts.Type] = &typeSummary{Type: ts.Type}
			}
			perType[ts.Type].Got.add(got)
			perType[ts.Type].Want.add(ts.Want)
		}
		if qTotal != q.Total {
			t.Errorf("%s: total %+v, the sum of its types is %+v", q.Label, q.Total, qTotal)
		}
		if q.Info == nil {
			t.Fatalf("%s: no QueueInfo in the summary", q.Label)
		}
		if q.Info.Processed != qTotal.Completed || q.Info.ArchivedTotal != qTotal.Archived || q.Info.Retried != qTotal.Retried {
			t.Errorf("%s: QueueInfo %+v disagrees with handler counts %+v", q.Label, *q.Info, qTotal)
		}
		total.add(qTotal)
	}
	if total != sum.Total {
		t.Errorf("summary total %+v, the sum of the queues is %+v", sum.Total, total)
	}

	// Which types end archived: all of report:build, the webhooks the plan
	// rejects, and nothing else.
	for _, typ := range []string{typeEmail, typeImage, typeReport, typeWebhook} {
		if perType[typ] == nil || perType[typ].Got.Enqueued == 0 {
			t.Fatalf("no %s tasks enqueued; the mix should cover every type", typ)
		}
	}
	if got := perType[typeEmail].Got; got.Archived != 0 || got.Retried != 0 {
		t.Errorf("%s: %+v, want no retries and nothing archived", typeEmail, got)
	}
	if got := perType[typeImage].Got; got.Archived != 0 || got.Retried < got.Enqueued || got.Retried > 2*got.Enqueued {
		t.Errorf("%s: %+v, want 1-2 retried runs per task and nothing archived", typeImage, got)
	}
	if got := perType[typeReport].Got; got.Archived != got.Enqueued || got.Completed != 0 || got.Retried != demoReportMaxRetry*got.Enqueued {
		t.Errorf("%s: %+v, want every task archived after %d retries", typeReport, got, demoReportMaxRetry)
	}
	if got, want := perType[typeWebhook].Got, perType[typeWebhook].Want; got.Archived != want.Archived || got.Retried != 0 {
		t.Errorf("%s: %+v, want %d archived (the rejected ones) and no retries", typeWebhook, got, want.Archived)
	}
	if want := perType[typeReport].Got.Archived + perType[typeWebhook].Want.Archived; sum.Total.Archived != want {
		t.Errorf("archived %d in all, want %d (report:build + rejected webhooks)", sum.Total.Archived, want)
	}

	if !strings.Contains(out.String(), "ok: 300 tasks, ") || !strings.Contains(out.String(), " 0 lost") {
		t.Errorf("output lacks the final ok line:\n%s", out.String())
	}
	if logs.Len() != 0 {
		t.Errorf("worker logged warnings:\n%s", logs.String())
	}
}

// TestPlanDemoReproducible checks that the same seed gives the same plan and
// another seed a different one.
func TestPlanDemoReproducible(t *testing.T) {
	types := demoTypes()
	a := planDemo(7, 500, 2, types)
	b := planDemo(7, 500, 2, types)
	c := planDemo(8, 500, 2, types)
	same := func(x, y []plannedTask) bool {
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return len(x) == len(y)
	}
	if !same(a, b) {
		t.Error("seed 7 gave two different plans")
	}
	if same(a, c) {
		t.Error("seeds 7 and 8 gave the same plan")
	}
}

// TestRunUsage checks the top-level dispatch: unknown, missing and "help"
// commands print the usage and return exit code 2.
func TestRunUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"missing", nil, "no command given"},
		{"help", []string{"help"}, "usage: luaq <command>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != exitUsage {
				t.Errorf("run(%q) = %d, want %d", tc.args, code, exitUsage)
			}
			if !strings.Contains(stderr.String(), tc.want) || !strings.Contains(stderr.String(), "demo") {
				t.Errorf("stderr lacks %q and the command list:\n%s", tc.want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// TestDemoFlags checks that bad demo flags return exit code 2 without
// running anything.
func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{
		{"demo", "--tasks", "0"},
		{"demo", "--concurrency", "0"},
		{"demo", "--nope"},
		{"demo", "extra"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("run(%q) = %d, want %d; stderr:\n%s", args, code, exitUsage, stderr.String())
		}
		if stdout.Len() != 0 {
			t.Errorf("run(%q) wrote to stdout: %q", args, stdout.String())
		}
	}
}
