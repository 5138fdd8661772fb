package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

// The examples run against an in-process miniredis so that they run in go
// test; in production, point redis.NewClient at your server.

// newRedis starts an in-process Redis for an example.
func newRedis() (*redis.Client, func()) {
	mr, err := miniredis.Run()
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { rdb.Close(); mr.Close() }
}

// quiet is a logger for the examples: they print their own lines.
var quiet = slog.New(slog.DiscardHandler)

// newWorker builds a worker over rdb for queue with fast settings.
func newWorker(rdb *redis.Client, queue string) *sdk.Worker {
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues: map[string]int{queue: 1}, Concurrency: 4, Logger: quiet,
		Backoff: func(int, error, *sdk.Task) time.Duration { return 10 * time.Millisecond },
	})
	if err != nil {
		panic(err)
	}
	return w
}

func ExampleClient_Enqueue() {
	rdb, done := newRedis()
	defer done()
	client, err := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	info, err := client.Enqueue(ctx, "emails", "email:send", []byte(`{"to":"a@example.com"}`),
		sdk.MaxRetry(5), sdk.Timeout(30*time.Second), sdk.ProcessIn(time.Minute))
	if err != nil {
		panic(err)
	}
	fmt.Println(info.ID, info.State, info.ProcessAt.Sub(info.EnqueuedAt))

	_, err = client.Enqueue(ctx, "emails", "", nil)
	fmt.Println(errors.Is(err, sdk.ErrBadArg))
	// Output:
	// 1 scheduled 1m0s
	// true
}

func ExampleWorker() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	w := newWorker(rdb, "emails")
	sent := make(chan string)
	w.HandleFunc("email:send", func(ctx context.Context, t *sdk.Task) error {
		sent <- string(t.Payload)
		return nil
	})
	go func() { _ = w.Run(context.Background()) }()
	defer w.Shutdown(context.Background())

	_, _ = client.Enqueue(context.Background(), "emails", "email:send", []byte("hello"))
	fmt.Println(<-sent)
	// Output: hello
}

func ExampleWorker_Start() {
	rdb, done := newRedis()
	defer done()
	ctx := context.Background()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	if err := client.Load(ctx); err != nil { // fail fast on an unreachable server
		fmt.Println(err)
		return
	}
	fmt.Println("client ready:", client.Ready(ctx) == nil)

	w := newWorker(rdb, "emails")
	sent := make(chan string)
	w.HandleFunc("email:send", func(ctx context.Context, t *sdk.Task) error {
		sent <- string(t.Payload)
		return nil
	})
	if err := w.Start(ctx); err != nil { // returns once the worker leases
		fmt.Println(err)
		return
	}
	workers, _ := client.Workers(ctx, "emails", 10)
	fmt.Println("workers:", len(workers))

	_, _ = client.Enqueue(ctx, "emails", "email:send", []byte("hello"))
	fmt.Println(<-sent)
	_ = w.Shutdown(ctx)
	workers, _ = client.Workers(ctx, "emails", 10)
	fmt.Println("workers after Shutdown:", len(workers))
	// Output:
	// client ready: true
	// workers: 1
	// hello
	// workers after Shutdown: 0
}

