package sdk

import (
	"fmt"
	"time"
)

// DefaultMaxRetry is the retry budget of a task enqueued without MaxRetry.
const DefaultMaxRetry = 25

// Option sets an option of one task at enqueue.
type Option func(*taskOptions)

type taskOptions struct {
	id        string
	maxRetry  int
	timeout   time.Duration
	deadline  time.Time
	processAt time.Time
	processIn time.Duration
	expireAt  time.Time
	expireIn  time.Duration
	// archiveOnExpiry archives an expired task instead of deleting it.
	archiveOnExpiry bool
	retention       time.Duration
	uniqueKey       string
	uniqueTTL       time.Duration
	err             error
}

func (o *taskOptions) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: %s", ErrBadArg, fmt.Sprintf(format, args...))
	}
}

// ID gives the task an id of your own: 1..128 bytes of printable ASCII
// without spaces, not all digits (those are reserved for generated ids).
// Enqueueing an id that exists fails with ErrConflict.
func ID(id string) Option {
	return func(o *taskOptions) {
		if id == "" {
			o.fail("task id option is empty")
		}
		o.id = id
	}
}

// MaxRetry sets how many times a failed task is retried before it is archived.
func MaxRetry(n int) Option {
	return func(o *taskOptions) {
		if n < 0 {
			o.fail("MaxRetry(%d) is negative", n)
		}
		o.maxRetry = n
	}
}

// Timeout bounds how long one run of the task may take.
func Timeout(d time.Duration) Option {
	return func(o *taskOptions) {
		if d <= 0 {
			o.fail("Timeout(%s) is not positive", d)
		}
		o.timeout = d
	}
}

// Deadline sets an instant by which a run must finish. A task past its
// deadline is archived, never retried.
func Deadline(t time.Time) Option {
	return func(o *taskOptions) {
		if t.IsZero() {
			o.fail("Deadline is the zero time")
		}
		o.deadline = t
	}
}

// ProcessAt schedules the task for an instant (compared with the Redis
// server's clock). An instant in the past makes the task ready now.
func ProcessAt(t time.Time) Option {
	return func(o *taskOptions) {
		if t.IsZero() {
			o.fail("ProcessAt is the zero time")
		}
		o.processAt = t
	}
}

// ProcessIn schedules the task d after the enqueue, measured on the Redis
// server's clock.
func ProcessIn(d time.Duration) Option {
	return func(o *taskOptions) {
		if d < 0 {
			o.fail("ProcessIn(%s) is negative", d)
		}
		o.processIn = d
	}
}

// ExpireIn drops the task if no worker has started it within d of the
// enqueue (measured on the Redis server's clock). Unlike Timeout (how long a
// started run may take) and Deadline (when a run must have finished), expiry
// concerns only tasks that never started: they are discarded unseen, counted
// as expired, or archived with ArchiveOnExpiry.
func ExpireIn(d time.Duration) Option {
	return func(o *taskOptions) {
		if d <= 0 {
			o.fail("ExpireIn(%s) is not positive", d)
		}
		o.expireIn = d
	}
}

// ExpireAt is ExpireIn with an absolute instant.
func ExpireAt(t time.Time) Option {
	return func(o *taskOptions) {
		if t.IsZero() {
			o.fail("ExpireAt is the zero time")
		}
		o.expireAt = t
	}
}

// ArchiveOnExpiry archives a task that expires before it starts (with the
// error "expired") instead of deleting it.
func ArchiveOnExpiry() Option {
	return func(o *taskOptions) { o.archiveOnExpiry = true }
}

// Retention keeps a completed task (its record and the result its handler set
// with Task.SetResult) readable for d; then the janitor deletes it. Without
// it, completion deletes every byte of the task at once.
func Retention(d time.Duration) Option {
	return func(o *taskOptions) {
		if d <= 0 {
			o.fail("Retention(%s) is not positive", d)
		}
		o.retention = d
	}
}

// Unique makes the enqueue fail with ErrConflict while another live task
// holds key. The task holds key until it completes, is archived, expires or
// is deleted, or until ttl passes, whichever comes first.
func Unique(key string, ttl time.Duration) Option {
	return func(o *taskOptions) {
		if key == "" || ttl <= 0 {
			o.fail("Unique needs a key and a positive TTL")
		}
		o.uniqueKey, o.uniqueTTL = key, ttl
	}
}

func buildOptions(opts []Option) (taskOptions, error) {
	o := taskOptions{maxRetry: DefaultMaxRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err == nil && !o.processAt.IsZero() && o.processIn > 0 {
		o.fail("ProcessAt and ProcessIn cannot both be set")
	}
	if o.err == nil && !o.expireAt.IsZero() && o.expireIn > 0 {
		o.fail("ExpireAt and ExpireIn cannot both be set")
	}
	return o, o.err
}
