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
	err       error
}

func (o *taskOptions) fail(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf(format, args...)
	}
}

// ID gives the task an id of your own: 1..128 bytes of printable ASCII
// without spaces, not all digits (those are reserved for generated ids).
// Enqueueing an id that exists fails with ErrConflict.
func ID(id string) Option {
	return func(o *taskOptions) {
		if id == "" {
			o.fail("luaq: task id option is empty")
		}
		o.id = id
	}
}

// MaxRetry sets how many times a failed task is retried before it is archived.
func MaxRetry(n int) Option {
	return func(o *taskOptions) {
		if n < 0 {
			o.fail("luaq: MaxRetry(%d) is negative", n)
		}
		o.maxRetry = n
	}
}

// Timeout bounds how long one run of the task may take.
func Timeout(d time.Duration) Option {
	return func(o *taskOptions) {
		if d <= 0 {
			o.fail("luaq: Timeout(%s) is not positive", d)
		}
		o.timeout = d
	}
}

// Deadline sets an instant by which a run must finish. A task past its
// deadline is archived, never retried.
func Deadline(t time.Time) Option {
	return func(o *taskOptions) {
		if t.IsZero() {
			o.fail("luaq: Deadline is the zero time")
		}
		o.deadline = t
	}
}

// ProcessAt schedules the task for an instant (compared with the Redis
// server's clock). An instant in the past makes the task ready now.
func ProcessAt(t time.Time) Option {
	return func(o *taskOptions) {
		if t.IsZero() {
			o.fail("luaq: ProcessAt is the zero time")
		}
		o.processAt = t
	}
}

// ProcessIn schedules the task d after the enqueue, measured on the Redis
// server's clock.
func ProcessIn(d time.Duration) Option {
	return func(o *taskOptions) {
		if d < 0 {
			o.fail("luaq: ProcessIn(%s) is negative", d)
		}
		o.processIn = d
	}
}

func buildOptions(opts []Option) (taskOptions, error) {
	o := taskOptions{maxRetry: DefaultMaxRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.err == nil && !o.processAt.IsZero() && o.processIn > 0 {
		o.fail("luaq: ProcessAt and ProcessIn cannot both be set")
	}
	return o, o.err
}
