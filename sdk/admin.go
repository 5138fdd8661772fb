package sdk

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/luaq/luaq/loader"
)

// QueueConfig holds a queue's settings, all written by one Configure call.
// Start from DefaultQueueConfig and change what you need: every field is
// written, and zero is a meaningful ArchiveMaxTasks (keep no archive).
type QueueConfig struct {
	// ArchiveMaxTasks is the most archived tasks kept, 0..10,000,000; the
	// oldest beyond it are deleted with all their data, at archive time and
	// by the janitor. Default 10,000.
	ArchiveMaxTasks int
	// ArchiveMaxAge is the longest an archived task is kept, more than 0 and
	// at most 100 years (rounded up to whole ms). Default 30 days.
	ArchiveMaxAge time.Duration
	// StatsDays is how many days of per-day stats (DailyStats) are kept,
	// today included, 1..3650; the janitor deletes older days. The lifetime
	// totals of QueueInfo are never deleted. Default 30.
	StatsDays int
}

// DefaultQueueConfig returns the settings a queue has until it is configured.
func DefaultQueueConfig() QueueConfig {
	return QueueConfig{ArchiveMaxTasks: 10000, ArchiveMaxAge: 30 * 24 * time.Hour, StatsDays: 30}
}

// maxArchiveAge is configure's upper bound on archive_age_ms: 100 years.
const maxArchiveAge = 3153600000000 * time.Millisecond

// Configure writes all of queue's settings at once (see QueueConfig). Lower
// bounds take effect at the next trim: when a task is archived, or in the
// janitor's next round.
func (c *Client) Configure(ctx context.Context, queue string, cfg QueueConfig) error {
	if cfg.ArchiveMaxTasks < 0 || cfg.ArchiveMaxTasks > 10000000 || cfg.ArchiveMaxAge <= 0 ||
		cfg.ArchiveMaxAge > maxArchiveAge || cfg.StatsDays < 1 || cfg.StatsDays > MaxStatsDays {
		return fmt.Errorf("luaq: configure %q: %w: %+v: want ArchiveMaxTasks 0..10000000, ArchiveMaxAge in (0, 100 years], StatsDays 1..%d",
			queue, ErrBadArg, cfg, MaxStatsDays)
	}
	_, err := c.run(ctx, queue, "configure", strconv.Itoa(cfg.ArchiveMaxTasks),
		strconv.FormatInt(ceilMs(cfg.ArchiveMaxAge), 10), strconv.Itoa(cfg.StatsDays))
	return err
}

// MaxStatsDays is the most days of per-day stats a queue keeps, and the most
// one DailyStats call reads.
const MaxStatsDays = 3650

// DayStats are a queue's counts of one day (UTC, by the Redis server's clock).
type DayStats struct {
	Date      time.Time // the day's start, midnight UTC
	Processed int64     // tasks completed
	Failed    int64     // failed runs (handler errors, expired leases, deadlines passed before a start)
	Retried   int64     // failed runs scheduled to run again
	Archived  int64     // tasks archived
	Expired   int64     // tasks that expired before they started
}

// DailyStats returns queue's counts for each of the last days days (1..MaxStatsDays),
// today included, oldest first. A day without activity, or older than the
// queue's QueueConfig.StatsDays and already trimmed by the janitor, reads
// all zeros.
func (c *Client) DailyStats(ctx context.Context, queue string, days int) ([]DayStats, error) {
	if days < 1 || days > MaxStatsDays {
		return nil, fmt.Errorf("luaq: daily-stats %q: %w: %d days, want 1..%d", queue, ErrBadArg, days, MaxStatsDays)
	}
	v, err := c.run(ctx, queue, "daily-stats", strconv.Itoa(days))
	if err != nil {
		return nil, err
	}
	arr, err := loader.Slice(v)
	if err != nil || len(arr) != 6*days {
		return nil, fmt.Errorf("luaq: daily-stats %q: unexpected reply of %d values (%v)", queue, len(arr), err)
	}
	out := make([]DayStats, days)
	for i := range out {
		var n [6]int64
		for j := range n {
			if n[j], err = loader.Int(arr[6*i+j]); err != nil {
				return nil, fmt.Errorf("luaq: daily-stats %q: %w", queue, err)
			}
		}
		out[i] = DayStats{Date: time.Unix(n[0]*86400, 0).UTC(), Processed: n[1], Failed: n[2],
			Retried: n[3], Archived: n[4], Expired: n[5]}
	}
	return out, nil
}

