package sdk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/luaq/luaq/loader"
)

// maxErrorMessage is the longest error text stored with a failed task.
const maxErrorMessage = 8192

// startChain runs t in a slot the fetcher already holds. After a success the
// same goroutine may get the next task from complete's lease-next and run it
// in the same slot; the slot is released when the chain ends.
func (w *Worker) startChain(t *Task) {
	w.chains.Add(1)
	go func() {
		defer w.chains.Done()
		defer func() { <-w.slots }()
		for t != nil {
			t = w.process(t)
		}
	}()
}

// process runs one task's handler and records the outcome. It returns the
// next task when completing leased one.
func (w *Worker) process(t *Task) *Task {
	hctx, cancel := context.WithCancelCause(context.Background())
	r := &running{task: t, q: t.q, cancel: cancel}
	r.localExpiry.Store(time.Now().Add(w.cfg.LeaseDuration).UnixNano())
	w.mu.Lock()
	w.inflight[r] = struct{}{}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.inflight, r)
		w.mu.Unlock()
		cancel(nil)
	}()

	if w.isStopping() {
		// Leased while shutdown began: give it back instead of starting it.
		if r.state.CompareAndSwap(runRunning, runAbandoned) {
			w.requeue([]*running{r})
		}
		return nil
	}

	w.mu.Lock()
	entry, ok := w.handlers[t.Type]
	w.mu.Unlock()
	var err error
	if !ok {
		err = fmt.Errorf("no handler registered for task type %q", t.Type)
	} else {
		err = w.invoke(hctx, entry.handler, t)
	}
	if !r.state.CompareAndSwap(runRunning, runAcking) {
		// Shutdown cancelled the handler, which has now returned: give
		// the task back, whatever the handler said.
		w.requeue([]*running{r})
		return nil
	}
	if cause := context.Cause(hctx); errors.Is(cause, ErrLeaseLost) {
		w.log.Warn("luaq: lease lost; the task's outcome is not recorded by this worker", "queue", t.Queue, "id", t.ID)
		return nil
	}
	if err == nil {
		return w.complete(r)
	}
	backoff := w.cfg.Backoff
	if entry.backoff != nil {
		backoff = entry.backoff
	}
	w.fail(r, err, backoff(t.Retried, err, t))
	return nil
}

// invoke runs the handler under the task's timeout and deadline, turning a
// panic into an error.
func (w *Worker) invoke(ctx context.Context, h Handler, t *Task) (err error) {
	var deadline time.Time
	if t.Timeout > 0 {
		deadline = time.Now().Add(t.Timeout)
	}
	if !t.Deadline.IsZero() && (deadline.IsZero() || t.Deadline.Before(deadline)) {
		deadline = t.Deadline
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v", p)
		}
	}()
	err = h.ProcessTask(ctx, t)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("task timeout or deadline exceeded: %w", err)
	}
	return err
}

// maxResult is the largest result a handler may set (complete's limit).
const maxResult = 16 << 20

// complete records a success and, when allowed, leases the next task. A
// result over maxResult cannot be stored: the run fails and the task is
// archived, since running it again would produce the same result.
func (w *Worker) complete(r *running) *Task {
	if n := len(r.task.result); n > maxResult {
		w.fail(r, fmt.Errorf("result of %d bytes exceeds the %d-byte limit: %w", n, maxResult, ErrSkipRetry), 0)
		return nil
	}
	next := w.chainNext
	if w.isStopping() {
		next = "0"
	}
	v, err := w.ack(r, "complete", r.task.ID, r.task.token, string(r.task.result), next, w.leaseArg,
		strconv.Itoa(w.cfg.PromoteLimit))
	if err != nil {
		w.logAckError("complete", r, err)
		return nil
	}
	tasks, _, err := parseLeaseReply(r.q, v)
	if err != nil {
		w.log.Error("luaq: complete", "queue", r.q.name, "id", r.task.ID, "err", err)
		return nil
	}
	if len(tasks) == 0 {
		return nil
	}
	return tasks[0]
}

// fail records a failed run: retry after backoff, or archive.
func (w *Worker) fail(r *running, cause error, backoff time.Duration) {
	msg := cause.Error()
	if len(msg) > maxErrorMessage {
		msg = msg[:maxErrorMessage]
	}
	skip := "0"
	if errors.Is(cause, ErrSkipRetry) {
		skip = "1"
	}
	_, err := w.ack(r, "retry-or-archive", r.task.ID, r.task.token, msg,
		strconv.FormatInt(ceilMs(max(backoff, 0)), 10), skip)
	if err != nil {
		w.logAckError("retry-or-archive", r, err)
	}
}

func (w *Worker) logAckError(script string, r *running, err error) {
	if errors.Is(err, ErrLeaseLost) {
		// Either an earlier attempt whose reply was lost went through, or
		// the lease expired and another worker owns the task now.
		w.log.Warn("luaq: lease lost when recording the outcome", "script", script, "queue", r.q.name, "id", r.task.ID)
		return
	}
	w.log.Error("luaq: could not record the outcome; the lease will expire and the task run again", "script", script, "queue", r.q.name, "id", r.task.ID, "err", err)
}

// ack calls an acknowledging script, retrying connection errors (a server
// restarting, a failover) with backoff while the lease may still be valid.
// Script errors are final.
func (w *Worker) ack(r *running, script string, args ...string) (any, error) {
	deadline := time.Now().Add(2 * w.cfg.LeaseDuration)
	delay := 20 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := w.loader.Run(ctx, r.q.keys, script, args...)
		cancel()
		if err == nil || isScriptError(err) || errors.Is(err, loader.ErrInternal) || time.Now().After(deadline) {
			return v, err
		}
		time.Sleep(delay)
		delay = min(2*delay, time.Second)
	}
}
