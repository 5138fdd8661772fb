package sdk

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// waiter runs an idle worker's blocking waits (BLPOP) on its queues' wake
// lists; idle (fetch.go) starts them and waits for what they report.
//
// Where the waits run. Every BLPOP goes through the worker's own client,
// the one the user passed, never through a private copy of it, so that
// whatever that client does about a topology change reaches the blocked
// connection as well:
//
//   - A Sentinel client (redis.NewFailoverClient) closes every connection of
//     its pool that is not to the new master, idle or in use, as soon as it
//     learns of a new master: from +switch-master on the sentinel it
//     subscribes to, or from a dial that finds a new master. The BLPOP fails
//     at once, the worker looks again (dequeue, on the new master) and
//     blocks there. A copy of the client's options would keep its Dialer
//     but not this: its BLPOP would stay on the old master until the
//     sentinels demote it, about 8 s later, or for ever if a partition keeps
//     them from it, and only MaxIdleWait would end it. Subscribing the
//     waiter to +switch-master ourselves is not possible for any client the
//     user may pass: a *redis.Client does not tell its sentinels' addresses.
//     The worker never learns of a new master later than its own client,
//     which it needs anyway to dequeue there.
//   - A cluster client: the server itself ends a BLPOP with an error when
//     its node is turned into a replica (UNBLOCKED), the slot moves away
//     (MOVED) or the cluster is down (CLUSTERDOWN); the worker looks again,
//     and the client follows MOVED to the slot's new owner. (A cluster
//     client from NewFailoverClusterClient, Sentinel behind a ClusterClient,
//     only reloads its slot map on +switch-master and closes nothing: a
//     wait stays on the old master until the sentinels demote it. Give a
//     worker a NewFailoverClient instead.)
//   - A Ring: each queue's wait goes to the shard the ring maps the queue's
//     hash tag to. A Ring has no failover: a shard that dies fails the wait
//     at once, and the next wait goes wherever the ring then maps the queue
//     (a stand-in shard, which does not have the queue's data). When the
//     shard comes back, a wait on the stand-in is not moved back; it ends by
//     a token there or by its timeout (at most MaxIdleWait).
//   - A plain client: its one server.
//
// The BLPOP is sent as the typed command, so that go-redis reads its reply
// with the BLPOP's own timeout (plus 10 s) instead of the client's
// ReadTimeout; the typed command takes whole seconds, so waits are rounded
// up to a second (a wait that outlives its idle spell is harmless, see
// start). While idle, the worker holds one connection of the client's pool
// per wait group: one on a plain or Sentinel client, one per queue
// otherwise.
//
// Interrupting at shutdown. A BLPOP on a pooled connection of the user's
// client cannot be cut by closing a private client. Instead every BLPOP
// also names the worker's own list, wake:<worker id>, in the group's first
// queue (so in the same slot, reached through the same routing), and stop
// pushes to it: the BLPOP returns at once on whatever node it blocks. This
// needs only LPUSH, PEXPIRE and DEL on luaq:* keys, which the README's ACL
// grants; CLIENT UNBLOCK would need a dangerous admin command and each
// connection's CLIENT ID. The list lives 60 s at most and is deleted once
// the waits have ended.
type waiter struct {
	rdb    redis.UniversalClient
	groups []waitGroup
	log    *slog.Logger
	woke   chan<- struct{} // a wait got a token or failed: look again
	ended  chan<- struct{} // a wait timed out without a token

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc

	mu      sync.Mutex
	busy    []bool // a BLPOP of the group is running (or about to)
	stopped bool
	wg      sync.WaitGroup // one per running BLPOP
}

// waitGroup is the keys one BLPOP blocks on.
type waitGroup struct {
	keys []string // the wake keys, then own
	own  string   // the worker's own list in the group's slot
}

// waitErrorPause is how long a wait that failed (not timed out) holds off
// before it ends the idle spell, so that a BLPOP failing at once every time
// cannot make the worker spin.
const waitErrorPause = 100 * time.Millisecond

// ownListTTL bounds the life of a pushed own list, should the worker die
// before deleting it.
const ownListTTL = 60 * time.Second

// newWaiter prepares the waits of a worker with id over queues: one BLPOP
// over all of them on a plain or Sentinel client (one server at a time),
// one per queue otherwise (their keys may live on different nodes). woke
// and ended receive the waits' outcomes (see idle).
func newWaiter(rdb redis.UniversalClient, queues []*workerQueue, id string, log *slog.Logger, woke, ended chan<- struct{}) *waiter {
	wt := &waiter{rdb: rdb, log: log, woke: woke, ended: ended}
	wt.ctx, wt.cancel = context.WithCancel(context.Background())
	if _, single := rdb.(*redis.Client); single {
		g := waitGroup{own: queues[0].keys.Key("wake:" + id)}
		for _, q := range queues {
			g.keys = append(g.keys, q.keys.Key("wake"))
		}
		g.keys = append(g.keys, g.own)
		wt.groups = []waitGroup{g}
	} else {
		for _, q := range queues {
			own := q.keys.Key("wake:" + id)
			wt.groups = append(wt.groups, waitGroup{keys: []string{q.keys.Key("wake"), own}, own: own})
		}
	}
	wt.busy = make([]bool, len(wt.groups))
	return wt
}

