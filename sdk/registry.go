package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"time"

	"github.com/luaq/luaq/loader"
)

// maxInfoInFlight bounds the in-flight task ids a worker lists in its
// registration.
const maxInfoInFlight = 100

// WorkerInfo describes a registered worker process, as it last reported.
type WorkerInfo struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"`
	Concurrency int       `json:"concurrency"`
	StartedAt   time.Time `json:"started_at"`
	// InFlight lists ids of tasks running when the worker last reported
	// (at most 100), per queue as "queue/id".
	InFlight []string `json:"in_flight"`
	// HeartbeatDeadline is when the registration lapses unless renewed.
	HeartbeatDeadline time.Time `json:"-"`
}

// newWorkerID returns "<host>:<pid>:<random>", unique per worker.
func newWorkerID() (string, string, error) {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("worker id: %w", err)
	}
	id := fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	// Keep the id inside the scripts' limit: printable ASCII, 128 bytes.
	clean := make([]byte, 0, len(id))
	for i := 0; i < len(id) && len(clean) < 128; i++ {
		if c := id[i]; c > 0x20 && c < 0x7f {
			clean = append(clean, c)
		}
	}
	return string(clean), host, nil
}

// registrationTTL is how long a registration lasts without a heartbeat.
func (w *Worker) registrationTTL() time.Duration { return 2 * w.cfg.LeaseDuration }

// describe returns the worker's registration description.
func (w *Worker) describe() []byte {
	info := WorkerInfo{
		ID: w.id, Host: w.host, PID: os.Getpid(), Concurrency: w.cfg.Concurrency,
		StartedAt: w.startedAt,
	}
	for _, q := range w.queues {
		info.Queues = append(info.Queues, q.name)
	}
	w.mu.Lock()
	for r := range w.inflight {
		if len(info.InFlight) == maxInfoInFlight {
			break
		}
		info.InFlight = append(info.InFlight, r.q.name+"/"+r.task.ID)
	}
	w.mu.Unlock()
	sort.Strings(info.InFlight)
	b, _ := json.Marshal(info) // a struct of plain fields cannot fail
	return b
}

// heartbeat registers the worker with every queue, or renews it.
func (w *Worker) heartbeat(ctx context.Context) error {
	info := string(w.describe())
	ttl := strconv.FormatInt(ceilMs(w.registrationTTL()), 10)
	calls := make([]loader.Call, len(w.queues))
	for i, q := range w.queues {
		calls[i] = loader.Call{Queue: q.keys, Script: "register", Args: []string{w.id, info, ttl}}
	}
	var errs []error
	for i, res := range w.loader.RunPipelined(ctx, calls) {
		if res.Err != nil {
			errs = append(errs, fmt.Errorf("register with %q: %w", w.queues[i].name, res.Err))
		}
	}
	return errors.Join(errs...)
}

// deregister removes the worker from every queue, retrying connection
// errors for a bounded time. It gives back no task: by now every handler
// that returned has given its task back, and the tasks of handlers still
// running must stay leased until they return or their leases expire.
func (w *Worker) deregister() {
	pending := w.queues
	deadline := time.Now().Add(w.cfg.LeaseDuration + 5*time.Second)
	for delay := 20 * time.Millisecond; len(pending) > 0; delay = min(2*delay, time.Second) {
		calls := make([]loader.Call, len(pending))
		for i, q := range pending {
			calls[i] = loader.Call{Queue: q.keys, Script: "deregister", Args: []string{w.id}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		results := w.loader.RunPipelined(ctx, calls)
		cancel()
		var again []*workerQueue
		for i, res := range results {
			if res.Err != nil {
				if isScriptError(res.Err) {
					w.log.Error("luaq: deregister failed", "queue", pending[i].name, "err", res.Err)
				} else {
					again = append(again, pending[i])
				}
			}
		}
		pending = again
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.log.Error("luaq: could not deregister; the janitor will remove the registration when its heartbeat lapses", "queues", len(pending))
			return
		}
		time.Sleep(delay)
	}
}

// Workers lists up to limit live workers registered with queue.
func (c *Client) Workers(ctx context.Context, queue string, limit int) ([]WorkerInfo, error) {
	q, err := validQueue(queue)
	if err != nil {
		return nil, fmt.Errorf("luaq: list-workers: %w", err)
	}
	if limit < 1 || limit > 1000 {
		return nil, fmt.Errorf("luaq: list-workers: %w: limit %d, want 1..1000", ErrBadArg, limit)
	}
	v, err := c.call(ctx, q, "list-workers", strconv.Itoa(limit))
	if err != nil {
		return nil, fmt.Errorf("luaq: list-workers %q: %w", queue, err)
	}
	arr, err := loader.Slice(v)
	if err != nil || len(arr)%3 != 0 {
		return nil, fmt.Errorf("luaq: list-workers %q: unexpected reply %v", queue, v)
	}
	out := make([]WorkerInfo, 0, len(arr)/3)
	for i := 0; i < len(arr); i += 3 {
		id, e1 := loader.String(arr[i])
		hb, e2 := loader.Int(arr[i+1])
		raw, e3 := loader.String(arr[i+2])
		if err := errors.Join(e1, e2, e3); err != nil {
			return nil, fmt.Errorf("luaq: list-workers %q: %w", queue, err)
		}
		info := WorkerInfo{ID: id}
		if raw != "" {
			if err := json.Unmarshal([]byte(raw), &info); err != nil {
				return nil, fmt.Errorf("luaq: list-workers %q: worker %s: %w", queue, id, err)
			}
		}
		info.ID, info.HeartbeatDeadline = id, time.UnixMilli(hb)
		out = append(out, info)
	}
	return out, nil
}

// RunWithSignals is Run that also shuts down gracefully on SIGINT or SIGTERM.
func (w *Worker) RunWithSignals(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	return w.Run(ctx)
}