// RunArchived moves an archived task back to pending, with its retry count
// reset and its last error cleared. ErrNotFound if no such archived task.
func (c *Client) RunArchived(ctx context.Context, queue, id string) error {
	_, err := c.run(ctx, queue, "run-archived", id)
	return err
}

// DeleteTask deletes a task that is not running, with every byte of it, and
// returns the state it was in. ErrNotFound if there is no such task,
// ErrConflict if it is running.
func (c *Client) DeleteTask(ctx context.Context, queue, id string) (string, error) {
	v, err := c.run(ctx, queue, "delete-task", id)
	if err != nil {
		return "", err
	}
	return loader.String(v)
}

// run calls a script on queue, wrapping errors with the script's name.
func (c *Client) run(ctx context.Context, queue, script string, args ...string) (any, error) {
	q, err := validQueue(queue)
	if err != nil {
		return nil, fmt.Errorf("luaq: %s: %w", script, err)
	}
	v, err := c.call(ctx, q, script, args...)
	if err != nil {
		return nil, fmt.Errorf("luaq: %s %q: %w", script, queue, err)
	}
	return v, nil
}

// TaskState is everything stored about one task.
type TaskState struct {
	ID    string
	Queue string
	// State is "pending", "scheduled", "retry", "active", "archived" or
	// "completed" (kept for its retention period).
	State string
	// StateAt is when the task is due (scheduled, retry), when its lease
	// ends (active), when it was archived, or when it completed; zero for
	// pending.
	StateAt    time.Time
	Type       string
	Payload    []byte
	Retried    int
	MaxRetry   int
	Timeout    time.Duration
	Deadline   time.Time
	ExpireAt   time.Time // zero once the task has started
	Retention  time.Duration
	EnqueuedAt time.Time
	LastError  string
	// Result is what the handler passed to Task.SetResult (completed tasks
	// kept with Retention).
	Result []byte
}

// GetTask reads one task. ErrNotFound if queue has no task with that id
// (completed tasks without retention are gone at once).
func (c *Client) GetTask(ctx context.Context, queue, id string) (*TaskState, error) {
	v, err := c.run(ctx, queue, "task-info", id)
	if err != nil {
		return nil, err
	}
	arr, err := loader.Slice(v)
	if err != nil || len(arr) != 13 {
		return nil, fmt.Errorf("luaq: task-info: unexpected reply %v", v)
	}
	var str [4]string
	for i, at := range []int{0, 2, 3, 11} {
		if str[i], err = loader.String(arr[at]); err != nil {
			return nil, fmt.Errorf("luaq: task-info: %w", err)
		}
	}
	result, err := loader.String(arr[12])
	if err != nil {
		return nil, fmt.Errorf("luaq: task-info: %w", err)
	}
	var num [8]int64 // state_at, retried, max_retry, timeout, deadline, expire_at, retention, enqueued
	for i, at := range []int{1, 4, 5, 6, 7, 8, 9, 10} {
		if num[i], err = loader.Int(arr[at]); err != nil {
			return nil, fmt.Errorf("luaq: task-info: %w", err)
		}
	}
	ts := &TaskState{
		ID: id, Queue: queue, State: str[0], StateAt: msTime(num[0]),
		Type: str[1], Payload: []byte(str[2]), Retried: int(num[1]), MaxRetry: int(num[2]),
		Timeout: time.Duration(num[3]) * time.Millisecond, Deadline: msTime(num[4]),
		ExpireAt: msTime(num[5]), Retention: time.Duration(num[6]) * time.Millisecond,
		EnqueuedAt: msTime(num[7]), LastError: str[3],
	}
	if result != "" {
		ts.Result = []byte(result)
	}
	return ts, nil
}
