package sdk

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/loader"
	"github.com/redis/go-redis/v9"
)

// cleanReplyLog is a go-redis hook that keeps the reply of every clean call
// (reclaimed, expired, retention_deleted, unique_freed, stats_trimmed, more).
type cleanReplyLog struct {
	sha string

	mu      sync.Mutex
	replies [][6]int64
}

func (c *cleanReplyLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *cleanReplyLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		c.record(cmd)
		return err
	}
}

func (c *cleanReplyLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			c.record(cmd)
		}
		return err
	}
}

func (c *cleanReplyLog) record(cmd redis.Cmder) {
	args := cmd.Args()
	if cmd.Name() != "evalsha" || len(args) < 2 || args[1] != c.sha {
		return
	}
	v, err := cmd.(*redis.Cmd).Result()
	if err != nil {
		return
	}
	arr, err := loader.Slice(v)
	if err != nil || len(arr) != 6 {
		return
	}
	var r [6]int64
	for i := range r {
		r[i], _ = loader.Int(arr[i])
	}
	c.mu.Lock()
	c.replies = append(c.replies, r)
	c.mu.Unlock()
}

// take returns the replies recorded since the last take.
func (c *cleanReplyLog) take() [][6]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.replies
	c.replies = nil
	return out
}

// enqueueBacklog enqueues n pending tasks (no payload, generated ids) to
// queue through the enqueue script, MaxBatch per call and 20 calls per
// pipeline; the i-th task (from 0) gets expire_in_ms expireIn when
// expiring(i), which must depend on i % MaxBatch only (the arguments of a
// batch are built once and reused). It returns the ids of the expiring tasks.
func enqueueBacklog(t *testing.T, c *Client, queue string, n int, expireIn time.Duration, expiring func(int) bool) map[string]bool {
	t.Helper()
	ctx := context.Background()
	q := testQueueKeys(t, queue)
	if n%MaxBatch != 0 {
		t.Fatalf("backlog %d is not a whole number of batches", n)
	}
	args := []string{strconv.Itoa(MaxBatch)}
	for i := 0; i < MaxBatch; i++ {
		exp := "0"
		if expiring(i) {
			exp = strconv.FormatInt(ceilMs(expireIn), 10)
		}
		//                  id  type   payload max_retry timeout deadline at  in   exp_at exp_in arch retention unique ttl
		args = append(args, "", "job", "", "3", "0", "0", "0", "0", "0", exp, "0", "0", "", "0")
	}
	ids := map[string]bool{}
	for start := 0; start < n; start += 20 * MaxBatch {
		var calls []loader.Call
		for b := start; b < min(start+20*MaxBatch, n); b += MaxBatch {
			calls = append(calls, loader.Call{Queue: q, Script: "enqueue", Args: args})
		}
		for _, res := range c.loader.RunPipelined(ctx, calls) {
			reply, err := loader.Slice(res.Value)
			if res.Err != nil || err != nil || len(reply) != 1+3*MaxBatch {
				t.Fatalf("enqueue: %v %v (%d values)", res.Err, err, len(reply))
			}
			for i := 0; i < MaxBatch; i++ {
				if expiring(i) {
					id, _ := loader.String(reply[1+3*i])
					ids[id] = true
				}
			}
		}
	}
	return ids
}

