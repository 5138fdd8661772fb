// Package redistest starts real redis-server processes for integration tests.
//
// [Start] runs a private redis-server on a free loopback port with its data
// and log in a fresh t.TempDir(), and kills it when the test ends. [StartCluster]
// does the same for a local Redis Cluster. Nothing here ever connects to port
// 6379 or to any server the package did not start itself, with one exception
// the user opts into: the LUAQ_REDIS_URL environment variable.
//
// Environment:
//
//   - LUAQ_REDIS_URL: if set, [Start] does not start a process but returns a
//     [Server] for that URL ([Server.External] reports true). Tests that may run
//     against such a server must use unique key and queue names (for example
//     derived from t.Name() plus a random suffix) and must never run FLUSHDB,
//     FLUSHALL or anything else that affects keys they did not create: the
//     server may be shared with other tests and other people. Methods that need
//     process control (Restart, Kill, Stop) skip the test on an external
//     server. [StartCluster] ignores the variable: a cluster is always local.
//   - LUAQ_REQUIRE_REDIS=1: a missing redis-server or redis-cli binary fails
//     the test instead of skipping it. CI sets it.
//
// Methods that take a testing.TB report failure with t.Fatalf, so, like
// t.Fatalf itself, they must be called from the goroutine running the test.
// Clients handed out by a Server or Cluster may be used from any goroutine,
// including while another goroutine restarts the server.
package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// EnvURL names the environment variable that points the tests at an
	// external Redis server instead of a private one.
	EnvURL = "LUAQ_REDIS_URL"
	// EnvRequire names the environment variable that, when set to "1", turns
	// a missing redis-server or redis-cli binary into a test failure.
	EnvRequire = "LUAQ_REQUIRE_REDIS"

	readyTimeout = 10 * time.Second // start until PING answers
	stopTimeout  = 30 * time.Second // SIGTERM until exit
	killTimeout  = 10 * time.Second // SIGKILL until exit
	pollInterval = 20 * time.Millisecond
	startRetries = 5 // fresh ports tried when the chosen one was taken
	logTailLines = 60
	logFileName  = "redis.log"
	outFileName  = "redis.stdout" // stdout/stderr: errors before the log file opens
	reservedPort = 6379
)

// errAddrInUse marks a start that failed because another process took the
// chosen port between the probe and redis-server binding it.
var errAddrInUse = errors.New("port already in use")

// Option configures a server started by [Start].
type Option func(*config)

type config struct {
	persistence bool
	args        []string
	cluster     bool // cluster node: adds the cluster flags and a bus port
}

// WithPersistence turns on the append-only file with fsync after every write
// (--appendonly yes --appendfsync always), so data survives [Server.Restart]
// and even [Server.Kill]. It has no effect on an external server.
func WithPersistence() Option {
	return func(c *config) { c.persistence = true }
}

// WithArgs appends extra redis-server command-line arguments, for example
// WithArgs("--maxmemory", "10mb"). They come after the package's own flags,
// so they can override them. They have no effect on an external server.
func WithArgs(args ...string) Option {
	return func(c *config) { c.args = append(c.args, args...) }
}

// Server is a Redis server for one test: either a redis-server process the
// test started, or the external server named by LUAQ_REDIS_URL.
type Server struct {
	external bool
	url      string // as given or built; may hold a password when external
	addr     string // host:port
	dir      string // data and log directory; "" when external
	bin      string // redis-server path
	args     []string

	mu   sync.Mutex // serialises process control
	proc *process   // nil while stopped
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // result of cmd.Wait, readable after done is closed
}

// Start returns a Redis server for t. Without LUAQ_REDIS_URL it starts a
// private redis-server on a free 127.0.0.1 port with data and log in a fresh
// temporary directory, waits until it answers PING, and kills it when the
// test ends. If redis-server is not on PATH it skips the test, or fails it
// when LUAQ_REQUIRE_REDIS=1. With LUAQ_REDIS_URL it checks that the external
// server answers PING and returns it; see the package documentation for the
// rules such tests must follow.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	if raw := os.Getenv(EnvURL); raw != "" {
		return startExternal(t, raw)
	}
	bin := lookBinary(t, "redis-server", "redis-server not on PATH; install it or set "+EnvURL)
	return startLocal(t, bin, cfg)
}

// lookBinary finds name on PATH, or skips t with skipMsg (fails it when
// LUAQ_REQUIRE_REDIS=1).
func lookBinary(t testing.TB, name, skipMsg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("redistest: %s=1 but %s is not usable: %v (install Redis, e.g. apt-get install redis-server)", EnvRequire, name, err)
	}
	t.Skip(skipMsg)
	return ""
}

func startExternal(t testing.TB, raw string) *Server {
	t.Helper()
	opt, err := redis.ParseURL(raw)
	if err != nil {
		t.Fatalf("redistest: parse %s=%s: %v", EnvURL, redactURL(raw), err)
	}
	s := &Server{external: true, url: raw, addr: opt.Addr}
	c := redis.NewClient(opt)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("redistest: external server %s=%s does not answer PING: %v", EnvURL, redactURL(raw), err)
	}
	return s
}

