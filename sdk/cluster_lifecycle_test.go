package sdk

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// The lifecycle and janitor tests, run through a go-redis ClusterClient on a
// real cluster of 3 masters with a replica each, over 20 queues spread across
// all masters. TestClusterLifecycle runs it on a stable cluster and checks
// every counter exactly; TestClusterFailoverMidRun fails a master over to its
// replica (whose script cache was emptied first) while workers and a
// producer are busy, and checks that the scripts were reloaded on the new
// master (NOSCRIPT recovery), that no operation failed for NOSCRIPT, and
// that nothing was lost.

const (
	clcQueues  = 20
	clcWorkers = 3
	clcLease   = 2 * time.Second
)

// clcKind is one path through a queue; the task type is its name.
type clcKind struct {
	name     string
	perQueue int  // tasks per queue in the planned waves
	wave     int  // 0: before any worker runs (and expires unseen); 1; 2
	fails    int  // handler runs that fail before one succeeds; -1 = always
	skip     bool // the failure asks to skip retries
	maxRetry int
	// expireArchive: an expiring kind archived on expiry.
	expireArchive bool
	errMsg        string // last error of an archived task
	opts          func(queue string, i int) []Option
}

const (
	clcRetention = 2 * time.Second
	clcDue       = 600 * time.Millisecond
	clcExpiry    = 150 * time.Millisecond
	clcIdleWait  = 30 * time.Second // MaxIdleWait of the worker idling through the failover
)

func clcKinds() []clcKind {
	far := func() time.Time { return time.Now().Add(10 * time.Minute) }
	return []clcKind{
		{name: "expdel", perQueue: 2, wave: 0, opts: func(string, int) []Option { return []Option{ExpireIn(clcExpiry)} }},
		{name: "exparch", perQueue: 2, wave: 0, expireArchive: true, errMsg: "expired",
			opts: func(string, int) []Option { return []Option{ExpireIn(clcExpiry), ArchiveOnExpiry()} }},
		// Both relative to the enqueue on the server's clock: an absolute
		// ExpireAt computed here could pass before a slow enqueue.
		{name: "expsched", perQueue: 2, wave: 0, opts: func(string, int) []Option {
			return []Option{ProcessIn(clcExpiry / 3), ExpireIn(clcExpiry)}
		}},
		{name: "ok", perQueue: 12, wave: 1, maxRetry: DefaultMaxRetry, opts: func(_ string, i int) []Option {
			switch i % 6 {
			case 1:
				return []Option{ID(fmt.Sprintf("ok-%d", i)), Timeout(time.Minute)}
			case 2:
				return []Option{Deadline(far()), MaxRetry(0)}
			case 3:
				return []Option{ExpireIn(time.Minute)}
			case 4:
				return []Option{ExpireAt(far()), ArchiveOnExpiry(), ID(fmt.Sprintf("ok:{x}:%d", i))}
			case 5:
				return []Option{Unique(fmt.Sprintf("ok-unique-%d", i), time.Minute), Timeout(time.Minute), Deadline(far())}
			}
			return nil
		}},
		{name: "sched", perQueue: 4, wave: 1, maxRetry: DefaultMaxRetry, opts: func(_ string, i int) []Option {
			if i%2 == 0 {
				return []Option{ProcessIn(clcDue), ID(fmt.Sprintf("sched-%d", i))}
			}
			return []Option{ProcessAt(time.Now().Add(clcDue)), ID(fmt.Sprintf("sched-%d", i))}
		}},
		{name: "retry1", perQueue: 3, wave: 1, fails: 1, maxRetry: 3, opts: func(string, int) []Option { return []Option{MaxRetry(3)} }},
		{name: "retry2", perQueue: 3, wave: 1, fails: 2, maxRetry: 3, opts: func(string, int) []Option { return []Option{MaxRetry(3)} }},
		{name: "timeout", perQueue: 2, wave: 1, fails: 1, maxRetry: 2, opts: func(string, int) []Option {
			return []Option{MaxRetry(2), Timeout(100 * time.Millisecond)}
		}},
		{name: "skip", perQueue: 2, wave: 1, fails: 1, skip: true, maxRetry: 5, errMsg: "bad input: luaq: skip retry",
			opts: func(_ string, i int) []Option { return []Option{MaxRetry(5), ID(fmt.Sprintf("skip-%d", i))} }},
		{name: "exhaust", perQueue: 2, wave: 1, fails: -1, maxRetry: 1, errMsg: "always fails",
			opts: func(_ string, i int) []Option { return []Option{MaxRetry(1), ID(fmt.Sprintf("exhaust-%d", i))} }},
		{name: "retain", perQueue: 3, wave: 1, maxRetry: DefaultMaxRetry, opts: func(_ string, i int) []Option {
			return []Option{Retention(clcRetention), ID(fmt.Sprintf("retain-%d", i))}
		}},
		{name: "unique", perQueue: 3, wave: 1, maxRetry: DefaultMaxRetry, opts: func(q string, i int) []Option {
			return []Option{Unique(fmt.Sprintf("u:%s:%d", q, i), time.Minute), ProcessIn(clcDue)}
		}},
		{name: "uniqttl", perQueue: 2, wave: 1, maxRetry: DefaultMaxRetry, opts: func(_ string, i int) []Option {
			return []Option{Unique(fmt.Sprintf("t:%d", i), 100*time.Millisecond), ProcessIn(clcDue)}
		}},
		// Wave 2: the unique keys again, free once their holders ended.
		{name: "again", perQueue: 3, wave: 2, maxRetry: DefaultMaxRetry, opts: func(q string, i int) []Option {
			return []Option{Unique(fmt.Sprintf("u:%s:%d", q, i), time.Minute)}
		}},
		{name: "againttl", perQueue: 2, wave: 2, maxRetry: DefaultMaxRetry, opts: func(_ string, i int) []Option {
			return []Option{Unique(fmt.Sprintf("t:%d", i), time.Minute)}
		}},
		// Enqueued by a producer while the workers run.
		{name: "stream", wave: -1, maxRetry: DefaultMaxRetry},
	}
}

