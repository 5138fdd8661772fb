package sdk

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// TestDailyStats runs a few tasks through a worker on a real redis-server
// (completed, retried then completed, archived by a skip, expired before
// it started) and reads them back per day; then the janitor trims a day
// older than the queue's StatsDays.
func TestDailyStats(t *testing.T) {
	const queue = "daily"
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	today := func() time.Time { return time.Now().UTC().Truncate(24 * time.Hour) }
	firstDay := today()

	// e expires before any worker runs: the worker's dequeue discards it.
	if _, err := c.Enqueue(ctx, queue, "job", []byte("expire"), ExpireIn(20*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	var mu sync.Mutex
	failedOnce := false
	w, err := NewWorker(rdb, WorkerConfig{
		Queues:  map[string]int{queue: 1},
		Logger:  (&logCapture{}).logger(),
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		switch string(task.Payload) {
		case "skip":
			return ErrSkipRetry
		case "retry":
			mu.Lock()
			defer mu.Unlock()
			if !failedOnce {
				failedOnce = true
				return errors.New("first run fails")
			}
		}
		return nil
	})
	stop := runWorker(t, w)
	for _, p := range []string{"ok", "ok", "ok", "retry", "skip"} {
		if _, err := c.Enqueue(ctx, queue, "job", []byte(p), MaxRetry(3)); err != nil {
			t.Fatal(err)
		}
	}
	info := waitTerminal(t, c, queue, 5)
	stop()
	lastDay := today()

	days, err := c.DailyStats(ctx, queue, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 {
		t.Fatalf("DailyStats(3) returned %d days", len(days))
	}
	var sum DayStats
	for i, d := range days {
		if d.Date.Location() != time.UTC || !d.Date.Equal(d.Date.Truncate(24*time.Hour)) {
			t.Errorf("day %d: Date %v, want midnight UTC", i, d.Date)
		}
		if i > 0 && !d.Date.Equal(days[i-1].Date.AddDate(0, 0, 1)) {
			t.Errorf("day %d: Date %v does not follow %v", i, d.Date, days[i-1].Date)
		}
		sum.Processed += d.Processed
		sum.Failed += d.Failed
		sum.Retried += d.Retried
		sum.Archived += d.Archived
		sum.Expired += d.Expired
	}
	if last := days[2].Date; last.Before(firstDay) || last.After(today()) {
		t.Errorf("the last day is %v, want today (%v..%v)", last, firstDay, today())
	}
	// Everything happened in this run, so on today (or yesterday, when the
	// run crossed midnight), and the days add up to the lifetime totals.
	want := DayStats{Processed: 4, Failed: 2, Retried: 1, Archived: 1, Expired: 1}
	if sum != want {
		t.Errorf("DailyStats summed: %+v, want %+v", sum, want)
	}
	if info.Processed != 4 || info.Failed != 2 || info.Retried != 1 || info.ArchivedTotal != 1 || info.Expired != 1 {
		t.Errorf("QueueInfo %+v: totals differ from the days' sum %+v", info, want)
	}
	if firstDay.Equal(lastDay) {
		if got := days[2]; got.Processed != 4 || got.Failed != 2 || got.Expired != 1 || days[0] != (DayStats{Date: days[0].Date}) {
			t.Errorf("DailyStats %+v: want every count on today", days)
		}
	}

	for _, n := range []int{0, -1, MaxStatsDays + 1} {
		if _, err := c.DailyStats(ctx, queue, n); err == nil {
			t.Errorf("DailyStats(%d) accepted", n)
		}
	}
	if all, err := c.DailyStats(ctx, queue, MaxStatsDays); err != nil || len(all) != MaxStatsDays {
		t.Errorf("DailyStats(%d): %d days, %v", MaxStatsDays, len(all), err)
	}

	// Retention: a count of 10 days ago outlives StatsDays 5 only until the
	// janitor's next round; the totals stay.
	old := strconv.FormatInt(time.Now().UnixMilli()/86400000-10, 10)
	if err := rdb.HSet(ctx, "luaq:{"+queue+"}:stats", "processed:"+old, 7).Err(); err != nil {
		t.Fatal(err)
	}
	if days, err := c.DailyStats(ctx, queue, 11); err != nil || days[0].Processed != 7 {
		t.Fatalf("DailyStats(11) = %+v, %v: want 7 processed 10 days ago", days, err)
	}
	cfg := DefaultQueueConfig()
	cfg.StatsDays = 5
	if err := c.Configure(ctx, queue, cfg); err != nil {
		t.Fatal(err)
	}
	rep, err := newTestJanitor(t, rdb, JanitorConfig{Queues: []string{queue}}).RunOnce(ctx)
	if err != nil || rep.StatsTrimmed != 1 {
		t.Fatalf("janitor round: %+v, %v; want 1 stats field trimmed", rep, err)
	}
	if days, err := c.DailyStats(ctx, queue, 11); err != nil || days[0].Processed != 0 {
		t.Errorf("DailyStats(11) after the trim = %+v, %v: want the old day gone", days, err)
	}
	if after, err := c.QueueInfo(ctx, queue); err != nil || after.Processed != 4 {
		t.Errorf("QueueInfo after the trim: %+v, %v; want the total of 4 processed kept", after, err)
	}
}
