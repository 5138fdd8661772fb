package node_test

// Tests of the Node.js client (luaq.js) against a private redis-server and a
// freshly exported bundle: its own node:test suite, and two interop scenarios
// in which Node and the Go SDK share queues (Node produces and a Go worker
// consumes; Go produces and a Node consumer leases, completes and fails).
//
// They need node (>= 18) and npm on PATH; without them they skip, unless
// LUAQ_REQUIRE_REDIS=1, which makes that a failure. node_modules is installed
// with `npm ci` when it is missing or does not match package-lock.json.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/sdk"
)

const (
	interopN = 200
	// Hang guards, not timing targets: a loaded machine is nowhere near them.
	interopNodeTimeout = 2 * time.Minute // one node process
	interopNpmTimeout  = 3 * time.Minute // npm ci, only when node_modules is stale
	interopDrainGuard  = 2 * time.Minute // the Go worker ending the node producer's tasks
)

// interopNode finds node and npm and makes node_modules current, once per
// test binary. It returns the node binary, or skips (fails with
// LUAQ_REQUIRE_REDIS=1) when node or npm is missing.
func interopNode(t *testing.T) string {
	t.Helper()
	interopSetup.once.Do(interopSetupRun)
	if interopSetup.skip != "" {
		if os.Getenv(redistest.EnvRequire) == "1" {
			t.Fatalf("%s (LUAQ_REQUIRE_REDIS=1 makes this a failure)", interopSetup.skip)
		}
		t.Skip(interopSetup.skip)
	}
	if interopSetup.err != nil {
		t.Fatal(interopSetup.err)
	}
	return interopSetup.node
}

var interopSetup struct {
	once sync.Once
	node string
	skip string // why the tests cannot run here
	err  error  // a real failure (npm ci failed, ...)
}

func interopSetupRun() {
	node, err := exec.LookPath("node")
	if err != nil {
		interopSetup.skip = "node is not on PATH: skipping the Node.js client tests (install Node.js >= 18)"
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		interopSetup.skip = "npm is not on PATH: skipping the Node.js client tests (install npm)"
		return
	}
	out, err := exec.Command(node, "--version").Output()
	if err != nil {
		interopSetup.err = fmt.Errorf("node --version: %v", err)
		return
	}
	version := strings.TrimSpace(string(out))
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0]); major < 18 {
		interopSetup.skip = fmt.Sprintf("node %s is too old: the Node.js client needs >= 18", version)
		return
	}
	interopSetup.node = node
	interopSetup.err = interopNpmCI(npm)
}

// interopNpmCI runs `npm ci` in this directory when node_modules does not hold
// exactly the versions package-lock.json pins. A lock file in the temp dir
// keeps two test processes from installing at the same time.
func interopNpmCI(npm string) error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	stale, _, err := interopModulesStale(dir)
	if err != nil || !stale {
		return err
	}
	unlock, err := interopLock(filepath.Join(os.TempDir(), fmt.Sprintf("luaq-node-npm-ci-%x.lock", sha256.Sum256([]byte(dir)))))
	if err != nil {
		return err
	}
	defer unlock()
	stale, why, err := interopModulesStale(dir)
	if err != nil || !stale {
		return err // installed by another process meanwhile
	}
	ctx, cancel := context.WithTimeout(context.Background(), interopNpmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s (%s): %v\n%s", dir, why, err, out)
	}
	if stale, why, err := interopModulesStale(dir); err != nil || stale {
		return fmt.Errorf("node_modules still stale after npm ci: %s %v", why, err)
	}
	return nil
}

// interopModulesStale reports whether node_modules lacks a package of
// package-lock.json or holds another version of it.
func interopModulesStale(dir string) (bool, string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false, "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return false, "", fmt.Errorf("package-lock.json: %w", err)
	}
	for p, want := range lock.Packages {
		if !strings.HasPrefix(p, "node_modules/") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p), "package.json"))
		if err != nil {
			return true, p + " is missing", nil
		}
		var got struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(raw, &got) != nil || got.Version != want.Version {
			return true, fmt.Sprintf("%s is %q, package-lock.json pins %q", p, got.Version, want.Version), nil
		}
	}
	return false, "", nil
}

