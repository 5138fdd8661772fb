package sdk

import (
	"errors"
	"fmt"

	"github.com/luaq/luaq/internal/keys"

	"github.com/luaq/luaq/loader"
)

// Errors a script can return, re-exported from package loader for callers of
// the SDK. Test them with errors.Is.
var (
	// ErrBadArg reports an argument the bundle rejected; nothing was written.
	ErrBadArg = loader.ErrBadArg
	// ErrConflict reports an enqueue whose task id already exists or whose
	// unique key a live task holds, or the deletion of a running task.
	ErrConflict = loader.ErrConflict
	// ErrNotFound reports a task that does not exist in the expected state.
	ErrNotFound = loader.ErrNotFound
	// ErrLeaseLost reports a fencing token that is no longer the task's lease.
	ErrLeaseLost = loader.ErrLeaseLost
	// ErrSchema reports a queue written by a newer luaq than this one.
	ErrSchema = loader.ErrSchema
	// ErrNotOwner reports a janitor lock that is not held under the
	// caller's owner token.
	ErrNotOwner = loader.ErrNotOwner
	// ErrServerFull reports a call Redis refused because it is full (used
	// memory over maxmemory, policy noeviction). Only what grows the data
	// (enqueueing) is refused, before anything was written; workers keep
	// leasing, renewing, completing and failing tasks, so they drain the
	// queues and free memory. Free memory or raise maxmemory to enqueue again.
	ErrServerFull = loader.ErrServerFull
	// ErrInternal reports an error a script raised that is not a code of the
	// bundle's error table: a bug in the bundle or a server problem.
	ErrInternal = loader.ErrInternal
)

// validQueue returns the keys of the queue called name, or an error matching
// ErrBadArg when name is not a valid queue name: 1..MaxQueueName bytes of
// printable ASCII, without spaces or braces.
func validQueue(name string) (keys.Queue, error) {
	q, err := keys.ForQueue(name)
	if err != nil {
		return keys.Queue{}, fmt.Errorf("%w: %w", ErrBadArg, err)
	}
	return q, nil
}

// ErrSkipRetry, returned by a handler (or wrapped in its error), archives the
// task at once instead of retrying it.
var ErrSkipRetry = errors.New("luaq: skip retry")

// ErrWorkerStopping is the cause of a handler context cancelled because the
// worker shut down before the handler finished; its task went back to pending.
var ErrWorkerStopping = errors.New("luaq: worker is shutting down")
