package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	payloadSize = 64
	producers   = 8
	handlers    = 32
	waitLimit   = 3 * time.Minute
)

// bench holds one run: the server, an admin client and the results.
type bench struct {
	cfg      config
	srv      *redisServer
	admin    *redis.Client
	payloads [][]byte // random payloads; scenarios take a prefix or cycle
	rep      *report
	order    int    // alternates which system runs first
	current  string // "<scenario>-<system>" of the run in progress

	cpuRedis0, cpuSelf0 float64
	prof                *os.File
}

func (b *bench) logf(format string, args ...any) {
	if b.cfg.Progress != nil {
		fmt.Fprintf(b.cfg.Progress, "%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
	}
}

// n scales a task count, with a floor so tiny scales still measure something.
func (b *bench) n(base int) int { return b.nmin(base, 10) }

func (b *bench) nmin(base, floor int) int {
	return max(int(math.Round(float64(base)*b.cfg.Scale)), floor)
}

func randomPayloads(n int) [][]byte {
	buf := make([]byte, n*payloadSize)
	_, _ = rand.Read(buf)
	out := make([][]byte, n)
	for i := range out {
		out[i] = buf[i*payloadSize : (i+1)*payloadSize : (i+1)*payloadSize]
	}
	return out
}

// cycled returns n payloads taken round-robin from the pool.
func (b *bench) cycled(n int) [][]byte {
	if n <= len(b.payloads) {
		return b.payloads[:n]
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = b.payloads[i%len(b.payloads)]
	}
	return out
}

// stamped returns a random payload whose first 8 bytes are t in Unix ns.
func stamped(t time.Time) []byte {
	p := make([]byte, payloadSize)
	_, _ = rand.Read(p[8:])
	binary.BigEndian.PutUint64(p, uint64(t.UnixNano()))
	return p
}

func stampOf(p []byte) time.Time {
	if len(p) < 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(p)))
}

func (b *bench) flush() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.admin.FlushAll(ctx).Err(); err != nil {
		b.logf("FLUSHALL: %v", err)
	}
}

// begin starts the measured part of a run: it zeroes INFO commandstats and
// notes the CPU time used so far by Redis's main thread and by this process
// (which hosts both systems' producers and workers), and starts a CPU
// profile when --pprof-dir is set.
func (b *bench) begin() {
	b.resetStats()
	b.cpuRedis0 = b.redisCPU()
	b.cpuSelf0 = selfCPU()
	if b.cfg.PprofDir != "" {
		f, err := os.Create(filepath.Join(b.cfg.PprofDir, b.current+".pprof"))
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				b.prof = f
			}
		}
		if err != nil {
			b.logf("pprof: %v", err)
		}
	}
}

// end closes the measured part begun by begin and records its server-side
// commandstats and CPU times in r.
func (b *bench) end(r *sysResult) {
	if b.prof != nil {
		pprof.StopCPUProfile()
		b.prof.Close()
		b.prof = nil
	}
	r.RedisCPU = b.redisCPU() - b.cpuRedis0
	r.ClientCPU = selfCPU() - b.cpuSelf0
	r.Stats = b.stats()
}

// redisCPU is the CPU time (user+sys, seconds) of Redis's main thread.
func (b *bench) redisCPU() float64 {
	info, err := b.admin.Info(context.Background(), "cpu").Result()
	if err != nil {
		return math.NaN()
	}
	u, _ := strconv.ParseFloat(infoField(info, "used_cpu_user_main_thread"), 64)
	s, _ := strconv.ParseFloat(infoField(info, "used_cpu_sys_main_thread"), 64)
	return u + s
}

// selfCPU is this process's CPU time (user+sys, seconds).
func selfCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func (b *bench) resetStats() {
	_ = b.admin.ConfigResetStat(context.Background()).Err()
}

