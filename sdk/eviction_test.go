package sdk

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/redistest"
)

func TestEvictionPolicies(t *testing.T) {
	for _, policy := range []string{"noeviction", "allkeys-lru"} {
		t.Run(policy, func(t *testing.T) {
			srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", policy))
			if srv.External() {
				t.Skip("needs a redis-server of its own to set its policy; unset LUAQ_REDIS_URL")
			}
			rdb := srv.Client(t)
			got, err := EvictionPolicies(context.Background(), rdb)
			if err != nil {
				t.Fatal(err)
			}
			want := []NodePolicy{{Addr: rdb.Options().Addr, Policy: policy}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("EvictionPolicies (-want +got):\n%s", diff)
			}
			if got[0].Evicts() != (policy != "noeviction") {
				t.Errorf("Evicts() = %v for %s", got[0].Evicts(), policy)
			}
		})
	}
}

// TestEvictingServerWarnsOrRefuses checks both start paths on an
// allkeys-lru server: a warning once, or a refusal with the option.
func TestEvictingServerWarnsOrRefuses(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"))
	if srv.External() {
		t.Skip("needs a redis-server of its own to set its policy; unset LUAQ_REDIS_URL")
	}
	rdb := srv.Client(t)
	ctx := context.Background()

	logs := &logCapture{}
	c, err := NewClient(rdb, ClientLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.Enqueue(ctx, "q", "t", nil); err != nil {
			t.Fatalf("Enqueue on an evicting server without the requirement: %v", err)
		}
	}
	if n := strings.Count(logs.String(), "maxmemory_policy=allkeys-lru"); n != 1 {
		t.Errorf("the client warned %d times, want once:\n%s", n, logs)
	}

	strict, err := NewClient(rdb, ClientRequireNoEviction(), ClientLogger(logs.logger()))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err = strict.Enqueue(ctx, "q", "t", nil)
		if !errors.Is(err, ErrEvictionPolicy) || !strings.Contains(err.Error(), "allkeys-lru") {
			t.Fatalf("Enqueue with ClientRequireNoEviction: err = %v, want ErrEvictionPolicy naming the policy", err)
		}
	}

	w, wlogs := newTestWorker(t, rdb, WorkerConfig{Queues: map[string]int{"q": 1}})
	stop := runWorker(t, w)
	<-w.ready
	stop()
	if !wlogs.contains("maxmemory_policy=allkeys-lru") {
		t.Errorf("the worker did not warn about the policy:\n%s", wlogs)
	}

	refusing, _ := newTestWorker(t, rdb, WorkerConfig{Queues: map[string]int{"q": 1}, RequireNoEviction: true})
	if err := refusing.Run(ctx); !errors.Is(err, ErrEvictionPolicy) {
		t.Fatalf("Run with RequireNoEviction on allkeys-lru: err = %v, want ErrEvictionPolicy", err)
	}
	if workers, err := c.Workers(ctx, "q", 10); err != nil || len(workers) != 0 {
		t.Errorf("a worker that refused to start is registered: %v, %v", workers, err)
	}
}