func ExampleWorker_retries() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	w := newWorker(rdb, "jobs")
	runs := make(chan string)
	w.HandleFunc("flaky", func(ctx context.Context, t *sdk.Task) error {
		if t.Retried < 2 {
			runs <- fmt.Sprintf("run %d fails", t.Retried+1)
			return errors.New("temporary failure")
		}
		runs <- fmt.Sprintf("run %d succeeds", t.Retried+1)
		return nil
	})
	w.HandleFunc("broken", func(ctx context.Context, t *sdk.Task) error {
		runs <- "broken: archived at once"
		return fmt.Errorf("malformed payload: %w", sdk.ErrSkipRetry)
	})
	go func() { _ = w.Run(context.Background()) }()
	defer w.Shutdown(context.Background())

	ctx := context.Background()
	_, _ = client.Enqueue(ctx, "jobs", "flaky", nil, sdk.MaxRetry(5))
	for range 3 {
		fmt.Println(<-runs)
	}
	info, _ := client.Enqueue(ctx, "jobs", "broken", nil, sdk.MaxRetry(5))
	fmt.Println(<-runs)
	for {
		st, err := client.GetTask(ctx, "jobs", info.ID)
		if err == nil && st.State == "archived" {
			fmt.Println(st.State, st.LastError)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Output:
	// run 1 fails
	// run 2 fails
	// run 3 succeeds
	// broken: archived at once
	// archived malformed payload: luaq: skip retry
}

func ExampleExpireIn() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	ctx := context.Background()
	// A report nobody needs if it cannot start within 10ms.
	_, _ = client.Enqueue(ctx, "reports", "report", nil, sdk.ExpireIn(10*time.Millisecond))
	time.Sleep(50 * time.Millisecond)

	w := newWorker(rdb, "reports")
	w.HandleFunc("report", func(ctx context.Context, t *sdk.Task) error {
		fmt.Println("never runs")
		return nil
	})
	go func() { _ = w.Run(context.Background()) }()
	defer w.Shutdown(context.Background())
	for {
		info, err := client.QueueInfo(ctx, "reports")
		if err == nil && info.Expired == 1 {
			fmt.Println("expired:", info.Expired, "pending:", info.Pending)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Output: expired: 1 pending: 0
}

func ExampleUnique() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	ctx := context.Background()
	// One reminder per user per hour, however often it is asked for.
	_, err := client.Enqueue(ctx, "mail", "remind", nil, sdk.Unique("remind:user42", time.Hour))
	fmt.Println(err)
	_, err = client.Enqueue(ctx, "mail", "remind", nil, sdk.Unique("remind:user42", time.Hour))
	fmt.Println(errors.Is(err, sdk.ErrConflict))
	// Output:
	// <nil>
	// true
}

func ExampleTask_SetResult() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	w := newWorker(rdb, "math")
	w.HandleFunc("square", func(ctx context.Context, t *sdk.Task) error {
		n := int(t.Payload[0])
		t.SetResult([]byte(fmt.Sprint(n * n)))
		return nil
	})
	go func() { _ = w.Run(context.Background()) }()
	defer w.Shutdown(context.Background())

	ctx := context.Background()
	info, _ := client.Enqueue(ctx, "math", "square", []byte{12}, sdk.Retention(time.Hour))
	for {
		st, err := client.GetTask(ctx, "math", info.ID)
		if err == nil && st.State == "completed" {
			fmt.Println(st.State, string(st.Result))
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Output: completed 144
}

func ExampleWorker_Shutdown() {
	rdb, done := newRedis()
	defer done()
	client, _ := sdk.NewClient(rdb, sdk.ClientLogger(quiet))
	w := newWorker(rdb, "long")
	started, stopped := make(chan struct{}), make(chan error, 1)
	w.HandleFunc("sleep", func(ctx context.Context, t *sdk.Task) error {
		close(started)
		<-ctx.Done() // a handler should return when its context ends
		stopped <- context.Cause(ctx)
		return ctx.Err()
	})
	runDone := make(chan error)
	go func() { runDone <- w.Run(context.Background()) }()

	ctx := context.Background()
	_, _ = client.Enqueue(ctx, "long", "sleep", nil)
	<-started
	// Give running handlers 100ms, then cancel them; their tasks go back to
	// pending, without counting a retry, once they have returned.
	shutdownCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	fmt.Println("Shutdown:", w.Shutdown(shutdownCtx))
	fmt.Println("Run:", <-runDone)
	fmt.Println("handler stopped:", <-stopped)
	info, _ := client.QueueInfo(ctx, "long")
	fmt.Println("pending:", info.Pending, "failed:", info.Failed)
	// Output:
	// Shutdown: context deadline exceeded
	// Run: <nil>
	// handler stopped: luaq: worker is shutting down
	// pending: 1 failed: 0
}
