package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/luaq/luaq/sdk"
	"github.com/redis/go-redis/v9"
)

// Environment of a worker child process (the bench binary re-executed).
const (
	envChild = "LUAQ_BENCH_CHILD" // "luaq" or "asynq"
	envAddr  = "LUAQ_BENCH_ADDR"
)

// childMode runs a worker child process if the environment asks for one and
// reports whether it did (it returns only if the worker stops on its own).
func childMode() bool {
	kind := os.Getenv(envChild)
	if kind == "" {
		return false
	}
	if err := runChild(kind, os.Getenv(envAddr)); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(1)
	}
	return true
}

// runChild runs a worker with default settings (except concurrency, queue
// and log level) whose handler prints "started" and then hangs until the
// process is killed.
func runChild(kind, addr string) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	hang := func(ctx context.Context) error {
		fmt.Println("started")
		<-ctx.Done()
		return ctx.Err()
	}
	switch kind {
	case "luaq":
		rdb := redis.NewClient(&redis.Options{Addr: addr})
		defer rdb.Close()
		w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
			Queues: map[string]int{queueName: 1}, Concurrency: handlers, Logger: warnLogger(),
		})
		if err != nil {
			return err
		}
		w.HandleFunc(taskType, func(ctx context.Context, t *sdk.Task) error { return hang(ctx) })
		return w.Run(ctx)
	case "asynq":
		srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{
			Concurrency: handlers, Queues: map[string]int{queueName: 1}, LogLevel: asynq.WarnLevel,
		})
		if err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error { return hang(ctx) })); err != nil {
			return err
		}
		<-ctx.Done()
		srv.Shutdown()
		return nil
	}
	return fmt.Errorf("unknown child kind %q", kind)
}

// scRecovery measures, for each system with default settings, how long after
// SIGKILL of the worker process running a task that task starts again in a
// second worker (already running when the first dies).
func (b *bench) scRecovery() {
	b.pair("recovery", func(sys system, r *sysResult) error {
		ctx := context.Background()
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), envChild+"="+sys.Name(), envAddr+"="+b.srv.addr)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = childProcAttr()
		out, err := cmd.StdoutPipe()
		if err != nil {
			return err
		}
		if err := cmd.Start(); err != nil {
			return err
		}
		var reaped sync.Once
		reap := func() { reaped.Do(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) }
		defer reap()
		started := make(chan struct{})
		go func() {
			sc := bufio.NewScanner(out)
			var once sync.Once
			for sc.Scan() {
				if strings.TrimSpace(sc.Text()) == "started" {
					once.Do(func() { close(started) })
				}
			}
		}()
		if err := sys.Enqueue(ctx, stamped(time.Now())); err != nil {
			return err
		}
		if err := wait(started, 30*time.Second, "child worker starting the task"); err != nil {
			return err
		}
		got := make(chan time.Time, 1)
		stop, err := sys.StartWorker(handlers, func([]byte) {
			select {
			case got <- time.Now():
			default:
			}
		})
		if err != nil {
			return err
		}
		defer stop()
		time.Sleep(100 * time.Millisecond) // the survivor is up and idle
		killedAt := time.Now()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			return err
		}
		reap()
		select {
		case t := <-got:
			r.Value = t.Sub(killedAt).Seconds()
		case <-time.After(b.cfg.RecoveryTimeout):
			r.Value = b.cfg.RecoveryTimeout.Seconds()
			r.Metrics["timed_out"] = 1
			r.Note = fmt.Sprintf("not run again within %s", b.cfg.RecoveryTimeout)
		}
		return nil
	})
}

var rpsRE = regexp.MustCompile(`([0-9]+(?:\.[0-9]+)?) requests per second`)

// ceiling runs redis-benchmark EVALSHA of 'return 1' against the server.
func (b *bench) ceiling() {
	ctx := context.Background()
	c := &ceilingResult{Requests: b.nmin(200000, 20000), Clients: 50}
	b.rep.Ceiling = c
	sha, err := b.admin.ScriptLoad(ctx, "return 1").Result()
	if err != nil {
		c.Err = err.Error()
		return
	}
	bin := "redis-benchmark"
	args := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.srv.port), "-n", strconv.Itoa(c.Requests),
		"-c", strconv.Itoa(c.Clients), "-q", "EVALSHA", sha, "0"}
	c.Command = bin + " " + strings.Join(args, " ")
	b.logf("ceiling    %s", c.Command)
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		c.Err = fmt.Sprintf("%v: %s", err, out)
		b.logf("ceiling    ERROR: %s", c.Err)
		return
	}
	m := rpsRE.FindAllStringSubmatch(string(out), -1)
	if len(m) == 0 {
		c.Err = "no requests per second in: " + string(out)
		return
	}
	c.CallsPerSec, _ = strconv.ParseFloat(m[len(m)-1][1], 64)
	b.logf("ceiling    %.0f EVALSHA/s", c.CallsPerSec)
	b.flush()
}
