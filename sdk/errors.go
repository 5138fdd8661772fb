package sdk

import (
	"errors"

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
)

// ErrSkipRetry, returned by a handler (or wrapped in its error), archives the
// task at once instead of retrying it.
var ErrSkipRetry = errors.New("luaq: skip retry")

// ErrWorkerStopping is the cause of a handler context cancelled because the
// worker shut down before the handler finished; its task went back to pending.
var ErrWorkerStopping = errors.New("luaq: worker is shutting down")
