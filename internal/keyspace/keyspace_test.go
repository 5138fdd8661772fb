package keyspace

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func seed(t *testing.T, m *miniredis.Miniredis) {
	t.Helper()
	m.Set("luaq:{q}:s", "hello")
	m.HSet("luaq:{q}:h", "a", "1", "b", "")
	m.RPush("luaq:{q}:l", "x")
	m.RPush("luaq:{q}:l", "y")
	m.RPush("luaq:{q}:l", "x")
	m.SAdd("luaq:{q}:set", "c", "a", "b")
	m.ZAdd("luaq:{q}:z", 1e10, "big")
	m.ZAdd("luaq:{q}:z", 1700000000000, "ms")
	m.ZAdd("luaq:{q}:z", 0.1, "tenth")
	m.ZAdd("luaq:{q}:z", 0.1, "atenth") // same score: member order breaks the tie
	m.Set("luaq:{q}:ttl", "v")
	m.SetTTL("luaq:{q}:ttl", time.Minute)
	m.Set("other:key", "not matched")
	if _, err := m.XAdd("luaq:{q}:stream", "1-1", []string{"f", "v"}); err != nil {
		t.Fatal(err)
	}
}

func want() Snapshot {
	return Snapshot{
		"luaq:{q}:s":   {Type: TypeString, String: "hello"},
		"luaq:{q}:h":   {Type: TypeHash, Hash: map[string]string{"a": "1", "b": ""}},
		"luaq:{q}:l":   {Type: TypeList, List: []string{"x", "y", "x"}},
		"luaq:{q}:set": {Type: TypeSet, Set: []string{"a", "b", "c"}},
		"luaq:{q}:z": {Type: TypeZSet, ZSet: []Member{
			{"atenth", 0.1}, {"tenth", 0.1}, {"big", 1e10}, {"ms", 1700000000000},
		}},
		"luaq:{q}:ttl":    {Type: TypeString, String: "v", TTL: true},
		"luaq:{q}:stream": {Type: "stream"},
	}
}

func TestDump(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(map[int]string{2: "RESP2", 3: "RESP3"}[proto], func(t *testing.T) {
			m := miniredis.RunT(t)
			seed(t, m)
			c := redis.NewClient(&redis.Options{Addr: m.Addr(), Protocol: proto})
			t.Cleanup(func() { _ = c.Close() })
			ctx := context.Background()

			got, err := Dump(ctx, c, "luaq:*")
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(want(), got); d != "" {
				t.Errorf("Dump(luaq:*) mismatch (-want +got):\n%s", d)
			}

			all, err := Dump(ctx, c, "")
			if err != nil {
				t.Fatal(err)
			}
			if len(all) != len(want())+1 {
				t.Errorf("Dump(\"\") has %d keys %v, want %d", len(all), all.Keys(), len(want())+1)
			}
			if v := all["other:key"]; v.String != "not matched" {
				t.Errorf("other:key = %+v", v)
			}
		})
	}
}

func TestDumpDetectsDifferences(t *testing.T) {
	m := miniredis.RunT(t)
	seed(t, m)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()

	before, err := Dump(ctx, c, "luaq:*")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		mutate func()
	}{
		{"score", func() { m.ZAdd("luaq:{q}:z", 2e10, "big") }},
		{"ttl removed", func() { c.Persist(ctx, "luaq:{q}:ttl") }},
		{"ttl added", func() { m.SetTTL("luaq:{q}:s", time.Hour) }},
		{"list order", func() { m.Lpush("luaq:{q}:l", "z") }},
		{"hash field", func() { m.HSet("luaq:{q}:h", "b", "2") }},
		{"key deleted", func() { m.Del("luaq:{q}:set") }},
		{"type changed", func() { m.Del("luaq:{q}:s"); m.Lpush("luaq:{q}:s", "hello") }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.mutate()
			after, err := Dump(ctx, c, "luaq:*")
			if err != nil {
				t.Fatal(err)
			}
			if cmp.Equal(before, after) {
				t.Errorf("snapshot did not change after %s", tc.name)
			}
			before = after
		})
	}
}

func TestDumpExpiredKeyIsGone(t *testing.T) {
	m := miniredis.RunT(t)
	m.Set("luaq:a", "1")
	m.SetTTL("luaq:a", time.Second)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	m.FastForward(2 * time.Second)
	got, err := Dump(context.Background(), c, "luaq:*")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Errorf("Dump after expiry = %v, want empty", got)
	}
}

func TestDumpManyKeys(t *testing.T) {
	// More keys than one SCAN page.
	m := miniredis.RunT(t)
	for i := 0; i < 2500; i++ {
		m.Set("luaq:k:"+string(rune('a'+i%26))+":"+time.Duration(i).String(), "v")
	}
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	got, err := Dump(context.Background(), c, "luaq:*")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2500 {
		t.Errorf("Dump returned %d keys, want 2500", len(got))
	}
}
