package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// enqueueGroup is the number of enqueue arguments per task (scripts/enqueue.lua).
const enqueueGroup = 14

// MaxBatch is the most tasks one EnqueueBatch call takes (one atomic script call).
const MaxBatch = 1000

// Client enqueues tasks and inspects and administers queues. It is safe for
// concurrent use.
type Client struct {
	rdb      redis.UniversalClient
	loader   *loader.Loader
	eviction *evictionGate
}

// ClientOption configures a Client.
type ClientOption func(*clientConfig)

type clientConfig struct {
	logger            *slog.Logger
	requireNoEviction bool
}

// ClientLogger sets where the Client logs. Default: slog.Default().
func ClientLogger(l *slog.Logger) ClientOption {
	return func(c *clientConfig) { c.logger = l }
}

// ClientRequireNoEviction makes every call of the Client fail with an error
// matching ErrEvictionPolicy when a server's maxmemory-policy is not
// noeviction, or cannot be read; without it the Client only logs a warning.
func ClientRequireNoEviction() ClientOption {
	return func(c *clientConfig) { c.requireNoEviction = true }
}

// NewClient returns a Client over rdb (a *redis.Client, *redis.ClusterClient
// or any UniversalClient). It does no I/O: before its first call the Client
// reads the servers' eviction policy (see EvictionPolicies) and warns once
// when one may evict queue keys; scripts are loaded on first use and
// reloaded whenever a server has lost them.
func NewClient(rdb redis.UniversalClient, opts ...ClientOption) (*Client, error) {
	cfg := clientConfig{logger: slog.Default()}
	for _, o := range opts {
		o(&cfg)
	}
	b, err := scripts.Load()
	if err != nil {
		return nil, fmt.Errorf("luaq: loading the bundle: %w", err)
	}
	return &Client{
		rdb: rdb, loader: loader.New(rdb, b),
		eviction: &evictionGate{rdb: rdb, log: cfg.logger, required: cfg.requireNoEviction},
	}, nil
}

// call runs a bundle script on q, after the Client's first-use check.
func (c *Client) call(ctx context.Context, q keys.Queue, script string, args ...string) (any, error) {
	if err := c.eviction.check(ctx); err != nil {
		return nil, err
	}
	return c.loader.Run(ctx, q, script, args...)
}

// NewTask is one task of an EnqueueBatch.
type NewTask struct {
	Type    string
	Payload []byte
	Options []Option
}

// Enqueue adds one task to queue and returns what was stored.
func (c *Client) Enqueue(ctx context.Context, queue, taskType string, payload []byte, opts ...Option) (*TaskInfo, error) {
	infos, err := c.EnqueueBatch(ctx, queue, []NewTask{{Type: taskType, Payload: payload, Options: opts}})
	if err != nil {
		return nil, err
	}
	return infos[0], nil
}

// EnqueueBatch adds 1..MaxBatch tasks to queue in one atomic call: either all
// are stored or, on any error, none is. It returns what was stored, in order.
func (c *Client) EnqueueBatch(ctx context.Context, queue string, tasks []NewTask) ([]*TaskInfo, error) {
	q, err := validQueue(queue)
	if err != nil {
		return nil, fmt.Errorf("luaq: enqueue: %w", err)
	}
	if len(tasks) == 0 || len(tasks) > MaxBatch {
		return nil, fmt.Errorf("luaq: enqueue: %w: %d tasks in one batch, want 1..%d", ErrBadArg, len(tasks), MaxBatch)
	}
	args := make([]string, 0, 1+enqueueGroup*len(tasks))
	args = append(args, strconv.Itoa(len(tasks)))
	infos := make([]*TaskInfo, len(tasks))
	for i, t := range tasks {
		o, err := buildOptions(t.Options)
		if err != nil {
			return nil, fmt.Errorf("luaq: enqueue: task %d: %w", i+1, err)
		}
		// TaskInfo reports the timeout and deadline as stored: whole ms.
		timeoutMs, deadlineArg := ceilMs(o.timeout), unixMs(o.deadline)
		deadlineMs, _ := strconv.ParseInt(deadlineArg, 10, 64)
		infos[i] = &TaskInfo{
			Queue: queue, Type: t.Type, Payload: t.Payload,
			MaxRetry: o.maxRetry, Timeout: time.Duration(timeoutMs) * time.Millisecond, Deadline: msTime(deadlineMs),
			Retention: time.Duration(ceilMs(o.retention)) * time.Millisecond, UniqueKey: o.uniqueKey,
		}
		expireArchive := "0"
		if o.archiveOnExpiry {
			expireArchive = "1"
		}
		args = append(args,
			o.id, t.Type, string(t.Payload),
			strconv.Itoa(o.maxRetry),
			strconv.FormatInt(timeoutMs, 10),
			deadlineArg,
			unixMs(o.processAt),
			strconv.FormatInt(ceilMs(o.processIn), 10),
			unixMs(o.expireAt),
			strconv.FormatInt(ceilMs(o.expireIn), 10),
			expireArchive,
			strconv.FormatInt(ceilMs(o.retention), 10),
			o.uniqueKey,
			strconv.FormatInt(ceilMs(o.uniqueTTL), 10),
		)
	}
	v, err := c.call(ctx, q, "enqueue", args...)
	if err != nil {
		return nil, fmt.Errorf("luaq: enqueue to %q: %w", queue, err)
	}
	reply, err := loader.Slice(v)
	if err != nil || len(reply) != 1+3*len(tasks) {
		return nil, fmt.Errorf("luaq: enqueue to %q: unexpected reply %v (%v)", queue, v, err)
	}
	enqueuedAt, err := loader.Int(reply[0])
	if err != nil {
		return nil, fmt.Errorf("luaq: enqueue to %q: %w", queue, err)
	}
	for i, info := range infos {
		id, err1 := loader.String(reply[1+3*i])
		state, err2 := loader.String(reply[2+3*i])
		due, err3 := loader.Int(reply[3+3*i])
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("luaq: enqueue to %q: unexpected reply %v", queue, v)
		}
		if state == "pending" && due < enqueuedAt {
			// A ProcessAt in the past: the script echoes that instant, but
			// the task is ready from the enqueue on (see TaskInfo.ProcessAt).
			due = enqueuedAt
		}
		info.ID, info.State = id, state
		info.EnqueuedAt, info.ProcessAt = time.UnixMilli(enqueuedAt), time.UnixMilli(due)
	}
	return infos, nil
}