// redactURL hides a password in a Redis URL for error messages.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable URL>"
	}
	return u.Redacted()
}

// startLocal starts redis-server and registers its cleanup. A port stolen
// between probing and binding is retried with a fresh port.
func startLocal(t testing.TB, bin string, cfg config) *Server {
	t.Helper()
	return startProcess(t, func(dir string) (*Server, error) { return newLocal(bin, dir, cfg) })
}

// startProcess launches the server prepare builds in a fresh temporary
// directory and registers its cleanup. A port stolen between probing and
// binding is retried with a fresh directory and port.
func startProcess(t testing.TB, prepare func(dir string) (*Server, error)) *Server {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < startRetries; attempt++ {
		s, err := prepare(t.TempDir())
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s.mu.Lock()
		err = s.launchLocked()
		s.mu.Unlock()
		if err == nil {
			t.Cleanup(func() {
				if err := s.kill(); err != nil {
					t.Errorf("redistest: cleanup: %v", err)
				}
			})
			return s
		}
		if !errors.Is(err, errAddrInUse) {
			t.Fatalf("redistest: %v", err)
		}
		lastErr = err
	}
	t.Fatalf("redistest: no usable port after %d attempts: %v", startRetries, lastErr)
	return nil
}

// newLocal prepares (but does not launch) a server in dir on a free port.
func newLocal(bin, dir string, cfg config) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--daemonize", "no",
		"--logfile", filepath.Join(dir, logFileName),
	}
	if cfg.persistence {
		args = append(args, "--appendonly", "yes", "--appendfsync", "always")
	} else {
		args = append(args, "--appendonly", "no")
	}
	if cfg.cluster {
		bus, err := freePort()
		if err != nil {
			return nil, err
		}
		args = append(args,
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "2000",
			// The default bus port is port+10000, which overflows for
			// ports above 55535; pick one explicitly (Redis >= 7).
			"--cluster-port", strconv.Itoa(bus),
			// Replicas sync at once instead of after the default 5 s.
			"--repl-diskless-sync-delay", "0",
		)
	}
	args = append(args, cfg.args...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return &Server{url: "redis://" + addr, addr: addr, dir: dir, bin: bin, args: args}, nil
}

// freePort asks the kernel for a free loopback port, never 6379.
func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("probe free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("probe free port: close listener: %w", err)
		}
		if port != reservedPort {
			return port, nil
		}
	}
}

// launchLocked starts redis-server and waits until it answers PING as the
// process just started. s.mu must be held and s.proc must be nil.
func (s *Server) launchLocked() error {
	out, err := os.OpenFile(filepath.Join(s.dir, outFileName), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open redis-server output file: %w", err)
	}
	cmd := exec.Command(s.bin, s.args...)
	// An *os.File (not a pipe) so Wait never blocks on forked children
	// (AOF rewrite) that inherit the descriptor.
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Dir = s.dir
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		out.Close()
		return fmt.Errorf("start %s on %s: %w", s.bin, s.addr, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	if err := s.waitReady(p); err != nil {
		_ = signalAndWait(p, syscall.SIGKILL, killTimeout)
		return fmt.Errorf("redis-server on %s (dir %s): %w\n--- log tail ---\n%s", s.addr, s.dir, err, s.LogTail())
	}
	s.proc = p
	return nil
}

// waitReady polls until the server on s.addr answers PING and reports p's
// pid, p exits, or the deadline passes.
func (s *Server) waitReady(p *process) error {
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var last error
	for {
		last = s.checkOwnServer(ctx, p.cmd.Process.Pid)
		if last == nil {
			return nil
		}
		if errors.Is(last, errAddrInUse) {
			return last
		}
		select {
		case <-p.done:
			if strings.Contains(s.readLog(), "Address already in use") {
				return fmt.Errorf("exited before answering PING (%v): %w", p.err, errAddrInUse)
			}
			return fmt.Errorf("exited before answering PING: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("no PING answer within %v: %w", readyTimeout, last)
		case <-tick.C:
		}
	}
}

// checkOwnServer PINGs and makes sure the answer comes from pid, so a port
// taken over by someone else's server is never mistaken for ours.
func (s *Server) checkOwnServer(ctx context.Context, pid int) error {
	// Plain TCP first: go-redis logs every refused dial.
	conn, err := net.DialTimeout("tcp", s.addr, 250*time.Millisecond)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	conn.Close()
	// A fresh client per attempt: a go-redis pool remembers dial errors and
	// backs off, which would slow down noticing the server is up.
	c := redis.NewClient(&redis.Options{
		Addr:            s.addr,
		DialTimeout:     250 * time.Millisecond,
		DialerRetries:   1,
		ReadTimeout:     time.Second,
		WriteTimeout:    time.Second,
		MaxRetries:      -1,
		PoolSize:        1,
		DisableIdentity: true,
	})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("PING: %w", err)
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return fmt.Errorf("INFO server: %w", err)
	}
	got := infoField(info, "process_id")
	if got != strconv.Itoa(pid) {
		return fmt.Errorf("%s is answered by process_id %q, not by our pid %d: %w", s.addr, got, pid, errAddrInUse)
	}
	return nil
}

// infoField returns the value of key in an INFO reply, or "".
func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), key+":"); ok {
			return v
		}
	}
	return ""
}

