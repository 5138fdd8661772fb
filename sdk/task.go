package sdk

import (
	"time"
)

// Task is a task leased to a handler.
type Task struct {
	// ID is the task's id, unique within its queue.
	ID string
	// Queue is the queue the task came from.
	Queue string
	// Type selects the handler.
	Type string
	// Payload is the opaque bytes given at enqueue.
	Payload []byte
	// Retried counts earlier runs that failed.
	Retried int
	// MaxRetry is how many retries the task allows before it is archived.
	MaxRetry int
	// Timeout bounds one run (0 = none); the handler's context enforces it.
	Timeout time.Duration
	// Deadline is when a run must have finished (zero = none); the handler's
	// context enforces it.
	Deadline time.Time

	result []byte
	token  string
	q      *workerQueue
}

// SetResult records bytes that stay readable with the completed task for its
// retention period (see the Retention option). It is kept only when the
// handler returns nil and the task has a retention period.
func (t *Task) SetResult(b []byte) { t.result = append([]byte(nil), b...) }

// TaskInfo describes a task as it was stored by an enqueue.
type TaskInfo struct {
	ID       string
	Queue    string
	Type     string
	Payload  []byte
	MaxRetry int
	Timeout  time.Duration
	Deadline time.Time
	// State is "pending" or "scheduled".
	State string
	// EnqueuedAt is the server's clock at enqueue.
	EnqueuedAt time.Time
	// ProcessAt is when the task becomes ready (equal to EnqueuedAt for a
	// pending task).
	ProcessAt time.Time
	// Retention is how long the task stays readable after completing.
	Retention time.Duration
	// UniqueKey is the unique key the task holds ("" = none).
	UniqueKey string
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// ceilMs converts a duration to whole milliseconds, rounding up so a short
// positive duration never becomes 0 ("none").
func ceilMs(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}
