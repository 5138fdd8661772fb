package sdk

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// waitKind is one kind of client a worker may be given, on real servers.
type waitKind struct {
	name string
	// setup returns the worker's client, a producer's client, the data
	// nodes (masters or shards) to inspect, and where a queue's keys live.
	setup func(t *testing.T) (worker, producer redis.UniversalClient, nodes []*redis.Client, place func(queue string) string)
}

func waitKinds() []waitKind {
	single := func(addr string) func(string) string { return func(string) string { return addr } }
	return []waitKind{
		{"plain client", func(t *testing.T) (redis.UniversalClient, redis.UniversalClient, []*redis.Client, func(string) string) {
			srv := redistest.Start(t)
			return srv.Client(t), srv.Client(t), []*redis.Client{srv.Client(t)}, single(srv.Addr())
		}},
		{"Sentinel client", func(t *testing.T) (redis.UniversalClient, redis.UniversalClient, []*redis.Client, func(string) string) {
			s := redistest.StartSentinel(t)
			master := redis.NewClient(&redis.Options{Addr: s.Addrs()[0]})
			t.Cleanup(func() { _ = master.Close() })
			return s.FailoverClient(t, nil), s.FailoverClient(t, nil), []*redis.Client{master}, single(s.Addrs()[0])
		}},
		{"cluster client", func(t *testing.T) (redis.UniversalClient, redis.UniversalClient, []*redis.Client, func(string) string) {
			cl := redistest.StartCluster(t, 3, 0)
			var nodes []*redis.Client
			for _, a := range cl.Addrs() {
				c := redis.NewClient(&redis.Options{Addr: a})
				t.Cleanup(func() { _ = c.Close() })
				nodes = append(nodes, c)
			}
			place := func(q string) string { return clcMasterOf(cl.Nodes(), redistest.KeySlot(keys.Prefix+"{"+q+"}:wake")) }
			return cl.Client(t), cl.Client(t), nodes, place
		}},
		{"ring", func(t *testing.T) (redis.UniversalClient, redis.UniversalClient, []*redis.Client, func(string) string) {
			a, b := redistest.Start(t), redistest.Start(t)
			ring := func() *redis.Ring {
				r := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr(), "b": b.Addr()}})
				t.Cleanup(func() { _ = r.Close() })
				return r
			}
			w := ring()
			place := func(q string) string {
				c, err := w.GetShardClientForKey(keys.Prefix + "{" + q + "}:wake")
				if err != nil {
					t.Fatalf("ring shard for queue %s: %v", q, err)
				}
				return c.Options().Addr
			}
			return w, ring(), []*redis.Client{a.Client(t), b.Client(t)}, place
		}},
	}
}

// blpopCounter counts the BLPOPs a client sends.
type blpopCounter struct{ n atomic.Int64 }

func (h *blpopCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *blpopCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "blpop" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *blpopCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// TestIdleWaitOnEveryClientKind runs an idle worker over two queues (on two
// nodes where the client has several) through each kind of client: while
// idle it sends no BLPOP beyond the ones it blocks in (no polling); an
// enqueue on either queue wakes it; Shutdown ends its blocked waits at once
// (MaxIdleWait is a minute, so a wait it failed to end would show), and
// leaves none of the worker's own wake lists behind.
func TestIdleWaitOnEveryClientKind(t *testing.T) {
	const maxIdle = time.Minute
	for _, kind := range waitKinds() {
		t.Run(kind.name, func(t *testing.T) {
			wrdb, prdb, nodes, place := kind.setup(t)
			queues := waitQueuesOnTwoNodes(t, place)
			blpops := &blpopCounter{}
			wrdb.AddHook(blpops)
			w, _ := newTestWorker(t, wrdb, WorkerConfig{Queues: map[string]int{queues[0]: 1, queues[1]: 1}, MaxIdleWait: maxIdle})
			handled := make(chan time.Time, 1)
			w.HandleFunc("job", func(context.Context, *Task) error { handled <- time.Now(); return nil })
			stop := runWorker(t, w)
			c, err := NewClient(prdb)
			if err != nil {
				t.Fatal(err)
			}
			groups := int64(len(w.waiter.groups))
			waitFor(t, 10*time.Second, "the worker to block", func() bool { return blpops.n.Load() >= groups })
			time.Sleep(2 * time.Second)
			if n := blpops.n.Load(); n != groups {
				t.Errorf("an idle worker sent %d BLPOPs in 2s for %d wait groups: it polls", n, groups)
			}
			for _, q := range []string{queues[0], queues[1], queues[0]} {
				sent := time.Now()
				if _, err := c.Enqueue(context.Background(), q, "job", nil); err != nil {
					t.Fatal(err)
				}
				got := recv(t, handled, maxIdle, "an enqueue on "+q+" to wake the idle worker")
				t.Logf("queue %s (on %s): ran %s after the enqueue", q, place(q), got.Sub(sent).Round(time.Millisecond))
				time.Sleep(50 * time.Millisecond) // idle again
			}
			began := time.Now()
			stop()
			if took := time.Since(began); took > maxIdle/2 {
				t.Errorf("Shutdown of an idle worker took %s: it waited for a blocked wait to end by itself", took)
			} else {
				t.Logf("Shutdown of the idle worker took %s", took.Round(time.Millisecond))
			}
			for _, n := range nodes {
				left, err := n.Keys(context.Background(), keys.Prefix+"*:wake:*").Result()
				if err != nil || len(left) != 0 {
					t.Errorf("%s holds the worker's own wake lists after Shutdown: %v (%v)", n.Options().Addr, left, err)
				}
			}
		})
	}
}

// waitQueuesOnTwoNodes returns two queue names whose keys place puts on
// different nodes, or on the one node there is.
func waitQueuesOnTwoNodes(t *testing.T, place func(string) string) [2]string {
	t.Helper()
	first := "wait-0"
	for i := 1; i < 1000; i++ {
		q := fmt.Sprintf("wait-%d", i)
		if place(q) != place(first) {
			return [2]string{first, q}
		}
	}
	return [2]string{first, "wait-1"}
}
