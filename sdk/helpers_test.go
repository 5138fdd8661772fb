package sdk

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/keyspace"
	"github.com/redis/go-redis/v9"
)

// logCapture is a slog handler that keeps every record's text.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logCapture) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logCapture) contains(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Contains(l.buf.String(), s)
}

func (l *logCapture) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runWorker starts w.Run in the background, waits until Run has started the
// worker (or failed to; stop then reports Run's error), and returns a
// function that shuts it down and waits for Run to return. Tests may read
// the worker's start-up state (its waiter, its id's registration) as soon
// as runWorker returns.
func runWorker(t *testing.T, w *Worker) (stop func()) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- w.Run(context.Background()) }()
	<-w.ready
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := w.Shutdown(context.Background()); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after Shutdown")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// dump returns all luaq keys of the server.
func dump(t *testing.T, rdb redis.Cmdable) keyspace.Snapshot {
	t.Helper()
	snap, err := keyspace.Dump(context.Background(), rdb, "luaq:*")
	if err != nil {
		t.Fatal(err)
	}
	return snap
}
