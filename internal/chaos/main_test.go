//go:build linux

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// envChild, when set, makes this test binary a child process of one of the
// tests (a worker or a producer) instead of running tests. Its value is the
// JSON of a childConfig.
const envChild = "LUAQ_CHAOS_CHILD"

// childConfig configures a child process; which fields matter depends on
// Mode.
type childConfig struct {
	Mode  string `json:"mode"` // "worker", "producer" or "fence"
	Addr  string `json:"addr"`
	Queue string `json:"queue"`
	// Log is the file a worker appends its handler runs to, or a producer
	// its batches and their outcome.
	Log  string `json:"log"`
	Seed uint64 `json:"seed"`

	// Workers.
	Lease           time.Duration `json:"lease"`
	Concurrency     int           `json:"concurrency"`
	JanitorInterval time.Duration `json:"janitor_interval"`
	JanitorLockTTL  time.Duration `json:"janitor_lock_ttl"`
	ReclaimBackoff  time.Duration `json:"reclaim_backoff"`
	ShutdownTimeout time.Duration `json:"shutdown_timeout"`

	// Producers.
	Producer int           `json:"producer"`
	Duration time.Duration `json:"duration"`
	Interval time.Duration `json:"interval"`

	// Fencing workers: "frozen" (the one that is SIGSTOPped) or "holder".
	Role       string `json:"role"`
	ReleaseKey string `json:"release_key"`
}

// TestMain lets the test binary double as a child process: with envChild
// set it runs the child's mode and exits instead of running tests.
func TestMain(m *testing.M) {
	raw := os.Getenv(envChild)
	if raw == "" {
		os.Exit(m.Run())
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintf(os.Stderr, "chaos child: bad %s: %v\n", envChild, err)
		os.Exit(2)
	}
	var err error
	switch cfg.Mode {
	case "worker":
		err = runChaosWorker(cfg)
	case "producer":
		err = runChaosProducer(cfg)
	case "fence":
		err = runFenceWorker(cfg)
	default:
		err = fmt.Errorf("unknown mode %q", cfg.Mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "chaos child %s: %v\n", cfg.Mode, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// child is a child process started by a test.
type child struct {
	name  string
	cmd   *exec.Cmd
	out   string      // file with the child's stderr (and stdout unless piped)
	lines chan string // stdout lines when piped, closed at EOF; else nil
	done  chan struct{}
	err   error // cmd.Wait's result, readable once done is closed

	termSent bool
}

// startChild re-executes the test binary as a child with cfg. Its stderr,
// and its stdout unless pipe is set, go to <dir>/<name>.out; with pipe, its
// stdout lines arrive on lines. The child is SIGKILLed if the test process
// dies (Pdeathsig) and when the test ends.
func startChild(t *testing.T, dir, name string, cfg childConfig, pipe bool) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := &child{name: name, out: filepath.Join(dir, name+".out"), done: make(chan struct{})}
	f, err := os.Create(c.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// -test.run=^$: should TestMain ever not divert the child, it runs no test.
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), envChild+"="+string(raw))
	c.cmd.Stdout, c.cmd.Stderr = f, f
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var pw *os.File
	if pipe {
		var pr *os.File
		if pr, pw, err = os.Pipe(); err != nil {
			t.Fatal(err)
		}
		c.cmd.Stdout = pw
		c.lines = make(chan string, 256)
		go func() {
			defer pr.Close()
			defer close(c.lines)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				c.lines <- sc.Text()
			}
		}()
	}
	if err := c.cmd.Start(); err != nil {
		if pw != nil {
			pw.Close()
		}
		t.Fatalf("start child %s: %v", name, err)
	}
	if pw != nil {
		pw.Close() // the child holds its own copy
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		if !c.exited() {
			_ = c.cmd.Process.Signal(syscall.SIGCONT) // in case it is frozen
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	return c
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the child and waits until it is gone.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Kill(); err != nil && !c.exited() {
		t.Fatalf("kill %s: %v", c.name, err)
	}
	<-c.done
}

// term sends SIGTERM once: a second one could arrive after the child has
// unregistered its handler on its way out, and kill it.
func (c *child) term() {
	if !c.termSent {
		c.termSent = true
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// stop sends SIGTERM (unless term did) and waits up to timeout for a clean
// exit (status 0).
func (c *child) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	c.term()
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Errorf("%s did not exit within %s of SIGTERM\n%s", c.name, timeout, c.tail())
		return
	}
	if c.err != nil {
		t.Errorf("%s exited with %v\n%s", c.name, c.err, c.tail())
	}
}

// wait waits up to timeout for the child to exit by itself with status 0.
func (c *child) wait(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s\n%s", c.name, timeout, c.tail())
	}
	if c.err != nil {
		t.Errorf("%s exited with %v\n%s", c.name, c.err, c.tail())
	}
}

// tail returns the end of the child's output file.
func (c *child) tail() string {
	b, _ := os.ReadFile(c.out)
	s := string(b)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return fmt.Sprintf("--- %s output ---\n%s", c.name, s)
}

// expect waits for a stdout line of a piped child that starts with prefix
// and returns it; other lines are passed to other (if not nil).
func (c *child) expect(t *testing.T, prefix string, timeout time.Duration, other func(string)) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				<-c.done
				t.Fatalf("%s: output ended (%v) before a line %q\n%s", c.name, c.err, prefix, c.tail())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if other != nil {
				other(l)
			}
		case <-deadline:
			t.Fatalf("%s: no line %q within %s\n%s", c.name, prefix, timeout, c.tail())
		}
	}
}

// envDuration reads a duration from the environment, or returns def.
func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 90s or 10m", name, v)
	}
	return d
}

// waitUntil polls cond every 20ms until it holds or timeout passes.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// bg is a short-lived context for the test's own Redis calls.
func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}