func (b *bench) stats() map[string]cmdStat {
	st, err := commandStats(context.Background(), b.admin)
	if err != nil {
		b.logf("INFO commandstats: %v", err)
		return nil
	}
	delete(st, "info") // our own reads
	delete(st, "config")
	return st
}

func (b *bench) newSystem(name string) (system, error) {
	switch name {
	case "luaq":
		return newLuaq(b.srv.addr)
	case "asynq":
		return newAsynq(b.srv.addr), nil
	}
	return nil, fmt.Errorf("unknown system %q", name)
}

// pair runs one scenario on both systems, alternating which goes first from
// one scenario to the next, with FLUSHALL before and after each.
func (b *bench) pair(name string, run func(sys system, r *sysResult) error) *scenarioResult {
	sr := &scenarioResult{Name: name}
	names := []string{"luaq", "asynq"}
	if b.order%2 == 1 {
		names[0], names[1] = names[1], names[0]
	}
	b.order++
	for _, n := range names {
		r := b.one(name, n, run)
		if n == "luaq" {
			sr.Luaq = r
		} else {
			sr.Asynq = r
		}
	}
	b.rep.Scenarios = append(b.rep.Scenarios, sr)
	return sr
}

func (b *bench) one(scenario, name string, run func(sys system, r *sysResult) error) *sysResult {
	r := &sysResult{Metrics: map[string]float64{}}
	b.flush()
	runtime.GC()
	b.logf("%-10s %-5s start", scenario, name)
	b.current = scenario + "-" + name
	sys, err := b.newSystem(name)
	if err == nil {
		err = run(sys, r)
		sys.Close()
	}
	if err != nil {
		r.Err = err.Error()
		b.logf("%-10s %-5s ERROR: %v", scenario, name, err)
	} else {
		b.logf("%-10s %-5s %s", scenario, name, r.summary())
	}
	b.flush()
	return r
}

func (r *sysResult) throughput(n int, d time.Duration) {
	r.Tasks, r.Seconds = n, d.Seconds()
	r.Value = float64(n) / d.Seconds()
}

func (r *sysResult) summary() string {
	var keys []string
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := fmt.Sprintf("value=%.4g", r.Value)
	for _, k := range keys {
		s += fmt.Sprintf(" %s=%.4g", k, r.Metrics[k])
	}
	if r.Note != "" {
		s += " (" + r.Note + ")"
	}
	return s
}

func expectCounts(ctx context.Context, sys system, pending, processed int64) error {
	p, d, err := sys.Counts(ctx)
	if err != nil {
		return fmt.Errorf("reading counts: %w", err)
	}
	if (pending >= 0 && p != pending) || (processed >= 0 && d != processed) {
		return fmt.Errorf("counts: pending %d (want %d), processed %d (want %d)", p, pending, d, processed)
	}
	return nil
}

// countTo returns a handler that counts calls and a channel closed when the
// count reaches n.
func countTo(n int) (func([]byte), <-chan struct{}, *atomic.Int64) {
	var cnt atomic.Int64
	done := make(chan struct{})
	return func([]byte) {
		if cnt.Add(1) == int64(n) {
			close(done)
		}
	}, done, &cnt
}

func wait(done <-chan struct{}, limit time.Duration, what string) error {
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("%s: not done within %s", what, limit)
	}
}

// warmup runs one task through each system and flushes the data, so both
// find their scripts in the server's script cache (FLUSHALL keeps it) and
// no timed run pays for loading them.
func (b *bench) warmup() error {
	ctx := context.Background()
	for _, name := range []string{"luaq", "asynq"} {
		sys, err := b.newSystem(name)
		if err != nil {
			return err
		}
		h, done, _ := countTo(1)
		stop, err := sys.StartWorker(handlers, h)
		if err == nil {
			err = sys.Enqueue(ctx, stamped(time.Now()))
			if err == nil {
				err = wait(done, 30*time.Second, name+" warm-up")
			}
			stop()
		}
		if err == nil {
			if l, ok := sys.(*luaqSys); ok {
				err = l.client.Load(ctx) // every script, not just those used so far
			}
		}
		sys.Close()
		if err != nil {
			return fmt.Errorf("warm-up %s: %w", name, err)
		}
	}
	b.flush()
	return nil
}

