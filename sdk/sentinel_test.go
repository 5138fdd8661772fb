package sdk

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// The Sentinel failover test: a producer enqueues a steady stream of tasks
// through a go-redis Sentinel client (NewFailoverClient) while three
// workers, each with its own Sentinel client as if in its own process, run
// them; one of the workers serves only a quiet queue and idles most of the
// time. The sentinels then fail the master over to the replica (SENTINEL
// FAILOVER, with writes paused on the old master until the replica has
// everything, so no acknowledged write can be lost; see
// redistest.Sentinel.Failover). The test checks that nothing was lost and
// measures, for the tasks the new master acknowledged, how long they waited
// for a handler.
//
// MaxIdleWait is a minute, so that a worker whose wait stayed on the old
// master is unmistakable: only the old master's demotion by the sentinels
// (about 8 s after the switch) or MaxIdleWait would end such a wait. In the
// second case the old master cannot be demoted (REPLICAOF and SLAVEOF are
// renamed away on it), as under a partition that keeps the sentinels from
// it. The bound on the pickup is derived from those observations, not from
// a wall-clock budget: the first task the new master acknowledged on each
// queue must have started before the old master was last seen as master,
// and before MaxIdleWait had passed since the workers started.

const (
	sentMaxIdle = time.Minute
	// sentLease is longer than MaxIdleWait: an idle worker also wakes when
	// the earliest lease on its queues could be reclaimed (the dequeue
	// reply's next-due hint), which must not be what ends a deaf wait here.
	sentLease      = 90 * time.Second
	sentPace       = 20 * time.Millisecond // between two enqueues
	sentQuietEvery = 20                    // every 20th enqueue goes to the quiet queue
)

func TestSentinelFailoverWakesIdleWorkers(t *testing.T) {
	for _, tc := range []struct {
		name      string
		demotable bool
	}{
		{"old master demoted", true},
		{"old master never demoted", false},
	} {
		t.Run(tc.name, func(t *testing.T) { sentRun(t, tc.demotable) })
	}
}