// TestJanitorLargeBacklog runs the janitor over a queue with 200,000 pending
// tasks, 2,000 of them expiring (spread over the whole list), plus one
// expiring scheduled task enqueued after all of them, so that it comes last
// in the expiry index. The list is longer than clean's scan budget (100,000
// elements), so no expired id can leave it: each is expired all the same
// and its entry left stale. Then:
//   - the first round expires every one of the 2,001 (data gone, counted
//     once), with script calls bounded by the work: limit 667, so 3 clean
//     calls (2,001 = 3 x 667: the third empties the index exactly and must
//     say done), each saying "more" only when the next one expires
//     something;
//   - the next round makes one clean call, which finds nothing;
//   - QueueInfo counts the 198,000 pending tasks, not the stale entries;
//   - every task left has one entry in pending, every expired one exactly
//     the entries the stale hash counts;
//   - a lease call drops the stale entries it pops, uncounted.
func TestJanitorLargeBacklog(t *testing.T) {
	const (
		queue   = "backlog"
		backlog = 200000
		limit   = 667
	)
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	began := time.Now()
	// In every batch of 1000, tasks 99, 199, ... 999 expire: 2,000 of them.
	expiring := enqueueBacklog(t, c, queue, backlog, 50*time.Millisecond, func(i int) bool { return i%100 == 99 })
	sched, err := c.Enqueue(ctx, queue, "job", nil, ProcessIn(20*time.Millisecond), ExpireIn(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	expiring[sched.ID] = true
	t.Logf("enqueued %d tasks in %s", backlog+1, time.Since(began).Round(time.Millisecond))
	waitServerPast(t, rdb, sched.EnqueuedAt.Add(50*time.Millisecond))

	jrdb := srv.Client(t)
	spy := newScriptSpy(t, jrdb)
	j := newTestJanitor(t, jrdb, JanitorConfig{Queues: []string{queue}, Limit: limit})
	cs, err := j.loader.Bundle().Script("clean")
	if err != nil {
		t.Fatal(err)
	}
	replies := &cleanReplyLog{sha: cs.SHA}
	jrdb.AddHook(replies)

	// Round 1 expires all 2,001; round 2 finds nothing.
	for round, want := range []struct{ expired, cleans int }{{2001, 2001 / limit}, {0, 1}} {
		before := spy.total()
		start := time.Now()
		rep := cleanOnce(t, j)
		calls, got := spy.total()-before, replies.take()
		t.Logf("round %d: %d script calls (%d clean) in %s, %+v", round+1, calls, len(got), time.Since(start).Round(time.Millisecond), rep)
		if rep.Expired != int64(want.expired) || len(got) != want.cleans {
			t.Errorf("round %d: expired %d in %d clean calls, want %d in %d", round+1, rep.Expired, len(got), want.expired, want.cleans)
		}
		// acquire, prune-workers, release, and a lock renewal between cleans.
		if max := 3 + 2*want.cleans - 1; calls > max {
			t.Errorf("round %d: %d script calls, want at most %d", round+1, calls, max)
		}
		checkMoreMeansProgress(t, got)
	}
	left := backlog + 1 - len(expiring)
	checkBacklogExpired(t, rdb, c, queue, expiring, left)
	checkNoTaskLost(t, rdb, queue, expiring, left)
	checkLeaseDropsStale(t, rdb, c, queue, expiring, len(expiring)-1)
}

// checkMoreMeansProgress checks a round's clean replies: every one that
// says more is followed by one that handled something, and the last says
// done.
func checkMoreMeansProgress(t *testing.T, replies [][6]int64) {
	t.Helper()
	for i, r := range replies {
		last := i == len(replies)-1
		if r[5] == 1 && last {
			t.Errorf("clean call %d of %d says more, yet the round ended", i+1, len(replies))
		}
		if r[5] == 0 && !last {
			t.Errorf("clean call %d of %d says done, yet the janitor called again", i+1, len(replies))
		}
		if r[5] == 1 && !last {
			next := replies[i+1]
			if next[0]+next[1]+next[2]+next[3]+next[4] == 0 {
				t.Errorf("clean call %d said more, but call %d handled nothing: %v", i+1, i+2, next)
				return
			}
		}
	}
}

// checkBacklogExpired checks that every expiring task of queue is gone
// (record, expiry entry), was counted once, and that QueueInfo counts the
// pending tasks left, not the stale entries.
func checkBacklogExpired(t *testing.T, rdb *redis.Client, c *Client, queue string, expiring map[string]bool, left int) {
	t.Helper()
	ctx := context.Background()
	q := testQueueKeys(t, queue)
	ids := make([]string, 0, len(expiring))
	for id := range expiring {
		ids = append(ids, id)
	}
	for i := 0; i < len(ids); i += 1000 {
		recs, err := rdb.HMGet(ctx, q.Key("tasks"), ids[i:min(i+1000, len(ids))]...).Result()
		if err != nil {
			t.Fatal(err)
		}
		for k, r := range recs {
			if r != nil {
				t.Fatalf("expired task %s still has its record", ids[i+k])
			}
		}
	}
	if n := rdb.HLen(ctx, q.Key("tasks")).Val(); n != int64(left) {
		t.Errorf("%d records left, want %d", n, left)
	}
	if n := rdb.Exists(ctx, q.Key("expiry")).Val(); n != 0 {
		t.Errorf("the expiry index is still there: %d entries", rdb.ZCard(ctx, q.Key("expiry")).Val())
	}
	qi, err := c.QueueInfo(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	if want := (QueueInfo{Queue: queue, Pending: int64(left), Expired: int64(len(expiring))}); *qi != want {
		t.Errorf("QueueInfo %+v, want %+v", *qi, want)
	}
	stale := len(expiring) - 1 // every pending one; the scheduled one left no entry
	if got := rdb.HGet(ctx, q.Key("meta"), "stale").Val(); got != strconv.Itoa(stale) {
		t.Errorf("meta stale = %q, want %d", got, stale)
	}
	if n := rdb.LLen(ctx, q.Key("pending")).Val(); n != int64(left+stale) {
		t.Errorf("pending list holds %d entries, want %d tasks + %d stale", n, left, stale)
	}
}

// checkNoTaskLost reads the whole pending list of queue and checks the
// stale-entry invariant for every id: each of the left tasks still has a
// record and exactly one entry, and each expired id exactly one entry,
// which the stale hash counts.
func checkNoTaskLost(t *testing.T, rdb *redis.Client, queue string, expiring map[string]bool, left int) {
	t.Helper()
	ctx := context.Background()
	q := testQueueKeys(t, queue)
	entries := map[string]int{}
	for i := int64(0); ; i += 10000 {
		chunk, err := rdb.LRange(ctx, q.Key("pending"), i, i+9999).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range chunk {
			entries[id]++
		}
		if len(chunk) < 10000 {
			break
		}
	}
	records, err := rdb.HKeys(ctx, q.Key("tasks")).Result()
	if err != nil {
		t.Fatal(err)
	}
	stale, err := rdb.HGetAll(ctx, q.Key("stale")).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range records {
		if entries[id] != 1 || stale[id] != "" {
			t.Fatalf("pending task %s has %d entries in pending and stale count %q, want 1 entry and none", id, entries[id], stale[id])
		}
		delete(entries, id)
	}
	for id, n := range entries {
		if !expiring[id] || stale[id] != strconv.Itoa(n) {
			t.Fatalf("pending holds %d entries of %s (expiring: %v), its stale count is %q", n, id, expiring[id], stale[id])
		}
	}
	if len(records) != left || len(entries) != len(stale) {
		t.Errorf("%d records and %d stale ids in pending (%d counted), want %d records and every stale id counted", len(records), len(entries), len(stale), left)
	}
}

// checkLeaseDropsStale leases the first 1000 tasks of queue: the first
// 1000 entries hold 1000 - 990 = 10 stale ones (every 100th), dropped
// uncounted, and the call pops on for their places. The meta field 'stale'
// goes down by 10.
func checkLeaseDropsStale(t *testing.T, rdb *redis.Client, c *Client, queue string, expiring map[string]bool, stale int) {
	t.Helper()
	seen := map[string]bool{}
	for _, task := range leaseDirect(t, c.loader, queue, 1000, time.Hour) {
		if seen[task.ID] || expiring[task.ID] {
			t.Fatalf("leased %s twice or after it expired", task.ID)
		}
		seen[task.ID] = true
	}
	if len(seen) != 1000 {
		t.Errorf("leased %d tasks, want 1000", len(seen))
	}
	q := testQueueKeys(t, queue)
	if got := rdb.HGet(context.Background(), q.Key("meta"), "stale").Val(); got != strconv.Itoa(stale-10) {
		t.Errorf("meta stale = %q after the lease, want %d", got, stale-10)
	}
	qi, err := c.QueueInfo(context.Background(), queue)
	if err != nil {
		t.Fatal(err)
	}
	if qi.Active != 1000 || qi.Expired != int64(len(expiring)) {
		t.Errorf("QueueInfo %+v: want 1000 active and the expired count unchanged", *qi)
	}
}
