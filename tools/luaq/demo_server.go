package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/luaq/luaq/internal/keys"
	"github.com/redis/go-redis/v9"
)

// Where the demo runs: an embedded miniredis or a real server, and the
// cleanup of the demo's keys there.

// demoServer is the Redis server the demo runs against.
type demoServer struct {
	rdb    *redis.Client // client for the SDK and the cleanup
	desc   string        // where the server is, for display
	prefix string        // queue name prefix; empty on the embedded server
	// cleanup deletes what the demo wrote (only on an external server) and
	// releases the server.
	cleanup func(ctx context.Context, queues []demoQueue) (deleted int, err error)
	// external is true for a --redis server, whose keys must be cleaned up.
	external bool
}

// openDemoServer starts the embedded server, or connects to cfg.RedisURL.
func openDemoServer(ctx context.Context, cfg demoConfig) (*demoServer, error) {
	if cfg.RedisURL == "" {
		return openEmbeddedServer(cfg)
	}
	return openExternalServer(ctx, cfg)
}

// openEmbeddedServer starts an in-process miniredis and a client to it.
func openEmbeddedServer(cfg demoConfig) (*demoServer, error) {
	mr, err := miniredis.Run()
	if err != nil {
		return nil, fmt.Errorf("starting the embedded server: %w", err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), PoolSize: cfg.Concurrency + 8})
	return &demoServer{
		rdb:  rdb,
		desc: "embedded miniredis",
		cleanup: func(context.Context, []demoQueue) (int, error) {
			err := rdb.Close()
			mr.Close()
			if err != nil {
				return 0, fmt.Errorf("closing the client: %w", err)
			}
			return 0, nil
		},
	}, nil
}

// openExternalServer connects to cfg.RedisURL and picks a unique queue
// name prefix, so the demo never touches keys it did not create.
func openExternalServer(ctx context.Context, cfg demoConfig) (*demoServer, error) {
	opts, err := redis.ParseURL(cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("parsing --redis: %w", err)
	}
	if opts.PoolSize == 0 {
		opts.PoolSize = cfg.Concurrency + 8
	}
	rdb := redis.NewClient(opts)
	if err := rdb.Ping(ctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("connecting to %s: %w", opts.Addr, err)
	}
	return &demoServer{
		rdb:      rdb,
		desc:     fmt.Sprintf("redis %s db %d", opts.Addr, opts.DB),
		prefix:   fmt.Sprintf("demo-%d", time.Now().UnixNano()),
		external: true,
		cleanup: func(ctx context.Context, queues []demoQueue) (int, error) {
			n, err := deleteQueueKeys(ctx, rdb, queues)
			if cerr := rdb.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("closing the client: %w", cerr)
			}
			return n, err
		},
	}, nil
}

// close cleans up the server, reporting what it deleted and any error to
// out. It runs with its own timeout, so it also works after the demo's
// context is done.
func (s *demoServer) close(out io.Writer, queues []demoQueue) {
	ctx, cancel := context.WithTimeout(context.Background(), demoCleanupTimeout)
	defer cancel()
	n, err := s.cleanup(ctx, queues)
	switch {
	case err != nil:
		fmt.Fprintf(out, "cleanup: %v\n", err)
	case s.external:
		names := make([]string, len(queues))
		for i, q := range queues {
			names[i] = q.name
		}
		fmt.Fprintf(out, "cleanup: deleted %d keys of queues %s\n", n, strings.Join(names, ", "))
	}
}

// deleteQueueKeys deletes every key of the given queues (SCAN MATCH on each
// queue's key pattern, then DEL) and returns how many it deleted. It never
// touches other keys.
func deleteQueueKeys(ctx context.Context, rdb *redis.Client, queues []demoQueue) (int, error) {
	total := 0
	for _, q := range queues {
		kq, err := keys.ForQueue(q.name)
		if err != nil {
			return total, fmt.Errorf("cleanup of queue %q: %w", q.name, err)
		}
		var found []string
		iter := rdb.Scan(ctx, 0, kq.Pattern(), 1000).Iterator()
		for iter.Next(ctx) {
			found = append(found, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return total, fmt.Errorf("cleanup of queue %q: scanning its keys: %w", q.name, err)
		}
		for len(found) > 0 {
			chunk := found[:min(len(found), 500)]
			found = found[len(chunk):]
			n, err := rdb.Del(ctx, chunk...).Result()
			if err != nil {
				return total, fmt.Errorf("cleanup of queue %q: deleting its keys: %w", q.name, err)
			}
			total += int(n)
		}
	}
	return total, nil
}