// ---- scenarios ----

func (b *bench) scEnqueue() {
	n := b.n(50000)
	b.pair("enqueue", func(sys system, r *sysResult) error {
		ctx := context.Background()
		ps := b.payloads[:n]
		b.begin()
		t0 := time.Now()
		err := parallelEach(producers, n, func(i int) error { return sys.Enqueue(ctx, ps[i]) })
		d := time.Since(t0)
		if err != nil {
			return err
		}
		b.end(r)
		r.throughput(n, d)
		return expectCounts(ctx, sys, int64(n), -1)
	})
}

func (b *bench) scBatch() {
	n := b.n(50000)
	const size = 100
	b.pair("batch", func(sys system, r *sysResult) error {
		ctx := context.Background()
		ps := b.payloads[:n]
		b.begin()
		t0 := time.Now()
		var err error
		if l, ok := sys.(*luaqSys); ok {
			err = parallelEach(producers, (n+size-1)/size, func(j int) error {
				return l.EnqueueBatch(ctx, ps[j*size:min((j+1)*size, n)])
			})
			r.Note = "EnqueueBatch of 100"
		} else {
			err = parallelEach(producers, n, func(i int) error { return sys.Enqueue(ctx, ps[i]) })
			r.Note = "single enqueue (no batch API)"
		}
		d := time.Since(t0)
		if err != nil {
			return err
		}
		b.end(r)
		r.throughput(n, d)
		return expectCounts(ctx, sys, int64(n), -1)
	})
}

func (b *bench) scDrain() {
	n := b.n(50000)
	b.pair("drain", func(sys system, r *sysResult) error {
		ctx := context.Background()
		if err := sys.Preload(ctx, b.payloads[:n]); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		if err := expectCounts(ctx, sys, int64(n), -1); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
		h, done, cnt := countTo(n)
		b.begin()
		t0 := time.Now()
		stop, err := sys.StartWorker(handlers, h)
		if err != nil {
			return err
		}
		err = wait(done, waitLimit, "drain")
		d := time.Since(t0)
		b.end(r)
		stop()
		if err != nil {
			return err
		}
		r.throughput(n, d)
		if extra := cnt.Load() - int64(n); extra > 0 {
			r.Metrics["duplicate_runs"] = float64(extra)
		}
		return expectCounts(ctx, sys, 0, int64(n))
	})
}

func (b *bench) scE2E() {
	n := b.n(50000)
	b.pair("e2e", func(sys system, r *sysResult) error {
		ctx := context.Background()
		ps := b.payloads[:n]
		h, done, cnt := countTo(n)
		b.begin()
		t0 := time.Now()
		stop, err := sys.StartWorker(handlers, h)
		if err != nil {
			return err
		}
		perr := parallelEach(producers, n, func(i int) error { return sys.Enqueue(ctx, ps[i]) })
		r.Metrics["enqueue_done_s"] = time.Since(t0).Seconds()
		if perr == nil {
			err = wait(done, waitLimit, "end-to-end")
		}
		d := time.Since(t0)
		b.end(r)
		stop()
		if err = errors.Join(perr, err); err != nil {
			return err
		}
		r.throughput(n, d)
		var calls int64
		for _, s := range r.Stats {
			calls += s.Calls
		}
		r.Metrics["evalsha_per_s"] = float64(r.Stats["evalsha"].Calls) / d.Seconds()
		r.Metrics["commands_per_s"] = float64(calls) / d.Seconds()
		if extra := cnt.Load() - int64(n); extra > 0 {
			r.Metrics["duplicate_runs"] = float64(extra)
		}
		return expectCounts(ctx, sys, 0, int64(n))
	})
}

// latencies collects handler-start minus payload stamp, in ms.
type latencies struct {
	mu   sync.Mutex
	ms   []float64
	want int
	done chan struct{}
}

