package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

const (
	queueName = "default"
	taskType  = "bench"
)

// system is one queue implementation under test. Producers and workers use
// separate Redis clients, as separate processes would; every client is built
// from the library's defaults (go-redis defaults for luaq, asynq's
// RedisClientOpt defaults for asynq).
type system interface {
	Name() string
	// Enqueue adds one pending task.
	Enqueue(ctx context.Context, payload []byte) error
	// EnqueueAt adds one task scheduled for at.
	EnqueueAt(ctx context.Context, payload []byte, at time.Time) error
	// Preload stores pending tasks as fast as the system allows (setup only).
	Preload(ctx context.Context, payloads [][]byte) error
	// StartWorker starts a worker with concurrency handlers whose handler
	// calls h with the payload; stop shuts it down and waits.
	StartWorker(concurrency int, h func(payload []byte)) (stop func(), err error)
	// Counts returns the queue's pending and (lifetime) processed counts.
	Counts(ctx context.Context) (pending, processed int64, err error)
	Close()
}

func warnLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// ---- luaq ----

type luaqSys struct {
	addr   string
	rdb    *redis.Client
	client *sdk.Client
	// scripts calls the bundle directly, for the pipelined preload.
	scripts *loader.Loader
}

func newLuaq(addr string) (*luaqSys, error) {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	c, err := sdk.NewClient(rdb)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	b, err := scripts.Load()
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &luaqSys{addr: addr, rdb: rdb, client: c, scripts: loader.New(rdb, b)}, nil
}

func (s *luaqSys) Name() string { return "luaq" }
func (s *luaqSys) Close()       { s.rdb.Close() }

func (s *luaqSys) Enqueue(ctx context.Context, p []byte) error {
	_, err := s.client.Enqueue(ctx, queueName, taskType, p)
	return err
}

func (s *luaqSys) EnqueueAt(ctx context.Context, p []byte, at time.Time) error {
	_, err := s.client.Enqueue(ctx, queueName, taskType, p, sdk.ProcessAt(at))
	return err
}

// EnqueueBatch adds len(ps) tasks (1..sdk.MaxBatch) in one atomic call.
func (s *luaqSys) EnqueueBatch(ctx context.Context, ps [][]byte) error {
	tasks := make([]sdk.NewTask, len(ps))
	for i, p := range ps {
		tasks[i] = sdk.NewTask{Type: taskType, Payload: p}
	}
	_, err := s.client.EnqueueBatch(ctx, queueName, tasks)
	return err
}

// Preload sends enqueue calls of 1000 tasks each, several per pipeline, over
// two connections. The arguments follow the documented enqueue contract
// (scripts/enqueue.lua header) with the SDK's defaults (max_retry 25, nothing
// else set); callers check the pending count afterwards.
func (s *luaqSys) Preload(ctx context.Context, ps [][]byte) error {
	q, err := keys.ForQueue(queueName)
	if err != nil {
		return err
	}
	const batch, perPipe, conns = sdk.MaxBatch, 8, 2
	var chunks [][][]byte
	for i := 0; i < len(ps); i += batch {
		chunks = append(chunks, ps[i:min(i+batch, len(ps))])
	}
	var (
		mu       sync.Mutex
		next     int
		firstErr error
		wg       sync.WaitGroup
	)
	maxRetry := strconv.Itoa(sdk.DefaultMaxRetry)
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				lo := next
				next = min(next+perPipe, len(chunks))
				hi := next
				stop := firstErr != nil
				mu.Unlock()
				if lo >= hi || stop {
					return
				}
				calls := make([]loader.Call, 0, hi-lo)
				for _, ch := range chunks[lo:hi] {
					args := make([]string, 0, 1+14*len(ch))
					args = append(args, strconv.Itoa(len(ch)))
					for _, p := range ch {
						args = append(args, "", taskType, string(p), maxRetry,
							"0", "0", "0", "0", "0", "0", "0", "0", "", "0")
					}
					calls = append(calls, loader.Call{Queue: q, Script: "enqueue", Args: args})
				}
				for _, r := range s.scripts.RunPipelined(ctx, calls) {
					if r.Err != nil {
						mu.Lock()
						if firstErr == nil {
							firstErr = r.Err
						}
						mu.Unlock()
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

func (s *luaqSys) StartWorker(concurrency int, h func([]byte)) (func(), error) {
	rdb := redis.NewClient(&redis.Options{Addr: s.addr})
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues:      map[string]int{queueName: 1},
		Concurrency: concurrency,
		Logger:      warnLogger(),
	})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	w.HandleFunc(taskType, func(ctx context.Context, t *sdk.Task) error {
		h(t.Payload)
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- w.Run(context.Background()) }()
	return func() {
		_ = w.Shutdown(context.Background())
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "luaq worker:", err)
		}
		rdb.Close()
	}, nil
}

func (s *luaqSys) Counts(ctx context.Context) (int64, int64, error) {
	info, err := s.client.QueueInfo(ctx, queueName)
	if err != nil {
		return 0, 0, err
	}
	return info.Pending, info.Processed, nil
}

// ---- asynq ----

type asynqSys struct {
	opt    asynq.RedisClientOpt
	client *asynq.Client
	insp   *asynq.Inspector
}

func newAsynq(addr string) *asynqSys {
	opt := asynq.RedisClientOpt{Addr: addr}
	return &asynqSys{opt: opt, client: asynq.NewClient(opt), insp: asynq.NewInspector(opt)}
}

func (s *asynqSys) Name() string { return "asynq" }
func (s *asynqSys) Close()       { s.client.Close(); s.insp.Close() }

func (s *asynqSys) Enqueue(ctx context.Context, p []byte) error {
	_, err := s.client.EnqueueContext(ctx, asynq.NewTask(taskType, p))
	return err
}

func (s *asynqSys) EnqueueAt(ctx context.Context, p []byte, at time.Time) error {
	_, err := s.client.EnqueueContext(ctx, asynq.NewTask(taskType, p), asynq.ProcessAt(at))
	return err
}

// Preload uses asynq's only enqueue path (one task per call) from 16
// concurrent producers.
func (s *asynqSys) Preload(ctx context.Context, ps [][]byte) error {
	return parallelEach(16, len(ps), func(i int) error { return s.Enqueue(ctx, ps[i]) })
}

func (s *asynqSys) StartWorker(concurrency int, h func([]byte)) (func(), error) {
	srv := asynq.NewServer(s.opt, asynq.Config{
		Concurrency: concurrency,
		Queues:      map[string]int{queueName: 1},
		LogLevel:    asynq.WarnLevel,
	})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		h(t.Payload())
		return nil
	}))
	if err != nil {
		return nil, err
	}
	return srv.Shutdown, nil
}

func (s *asynqSys) Counts(ctx context.Context) (int64, int64, error) {
	info, err := s.insp.GetQueueInfo(queueName)
	if err != nil {
		return 0, 0, err
	}
	return int64(info.Pending), int64(info.ProcessedTotal), nil
}

// parallelEach calls f(i) for i in [0, n) from workers goroutines and returns
// the first error.
func parallelEach(workers, n int, f func(i int) error) error {
	var (
		next     atomic.Int64
		failed   atomic.Bool
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errOnce.Do(func() { firstErr = err })
					failed.Store(true)
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