// outcome is where a task of kind k ends without faults, how many handler
// runs that takes, and what it adds to the queue's counters.
func (k clcKind) outcome() (archived bool, runs int, c clcCounters) {
	switch {
	case k.wave == 0:
		c.expired = 1
		if k.expireArchive {
			c.archived = 1
		}
		return k.expireArchive, 0, c
	case k.fails == 0:
		c.processed = 1
		return false, 1, c
	case k.skip:
		c.failed, c.archived = 1, 1
		return true, 1, c
	case k.fails < 0 || k.fails > k.maxRetry:
		c.failed, c.retried, c.archived = int64(k.maxRetry+1), int64(k.maxRetry), 1
		return true, k.maxRetry + 1, c
	default:
		c.processed, c.failed, c.retried = 1, int64(k.fails), int64(k.fails)
		return false, k.fails + 1, c
	}
}

type clcCounters struct{ processed, failed, retried, archived, expired int64 }

func (c *clcCounters) add(o clcCounters) {
	c.processed += o.processed
	c.failed += o.failed
	c.retried += o.retried
	c.archived += o.archived
	c.expired += o.expired
}

// clcTracker records every handler run, per "queue/id".
type clcTracker struct {
	mu        sync.Mutex
	runs      map[string]int
	successes map[string]int
	failures  int // runs whose handler returned an error
	total     atomic.Int64
}

func (tr *clcTracker) handler(k clcKind) func(context.Context, *Task) error {
	return func(ctx context.Context, t *Task) error {
		key := t.Queue + "/" + t.ID
		tr.mu.Lock()
		tr.runs[key]++
		run := tr.runs[key]
		tr.mu.Unlock()
		tr.total.Add(1)
		if k.name == "stream" {
			time.Sleep(time.Duration(rand.IntN(4000)) * time.Microsecond)
		}
		if k.fails < 0 || run <= k.fails {
			var err error
			switch {
			case k.skip:
				err = fmt.Errorf("bad input: %w", ErrSkipRetry)
			case k.name == "timeout":
				<-ctx.Done() // the task's 100ms timeout ends it
				err = ctx.Err()
			case k.fails < 0:
				err = errors.New("always fails")
			default:
				err = fmt.Errorf("transient failure %d", run)
			}
			tr.mu.Lock()
			tr.failures++
			tr.mu.Unlock()
			return err
		}
		if k.name == "retain" {
			t.SetResult([]byte("result of " + t.Queue + "/" + t.ID))
		}
		tr.mu.Lock()
		tr.successes[key]++
		tr.mu.Unlock()
		return nil
	}
}

// clcNoScript counts NOSCRIPT replies a cluster client received (at the
// cluster level, after redirections), single commands and pipelines.
type clcNoScript struct{ n atomic.Int64 }

func clcIsNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || strings.HasPrefix(err.Error(), "NOSCRIPT"))
}

func (h *clcNoScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *clcNoScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if clcIsNoScript(cmd.Err()) {
			h.n.Add(1)
		}
		return err
	}
}

func (h *clcNoScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			if clcIsNoScript(cmd.Err()) {
				h.n.Add(1)
			}
		}
		return err
	}
}

// clcMasterOf returns the address of the master serving slot.
func clcMasterOf(nodes []redistest.Node, slot int) string {
	for _, n := range nodes {
		if n.Role != redistest.RoleMaster {
			continue
		}
		for _, r := range n.Slots {
			if slot >= r[0] && slot <= r[1] {
				return n.Addr
			}
		}
	}
	return ""
}

func TestClusterLifecycle(t *testing.T) { clcRun(t, "life:", false) }

func TestClusterFailoverMidRun(t *testing.T) { clcRun(t, "fail:", true) }