// interopLock takes an exclusive lock file, breaking one older than the npm
// timeout (left by a killed process).
func interopLock(path string) (func(), error) {
	deadline := time.Now().Add(interopNpmTimeout + 30*time.Second)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > interopNpmTimeout {
			os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out waiting for %s", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// interopEnv starts a private redis-server, exports the bundle and returns
// the server and the environment for node.
func interopEnv(t *testing.T) (*redistest.Server, []string) {
	t.Helper()
	srv := redistest.Start(t)
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.Export(dir); err != nil {
		t.Fatal(err)
	}
	env := append(os.Environ(), "LUAQ_REDIS_ADDR="+srv.Addr(), "LUAQ_BUNDLE_DIR="+dir)
	if !srv.External() {
		env = append(env, "LUAQ_REDIS_PRIVATE=1") // allows the SCRIPT FLUSH test
	}
	return srv, env
}

// interopRun runs node with args in this directory and returns its stdout;
// on failure it fails the test showing stdout and stderr.
func interopRun(t *testing.T, node string, env []string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), interopNodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("node %s: %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	if err != nil {
		t.Fatalf("node %s: %v (ctx: %v)\n--- stdout\n%s\n--- stderr\n%s", strings.Join(args, " "), err, ctx.Err(), stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes()
}

// interopQueue returns a queue name no other test run uses (the server may be
// an external one, see redistest).
func interopQueue(name string) string {
	return fmt.Sprintf("interop:%s:%d", name, time.Now().UnixNano())
}

func interopLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestNodeClientSuite runs the client's own node:test suite (test/*.test.js).
func TestNodeClientSuite(t *testing.T) {
	node := interopNode(t)
	srv, env := interopEnv(t)
	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.js (%v)", err)
	}
	sort.Strings(files)
	out := interopRun(t, node, env, append([]string{"--test", "--test-reporter=tap"}, files...)...)
	summary := regexp.MustCompile(`(?m)^# (tests|pass|fail|skipped) \d+$`).FindAll(out, -1)
	t.Logf("node --test: %s", bytes.Join(summary, []byte(", ")))
	if m := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindSubmatch(out); m == nil || string(m[1]) == "0" {
		t.Fatalf("node --test ran no passing test:\n%s", out)
	}
	if m := regexp.MustCompile(`(?m)^# skipped (\d+)$`).FindSubmatch(out); !srv.External() && (m == nil || string(m[1]) != "0") {
		t.Fatalf("node --test skipped tests on a private server:\n%s", out)
	}
}

// producedTask is one task of produce.js's report.
type producedTask struct {
	Index       int    `json:"index"`
	ID          string `json:"id"`
	Type        string `json:"type"`
	MaxRetry    int    `json:"maxRetry"`
	RetentionMs int64  `json:"retentionMs"`
	Payload     string `json:"payload"` // base64
	State       string `json:"state"`
}

// TestNodeProducesGoConsumes: Node enqueues; a Go worker runs the tasks
// (some fail and retry, some are archived); every task must reach its
// expected end state and Go must see exactly the bytes Node sent.
func TestNodeProducesGoConsumes(t *testing.T) {
	node := interopNode(t)
	srv, env := interopEnv(t)
	queue := interopQueue("node-to-go")

	var report struct {
		EnqueuedAtMs int64          `json:"enqueuedAtMs"`
		Tasks        []producedTask `json:"tasks"`
	}
	out := interopRun(t, node, env, filepath.Join("interop", "produce.js"), queue, strconv.Itoa(interopN))
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("produce.js report: %v\n%s", err, out)
	}
	if len(report.Tasks) != interopN {
		t.Fatalf("produce.js reported %d tasks, want %d", len(report.Tasks), interopN)
	}
	sent := map[string]producedTask{}
	for _, pt := range report.Tasks {
		if pt.State != "pending" || pt.ID == "" {
			t.Fatalf("task %d: id %q state %q, want an id and pending", pt.Index, pt.ID, pt.State)
		}
		if pt.Index%2 == 0 && pt.ID != fmt.Sprintf("n:%d", pt.Index) {
			t.Fatalf("task %d: id %q, want the given n:%d", pt.Index, pt.ID, pt.Index)
		}
		if _, dup := sent[pt.ID]; dup {
			t.Fatalf("id %q twice", pt.ID)
		}
		sent[pt.ID] = pt
	}

	rdb := srv.Client(t)
	client, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	type seen struct {
		runs     int
		payloads [][]byte
		types    []string
	}
	var mu sync.Mutex
	runs := map[string]*seen{}
	record := func(task *sdk.Task) int {
		mu.Lock()
		defer mu.Unlock()
		s := runs[task.ID]
		if s == nil {
			s = &seen{}
			runs[task.ID] = s
		}
		s.runs++
		s.payloads = append(s.payloads, append([]byte(nil), task.Payload...))
		s.types = append(s.types, task.Type)
		return s.runs
	}
	w, err := sdk.NewWorker(rdb, sdk.WorkerConfig{
		Queues:      map[string]int{queue: 1},
		Concurrency: 16,
		Backoff:     func(int, error, *sdk.Task) time.Duration { return 5 * time.Millisecond },
		Logger:      interopLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc("ok", func(_ context.Context, task *sdk.Task) error {
		record(task)
		sum := sha256.Sum256(task.Payload)
		task.SetResult(sum[:])
		return nil
	})
	w.HandleFunc("flaky", func(_ context.Context, task *sdk.Task) error {
		if record(task) == 1 {
			return errors.New("flaky: first run fails")
		}
		task.SetResult([]byte{0, 0xff, 'o', 'k'})
		return nil
	})
	w.HandleFunc("fail", func(_ context.Context, task *sdk.Task) error {
		n := record(task)
		return fmt.Errorf("boom %d", n)
	})
	w.HandleFunc("skip", func(_ context.Context, task *sdk.Task) error {
		record(task)
		return fmt.Errorf("no use: %w", sdk.ErrSkipRetry)
	})
	runErr := make(chan error, 1)
	go func() { runErr <- w.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := w.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	defer stop()

	// Expected outcome per kind (index % 6), see produce.js.
	type want struct {
		state   string // "" = gone (completed without retention)
		runs    int
		retried int
		errPart string
	}
	kinds := []want{
		{"completed", 1, 0, ""},
		{"", 1, 0, ""},
		{"completed", 2, 1, ""},
		{"archived", 1, 0, "boom 1"},
		{"archived", 3, 2, "boom 3"},
		{"archived", 1, 0, "skip retry"},
	}
	var processed, archived, failed, retried int64
	for _, pt := range report.Tasks {
		k := kinds[pt.Index%6]
		if k.state == "archived" {
			archived++
		} else {
			processed++
		}
		failed += int64(k.runs - 1)
		if k.state == "archived" {
			failed++
		}
		retried += int64(k.retried)
	}

	deadline := time.Now().Add(interopDrainGuard)
	var qi *sdk.QueueInfo
	for {
		if qi, err = client.QueueInfo(ctx, queue); err != nil {
			t.Fatal(err)
		}
		if qi.Pending+qi.Scheduled+qi.Active == 0 && qi.Processed+qi.ArchivedTotal == interopN {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not done after %s: %+v", interopDrainGuard, qi)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()

	wantQI := sdk.QueueInfo{
		Queue: queue, Archived: archived,
		Processed: processed, Failed: failed, Retried: retried, ArchivedTotal: archived,
	}
	for _, pt := range report.Tasks {
		if pt.RetentionMs > 0 && kinds[pt.Index%6].state == "completed" {
			wantQI.Completed++
		}
	}
	if *qi != wantQI {
		t.Errorf("QueueInfo = %+v\nwant       %+v", *qi, wantQI)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, pt := range report.Tasks {
		k := kinds[pt.Index%6]
		payload, err := base64.StdEncoding.DecodeString(pt.Payload)
		if err != nil {
			t.Fatal(err)
		}
		s := runs[pt.ID]
		if s == nil {
			t.Errorf("task %d (%s): never run by Go", pt.Index, pt.ID)
			continue
		}
		if s.runs != k.runs {
			t.Errorf("task %d (%s, %s): %d runs, want %d", pt.Index, pt.ID, pt.Type, s.runs, k.runs)
		}
		for i, p := range s.payloads {
			if !bytes.Equal(p, payload) {
				t.Errorf("task %d (%s) run %d: Go saw payload %x, Node sent %x", pt.Index, pt.ID, i+1, p, payload)
			}
			if s.types[i] != pt.Type {
				t.Errorf("task %d (%s) run %d: type %q, want %q", pt.Index, pt.ID, i+1, s.types[i], pt.Type)
			}
		}
		ts, err := client.GetTask(ctx, queue, pt.ID)
		if k.state == "" {
			if !errors.Is(err, sdk.ErrNotFound) {
				t.Errorf("task %d (%s): GetTask = %+v, %v; want ErrNotFound (completed without retention)", pt.Index, pt.ID, ts, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("task %d (%s): GetTask: %v", pt.Index, pt.ID, err)
			continue
		}
		if ts.State != k.state || ts.Retried != k.retried || ts.MaxRetry != pt.MaxRetry || ts.Type != pt.Type ||
			!bytes.Equal(ts.Payload, payload) || !strings.Contains(ts.LastError, k.errPart) ||
			ts.Retention != time.Duration(pt.RetentionMs)*time.Millisecond {
			t.Errorf("task %d (%s): GetTask = state %q retried %d max_retry %d type %q retention %s last_error %q payload equal %v;\nwant state %q retried %d max_retry %d type %q retention %dms last_error containing %q",
				pt.Index, pt.ID, ts.State, ts.Retried, ts.MaxRetry, ts.Type, ts.Retention, ts.LastError, bytes.Equal(ts.Payload, payload),
				k.state, k.retried, pt.MaxRetry, pt.Type, pt.RetentionMs, k.errPart)
		}
		if k.state == "completed" {
			wantResult := []byte{0, 0xff, 'o', 'k'}
			if pt.Type == "ok" {
				sum := sha256.Sum256(payload)
				wantResult = sum[:]
			}
			if !bytes.Equal(ts.Result, wantResult) {
				t.Errorf("task %d (%s): result %x, want %x", pt.Index, pt.ID, ts.Result, wantResult)
			}
		}
	}
	if len(runs) != interopN {
		t.Errorf("Go ran %d distinct tasks, want %d", len(runs), interopN)
	}
}

// consumedTask is one task of consume.js's report.
type consumedTask struct {
	ID           string `json:"id"`
	Token        int64  `json:"token"`
	Type         string `json:"type"`
	Payload      string `json:"payload"` // base64
	Retried      int    `json:"retried"`
	MaxRetry     int    `json:"maxRetry"`
	TimeoutMs    int64  `json:"timeoutMs"`
	DeadlineMs   int64  `json:"deadlineMs"`
	LeaseUntilMs int64  `json:"leaseUntilMs"`
	Extended     bool   `json:"extended"`
	Action       string `json:"action"`
	Result       string `json:"result"` // base64
	Message      string `json:"message"`
	Outcome      string `json:"outcome"`
	AtMs         int64  `json:"atMs"`
}

// TestGoProducesNodeConsumes: Go enqueues with the SDK; consume.js leases
// every task, completes half (kept with retention, so the result stays
// readable) and fails the rest; Go then checks with GetTask and QueueInfo
// that states, retry counts, errors and results are exactly what Node
// reported.
func TestGoProducesNodeConsumes(t *testing.T) {
	node := interopNode(t)
	srv, env := interopEnv(t)
	queue := interopQueue("go-to-node")
	rdb := srv.Client(t)
	client, err := sdk.NewClient(rdb)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	type enq struct {
		info    *sdk.TaskInfo
		timeout time.Duration
	}
	enqueued := map[string]enq{}
	deadline := time.Now().Add(24 * time.Hour).Truncate(time.Millisecond)
	for start := 0; start < interopN; start += 100 {
		var batch []sdk.NewTask
		var timeouts []time.Duration
		for i := start; i < start+100 && i < interopN; i++ {
			payload := make([]byte, i*13%900)
			for j := range payload {
				payload[j] = byte(i*31 + j*7)
			}
			payload = append([]byte{0x00, 0xff}, append(payload, 0xff, 0x00)...)
			opts := []sdk.Option{sdk.Retention(10 * time.Minute)}
			switch i % 3 {
			case 0:
				opts = append(opts, sdk.MaxRetry(0))
			case 1:
				opts = append(opts, sdk.MaxRetry(2), sdk.Deadline(deadline))
			default:
				opts = append(opts, sdk.MaxRetry(7))
			}
			timeout := time.Duration(i%4) * time.Second
			if timeout > 0 {
				opts = append(opts, sdk.Timeout(timeout))
			}
			if i%2 == 0 {
				opts = append(opts, sdk.ID(fmt.Sprintf("g:%d", i)))
			}
			batch = append(batch, sdk.NewTask{Type: fmt.Sprintf("go:type%d", i%5), Payload: payload, Options: opts})
			timeouts = append(timeouts, timeout)
		}
		infos, err := client.EnqueueBatch(ctx, queue, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, info := range infos {
			enqueued[info.ID] = enq{info, timeouts[i]}
		}
	}
	if len(enqueued) != interopN {
		t.Fatalf("%d distinct ids, want %d", len(enqueued), interopN)
	}

	var report struct {
		Tasks     []consumedTask `json:"tasks"`
		QueueInfo map[string]any `json:"queueInfo"`
	}
	out := interopRun(t, node, env, filepath.Join("interop", "consume.js"), queue, strconv.Itoa(interopN))
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("consume.js report: %v\n%s", err, out)
	}
	if len(report.Tasks) != interopN {
		t.Fatalf("consume.js reported %d tasks, want %d", len(report.Tasks), interopN)
	}

	var wantQI = sdk.QueueInfo{Queue: queue}
	seen := map[string]bool{}
	var lastToken int64
	for j, ct := range report.Tasks {
		e, ok := enqueued[ct.ID]
		if !ok || seen[ct.ID] {
			t.Fatalf("Node leased %q: not enqueued by Go, or twice", ct.ID)
		}
		seen[ct.ID] = true
		if ct.Token <= lastToken {
			t.Errorf("task %s: token %d after %d; tokens must grow", ct.ID, ct.Token, lastToken)
		}
		lastToken = ct.Token
		payload, err := base64.StdEncoding.DecodeString(ct.Payload)
		if err != nil {
			t.Fatal(err)
		}
		// What Node saw at lease time is what Go enqueued.
		wantDeadline := int64(0)
		if !e.info.Deadline.IsZero() {
			wantDeadline = e.info.Deadline.UnixMilli()
		}
		if !bytes.Equal(payload, e.info.Payload) || ct.Type != e.info.Type || ct.MaxRetry != e.info.MaxRetry ||
			ct.Retried != 0 || ct.TimeoutMs != e.timeout.Milliseconds() || ct.DeadlineMs != wantDeadline {
			t.Errorf("task %s: Node saw type %q payload %x max_retry %d retried %d timeout %dms deadline %d;\nGo enqueued type %q payload %x max_retry %d timeout %s deadline %d",
				ct.ID, ct.Type, payload, ct.MaxRetry, ct.Retried, ct.TimeoutMs, ct.DeadlineMs,
				e.info.Type, e.info.Payload, e.info.MaxRetry, e.timeout, wantDeadline)
		}
		if j%10 == 0 && !ct.Extended {
			t.Errorf("task %s (#%d): consume.js should have extended its lease", ct.ID, j)
		}

		ts, err := client.GetTask(ctx, queue, ct.ID)
		if err != nil {
			t.Errorf("task %s: GetTask: %v", ct.ID, err)
			continue
		}
		if !bytes.Equal(ts.Payload, e.info.Payload) {
			t.Errorf("task %s: stored payload changed", ct.ID)
		}
		switch ct.Action {
		case "complete":
			wantQI.Completed++
			wantQI.Processed++
			result, _ := base64.StdEncoding.DecodeString(ct.Result)
			sum := sha256.Sum256(e.info.Payload)
			if !bytes.Equal(result, append([]byte{0, 0xff}, sum[:]...)) {
				t.Errorf("task %s: Node's result %x is not 00ff+sha256 of Go's payload", ct.ID, result)
			}
			if ts.State != "completed" || !bytes.Equal(ts.Result, result) || ts.Retried != 0 || ts.LastError != "" {
				t.Errorf("task %s: GetTask state %q result %x retried %d last_error %q; want completed, result %x as Node wrote it",
					ct.ID, ts.State, ts.Result, ts.Retried, ts.LastError, result)
			}
		case "fail-skip", "fail-retry":
			wantQI.Failed++
			wantOutcome := "archived"
			if ct.Action == "fail-retry" && e.info.MaxRetry > 0 {
				wantOutcome = "retry"
			}
			if ct.Outcome != wantOutcome {
				t.Errorf("task %s (%s, max_retry %d): Node got outcome %q, want %q", ct.ID, ct.Action, e.info.MaxRetry, ct.Outcome, wantOutcome)
			}
			wantState, wantRetried := "archived", 0
			if ct.Outcome == "retry" {
				wantState, wantRetried = "retry", 1
				wantQI.Scheduled++
				wantQI.Retried++
			} else {
				wantQI.Archived++
				wantQI.ArchivedTotal++
			}
			if ts.State != wantState || ts.Retried != wantRetried || ts.LastError != ct.Message ||
				ts.StateAt.UnixMilli() != ct.AtMs || ts.Result != nil {
				t.Errorf("task %s: GetTask state %q retried %d last_error %q state_at %d result %x;\nwant %q retried %d last_error %q state_at %d (Node's report)",
					ct.ID, ts.State, ts.Retried, ts.LastError, ts.StateAt.UnixMilli(), ts.Result, wantState, wantRetried, ct.Message, ct.AtMs)
			}
		default:
			t.Errorf("task %s: unknown action %q", ct.ID, ct.Action)
		}
	}
	qi, err := client.QueueInfo(ctx, queue)
	if err != nil {
		t.Fatal(err)
	}
	if *qi != wantQI {
		t.Errorf("QueueInfo = %+v\nwant (from Node's report) %+v", *qi, wantQI)
	}
	// Node's own queue-info, read right after its last call, agrees.
	nodeQI := map[string]int64{}
	for k, v := range report.QueueInfo {
		switch v := v.(type) {
		case float64:
			nodeQI[k] = int64(v)
		case bool:
			nodeQI[k] = map[bool]int64{false: 0, true: 1}[v]
		}
	}
	goQI := map[string]int64{
		"pending": qi.Pending, "scheduled": qi.Scheduled, "active": qi.Active, "archived": qi.Archived,
		"completed": qi.Completed, "paused": map[bool]int64{false: 0, true: 1}[qi.Paused], "processed": qi.Processed,
		"failed": qi.Failed, "retried": qi.Retried, "archivedTotal": qi.ArchivedTotal, "expired": qi.Expired,
	}
	if fmt.Sprint(nodeQI) != fmt.Sprint(goQI) {
		t.Errorf("Node's queueInfo %v, Go's %v", nodeQI, goQI)
	}
	if wantQI.Completed == 0 || wantQI.Archived == 0 || wantQI.Scheduled == 0 {
		t.Errorf("scenario did not cover every outcome: %+v", wantQI)
	}
}
