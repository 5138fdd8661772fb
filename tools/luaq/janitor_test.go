package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

func TestJanitorOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	// A lapsed worker registration for the janitor to remove.
	if err := rdb.ZAdd(ctx, "luaq:{jq}:workers", redisZ(1, "ghost")).Err(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run([]string{"janitor", "--redis", srv.URL(), "--queues", "jq", "--once"}, &out, &errOut)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "workers_pruned=1") {
		t.Errorf("output %q does not report the pruned worker", out.String())
	}
	if n, _ := rdb.Exists(ctx, "luaq:{jq}:workers", "luaq:{jq}:lock").Result(); n != 0 {
		t.Errorf("%d of workers/lock keys left after the round", n)
	}
}

func TestJanitorFlags(t *testing.T) {
	for _, args := range [][]string{
		{"janitor"},
		{"janitor", "--redis", "redis://127.0.0.1:1"},
		{"janitor", "--queues", "a"},
		{"janitor", "--redis", "redis://127.0.0.1:1", "--queues", "a", "extra"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func redisZ(score float64, member string) redis.Z { return redis.Z{Score: score, Member: member} }