func sentRun(t *testing.T, demotable bool) {
	var opts []redistest.Option
	if !demotable {
		opts = append(opts, redistest.WithArgs("--rename-command", "REPLICAOF", "", "--rename-command", "SLAVEOF", ""))
	}
	s := redistest.StartSentinel(t, opts...)
	runs := &sentRuns{starts: map[string][]time.Time{}, done: map[string]int{}}
	workersStarted := time.Now()
	var logs []*logCapture
	for _, queues := range []map[string]int{{"stream": 2, "quiet": 1}, {"stream": 2, "quiet": 1}, {"quiet": 1}} {
		w, lg := newTestWorker(t, s.FailoverClient(t, nil), WorkerConfig{
			Queues: queues, Concurrency: 2, LeaseDuration: sentLease, MaxIdleWait: sentMaxIdle,
		})
		w.HandleFunc("job", runs.handle)
		runWorker(t, w)
		logs = append(logs, lg)
	}
	c, err := NewClient(s.FailoverClient(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	p := newSentProducer(c)
	t.Cleanup(p.halt)
	waitFor(t, 30*time.Second, "the stream to be under way", func() bool { return runs.total.Load() >= 40 })

	sw := s.Failover(t)
	t.Logf("%s promoted; every sentinel reported it %s later", sw.New, sw.Switched.Sub(sw.Promoted).Round(time.Millisecond))
	demotion := watchDemotion(s, sw.Old)
	waitFor(t, 30*time.Second, "tasks acknowledged by the new master on both queues", func() bool {
		n := p.ackedAfter(sw.Promoted)
		return n["stream"] >= 30 && n["quiet"] >= 3
	})
	p.halt()
	log := p.enqueues()
	// A waiter deaf since the failover wakes by itself after MaxIdleWait:
	// wait that long, so that the delays below are measured either way.
	waitFor(t, sentMaxIdle+30*time.Second, "every acknowledged task to run", func() bool { return runs.ranAll(log) })
	demoted, lastMaster := demotion()

	sentCheckOutcomes(t, log, runs, logs)
	bound, why := workersStarted.Add(sentMaxIdle), "MaxIdleWait after the workers started"
	if demoted && lastMaster.Before(bound) {
		bound, why = lastMaster, "the old master was last seen as master"
	}
	sentCheckPickup(t, log, runs, sw, bound, why)
	if !demotable && demoted {
		t.Errorf("the old master %s was demoted although it cannot run REPLICAOF", sw.Old)
	}
	t.Logf("old master demoted by the time every task ran: %v", demoted)
}

// sentRuns records handler runs by task id.
type sentRuns struct {
	mu     sync.Mutex
	starts map[string][]time.Time
	done   map[string]int
	total  atomic.Int64
}

func (r *sentRuns) handle(_ context.Context, t *Task) error {
	r.mu.Lock()
	r.starts[t.ID] = append(r.starts[t.ID], time.Now())
	r.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
	r.mu.Lock()
	r.done[t.ID]++
	r.mu.Unlock()
	r.total.Add(1)
	return nil
}

// ranAll reports whether every acknowledged enqueue of log has run to the
// end at least once.
func (r *sentRuns) ranAll(log []sentEnqueue) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range log {
		if e.acked && r.done[e.id] == 0 {
			return false
		}
	}
	return true
}

// sentEnqueue is one Enqueue call of the producer.
type sentEnqueue struct {
	id, queue string
	acked     bool      // Enqueue returned no error
	at        time.Time // when Enqueue returned
	err       string
}

// sentProducer enqueues a task every sentPace with its own id, every
// sentQuietEvery-th to the quiet queue, the others to the stream queue. It
// does not retry: a failed Enqueue is recorded as unacknowledged.
type sentProducer struct {
	c        *Client
	mu       sync.Mutex
	log      []sentEnqueue
	stop     chan struct{}
	done     chan struct{}
	haltOnce sync.Once
}

func newSentProducer(c *Client) *sentProducer {
	p := &sentProducer{c: c, stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *sentProducer) run() {
	defer close(p.done)
	tick := time.NewTicker(sentPace)
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-p.stop:
			return
		case <-tick.C:
		}
		q, id := "stream", fmt.Sprintf("s-%d", n)
		if n%sentQuietEvery == 0 {
			q, id = "quiet", fmt.Sprintf("q-%d", n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := p.c.Enqueue(ctx, q, "job", nil, ID(id))
		cancel()
		e := sentEnqueue{id: id, queue: q, acked: err == nil, at: time.Now()}
		if err != nil {
			e.err = err.Error()
		}
		p.mu.Lock()
		p.log = append(p.log, e)
		p.mu.Unlock()
	}
}

// halt stops the producer and waits for its last Enqueue.
func (p *sentProducer) halt() {
	p.haltOnce.Do(func() { close(p.stop) })
	<-p.done
}

func (p *sentProducer) enqueues() []sentEnqueue {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.log)
}

// ackedAfter counts, per queue, the enqueues acknowledged after since.
func (p *sentProducer) ackedAfter(since time.Time) map[string]int {
	n := map[string]int{}
	for _, e := range p.enqueues() {
		if e.acked && e.at.After(since) {
			n[e.queue]++
		}
	}
	return n
}

// watchDemotion polls the role of the old master until it is demoted. The
// returned function stops the polling and reports whether it was demoted
// and when it was last seen as master (a ROLE sent then still said master,
// so the demotion came later).
func watchDemotion(s *redistest.Sentinel, old string) func() (bool, time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	var demoted bool
	var lastMaster time.Time
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			sent := time.Now()
			role, err := s.Role(ctx, old)
			if err == nil && role != "master" {
				demoted = true
				return
			}
			if err == nil {
				lastMaster = sent
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return func() (bool, time.Time) {
		cancel()
		<-done
		return demoted, lastMaster
	}
}

// sentCheckOutcomes checks that every acknowledged task ran to the end, and
// exactly once unless a worker logged that it could not record an outcome;
// that an unacknowledged task ran at most once (same exception); and that
// nothing else ran.
func sentCheckOutcomes(t *testing.T, log []sentEnqueue, runs *sentRuns, logs []*logCapture) {
	t.Helper()
	runs.mu.Lock()
	defer runs.mu.Unlock()
	explained := func(id string) bool {
		for _, lg := range logs {
			for _, line := range strings.Split(lg.String(), "\n") {
				if strings.Contains(line+" ", " id="+id+" ") &&
					(strings.Contains(line, "could not record the outcome") || strings.Contains(line, "lease lost")) {
					return true
				}
			}
		}
		return false
	}
	known := map[string]bool{}
	var unacked []string
	for _, e := range log {
		known[e.id] = true
		n := len(runs.starts[e.id])
		switch {
		case e.acked && runs.done[e.id] == 0:
			t.Errorf("task %s (%s) was acknowledged at %s but never completed: lost", e.id, e.queue, e.at.Format(time.StampMilli))
		case n > 1 && !explained(e.id):
			t.Errorf("task %s (%s) ran %d times, and no worker logged a lost outcome for it", e.id, e.queue, n)
		}
		if !e.acked {
			unacked = append(unacked, fmt.Sprintf("%s (ran %d times): %s", e.id, n, e.err))
		}
	}
	for id := range runs.starts {
		if !known[id] {
			t.Errorf("task %s ran, but the producer never enqueued it", id)
		}
	}
	t.Logf("%d enqueues, %d unacknowledged: %s", len(log), len(unacked), strings.Join(unacked, "; "))
}

// sentCheckPickup measures, for each task acknowledged after the promotion,
// the delay from its Enqueue's return to its handler's start, and checks
// that the first such task of each queue started before bound.
func sentCheckPickup(t *testing.T, log []sentEnqueue, runs *sentRuns, sw redistest.Switchover, bound time.Time, why string) {
	t.Helper()
	runs.mu.Lock()
	defer runs.mu.Unlock()
	delays := map[string][]time.Duration{}
	for _, e := range log { // in enqueue order
		if !e.acked || !e.at.After(sw.Promoted) || len(runs.starts[e.id]) == 0 {
			continue
		}
		start := runs.starts[e.id][0]
		if len(delays[e.queue]) == 0 {
			if !start.Before(bound) {
				t.Errorf("queue %s: the first task the new master acknowledged (%s, %s after the promotion) started %s after its enqueue, not before %s (%s): a wait stayed on the old master",
					e.queue, e.id, e.at.Sub(sw.Promoted).Round(time.Millisecond), start.Sub(e.at).Round(time.Millisecond),
					bound.Format(time.StampMilli), why)
			}
			t.Logf("queue %s: first task after the promotion enqueued %s after it, started %s after its enqueue (%s after the promotion)",
				e.queue, e.at.Sub(sw.Promoted).Round(time.Millisecond), start.Sub(e.at).Round(time.Millisecond), start.Sub(sw.Promoted).Round(time.Millisecond))
		}
		delays[e.queue] = append(delays[e.queue], max(start.Sub(e.at), 0))
	}
	for _, q := range []string{"stream", "quiet"} {
		d := slices.Sorted(slices.Values(delays[q]))
		if len(d) == 0 {
			t.Errorf("queue %s: no task acknowledged after the promotion ran", q)
			continue
		}
		t.Logf("queue %s: %d tasks after the promotion, pickup delay median %s, max %s",
			q, len(d), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
	}
}
