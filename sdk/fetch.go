package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/luaq/luaq/loader"
)

// fetchLoop leases tasks whenever handler slots are free, and blocks on the
// queues' wake lists when there is nothing to lease.
func (w *Worker) fetchLoop() {
	defer close(w.fetchDone)
	errDelay := 50 * time.Millisecond
	for {
		select {
		case w.slots <- struct{}{}:
		case <-w.stopping:
			return
		}
		n := 1
	grab:
		for n < w.cfg.Concurrency {
			select {
			case w.slots <- struct{}{}:
				n++
			default:
				break grab
			}
		}
		tasks, nextDue, err := w.fetch(n)
		for i := len(tasks); i < n; i++ {
			<-w.slots
		}
		for _, t := range tasks {
			w.startChain(t)
		}
		if err != nil {
			w.log.Warn("luaq: dequeue failed; retrying", "err", err, "in", errDelay)
			if !w.sleep(errDelay) {
				return
			}
			errDelay = min(2*errDelay, 2*time.Second)
			continue
		}
		errDelay = 50 * time.Millisecond
		if len(tasks) == 0 {
			w.idle(nextDue)
		}
	}
}

// sleep waits d or until shutdown begins; it reports false on shutdown.
func (w *Worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stopping:
		return false
	}
}

// queueOrder returns the queues in the order this fetch serves them.
func (w *Worker) queueOrder() []*workerQueue {
	if w.cfg.StrictPriority || len(w.queues) == 1 {
		return w.queues
	}
	// Weighted random order without replacement: each position picks among
	// the remaining queues in proportion to their weights.
	rest := append([]*workerQueue(nil), w.queues...)
	out := make([]*workerQueue, 0, len(rest))
	for len(rest) > 0 {
		total := 0
		for _, q := range rest {
			total += q.weight
		}
		pick := rand.IntN(total)
		for i, q := range rest {
			if pick < q.weight {
				out = append(out, q)
				rest = append(rest[:i], rest[i+1:]...)
				break
			}
			pick -= q.weight
		}
	}
	return out
}

// fetch leases up to n tasks across the queues. nextDue is the shortest wait
// until a scheduled task is due (-1 if none) when nothing was leased.
func (w *Worker) fetch(n int) (tasks []*Task, nextDue time.Duration, err error) {
	nextDue = -1
	// The calls must not be cancelled mid-flight: a dequeue whose reply is
	// lost leaves its tasks leased to nobody until their leases expire.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, q := range w.queueOrder() {
		want := n - len(tasks)
		if want == 0 {
			break
		}
		v, err := w.loader.Run(ctx, q.keys, "dequeue",
			strconv.Itoa(want), w.leaseArg,
			strconv.Itoa(w.cfg.PromoteLimit), strconv.Itoa(w.cfg.ReclaimLimit),
			strconv.FormatInt(ceilMs(w.cfg.ReclaimBackoff), 10))
		if err != nil {
			return tasks, nextDue, fmt.Errorf("dequeue from %q: %w", q.name, err)
		}
		got, due, err := parseLeaseReply(q, v)
		if err != nil {
			return tasks, nextDue, fmt.Errorf("dequeue from %q: %w", q.name, err)
		}
		tasks = append(tasks, got...)
		if due >= 0 && (nextDue < 0 || due < nextDue) {
			nextDue = due
		}
	}
	return tasks, nextDue, nil
}

// leaseFields is the number of reply values per leased task.
const leaseFields = 9

// parseLeaseReply decodes the reply of dequeue (and of complete's lease-next):
// leased, next_due_in_ms, paused, then 9 values per task.
func parseLeaseReply(q *workerQueue, v any) ([]*Task, time.Duration, error) {
	arr, err := loader.Slice(v)
	if err != nil || len(arr) < 3 {
		return nil, -1, fmt.Errorf("unexpected lease reply %v", v)
	}
	n, err1 := loader.Int(arr[0])
	due, err2 := loader.Int(arr[1])
	if err := errors.Join(err1, err2); err != nil || len(arr) != 3+leaseFields*int(n) {
		return nil, -1, fmt.Errorf("unexpected lease reply %v", v)
	}
	tasks := make([]*Task, 0, n)
	for i := 0; i < int(n); i++ {
		f := arr[3+leaseFields*i : 3+leaseFields*(i+1)]
		id, e1 := loader.String(f[0])
		token, e2 := loader.Int(f[1])
		typ, e3 := loader.String(f[2])
		payload, e4 := loader.String(f[3])
		retried, e5 := loader.Int(f[4])
		maxRetry, e6 := loader.Int(f[5])
		timeout, e7 := loader.Int(f[6])
		deadline, e8 := loader.Int(f[7])
		_, e9 := loader.Int(f[8]) // lease_until: the worker tracks its lease on its own clock
		if err := errors.Join(e1, e2, e3, e4, e5, e6, e7, e8, e9); err != nil {
			return nil, -1, fmt.Errorf("unexpected lease reply: %w", err)
		}
		tasks = append(tasks, &Task{
			ID: id, Queue: q.name, Type: typ, Payload: []byte(payload),
			Retried: int(retried), MaxRetry: int(maxRetry),
			Timeout: time.Duration(timeout) * time.Millisecond, Deadline: msTime(deadline),
			token: strconv.FormatInt(token, 10), q: q,
		})
	}
	if due < 0 {
		return tasks, -1, nil
	}
	return tasks, time.Duration(due) * time.Millisecond, nil
}

// idle blocks until a wake token arrives, the next scheduled task is due,
// MaxIdleWait passes, or shutdown begins.
func (w *Worker) idle(nextDue time.Duration) {
	wait := w.cfg.MaxIdleWait
	if nextDue >= 0 && nextDue < wait {
		wait = nextDue
	}
	if wait <= 0 {
		return
	}
	end := time.Now().Add(wait)
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		w.startWaits(time.Until(end))
		select {
		case <-w.wakeCh:
			return
		case <-t.C:
			return
		case <-w.stopping:
			return
		case <-w.waitEnded:
			// A BLPOP timed out: one left over from an earlier, shorter
			// spell (startWaits did not start a new one while it ran), or
			// one capped by the shared client's timeout. Block again for
			// the rest of this spell, or a wake token would go unseen.
		}
	}
}