// unixMs renders an instant as Unix milliseconds, "0" for the zero time.
func unixMs(t time.Time) string {
	if t.IsZero() {
		return "0"
	}
	ms := t.UnixMilli()
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(ms, 10)
}

// Pause stops workers from leasing tasks of queue; running tasks go on and
// enqueues are still accepted. It reports whether the queue was running.
func (c *Client) Pause(ctx context.Context, queue string) (bool, error) {
	return c.setPaused(ctx, queue, "1")
}

// Resume undoes Pause and wakes idle workers. It reports whether the queue
// was paused.
func (c *Client) Resume(ctx context.Context, queue string) (bool, error) {
	return c.setPaused(ctx, queue, "0")
}

func (c *Client) setPaused(ctx context.Context, queue, flag string) (bool, error) {
	q, err := validQueue(queue)
	if err != nil {
		return false, fmt.Errorf("luaq: set-paused: %w", err)
	}
	v, err := c.call(ctx, q, "set-paused", flag)
	if err != nil {
		return false, fmt.Errorf("luaq: set-paused %q: %w", queue, err)
	}
	n, err := loader.Int(v)
	if err != nil {
		return false, fmt.Errorf("luaq: set-paused %q: %w", queue, err)
	}
	return n == 1, nil
}

// QueueInfo is a snapshot of a queue's sizes and lifetime counters.
type QueueInfo struct {
	Queue     string
	Pending   int64 // tasks ready to run (not the stale list entries of tasks that expired in a long backlog)
	Scheduled int64 // scheduled tasks and tasks waiting for a retry
	Active    int64
	Archived  int64
	Completed int64 // completed tasks kept for their retention period
	Paused    bool
	// Lifetime counters.
	Processed     int64
	Failed        int64
	Retried       int64
	ArchivedTotal int64
	Expired       int64
}

// QueueInfo reads the sizes and counters of queue.
func (c *Client) QueueInfo(ctx context.Context, queue string) (*QueueInfo, error) {
	q, err := validQueue(queue)
	if err != nil {
		return nil, fmt.Errorf("luaq: queue-info: %w", err)
	}
	v, err := c.call(ctx, q, "queue-info")
	if err != nil {
		return nil, fmt.Errorf("luaq: queue-info %q: %w", queue, err)
	}
	pairs, err := loader.Slice(v)
	if err != nil || len(pairs)%2 != 0 {
		return nil, fmt.Errorf("luaq: queue-info %q: unexpected reply %v", queue, v)
	}
	info := &QueueInfo{Queue: queue}
	fields := map[string]*int64{
		"pending": &info.Pending, "scheduled": &info.Scheduled, "active": &info.Active,
		"archived": &info.Archived, "processed": &info.Processed, "failed": &info.Failed,
		"retried": &info.Retried, "archived_total": &info.ArchivedTotal,
		"completed": &info.Completed, "expired": &info.Expired,
	}
	for i := 0; i < len(pairs); i += 2 {
		name, err1 := loader.String(pairs[i])
		n, err2 := loader.Int(pairs[i+1])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("luaq: queue-info %q: unexpected reply %v", queue, v)
		}
		if name == "paused" {
			info.Paused = n == 1
		} else if p, ok := fields[name]; ok {
			*p = n
		}
	}
	return info, nil
}
