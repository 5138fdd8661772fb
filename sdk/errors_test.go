package sdk

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestErrorsMatchSentinelsWithOnePrefix: bad input the SDK checks itself and
// input a script refuses both match ErrBadArg, every error matches its
// sentinel, and every message starts with the one "luaq: " prefix.
func TestErrorsMatchSentinelsWithOnePrefix(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.enqueue(t, "q", "t", ID("taken"))
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"empty queue name", func() error { _, err := f.c.Enqueue(ctx, "", "t", nil); return err }, ErrBadArg},
		{"brace in queue name", func() error { _, err := f.c.Enqueue(ctx, "a{b", "t", nil); return err }, ErrBadArg},
		{"empty ID option", func() error { _, err := f.c.Enqueue(ctx, "q", "t", nil, ID("")); return err }, ErrBadArg},
		{"negative MaxRetry", func() error { _, err := f.c.Enqueue(ctx, "q", "t", nil, MaxRetry(-1)); return err }, ErrBadArg},
		{"empty batch", func() error { _, err := f.c.EnqueueBatch(ctx, "q", nil); return err }, ErrBadArg},
		{"empty task type (script)", func() error { _, err := f.c.Enqueue(ctx, "q", "", nil); return err }, ErrBadArg},
		{"all-digit id (script)", func() error { _, err := f.c.Enqueue(ctx, "q", "t", nil, ID("123")); return err }, ErrBadArg},
		{"duplicate id", func() error { _, err := f.c.Enqueue(ctx, "q", "t", nil, ID("taken")); return err }, ErrConflict},
		{"unknown task", func() error { _, err := f.c.GetTask(ctx, "q", "nope"); return err }, ErrNotFound},
		{"run a task that is not archived", func() error { return f.c.RunArchived(ctx, "q", "taken") }, ErrNotFound},
		{"bad queue for Pause", func() error { _, err := f.c.Pause(ctx, "a b"); return err }, ErrBadArg},
		{"bad queue for QueueInfo", func() error { _, err := f.c.QueueInfo(ctx, ""); return err }, ErrBadArg},
		{"Workers limit 0", func() error { _, err := f.c.Workers(ctx, "q", 0); return err }, ErrBadArg},
		{"DailyStats 0 days", func() error { _, err := f.c.DailyStats(ctx, "q", 0); return err }, ErrBadArg},
		{"Configure out of range", func() error { return f.c.Configure(ctx, "q", QueueConfig{StatsDays: 0}) }, ErrBadArg},
		{"worker with a bad queue", func() error {
			_, err := NewWorker(f.rdb, WorkerConfig{Queues: map[string]int{"{x}": 1}})
			return err
		}, ErrBadArg},
		{"worker with a bad concurrency", func() error { _, err := NewWorker(f.rdb, WorkerConfig{Concurrency: -1}); return err }, ErrBadArg},
		{"janitor without queues", func() error { _, err := NewJanitor(f.rdb, JanitorConfig{}); return err }, ErrBadArg},
		{"janitor with a bad queue", func() error { _, err := NewJanitor(f.rdb, JanitorConfig{Queues: []string{""}}); return err }, ErrBadArg},
		{"cancelled context", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := f.c.Enqueue(cctx, "q", "t", nil, Timeout(time.Second))
			return err
		}, context.Canceled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if msg := err.Error(); !strings.HasPrefix(msg, "luaq: ") || strings.Count(msg, "luaq: ") != 1 {
				t.Errorf("error %q: want the prefix \"luaq: \" exactly once, at the start", msg)
			}
		})
	}
}

// TestPackageDocStatesTheSpecLimits keeps the Limits section of the package
// documentation in step with scripts/SPEC.md section 2: every range the
// spec gives for a name the doc lists appears in the doc's line for it.
func TestPackageDocStatesTheSpecLimits(t *testing.T) {
	spec, err := os.ReadFile("../scripts/SPEC.md")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	section := string(spec)
	section = section[strings.Index(section, "## 2. Names and limits"):]
	section = section[:strings.Index(section, "## 3.")]
	ranges := regexp.MustCompile(`\b\d[\d,]*\.\.\d[\d,]*\b`)
	checked := 0
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		name := strings.TrimSpace(cells[1])
		item := docItem(string(doc), name)
		if item == "" {
			continue
		}
		for _, r := range ranges.FindAllString(cells[2], -1) {
			checked++
			if !strings.Contains(item, r) {
				t.Errorf("package doc on %q lacks the spec's range %s: %q", name, r, item)
			}
		}
	}
	if checked < 10 {
		t.Errorf("only %d ranges compared; the spec's table or the doc's list changed shape", checked)
	}
}

// docItem returns the text of the doc's list item that starts with name
// (joined across its lines), or "".
func docItem(doc, name string) string {
	lines := strings.Split(doc, "\n")
	for i, line := range lines {
		text, ok := strings.CutPrefix(line, "//   - ")
		if !ok || !strings.Contains(text, name+":") {
			continue
		}
		for _, more := range lines[i+1:] {
			rest, ok := strings.CutPrefix(more, "//     ")
			if !ok {
				break
			}
			text += " " + rest
		}
		return text
	}
	return ""
}
