package sdk

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/loader"
)

// ArchiveBounds are a queue's archive limits: the archive keeps at most
// MaxTasks tasks, none older than MaxAge; older or excess tasks are deleted
// with all their data, at archive time and by the janitor.
type ArchiveBounds struct {
	MaxTasks int           // default 10,000
	MaxAge   time.Duration // default 30 days
}

// SetArchiveBounds configures queue's archive limits.
func (c *Client) SetArchiveBounds(ctx context.Context, queue string, b ArchiveBounds) error {
	if b.MaxTasks < 0 || b.MaxAge <= 0 {
		return fmt.Errorf("luaq: archive bounds %+v: MaxTasks must be >= 0 and MaxAge > 0", b)
	}
	_, err := c.run(ctx, queue, "configure", strconv.Itoa(b.MaxTasks), strconv.FormatInt(ceilMs(b.MaxAge), 10))
	return err
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
	q, err := keys.ForQueue(queue)
	if err != nil {
		return nil, fmt.Errorf("luaq: %s: %w", script, err)
	}
	v, err := c.loader.Run(ctx, q, script, args...)
	if err != nil {
		return nil, fmt.Errorf("luaq: %s %q: %w", script, queue, err)
	}
	return v, nil
}