func clcRun(t *testing.T, prefix string, failover bool) {
	began := time.Now()
	cl := redistest.StartCluster(t, 3, 1)
	t.Logf("cluster of 3 masters and 3 replicas up in %s", time.Since(began).Round(time.Millisecond))
	ctx := context.Background()
	nodes := cl.Nodes()
	var masters []string
	for _, n := range nodes {
		if n.Role == redistest.RoleMaster {
			masters = append(masters, n.Addr)
		}
	}
	if len(masters) != 3 {
		t.Fatalf("%d masters, want 3: %+v", len(masters), nodes)
	}

	// 20 queue names (with ':' in them) spread over all masters: at most 7
	// per master, so each gets at least 6.
	producerRdb := cl.Client(t)
	queues := []string{}
	owner := map[string]string{}
	perMaster := map[string]int{}
	for i := 0; len(queues) < clcQueues; i++ {
		name := fmt.Sprintf("%s%02d", prefix, i)
		slot := redistest.KeySlot(keys.Prefix + "{" + name + "}:meta")
		m := clcMasterOf(nodes, slot)
		if perMaster[m] >= 7 {
			continue
		}
		// The server hashes the key to the same slot, and every role's key
		// of the queue to that slot too.
		if got, err := producerRdb.ClusterKeySlot(ctx, keys.Prefix+"{"+name+"}:meta").Result(); err != nil || int(got) != slot {
			t.Fatalf("CLUSTER KEYSLOT of queue %s: %d (%v), KeySlot says %d", name, got, err, slot)
		}
		for _, role := range []string{"tasks", "pending", "wake", "lock", "unique_ttl"} {
			if s := redistest.KeySlot(keys.Prefix + "{" + name + "}:" + role); s != slot {
				t.Fatalf("queue %s: key %s in slot %d, meta in %d", name, role, s, slot)
			}
		}
		queues = append(queues, name)
		owner[name] = m
		perMaster[m]++
	}
	for _, m := range masters {
		if perMaster[m] < 6 {
			t.Fatalf("queues per master %v: every master must serve at least 6 of the %d queues", perMaster, clcQueues)
		}
	}
	t.Logf("queues per master: %v", perMaster)

	kinds := clcKinds()
	kindOf := map[string]clcKind{}
	for _, k := range kinds {
		kindOf[k.name] = k
	}
	c, err := NewClient(producerRdb)
	if err != nil {
		t.Fatal(err)
	}
	noscripts := []*clcNoScript{{}}
	producerRdb.AddHook(noscripts[0])
	// Load at start, as a worker does (a Client otherwise loads on its
	// first NOSCRIPT), so that any NOSCRIPT later is a node that lost them.
	if err := c.Load(ctx); err != nil {
		t.Fatal(err)
	}
	tr := &clcTracker{runs: map[string]int{}, successes: map[string]int{}}

	// enqueued: per queue, task id -> kind name.
	var enqMu sync.Mutex
	enqueued := map[string]map[string]string{}
	for _, q := range queues {
		enqueued[q] = map[string]string{}
	}
	// enqueueWave enqueues a wave's tasks to every queue, calls after (if
	// not nil) right after each queue's batch went in, and returns, per
	// queue, when its batch was built and the enqueue replies.
	enqueueWave := func(wave int, after func(q string, b clcBatch)) map[string]clcBatch {
		t.Helper()
		batches := map[string]clcBatch{}
		for _, q := range queues {
			built := time.Now()
			var batch []NewTask
			for _, k := range kinds {
				if k.wave != wave {
					continue
				}
				for i := 0; i < k.perQueue; i++ {
					batch = append(batch, NewTask{Type: k.name, Payload: []byte(fmt.Sprintf("%s/%s/%d", q, k.name, i)), Options: k.opts(q, i)})
				}
			}
			infos, err := c.EnqueueBatch(ctx, q, batch)
			if err != nil {
				t.Fatalf("enqueue wave %d to %s: %v", wave, q, err)
			}
			enqMu.Lock()
			for _, in := range infos {
				enqueued[q][in.ID] = in.Type
			}
			enqMu.Unlock()
			batches[q] = clcBatch{built: built, infos: infos}
			if after != nil {
				after(q, batches[q])
			}
		}
		return batches
	}

	// Phase 0: no worker runs. Tasks that expire unseen: pending or
	// scheduled, deleted or archived.
	enqueueWave(0, nil)
	waitServerPast(t, producerRdb, time.Now().Add(clcExpiry))

	// Workers: each its own cluster client (its own process, in effect),
	// serving two thirds of the queues with weights, with its janitor.
	var stops []func()
	var logs []*logCapture
	served := map[string][]int{}
	for w := 0; w < clcWorkers; w++ {
		rdb := cl.Client(t)
		ns := &clcNoScript{}
		rdb.AddHook(ns)
		noscripts = append(noscripts, ns)
		mine := map[string]int{}
		for qi, q := range queues {
			if qi%clcWorkers != w {
				mine[q] = 1 + (qi+w)%3
				served[q] = append(served[q], w)
			}
		}
		wk, lg := newTestWorker(t, rdb, WorkerConfig{
			Queues: mine, Concurrency: 6, LeaseDuration: clcLease,
			JanitorInterval: 250 * time.Millisecond, JanitorLockTTL: 5 * time.Second,
			Backoff: constBackoff(5 * time.Millisecond),
		})
		for _, k := range kinds {
			wk.HandleFunc(k.name, tr.handler(k))
		}
		stops = append(stops, runWorker(t, wk))
		logs = append(logs, lg)
	}
	stopWorkers := func() {
		for _, s := range stops {
			s()
		}
	}

	// Wave 1 and what can be seen right after each queue's batch: the
	// workers run, so on a slow machine a task may be due by the time the
	// test looks, and the checks allow for that.
	wave1 := enqueueWave(1, func(q string, b clcBatch) {
		for i := 0; i < kindOf["sched"].perQueue; i++ {
			clcCheckScheduled(t, c, producerRdb, b, fmt.Sprintf("sched-%d", i))
		}
		if extra := clcCheckUniqueHeld(t, c, b, fmt.Sprintf("u:%s:0", q)); extra != nil {
			enqMu.Lock()
			enqueued[q][extra.ID] = extra.Type
			enqMu.Unlock()
		}
	})
	for _, q := range queues {
		ws, err := c.Workers(ctx, q, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != len(served[q]) {
			t.Errorf("queue %s lists %d workers, want %d", q, len(ws), len(served[q]))
		}
	}
	clcCheckRetained(t, c, producerRdb, wave1, kindOf["retain"].perQueue)

	// A producer enqueues while the workers run (and, in the second test,
	// while a master fails over). Each batch has fixed ids, so ErrConflict
	// on a retry after an ambiguous error means the first attempt went in.
	var (
		streamStop  = make(chan struct{})
		streamDone  = make(chan struct{})
		streamErrs  []string
		ambiguous   int
		streamCount atomic.Int64
	)
	go func() {
		defer close(streamDone)
		for n := 0; ; n++ {
			select {
			case <-streamStop:
				return
			default:
			}
			q := queues[n%len(queues)]
			batch := make([]NewTask, 5)
			for i := range batch {
				batch[i] = NewTask{Type: "stream", Payload: []byte(q), Options: []Option{ID(fmt.Sprintf("s-%d-%d", n, i))}}
			}
			for attempt := 0; ; attempt++ {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.EnqueueBatch(cctx, q, batch)
				cancel()
				if err == nil || (attempt > 0 && errors.Is(err, ErrConflict)) {
					if err != nil {
						ambiguous++
					}
					break
				}
				streamErrs = append(streamErrs, err.Error())
				if attempt == 20 {
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			enqMu.Lock()
			for i := range batch {
				enqueued[q][fmt.Sprintf("s-%d-%d", n, i)] = "stream"
			}
			enqMu.Unlock()
			streamCount.Add(int64(len(batch)))
			time.Sleep(5 * time.Millisecond)
		}
	}()

	newMaster, oldMaster, idleQueue := "", "", ""
	if failover {
		// Fail over the master serving the most queues, mid-stream. Its
		// replica's script cache is emptied first, as after a restart (or
		// a replica Redis 7 left out of CLUSTER SLOTS at load time): the
		// new master must get the scripts through NOSCRIPT recovery.
		for _, m := range masters {
			if oldMaster == "" || perMaster[m] > perMaster[oldMaster] {
				oldMaster = m
			}
		}
		// An extra worker idles on a queue of that master alone: it is
		// blocked on the queue's wake list when the failover happens, and
		// must wake at once for a task enqueued after it.
		for i := 0; idleQueue == ""; i++ {
			name := fmt.Sprintf("%sidle-%d", prefix, i)
			if clcMasterOf(nodes, redistest.KeySlot(keys.Prefix+"{"+name+"}:meta")) == oldMaster {
				idleQueue = name
			}
		}
		idleRan := make(chan time.Time, 1)
		idleRdb, idleCalls := cl.Client(t), newCallLog(t)
		ins := &clcNoScript{}
		idleRdb.AddHook(ins)
		idleRdb.AddHook(idleCalls)
		noscripts = append(noscripts, ins)
		iw, ilg := newTestWorker(t, idleRdb, WorkerConfig{
			Queues: map[string]int{idleQueue: 1}, LeaseDuration: clcLease, MaxIdleWait: clcIdleWait,
			JanitorInterval: 250 * time.Millisecond, JanitorLockTTL: 5 * time.Second,
		})
		iw.HandleFunc("idle", func(context.Context, *Task) error { idleRan <- time.Now(); return nil })
		stops = append(stops, runWorker(t, iw))
		logs = append(logs, ilg)
		// Its first dequeue comes after it loaded the bundle on every node:
		// a load after the replica's cache is emptied below would refill it,
		// and the failover would exercise no NOSCRIPT recovery.
		waitFor(t, hangGuard, "the idle worker to load the bundle and look at its queue", func() bool { return len(idleCalls.of("dequeue")) > 0 })
		waitFor(t, hangGuard, "the stream to be under way", func() bool { return streamCount.Load() >= 200 })
		var replica string
		for _, n := range nodes {
			if n.Role == redistest.RoleReplica && n.MasterAddr == oldMaster {
				replica = n.Addr
			}
		}
		direct := redis.NewClient(&redis.Options{Addr: replica})
		if err := direct.ScriptFlush(ctx).Err(); err != nil {
			t.Fatalf("SCRIPT FLUSH on replica %s: %v", replica, err)
		}
		_ = direct.Close()
		fo := time.Now()
		runsBefore := tr.total.Load()
		newMaster = cl.Failover(t, oldMaster)
		t.Logf("failover of %s (%d queues) to %s took %s; %d handler runs before it, %d during it",
			oldMaster, perMaster[oldMaster], newMaster, time.Since(fo).Round(time.Millisecond), runsBefore, tr.total.Load()-runsBefore)
		if newMaster != replica {
			t.Fatalf("Failover promoted %s, want %s", newMaster, replica)
		}
		for _, q := range queues {
			if owner[q] == oldMaster {
				owner[q] = newMaster
			}
		}
		enqAt := time.Now()
		if _, err := c.Enqueue(ctx, idleQueue, "idle", nil); err != nil {
			t.Fatal(err)
		}
		ranAt := recv(t, idleRan, hangGuard, "the idle worker to run a task enqueued after the failover")
		spell := idleSpellStart(t, idleCalls.of("dequeue"), enqAt)
		checkWoken(t, "the worker that idled through the failover", spell, enqAt, ranAt, clcIdleWait)
		// The stream goes on against the new master.
		after := streamCount.Load()
		waitFor(t, hangGuard, "the stream to go on after the failover", func() bool {
			select {
			case <-streamDone: // it gave up: its errors are reported below
				return true
			default:
				return streamCount.Load() >= after+200
			}
		})
	} else {
		waitFor(t, hangGuard, "the stream to be under way", func() bool { return streamCount.Load() >= 400 })
	}
	close(streamStop)
	<-streamDone
	if len(streamErrs) > 0 {
		t.Logf("producer: %d failed attempts (retried), %d batches in on a retry: %s", len(streamErrs), ambiguous, strings.Join(streamErrs, "; "))
	}
	if !failover && len(streamErrs) > 0 {
		t.Errorf("enqueues failed on a stable cluster")
	}

	// expArch: tasks counted both expired and archived.
	expArch := int64(kindOf["exparch"].perQueue)
	terminal := func(what string) map[string]*QueueInfo {
		t.Helper()
		infos := map[string]*QueueInfo{}
		clcWait(t, hangGuard, what, func() bool {
			enqMu.Lock()
			defer enqMu.Unlock()
			for _, q := range queues {
				qi, err := c.QueueInfo(ctx, q)
				if err != nil || qi.Pending != 0 || qi.Scheduled != 0 || qi.Active != 0 ||
					qi.Processed+qi.ArchivedTotal+qi.Expired-expArch < int64(len(enqueued[q])) {
					return false
				}
				infos[q] = qi
			}
			return true
		})
		return infos
	}
	terminal("waves 0 and 1 and the stream to end")

	// Wave 2 takes the unique keys of wave 1 again: freed on completion,
	// or, for those with a short TTL, when it lapsed.
	enqueueWave(2, nil)
	terminal("wave 2 to end")
	// The janitors delete the retained tasks once their retention ended.
	clcWait(t, hangGuard, "retention to end on every queue", func() bool {
		for _, q := range queues {
			if qi, err := c.QueueInfo(ctx, q); err != nil || qi.Completed != 0 {
				return false
			}
		}
		return true
	})
	infos := terminal("every queue to be quiet")
	stopWorkers()

	// Outcomes, task by task.
	final := clcDumpMasters(t, producerRdb)
	tr.mu.Lock()
	defer tr.mu.Unlock()
	enqMu.Lock()
	defer enqMu.Unlock()
	deviations, extraRuns, total := 0, 0, 0
	var failed int64
	for _, q := range queues {
		qk := testQueueKeys(t, q)
		archived := map[string]bool{}
		for _, m := range final[qk.Key("archived")].ZSet {
			archived[m.Member] = true
		}
		var want clcCounters
		wantArchived := 0
		for id, kname := range enqueued[q] {
			total++
			k := kindOf[kname]
			arch, runs, cnt := k.outcome()
			want.add(cnt)
			key := q + "/" + id
			gotRuns, succ := tr.runs[key], tr.successes[key]
			errMsg := final[qk.Key("errors")].Hash[id]
			if !failover {
				if archived[id] != arch || gotRuns != runs || succ != int(cnt.processed) {
					t.Errorf("%s (%s): archived %v after %d runs with %d successes, want archived %v after %d runs",
						key, kname, archived[id], gotRuns, succ, arch, runs)
				}
				if arch && errMsg != k.errMsg {
					t.Errorf("%s (%s): last error %q, want %q", key, kname, errMsg, k.errMsg)
				}
			} else {
				// Terminal either way: completed (at least once) or archived
				// (never completed), or expired unseen. Anything else than
				// the plan needs a lease lost in the failover.
				switch {
				case archived[id] && succ > 0:
					t.Errorf("%s (%s) is archived but completed %d times", key, kname, succ)
				case !archived[id] && succ == 0 && k.wave != 0:
					t.Errorf("%s (%s) neither completed nor archived after %d runs: lost", key, kname, gotRuns)
				case archived[id] != arch || gotRuns != runs || succ > 1:
					deviations++
					extraRuns += max(0, gotRuns-runs)
					if archived[id] && errMsg != k.errMsg && errMsg != "lease expired" {
						t.Errorf("%s (%s): archived with error %q", key, kname, errMsg)
					}
					t.Logf("deviation: %s (%s): archived %v, %d runs, %d successes (plan: archived %v, %d runs); last error %q",
						key, kname, archived[id], gotRuns, succ, arch, runs, errMsg)
				}
			}
			if archived[id] {
				wantArchived++
				ts, err := c.GetTask(ctx, q, id)
				if err != nil || ts.State != "archived" || ts.Type != kname || ts.LastError != errMsg {
					t.Errorf("GetTask(%s): %+v, %v; want archived %s with error %q", key, ts, err, kname, errMsg)
				}
			} else if _, err := c.GetTask(ctx, q, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("GetTask(%s) of an ended task: %v, want ErrNotFound", key, err)
			}
		}
		qi := infos[q]
		failed += qi.Failed
		got := clcCounters{qi.Processed, qi.Failed, qi.Retried, qi.ArchivedTotal, qi.Expired}
		if !failover && got != want {
			t.Errorf("queue %s counters %+v, want %+v", q, got, want)
		}
		if qi.Archived != int64(wantArchived) || len(archived) != wantArchived || qi.Completed != 0 || qi.Paused {
			t.Errorf("queue %s: %+v; archive holds %d, want %d", q, qi, len(archived), wantArchived)
		}
	}
	// Every run the handlers did not report as failed, yet the queue
	// counted as failed, is a lease that expired and was reclaimed.
	reclaims := failed - int64(tr.failures)
	leaseLost := 0
	for _, lg := range logs {
		leaseLost += strings.Count(lg.String(), "lease lost")
	}
	t.Logf("%d tasks (%d from the producer); %d reclaimed leases, %d lease-lost warnings, %d tasks off plan with %d extra runs",
		total, streamCount.Load(), reclaims, leaseLost, deviations, extraRuns)
	if reclaims < 0 || int64(deviations) > reclaims+int64(ambiguous) {
		t.Errorf("%d tasks deviated from their plan, but only %d leases were reclaimed (failed %d, handler failures %d)",
			deviations, reclaims, failed, tr.failures)
	}
	if !failover && (reclaims != 0 || deviations != 0) {
		t.Errorf("a stable cluster reclaimed %d leases", reclaims)
	}

	// No residue: per queue, only bookkeeping (and the archive), on the
	// master that serves the queue's slot.
	residueQueues := queues
	if idleQueue != "" {
		owner[idleQueue] = newMaster
		residueQueues = append(append([]string(nil), queues...), idleQueue)
	}
	clcCheckResidue(t, cl, producerRdb, final, residueQueues, owner)

	// Logs: nothing failed for NOSCRIPT, and on a stable cluster nothing
	// failed at all.
	var noscript int64
	for _, ns := range noscripts {
		noscript += ns.n.Load()
	}
	for i, lg := range logs {
		text := lg.String()
		if strings.Contains(text, "NOSCRIPT") {
			t.Errorf("worker %d: an operation failed for NOSCRIPT:\n%s", i, text)
		}
		if !failover && (strings.Contains(text, "level=ERROR") || strings.Contains(text, "level=WARN")) {
			t.Errorf("worker %d logged warnings or errors on a stable cluster:\n%s", i, text)
		}
		if failover {
			t.Logf("worker %d: %d warnings, %d errors", i, strings.Count(text, "level=WARN"), strings.Count(text, "level=ERROR"))
		}
	}
	for _, e := range streamErrs {
		if strings.Contains(e, "NOSCRIPT") {
			t.Errorf("an enqueue failed for NOSCRIPT: %s", e)
		}
	}
	t.Logf("NOSCRIPT replies answered by a reload: %d", noscript)
	if !failover {
		if noscript != 0 {
			t.Errorf("%d NOSCRIPT replies on a cluster whose nodes all had the bundle loaded", noscript)
		}
		t.Logf("run took %s", time.Since(began).Round(time.Millisecond))
		return
	}
	if noscript == 0 {
		t.Errorf("no call met NOSCRIPT on the new master: the failover did not exercise NOSCRIPT recovery")
	}
	// The new master holds every script of the bundle now.
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	var shas []string
	for _, s := range b.Scripts() {
		shas = append(shas, s.SHA)
	}
	direct := redis.NewClient(&redis.Options{Addr: newMaster})
	defer direct.Close()
	exists, err := direct.ScriptExists(ctx, shas...).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range exists {
		if !ok {
			t.Errorf("new master %s lacks script %s", newMaster, b.Scripts()[i].Name)
		}
	}
	t.Logf("run took %s", time.Since(began).Round(time.Millisecond))
}

// clcBatch is one queue's batch of a wave: when the test began building it
// (before any option computed a time) and the enqueue replies.
type clcBatch struct {
	built time.Time
	infos []*TaskInfo
}

// info returns the enqueue reply of task id, or of the task holding unique
// key uk when id is "".
func (b clcBatch) info(id, uk string) *TaskInfo {
	for _, in := range b.infos {
		if (id != "" && in.ID == id) || (id == "" && in.UniqueKey == uk) {
			return in
		}
	}
	return nil
}

// clcCheckScheduled checks a wave-1 "sched" task right after the wave. Its
// enqueue reply says scheduled, due clcDue after the enqueue (ProcessIn) or
// at the ProcessAt computed while the batch was built, so no earlier than
// clcDue after b.built. Then GetTask must see it scheduled at that due time
// if the look ran before it was due (by the server clock read after the
// look); once due, the workers may have promoted it, be running it, or be
// done with it (it has no retention, so it is gone).
func clcCheckScheduled(t *testing.T, c *Client, rdb redis.Cmdable, b clcBatch, id string) {
	t.Helper()
	info := b.info(id, "")
	if info == nil {
		t.Fatalf("no enqueue reply for %s", id)
	}
	due := info.ProcessAt.UnixMilli()
	if due <= info.EnqueuedAt.UnixMilli() && info.State == "pending" {
		t.Logf("%s %s: its ProcessAt %v passed before its enqueue at %v: ready at once", info.Queue, id, info.ProcessAt, info.EnqueuedAt)
		return
	}
	if info.State != "scheduled" || due < b.built.Add(clcDue).UnixMilli() || due > info.EnqueuedAt.Add(clcDue).UnixMilli() {
		t.Errorf("%s %s: enqueued %s at %v due %v (batch built at %v), want scheduled %s later", info.Queue, id, info.State, info.EnqueuedAt, info.ProcessAt, b.built, clcDue)
	}
	ts, err := c.GetTask(context.Background(), info.Queue, id)
	lookedBeforeDue := serverNow(t, rdb).UnixMilli() < due
	switch {
	case err == nil && ts.State == "scheduled":
		if !ts.StateAt.Equal(info.ProcessAt) {
			t.Errorf("%s %s: scheduled for %v, enqueued for %v", info.Queue, id, ts.StateAt, info.ProcessAt)
		}
	case lookedBeforeDue:
		t.Errorf("%s %s: GetTask before it was due (%v): %+v, %v; want scheduled", info.Queue, id, info.ProcessAt, ts, err)
	case errors.Is(err, ErrNotFound):
	case err != nil:
		t.Fatalf("GetTask of a scheduled task: %v", err)
	case ts.State != "pending" && ts.State != "active":
		t.Errorf("%s %s: state %s once due, want pending, active or done", info.Queue, id, ts.State)
	}
}

// clcCheckUniqueHeld enqueues a task with unique key uk, held for a minute
// by a wave-1 task of b due clcDue after the wave and freed when it
// completes: ErrConflict, unless the enqueue came after the holder was due
// (a slow machine), when the holder may have completed already. It returns
// the task such a late enqueue added, to be counted like the others.
func clcCheckUniqueHeld(t *testing.T, c *Client, b clcBatch, uk string) *TaskInfo {
	t.Helper()
	holder := b.info("", uk)
	if holder == nil {
		t.Fatalf("no wave-1 task holds unique key %s", uk)
	}
	info, err := c.Enqueue(context.Background(), holder.Queue, holder.Type, nil, Unique(uk, time.Minute))
	switch {
	case errors.Is(err, ErrConflict):
		return nil
	case err != nil:
		t.Fatalf("%s: enqueue with a held unique key: %v", holder.Queue, err)
	case info.EnqueuedAt.UnixMilli() <= holder.ProcessAt.UnixMilli():
		t.Errorf("%s: enqueue with unique key %s at %v went in, before its holder was due at %v: want ErrConflict",
			holder.Queue, uk, info.EnqueuedAt, holder.ProcessAt)
	default:
		t.Logf("%s: unique key %s free again: the enqueue came %s after its holder was due", holder.Queue, uk, info.EnqueuedAt.Sub(holder.ProcessAt))
	}
	return info
}

// clcCheckRetained checks that every queue's perQueue "retain-N" tasks,
// retained clcRetention after completing, are readable once completed,
// result included. The janitors delete them when their retention ends, so
// it looks at all of them at once, again and again, until each was seen
// completed. One that is gone counts as unseen if it was last known
// unfinished (at its enqueue or at a look) clcRetention or more before the
// look (its retention may have ended since), and as an error otherwise. At
// least one must be seen.
func clcCheckRetained(t *testing.T, c *Client, rdb redis.Cmdable, wave map[string]clcBatch, perQueue int) {
	t.Helper()
	unfinished := map[string]time.Time{} // "queue/id" -> server time it was last known unfinished
	for q, b := range wave {
		for i := 0; i < perQueue; i++ {
			id := fmt.Sprintf("retain-%d", i)
			info := b.info(id, "")
			if info == nil {
				t.Fatalf("no enqueue reply for %s/%s", q, id)
			}
			unfinished[q+"/"+id] = info.EnqueuedAt
		}
	}
	seen, unseen := 0, 0
	waitFor(t, hangGuard, "the retained tasks to complete", func() bool {
		passStart := serverNow(t, rdb)
		states, errs := clcGetTasks(c, unfinished)
		passEnd := serverNow(t, rdb)
		for key, before := range unfinished {
			ts, err := states[key], errs[key]
			switch {
			case errors.Is(err, ErrNotFound) && passEnd.Sub(before) >= clcRetention:
				unseen++
				delete(unfinished, key)
			case err != nil:
				t.Fatalf("GetTask(%s) of a retained task, last known unfinished %s before: %v", key, passEnd.Sub(before), err)
			case ts.State != "completed":
				unfinished[key] = passStart
			default:
				seen++
				delete(unfinished, key)
				q, id, _ := strings.Cut(key, "/")
				want := "result of " + key
				if string(ts.Result) != want || string(ts.Payload) != q+"/retain/"+strings.TrimPrefix(id, "retain-") ||
					ts.Retention != clcRetention || ts.StateAt.Before(ts.EnqueuedAt) {
					t.Errorf("%s: %+v, want result %q", key, ts, want)
				}
			}
		}
		return len(unfinished) == 0
	})
	t.Logf("retained tasks read once completed: %d; gone before a look (retention over): %d", seen, unseen)
	if seen == 0 {
		t.Errorf("no retained task was seen completed")
	}
}

// clcGetTasks reads every task of keys ("queue/id") at once, one goroutine
// per task.
func clcGetTasks(c *Client, keys map[string]time.Time) (map[string]*TaskState, map[string]error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	states, errs := map[string]*TaskState{}, map[string]error{}
	for key := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, id, _ := strings.Cut(key, "/")
			ts, err := c.GetTask(context.Background(), q, id)
			mu.Lock()
			states[key], errs[key] = ts, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return states, errs
}

// clcWait polls cond every 50ms until it holds or timeout (a hang guard)
// passes.
func clcWait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// clcDumpMasters dumps every key of every master (SCAN on each through
// ForEachMaster) into one snapshot, failing on a key seen on two masters.
func clcDumpMasters(t *testing.T, rdb *redis.ClusterClient) keyspace.Snapshot {
	t.Helper()
	snap, _ := clcDumpPerMaster(t, rdb)
	all := keyspace.Snapshot{}
	for addr, s := range snap {
		for k, v := range s {
			if _, dup := all[k]; dup {
				t.Errorf("key %q found on two masters (one is %s)", k, addr)
			}
			all[k] = v
		}
	}
	return all
}

// clcDumpPerMaster dumps each master's keys and reads its DBSIZE.
func clcDumpPerMaster(t *testing.T, rdb *redis.ClusterClient) (map[string]keyspace.Snapshot, map[string]int64) {
	t.Helper()
	var mu sync.Mutex
	snaps, sizes := map[string]keyspace.Snapshot{}, map[string]int64{}
	err := rdb.ForEachMaster(context.Background(), func(ctx context.Context, node *redis.Client) error {
		s, err := keyspace.Dump(ctx, node, "*")
		if err != nil {
			return err
		}
		n, err := node.DBSize(ctx).Result()
		if err != nil {
			return err
		}
		mu.Lock()
		snaps[node.Options().Addr], sizes[node.Options().Addr] = s, n
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatalf("dumping the masters: %v", err)
	}
	return snaps, sizes
}

// clcCheckResidue checks, master by master, that every key belongs to one
// of the queues and to the slot the master serves, and that each queue
// holds only meta and stats (plus at most one wake token with a TTL) and,
// when it has archived tasks, the archive: archived, errors and tasks, with
// the same ids in all three.
func clcCheckResidue(t *testing.T, cl *redistest.Cluster, rdb *redis.ClusterClient, all keyspace.Snapshot, queues []string, owner map[string]string) {
	t.Helper()
	snaps, sizes := clcDumpPerMaster(t, rdb)
	nodes := cl.Nodes()
	queueOf := map[string]string{} // key prefix -> queue
	for _, q := range queues {
		queueOf[keys.Prefix+"{"+q+"}:"] = q
	}
	wantPerMaster := map[string][]string{}
	for _, q := range queues {
		qk := testQueueKeys(t, q)
		want := []string{qk.Key("meta"), qk.Key("stats")}
		if len(all[qk.Key("archived")].ZSet) > 0 {
			want = append(want, qk.Key("archived"), qk.Key("errors"), qk.Key("tasks"))
			var ids []string
			for _, m := range all[qk.Key("archived")].ZSet {
				ids = append(ids, m.Member)
			}
			sort.Strings(ids)
			for _, role := range []string{"errors", "tasks"} {
				var fields []string
				for f := range all[qk.Key(role)].Hash {
					fields = append(fields, f)
				}
				sort.Strings(fields)
				if diff := cmp.Diff(ids, fields); diff != "" {
					t.Errorf("queue %s: %s fields differ from the archive (-archived +%s):\n%s", q, role, role, diff)
				}
			}
		}
		wantPerMaster[owner[q]] = append(wantPerMaster[owner[q]], want...)
	}
	counts := map[string]int{}
	for addr, snap := range snaps {
		var got []string
		for k, v := range snap {
			slot := redistest.KeySlot(k)
			if m := clcMasterOf(nodes, slot); m != addr {
				t.Errorf("key %q (slot %d) is on %s, but %s serves that slot", k, slot, addr, m)
			}
			q := ""
			for p, name := range queueOf {
				if strings.HasPrefix(k, p) {
					q = name
				}
			}
			if q == "" {
				t.Errorf("master %s holds key %q of no queue of this test", addr, k)
				continue
			}
			if strings.HasSuffix(k, "}:wake") {
				if !v.TTL || len(v.List) > 1 {
					t.Errorf("wake list %q: %+v, want at most one token, with a TTL", k, v)
				}
				continue
			}
			if v.TTL {
				t.Errorf("key %q has a TTL: only wake lists may", k)
			}
			got = append(got, k)
		}
		counts[addr] = len(snap)
		if int64(len(snap)) != sizes[addr] {
			t.Errorf("master %s: DBSIZE %d, but SCAN found %d keys", addr, sizes[addr], len(snap))
		}
		want := wantPerMaster[addr]
		sort.Strings(got)
		sort.Strings(want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("master %s: keys left (-want +got):\n%s", addr, diff)
		}
	}
	for m := range wantPerMaster {
		if _, ok := snaps[m]; !ok {
			t.Errorf("master %s of some queues was not scanned; scanned %v", m, counts)
		}
	}
	t.Logf("keys left per master (wake lists included): %v", counts)
}