func newLatencies(want int) *latencies {
	return &latencies{want: want, done: make(chan struct{})}
}

func (l *latencies) handler(p []byte) {
	now := time.Now()
	ms := float64(now.Sub(stampOf(p))) / float64(time.Millisecond)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ms = append(l.ms, ms)
	if len(l.ms) == l.want {
		close(l.done)
	}
}

func (l *latencies) into(r *sysResult) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := append([]float64(nil), l.ms...)
	sort.Float64s(s)
	r.Tasks = len(s)
	r.Metrics["p50_ms"] = percentile(s, 0.50)
	r.Metrics["p99_ms"] = percentile(s, 0.99)
	r.Metrics["max_ms"] = percentile(s, 1)
	r.Metrics["min_ms"] = percentile(s, 0)
	r.Value = r.Metrics["p99_ms"]
}

// percentile is the nearest-rank percentile of sorted values.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (b *bench) scIdle() {
	samples := b.nmin(200, 20)
	b.pair("idle", func(sys system, r *sysResult) error {
		ctx := context.Background()
		lat := newLatencies(samples)
		stop, err := sys.StartWorker(handlers, lat.handler)
		if err != nil {
			return err
		}
		defer stop()
		time.Sleep(2 * time.Second) // let the worker settle into its idle state
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < samples; i++ {
			<-tick.C
			if err := sys.Enqueue(ctx, stamped(time.Now())); err != nil {
				return err
			}
		}
		err = wait(lat.done, 30*time.Second, "idle latency")
		lat.into(r)
		return err
	})
}

func (b *bench) scScheduled() {
	samples := b.nmin(200, 20)
	b.pair("scheduled", func(sys system, r *sysResult) error {
		ctx := context.Background()
		lat := newLatencies(samples)
		stop, err := sys.StartWorker(handlers, lat.handler)
		if err != nil {
			return err
		}
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		for i := 0; i < samples; i++ {
			// Whole milliseconds: luaq stores instants in ms.
			at := time.UnixMilli(time.Now().UnixMilli() + 100 + mrand.Int64N(901))
			if err := sys.EnqueueAt(ctx, stamped(at), at); err != nil {
				return err
			}
		}
		err = wait(lat.done, 30*time.Second, "scheduled lateness")
		lat.into(r)
		return err
	})
}

func (b *bench) scMemory() {
	n := b.n(100000)
	b.pair("memory", func(sys system, r *sysResult) error {
		ctx := context.Background()
		// Fresh producers for each step, closed before reading used_memory,
		// so connection buffers do not count.
		step := func(f func(s system) error) error {
			s, err := b.newSystem(sys.Name())
			if err != nil {
				return err
			}
			err = f(s)
			s.Close()
			time.Sleep(300 * time.Millisecond)
			return err
		}
		// One task first, so per-queue structures and loaded scripts exist
		// before the baseline.
		warm := stamped(time.Now())
		if err := step(func(s system) error { return s.Enqueue(ctx, warm) }); err != nil {
			return err
		}
		before, err := usedMemory(ctx, b.admin)
		if err != nil {
			return err
		}
		if err := step(func(s system) error { return s.Preload(ctx, b.cycled(n)) }); err != nil {
			return err
		}
		after, err := usedMemory(ctx, b.admin)
		if err != nil {
			return err
		}
		r.Tasks = n
		r.Value = float64(after-before) / float64(n)
		r.Metrics["used_memory_before"] = float64(before)
		r.Metrics["used_memory_after"] = float64(after)
		return expectCounts(ctx, sys, int64(n)+1, -1)
	})
}