// start starts a BLPOP for each wait group that has none running. A BLPOP
// that outlives its idle spell ends by its own timeout and, if it got a
// token, makes the next idle spell end at once; if it timed out, it tells
// the idle spell then running (ended) to start a new one; if it failed, it
// ends the idle spell (after waitErrorPause) like a token.
func (wt *waiter) start(wait time.Duration) {
	timeout := time.Duration(math.Ceil(max(wait, time.Second).Seconds())) * time.Second
	for i := range wt.groups {
		wt.mu.Lock()
		if wt.busy[i] || wt.stopped {
			wt.mu.Unlock()
			continue
		}
		wt.busy[i] = true
		wt.wg.Add(1)
		wt.mu.Unlock()
		go wt.wait(i, timeout, wait)
	}
}

// wait runs one BLPOP of group i and reports its outcome.
func (wt *waiter) wait(i int, timeout, wait time.Duration) {
	defer wt.wg.Done()
	// The context only matters to a client with ContextTimeoutEnabled; its
	// deadline lies past go-redis's own read deadline (timeout + 10 s).
	ctx, cancel := context.WithTimeout(wt.ctx, timeout+15*time.Second)
	err := wt.rdb.BLPop(ctx, timeout, wt.groups[i].keys...).Err()
	cancel()
	wt.mu.Lock()
	wt.busy[i] = false
	wt.mu.Unlock()
	ch := wt.woke
	if errors.Is(err, redis.Nil) {
		ch = wt.ended
	} else if err != nil {
		// The wait ended without a verdict: the client closed the
		// connection (a Sentinel client that moved to a new master), a
		// connection error, or the server unblocked it ("UNBLOCKED ...
		// master -> replica?" when a failover demotes the node). A token
		// may have been lost with it, and no BLPOP now watches these
		// lists: end the idle spell, after a short pause so a wait that
		// keeps failing cannot spin, and look again (dequeue, then new
		// waits wherever the client now routes them).
		if !wt.pause(min(waitErrorPause, wait)) {
			return
		}
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pause waits d or until stop; it reports false on stop.
func (wt *waiter) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-wt.ctx.Done():
		return false
	}
}

// stop starts no more waits, ends the running ones by pushing to the
// worker's own lists, and returns once they have ended and the lists are
// gone. If the push fails (the server is unreachable), it cannot end them:
// it returns without waiting, and they end by their connection failing or
// their timeout, touching nothing but the channels. stop may be called
// more than once.
func (wt *waiter) stop() {
	wt.mu.Lock()
	if wt.stopped {
		wt.mu.Unlock()
		return
	}
	wt.stopped = true
	var own []string
	for i, b := range wt.busy {
		if b {
			own = append(own, wt.groups[i].own)
		}
	}
	wt.mu.Unlock()
	err := wt.interrupt(own)
	wt.cancel()
	if err != nil {
		wt.log.Warn("luaq: could not interrupt the blocking waits; they end by their timeout", "err", err)
		return
	}
	wt.wg.Wait()
	wt.clear(own)
}

// interrupt pushes to the own lists, with a TTL in case the worker dies
// before clear.
func (wt *waiter) interrupt(own []string) error {
	if len(own) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmds, err := wt.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range own {
			p.LPush(ctx, k, "stop")
			p.PExpire(ctx, k, ownListTTL)
		}
		return nil
	})
	for _, c := range cmds {
		if c.Err() != nil {
			return c.Err()
		}
	}
	return err
}

// clear deletes the own lists: a push that met no BLPOP (it had just ended)
// left its token. One DEL per key, as they may be in different slots.
func (wt *waiter) clear(own []string) {
	if len(own) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := wt.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range own {
			p.Del(ctx, k)
		}
		return nil
	})
	if err != nil {
		wt.log.Warn("luaq: could not delete the worker's own wake lists; they expire by themselves", "err", err)
	}
}

// setupWaiters prepares the worker's waiter (see waiter).
func (w *Worker) setupWaiters() {
	w.waiter = newWaiter(w.rdb, w.queues, w.id, w.log, w.wakeCh, w.waitEnded)
}

// startWaits starts the blocking waits of an idle spell of at most wait.
func (w *Worker) startWaits(wait time.Duration) { w.waiter.start(wait) }
