package sdk

import (
	"context"
	"errors"
	"time"

	"github.com/luaq/luaq/loader"
)

// extendLoop renews the leases of all running tasks every LeaseDuration/3,
// in one pipeline, and cancels the handler of any task whose lease is lost.
func (w *Worker) extendLoop() {
	defer close(w.extendDone)
	t := time.NewTicker(w.cfg.LeaseDuration / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.extendAll()
			ctx, cancel := context.WithTimeout(context.Background(), w.cfg.LeaseDuration/3)
			if err := w.heartbeat(ctx); err != nil {
				w.log.Warn("luaq: heartbeat failed", "err", err)
			}
			cancel()
		case <-w.extendStop:
			return
		}
	}
}

func (w *Worker) extendAll() {
	w.mu.Lock()
	runs := make([]*running, 0, len(w.inflight))
	for r := range w.inflight {
		if st := r.state.Load(); st == runRunning || st == runAbandoned {
			runs = append(runs, r) // abandoned: cancelled, not yet returned
		}
	}
	w.mu.Unlock()
	if len(runs) == 0 {
		return
	}
	calls := make([]loader.Call, len(runs))
	for i, r := range runs {
		calls[i] = loader.Call{Queue: r.q.keys, Script: "extend", Args: []string{r.task.ID, r.task.token, w.leaseArg}}
	}
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.LeaseDuration/3)
	results := w.loader.RunPipelined(ctx, calls)
	cancel()
	for i, res := range results {
		r := runs[i]
		switch {
		case res.Err == nil:
			r.localExpiry.Store(sent.Add(w.cfg.LeaseDuration).UnixNano())
		case errors.Is(res.Err, ErrLeaseLost):
			if r.state.Load() == runRunning {
				r.cancel(ErrLeaseLost)
			}
		default:
			w.log.Warn("luaq: lease renewal failed", "queue", r.q.name, "id", r.task.ID, "err", res.Err)
			if time.Now().UnixNano() > r.localExpiry.Load() {
				// The lease may have run out and the task gone to another
				// worker: stop the handler rather than race it.
				r.cancel(ErrLeaseLost)
			}
		}
	}
}
