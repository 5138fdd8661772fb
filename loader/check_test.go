package loader

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/luaq/luaq/internal/redistest"
)

// TestRealCheck follows Check through a load, a script flush and a server
// that is gone: it must tell each of them apart.
func TestRealCheck(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	ownServer(t, srv)
	client := srv.Client(t)
	l := New(client, bundle(t))
	if err := client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatalf("SCRIPT FLUSH: %v", err)
	}
	steps := []struct {
		name       string
		before     func() error
		notLoaded  bool // want an error matching ErrNotLoaded
		wantErr    bool
		wantInText string
	}{
		{name: "empty cache", before: func() error { return nil }, notLoaded: true, wantErr: true, wantInText: "enqueue"},
		{name: "after Load", before: func() error { return l.Load(ctx) }},
		{name: "after SCRIPT FLUSH", before: func() error { return client.ScriptFlush(ctx).Err() }, notLoaded: true, wantErr: true, wantInText: srv.Addr()},
		{name: "reloaded", before: func() error { return l.Load(ctx) }},
		{name: "server gone", before: func() error { srv.Stop(t); return nil }, wantErr: true, wantInText: "SCRIPT EXISTS"},
	}
	for _, s := range steps {
		if err := s.before(); err != nil {
			t.Fatalf("%s: setup: %v", s.name, err)
		}
		err := l.Check(ctx)
		if (err != nil) != s.wantErr {
			t.Fatalf("%s: Check = %v, want error %v", s.name, err, s.wantErr)
		}
		if err == nil {
			continue
		}
		if errors.Is(err, ErrNotLoaded) != s.notLoaded {
			t.Errorf("%s: Check = %v; matches ErrNotLoaded = %v, want %v", s.name, err, !s.notLoaded, s.notLoaded)
		}
		if !strings.Contains(err.Error(), s.wantInText) {
			t.Errorf("%s: Check = %v, want it to mention %q", s.name, err, s.wantInText)
		}
	}
}
