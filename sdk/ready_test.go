package sdk

import (
	"context"
	"errors"
	"testing"

	"github.com/luaq/luaq/internal/redistest"
)

// TestClientLoadAndReady follows Ready through the life of a server's script
// cache: empty, loaded by Load, flushed, reloaded by an ordinary call, and a
// server that is gone.
func TestClientLoadAndReady(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	if srv.External() {
		t.Skip("flushes the script cache and stops the server; unset LUAQ_REDIS_URL")
	}
	rdb := srv.Client(t)
	c, err := NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	flush := func() error { return rdb.ScriptFlush(ctx).Err() }
	enqueue := func() error { _, err := c.Enqueue(ctx, "ready-q", "t", nil); return err }
	steps := []struct {
		name      string
		before    func() error
		wantReady bool
		notLoaded bool // when not ready: the error matches ErrNotLoaded
	}{
		{name: "empty cache", before: flush, notLoaded: true},
		{name: "after Load", before: func() error { return c.Load(ctx) }, wantReady: true},
		{name: "after SCRIPT FLUSH", before: flush, notLoaded: true},
		{name: "a call reloads", before: enqueue, wantReady: true},
		{name: "server stopped", before: func() error { srv.Stop(t); return nil }},
	}
	for _, s := range steps {
		if err := s.before(); err != nil {
			t.Fatalf("%s: setup: %v", s.name, err)
		}
		err := c.Ready(ctx)
		if (err == nil) != s.wantReady {
			t.Fatalf("%s: Ready = %v, want ready %v", s.name, err, s.wantReady)
		}
		if err != nil && errors.Is(err, ErrNotLoaded) != s.notLoaded {
			t.Errorf("%s: Ready = %v; matches ErrNotLoaded = %v, want %v", s.name, err, !s.notLoaded, s.notLoaded)
		}
	}
	if err := c.Load(ctx); err == nil {
		t.Error("Load on a stopped server succeeded")
	}
}

// TestClientLoadRefusesEvictingServer checks that Load and Ready apply the
// client's eviction requirement, as its first call would.
func TestClientLoadRefusesEvictingServer(t *testing.T) {
	srv := redistest.Start(t, redistest.WithArgs("--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"))
	if srv.External() {
		t.Skip("needs a redis-server of its own to set its policy; unset LUAQ_REDIS_URL")
	}
	ctx := context.Background()
	rdb := srv.Client(t)
	logs := &logCapture{}
	for _, tc := range []struct {
		name   string
		opts   []ClientOption
		refuse bool
	}{
		{name: "warn only", opts: []ClientOption{ClientLogger(logs.logger())}},
		{name: "required", opts: []ClientOption{ClientLogger(logs.logger()), ClientRequireNoEviction()}, refuse: true},
	} {
		c, err := NewClient(rdb, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		calls := []struct {
			name string
			call func(context.Context) error
		}{{"Load", c.Load}, {"Ready", c.Ready}} // in order: Ready needs the load
		for _, cl := range calls {
			name, err := cl.name, cl.call(ctx)
			if got := errors.Is(err, ErrEvictionPolicy); got != tc.refuse {
				t.Errorf("%s: %s = %v; refused %v, want %v", tc.name, name, err, got, tc.refuse)
			}
			if !tc.refuse && err != nil {
				t.Errorf("%s: %s = %v, want nil", tc.name, name, err)
			}
		}
	}
}
