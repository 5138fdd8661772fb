package sdk

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// envWorkerAddr, when set, makes this test binary act as a worker process
// (see TestMain) instead of running tests.
const envWorkerAddr = "LUAQ_TEST_WORKER_ADDR"

// TestMain lets the test binary double as a worker process: with
// envWorkerAddr set it runs runHelperWorker instead of the tests.
func TestMain(m *testing.M) {
	if addr := os.Getenv(envWorkerAddr); addr != "" {
		if err := runHelperWorker(addr); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// envWorkerQueue and envWorkerLease override the helper worker's queue
// ("sig") and lease duration (2s); with envWorkerQueue set its built-in
// janitor runs every 200ms with a 15-minute lock TTL.
const (
	envWorkerQueue = "LUAQ_TEST_WORKER_QUEUE"
	envWorkerLease = "LUAQ_TEST_WORKER_LEASE"
)

// runHelperWorker runs a worker with RunWithSignals, prints "started <id>"
// when its handler starts, blocks in the handler until its context ends, and
// prints "stopped" when Run has returned.
func runHelperWorker(addr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	cfg := WorkerConfig{
		Queues: map[string]int{"sig": 1}, LeaseDuration: 2 * time.Second,
		ShutdownTimeout: 200 * time.Millisecond,
	}
	if q := os.Getenv(envWorkerQueue); q != "" {
		cfg.Queues = map[string]int{q: 1}
		cfg.JanitorInterval, cfg.JanitorLockTTL = 200*time.Millisecond, 15*time.Minute
		cfg.ReclaimBackoff = time.Millisecond
	}
	if d, err := time.ParseDuration(os.Getenv(envWorkerLease)); err == nil {
		cfg.LeaseDuration = d
	}
	w, err := NewWorker(rdb, cfg)
	if err != nil {
		return err
	}
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		os.Stdout.WriteString("started " + task.ID + "\n")
		<-ctx.Done()
		return ctx.Err()
	})
	if err := w.RunWithSignals(context.Background()); err != nil {
		return err
	}
	os.Stdout.WriteString("stopped\n")
	return nil
}

// TestSignalsShutDownCleanly sends SIGTERM or SIGINT to a worker process in
// the middle of a task: the process deregisters, gives the task back to
// pending without counting a retry, and exits.
func TestSignalsShutDownCleanly(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			srv := redistest.Start(t)
			rdb := srv.Client(t)
			c, _ := NewClient(rdb)
			ctx := context.Background()
			if _, err := c.Enqueue(ctx, "sig", "job", nil, ID("t1"), MaxRetry(3)); err != nil {
				t.Fatal(err)
			}
			before, _ := rdb.HGet(ctx, "luaq:{sig}:tasks", "t1").Result()

			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), envWorkerAddr+"="+srv.Addr())
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			waitLine(t, lines, "started t1")
			if list, _ := c.Workers(ctx, "sig", 10); len(list) != 1 {
				t.Fatalf("worker process not registered: %+v", list)
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			waitLine(t, lines, "stopped")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("worker process: %v", err)
			}
			pending, _ := rdb.LRange(ctx, "luaq:{sig}:pending", 0, -1).Result()
			if len(pending) != 1 || pending[0] != "t1" {
				t.Errorf("pending = %v, want [t1]", pending)
			}
			if after, _ := rdb.HGet(ctx, "luaq:{sig}:tasks", "t1").Result(); after != before {
				t.Errorf("task record changed (retry counted?): %q -> %q", before, after)
			}
			for _, role := range []string{"workers", "worker_info", "active", "tokens"} {
				if n, _ := rdb.Exists(ctx, "luaq:{sig}:"+role).Result(); n != 0 {
					t.Errorf("luaq:{sig}:%s left after the signal", role)
				}
			}
		})
	}
}

// waitLine waits for a line of the subprocess's output that starts with want.
func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("subprocess output ended before %q", want)
			}
			if strings.HasPrefix(l, want) {
				return
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %q from the subprocess", want)
		}
	}
}