// signalAndWait sends sig to p and waits up to timeout for it to exit,
// escalating to SIGKILL after a timed-out gentler signal.
func signalAndWait(p *process, sig syscall.Signal, timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("send %v to pid %d: %w", sig, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
	}
	if sig == syscall.SIGKILL {
		return fmt.Errorf("pid %d did not exit within %v of SIGKILL", p.cmd.Process.Pid, timeout)
	}
	if err := signalAndWait(p, syscall.SIGKILL, killTimeout); err != nil {
		return err
	}
	return fmt.Errorf("pid %d ignored %v for %v and was killed", p.cmd.Process.Pid, sig, timeout)
}

// kill SIGKILLs the process if it is running; used by cleanup.
func (s *Server) kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL, killTimeout)
}

// stopLocked stops the running process, if any. s.mu must be held.
func (s *Server) stopLocked(sig syscall.Signal, timeout time.Duration) error {
	if s.proc == nil {
		return nil
	}
	p := s.proc
	s.proc = nil
	if err := signalAndWait(p, sig, timeout); err != nil {
		return fmt.Errorf("stop redis-server on %s: %w", s.addr, err)
	}
	return nil
}

// External reports whether s is the external server named by LUAQ_REDIS_URL
// rather than a process the test started.
func (s *Server) External() bool { return s.external }

// Addr returns the server's host:port, e.g. "127.0.0.1:41234".
func (s *Server) Addr() string { return s.addr }

// URL returns a redis:// URL for the server, e.g. "redis://127.0.0.1:41234"
// (for an external server, LUAQ_REDIS_URL as given).
func (s *Server) URL() string { return s.url }

// Dir returns the server's data and log directory, or "" for an external
// server.
func (s *Server) Dir() string { return s.dir }

// Client returns a new go-redis client for the server, closed when the test
// ends. It may be used from any goroutine, also across Restart (commands fail
// while the server is down and reconnect afterwards).
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	var opt *redis.Options
	if s.external {
		var err error
		if opt, err = redis.ParseURL(s.url); err != nil {
			t.Fatalf("redistest: parse %s=%s: %v", EnvURL, redactURL(s.url), err)
		}
	} else {
		opt = &redis.Options{Addr: s.addr}
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Restart stops the server gracefully (SIGTERM, which makes Redis flush and
// fsync its append-only file), waits for it to exit, and starts it again on
// the same port and directory with the same flags, returning once it answers
// PING. Data survives when the server was started WithPersistence. Restart
// also starts a server that was stopped with Kill or Stop. It skips the test
// on an external server.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.needProcess(t, "Restart")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(syscall.SIGTERM, stopTimeout); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
	if err := s.launchLocked(); err != nil {
		t.Fatalf("redistest: restart: %v", err)
	}
}

// Kill sends SIGKILL, as a crash would, and waits until the process is gone.
// Only writes already fsynced survive (all acknowledged writes with
// WithPersistence). Kill on a stopped server does nothing. It skips the test
// on an external server.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	s.needProcess(t, "Kill")
	if err := s.kill(); err != nil {
		t.Fatalf("redistest: kill: %v", err)
	}
}

// Stop shuts the server down gracefully (SIGTERM) and waits until it has
// exited; Restart starts it again. Stop on a stopped server does nothing. It
// skips the test on an external server.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.needProcess(t, "Stop")
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.stopLocked(syscall.SIGTERM, stopTimeout); err != nil {
		t.Fatalf("redistest: %v", err)
	}
}

func (s *Server) needProcess(t testing.TB, method string) {
	t.Helper()
	if s.external {
		t.Skipf("redistest: %s needs a server the test starts, but %s points to an external server", method, EnvURL)
	}
}

// LogTail returns the last lines of the server's log (and anything it wrote
// to stdout/stderr, such as configuration errors), for failure messages. It
// returns "" for an external server.
func (s *Server) LogTail() string {
	if s.external {
		return ""
	}
	var b strings.Builder
	if out, err := os.ReadFile(filepath.Join(s.dir, outFileName)); err == nil && len(strings.TrimSpace(string(out))) > 0 {
		b.WriteString("stdout/stderr:\n")
		b.WriteString(tailLines(string(out), logTailLines))
		b.WriteString("\nlog:\n")
	}
	b.WriteString(tailLines(s.readLog(), logTailLines))
	return b.String()
}

// readLog returns the log file's content, or a note why it cannot.
func (s *Server) readLog() string {
	data, err := os.ReadFile(filepath.Join(s.dir, logFileName))
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return string(data)
}

func tailLines(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