// scScaling compares luaq's per-task dequeue+complete time with 10k and with
// 1M pending tasks (luaq only).
func (b *bench) scScaling() {
	small := max(b.n(10000), 40)
	large := max(b.n(1000000), 4*small)
	warm, win := max(small/20, 1), small*4/5
	sr := &scenarioResult{Name: "scaling"}
	sr.Luaq = b.one("scaling", "luaq", func(sys system, r *sysResult) error {
		l := sys.(*luaqSys)
		var smallUs, largeUs, smallSrv, largeSrv []float64
		phase := func(preload, windows int) error {
			us, srv, err := b.scalingPhase(l, preload, warm, win, windows)
			if err != nil {
				return err
			}
			if preload == small {
				smallUs, smallSrv = append(smallUs, us...), append(smallSrv, srv)
			} else {
				largeUs, largeSrv = append(largeUs, us...), append(largeSrv, srv)
			}
			return nil
		}
		// Three 10k windows around one 1M run of three windows.
		for _, p := range []struct{ n, w int }{{small, 1}, {small, 1}, {large, 3}, {small, 1}} {
			if err := phase(p.n, p.w); err != nil {
				return err
			}
		}
		a, c := median(smallUs), median(largeUs)
		r.Metrics["pending_small"] = float64(small)
		r.Metrics["pending_large"] = float64(large)
		r.Metrics["window_tasks"] = float64(win)
		r.Metrics["us_per_task_small"] = a
		r.Metrics["us_per_task_large"] = c
		r.Metrics["server_us_per_task_small"] = median(smallSrv)
		r.Metrics["server_us_per_task_large"] = median(largeSrv)
		r.Metrics["server_ratio"] = median(largeSrv) / median(smallSrv)
		r.Value = c / a
		r.Note = fmt.Sprintf("windows µs/task small %v large %v", rounded(smallUs), rounded(largeUs))
		return nil
	})
	b.rep.Scenarios = append(b.rep.Scenarios, sr)
}

func rounded(v []float64) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = math.Round(x*100) / 100
	}
	return out
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// scalingPhase preloads preload tasks, skips warm tasks, then times windows
// consecutive windows of win tasks each (handler starts). It returns wall µs
// per task for each window and the server's EVALSHA+other µs per processed
// task over the whole worker run.
func (b *bench) scalingPhase(l *luaqSys, preload, warm, win, windows int) ([]float64, float64, error) {
	ctx := context.Background()
	b.flush()
	t0 := time.Now()
	if err := l.Preload(ctx, b.cycled(preload)); err != nil {
		return nil, 0, fmt.Errorf("preload %d: %w", preload, err)
	}
	if err := expectCounts(ctx, l, int64(preload), -1); err != nil {
		return nil, 0, err
	}
	b.logf("scaling    luaq  preloaded %d tasks in %s", preload, time.Since(t0).Round(time.Millisecond))
	total := int64(warm + windows*win)
	var (
		mu    sync.Mutex
		marks = make([]time.Time, windows+1)
		cnt   atomic.Int64
		done  = make(chan struct{})
	)
	runtime.GC()
	b.resetStats()
	stop, err := l.StartWorker(handlers, func([]byte) {
		n := cnt.Add(1)
		if k := n - int64(warm); k >= 0 && k%int64(win) == 0 && k/int64(win) <= int64(windows) {
			mu.Lock()
			marks[k/int64(win)] = time.Now()
			mu.Unlock()
		}
		if n == total {
			close(done)
		}
	})
	if err != nil {
		return nil, 0, err
	}
	err = wait(done, waitLimit, "scaling")
	st := b.stats()
	stop()
	if err != nil {
		return nil, 0, err
	}
	mu.Lock()
	defer mu.Unlock()
	us := make([]float64, windows)
	for i := range us {
		us[i] = float64(marks[i+1].Sub(marks[i]).Microseconds()) / float64(win)
	}
	var usec int64
	for _, s := range st {
		usec += s.Usec
	}
	processed := cnt.Load()
	b.logf("scaling    luaq  pending %d: µs/task per window %v, server µs/task %.2f", preload, rounded(us), float64(usec)/float64(processed))
	return us, float64(usec) / float64(processed), nil
}
