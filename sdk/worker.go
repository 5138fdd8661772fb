package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// Handler runs tasks of one type. A nil error completes the task; any other
// error fails this run (wrap ErrSkipRetry to archive at once). The context is
// cancelled when the task's timeout or deadline passes, when its lease is lost
// (cause ErrLeaseLost), or when the worker shuts down before the handler
// returns (cause ErrWorkerStopping, and the task goes back to pending).
type Handler interface {
	ProcessTask(ctx context.Context, t *Task) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *Task) error

// ProcessTask calls f.
func (f HandlerFunc) ProcessTask(ctx context.Context, t *Task) error { return f(ctx, t) }

// HandlerOption configures the handling of one task type.
type HandlerOption func(*handlerEntry)

// WithBackoff sets the retry backoff for one task type.
func WithBackoff(b BackoffFunc) HandlerOption {
	return func(h *handlerEntry) { h.backoff = b }
}

type handlerEntry struct {
	handler Handler
	backoff BackoffFunc
}

// WorkerConfig configures a Worker. Zero fields take the defaults documented
// on each.
type WorkerConfig struct {
	// Queues maps queue names to weights. Default: {"default": 1}.
	Queues map[string]int
	// StrictPriority, when true, always serves higher-weight queues first;
	// otherwise each fetch orders the queues at random in proportion to
	// their weights.
	StrictPriority bool
	// Concurrency is the most handlers running at once. Default 10.
	Concurrency int
	// LeaseDuration is how long a lease lasts without renewal; the worker
	// renews every LeaseDuration/3 while a handler runs. Default 8s.
	LeaseDuration time.Duration
	// ShutdownTimeout is how long Shutdown waits for running handlers before
	// it returns their tasks to pending. Default 10s.
	ShutdownTimeout time.Duration
	// MaxIdleWait is the longest an idle worker blocks on the wake list
	// before it looks at its queues again (it wakes at once on an enqueue or
	// a retry, a reclaimed lease's included, and exactly when the next
	// scheduled task is due). Default 30s.
	MaxIdleWait time.Duration
	// PromoteLimit is the most due scheduled tasks one dequeue promotes.
	// Default 100.
	PromoteLimit int
	// ReclaimLimit is the most expired leases (of dead workers) one dequeue
	// reclaims. Default 10.
	ReclaimLimit int
	// ReclaimBackoff is the delay before a reclaimed task runs again. Default 1s.
	ReclaimBackoff time.Duration
	// Backoff is the default retry backoff. Default: DefaultBackoff().
	Backoff BackoffFunc
	// Logger receives the worker's logs. Default: slog.Default().
	Logger *slog.Logger
	// JanitorInterval is how often the worker's built-in janitor cleans its
	// queues (see Janitor). Default 2s; negative disables it. The janitor is
	// what reclaims the leases of workers that died, within a lease plus
	// this interval: idle workers do not poll for lease deadlines. With it
	// disabled, run a Janitor elsewhere, or such tasks wait for a busy
	// worker's dequeue or an idle one's MaxIdleWait.
	JanitorInterval time.Duration
	// JanitorLockTTL is the built-in janitor's lock TTL (see
	// JanitorConfig.LockTTL). Default 1 minute.
	JanitorLockTTL time.Duration
	// RequireNoEviction makes Run and Start fail, with an error matching
	// ErrEvictionPolicy, when a server's maxmemory-policy is not noeviction
	// or cannot be read. Without it the worker only logs a warning.
	RequireNoEviction bool
}

func (c *WorkerConfig) normalize() error {
	if len(c.Queues) == 0 {
		c.Queues = map[string]int{"default": 1}
	}
	for name, weight := range c.Queues {
		if _, err := validQueue(name); err != nil {
			return err
		}
		if weight < 1 {
			return fmt.Errorf("%w: queue %q has weight %d, want >= 1", ErrBadArg, name, weight)
		}
	}
	if c.Concurrency == 0 {
		c.Concurrency = 10
	}
	if c.Concurrency < 1 || c.Concurrency > 1000 {
		return fmt.Errorf("%w: concurrency %d, want 1..1000", ErrBadArg, c.Concurrency)
	}
	setDefault(&c.LeaseDuration, 8*time.Second)
	setDefault(&c.ShutdownTimeout, 10*time.Second)
	setDefault(&c.MaxIdleWait, 30*time.Second)
	setDefault(&c.ReclaimBackoff, time.Second)
	setDefault(&c.JanitorInterval, 2*time.Second)
	if c.LeaseDuration < 30*time.Millisecond {
		return fmt.Errorf("%w: lease duration %s is too short (min 30ms)", ErrBadArg, c.LeaseDuration)
	}
	if c.PromoteLimit == 0 {
		c.PromoteLimit = 100
	}
	if c.ReclaimLimit == 0 {
		c.ReclaimLimit = 10
	}
	if c.PromoteLimit < 0 || c.PromoteLimit > 1000 || c.ReclaimLimit < 0 || c.ReclaimLimit > 1000 {
		return fmt.Errorf("%w: promote and reclaim limits must be 0..1000", ErrBadArg)
	}
	if c.Backoff == nil {
		c.Backoff = DefaultBackoff()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

type workerQueue struct {
	name   string
	keys   keys.Queue
	weight int
}

// run states of one in-flight task. The handler's goroutine moves it from
// running to acking when its handler returns; Shutdown moves it from running
// to abandoned when it cancels the handler, and the handler's goroutine then
// gives the task back (or completes it) once the handler has returned.
const (
	runRunning int32 = iota
	runAcking
	runAbandoned
)

type running struct {
	task   *Task
	q      *workerQueue
	cancel context.CancelCauseFunc
	state  atomic.Int32
	// localExpiry estimates, on this machine's monotonic clock, when the
	// lease runs out if no renewal succeeds.
	localExpiry atomic.Int64
}

// Worker leases tasks from its queues and runs their handlers. Create it with
// NewWorker, register handlers, then call Run (blocking) or Start (returns
// once the worker leases; stop it with Shutdown), once.
type Worker struct {
	rdb      redis.UniversalClient
	loader   *loader.Loader
	cfg      WorkerConfig
	queues   []*workerQueue
	log      *slog.Logger
	leaseArg string
	// chainNext is 1 when completing a task may lease the next one in the
	// same call: only with a single queue, so priorities stay honoured.
	chainNext string

	mu       sync.Mutex
	handlers map[string]handlerEntry
	inflight map[*running]struct{}
	started  bool
	stopped  bool

	stopping   chan struct{} // closed when shutdown begins
	done       chan struct{} // closed when shutdown has finished
	hurry      chan struct{} // closed when a Shutdown context ends first
	hurryOnce  sync.Once
	stopOnce   sync.Once
	ready      chan struct{} // closed once the start has started the loops, or failed to
	startErr   error         // why the start failed; written before ready is closed
	slots      chan struct{}
	chains     sync.WaitGroup
	fetchDone  chan struct{}
	extendStop chan struct{}
	extendDone chan struct{}

	id        string // registration id, "<host>:<pid>:<random>"
	host      string
	startedAt time.Time

	janitorStop context.CancelFunc // nil when the janitor is disabled
	janitorDone chan struct{}

	waiter    *waiter       // the blocking waits of idle spells
	wakeCh    chan struct{} // a wait got a wake token, or failed
	waitEnded chan struct{} // a wait timed out without a token
}

// NewWorker returns a Worker over rdb.
func NewWorker(rdb redis.UniversalClient, cfg WorkerConfig) (*Worker, error) {
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("luaq: worker config: %w", err)
	}
	b, err := scripts.Load()
	if err != nil {
		return nil, fmt.Errorf("luaq: loading the bundle: %w", err)
	}
	w := &Worker{
		rdb: rdb, loader: loader.New(rdb, b), cfg: cfg, log: cfg.Logger,
		leaseArg:   strconv.FormatInt(ceilMs(cfg.LeaseDuration), 10),
		handlers:   map[string]handlerEntry{},
		inflight:   map[*running]struct{}{},
		stopping:   make(chan struct{}),
		done:       make(chan struct{}),
		hurry:      make(chan struct{}),
		slots:      make(chan struct{}, cfg.Concurrency),
		fetchDone:  make(chan struct{}),
		extendStop: make(chan struct{}),
		extendDone: make(chan struct{}),
		wakeCh:     make(chan struct{}, 1),
		waitEnded:  make(chan struct{}, 1),
		ready:      make(chan struct{}),
	}
	if w.id, w.host, err = newWorkerID(); err != nil {
		return nil, fmt.Errorf("luaq: new worker: %w", err)
	}
	for name, weight := range cfg.Queues {
		q, _ := validQueue(name) // validated by normalize
		w.queues = append(w.queues, &workerQueue{name: name, keys: q, weight: weight})
	}
	sort.Slice(w.queues, func(i, j int) bool {
		if w.queues[i].weight != w.queues[j].weight {
			return w.queues[i].weight > w.queues[j].weight
		}
		return w.queues[i].name < w.queues[j].name
	})
	w.chainNext = "0"
	if len(w.queues) == 1 {
		w.chainNext = "1"
	}
	return w, nil
}

// Handle registers the handler of a task type. Call it before Run or Start.
func (w *Worker) Handle(taskType string, h Handler, opts ...HandlerOption) {
	e := handlerEntry{handler: h}
	for _, o := range opts {
		o(&e)
	}
	w.mu.Lock()
	w.handlers[taskType] = e
	w.mu.Unlock()
}

// HandleFunc registers a function as the handler of a task type.
func (w *Worker) HandleFunc(taskType string, f func(ctx context.Context, t *Task) error, opts ...HandlerOption) {
	w.Handle(taskType, HandlerFunc(f), opts...)
}

// Run starts the worker as Start does, then leases and runs tasks until ctx
// is cancelled or Shutdown is called; either way it returns only after the
// shutdown cleanup (see Shutdown) is done. Run returns Start's error when the
// worker could not start. Call Run or Start once.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.claimStart("Run"); err != nil {
		return err
	}
	if err := w.start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
		_ = w.Shutdown(context.Background())
	case <-w.stopping:
	}
	<-w.done
	return nil
}

// Start starts the worker without blocking: it loads the bundle, checks the
// eviction policy (see WorkerConfig.RequireNoEviction), registers the worker
// with its queues and starts leasing, then returns nil; or it returns why
// the worker could not start, and the worker is then finished. When Start
// returns nil the worker is listed by Client.Workers and leases tasks as
// they come. ctx bounds the start only: the worker runs until Shutdown,
// which stops it as it stops Run. Call Run or Start once.
func (w *Worker) Start(ctx context.Context) error {
	if err := w.claimStart("Start"); err != nil {
		return err
	}
	return w.start(ctx)
}

// claimStart marks the worker started, or says why it cannot start: it
// started before, or was shut down.
func (w *Worker) claimStart(method string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started || w.stopped {
		return fmt.Errorf("luaq: Worker.%s called after Run, Start or Shutdown", method)
	}
	w.started = true
	return nil
}

// start is the start-up sequence of Run and Start: load, check, register,
// then start the loops; ready closes at the end, or on failure.
func (w *Worker) start(ctx context.Context) error {
	if err := w.loader.Load(ctx); err != nil {
		return w.failStart(err)
	}
	if _, err := checkEviction(ctx, w.rdb, w.log, w.cfg.RequireNoEviction); err != nil {
		return w.failStart(err)
	}
	w.startedAt = time.Now()
	if err := w.heartbeat(ctx); err != nil {
		return w.failStart(err)
	}
	w.setupWaiters()
	if err := w.startJanitor(); err != nil {
		return w.failStart(err)
	}
	go w.extendLoop()
	go w.fetchLoop()
	close(w.ready)
	return nil
}

// failStart ends a start that failed: Shutdown and Run return at once.
func (w *Worker) failStart(err error) error {
	w.startErr = err
	close(w.ready)
	w.stopOnce.Do(func() { close(w.stopping); close(w.done) })
	return fmt.Errorf("luaq: worker start: %w", err)
}

// Shutdown stops the worker gracefully, in the manner of
// net/http.Server.Shutdown. It stops leasing at once and waits for running
// handlers until they return or ShutdownTimeout passes; it then cancels the
// handlers still running (cause ErrWorkerStopping), and gives each one's
// task back to pending (without counting a retry) once that handler has
// returned, never before: a task is never given back while its first
// handler still runs. Last, the worker deregisters.
//
// Shutdown returns nil once all that is done, or ctx.Err() as soon as ctx
// ends, whichever comes first. When ctx ends first, the handlers still
// running are cancelled at once and the rest continues in the background:
// tasks are given back as their handlers return, and Run returns when the
// cleanup is done. Left to lease expiry are the tasks of handlers that have
// not returned ShutdownTimeout after they were cancelled, and any that
// could not be given back (Redis unreachable): their leases are no longer
// renewed, and LeaseDuration after the last renewal the janitor reclaims
// them as failed runs, counting a retry. The one window that remains is a
// handler that ignores its context for that long: its task may then start
// on another worker while it still runs.
//
// Shutdown may be called any number of times, from any goroutine.
func (w *Worker) Shutdown(ctx context.Context) error {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		started := w.started
		w.stopped = true
		w.mu.Unlock()
		close(w.stopping)
		if !started {
			close(w.done)
			return
		}
		go w.shutdown()
	})
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		w.hurryOnce.Do(func() { close(w.hurry) })
		return ctx.Err()
	}
}

// shutdown is the ordered shutdown sequence; each step says why it comes
// where it does.
func (w *Worker) shutdown() {
	// 1. Shutdown may be called while Run or Start is still starting: wait
	// until the waiter and the loops exist (or the start failed) before
	// touching them.
	<-w.ready
	if w.startErr != nil {
		close(w.done)
		return
	}
	// 2. Stop leasing: interrupt blocked waits and let the fetch loop end,
	// so no new task is started from here on.
	w.waiter.stop() // ends blocked waits at once
	<-w.fetchDone
	// 3. Let running handlers finish on their own, within the grace period
	// (cut short when a Shutdown context ends).
	chainsDone := make(chan struct{})
	go func() { w.chains.Wait(); close(chainsDone) }()
	w.waitUntil(chainsDone, w.hurry)
	// 4. Cancel the handlers still running. Each one's goroutine gives its
	// task back once the handler returns; their leases are still renewed
	// meanwhile, so no other worker can take those tasks.
	w.abandonInflight()
	if !w.waitUntil(chainsDone, nil) {
		w.log.Warn("luaq: handlers still running after their cancellation; their tasks are left to lease expiry")
	}
	// 5. Stop renewing leases: only tasks of handlers that did not return
	// are still leased, and they must now expire.
	close(w.extendStop)
	<-w.extendDone
	// 6. Deregister, then stop the janitor (it may still reclaim leases of
	// dead workers until here).
	w.deregister()
	w.stopJanitor()
	close(w.done)
}

// waitUntil waits for done, for ShutdownTimeout, or for cut to close (nil:
// never). It reports whether done closed.
func (w *Worker) waitUntil(done, cut <-chan struct{}) bool {
	grace := time.NewTimer(w.cfg.ShutdownTimeout)
	defer grace.Stop()
	select {
	case <-done:
		return true
	case <-grace.C:
	case <-cut:
	}
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// startJanitor starts the worker's built-in janitor over its queues, unless
// JanitorInterval is negative.
func (w *Worker) startJanitor() error {
	w.janitorDone = make(chan struct{})
	if w.cfg.JanitorInterval < 0 {
		close(w.janitorDone)
		return nil
	}
	names := make([]string, len(w.queues))
	for i, q := range w.queues {
		names[i] = q.name
	}
	j, err := newJanitor(w.loader, JanitorConfig{
		Queues: names, Interval: w.cfg.JanitorInterval, LockTTL: w.cfg.JanitorLockTTL,
		ReclaimBackoff: w.cfg.ReclaimBackoff, Logger: w.log,
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.janitorStop = cancel
	go func() {
		defer close(w.janitorDone)
		_ = j.Run(ctx)
	}()
	return nil
}

// stopJanitor stops the built-in janitor and waits for its round to end.
func (w *Worker) stopJanitor() {
	if w.janitorStop != nil {
		w.janitorStop()
	}
	<-w.janitorDone
}

// abandonInflight cancels every handler still running; its goroutine
// gives the task back once the handler returns (see process).
func (w *Worker) abandonInflight() {
	w.mu.Lock()
	var runs []*running
	for r := range w.inflight {
		if r.state.CompareAndSwap(runRunning, runAbandoned) {
			runs = append(runs, r)
		}
	}
	w.mu.Unlock()
	for _, r := range runs {
		r.cancel(ErrWorkerStopping)
	}
}

// requeue gives tasks back to pending, retrying on connection errors for a
// bounded time. A task whose lease is already gone needs nothing.
func (w *Worker) requeue(runs []*running) {
	deadline := time.Now().Add(w.cfg.LeaseDuration + 5*time.Second)
	for delay := 20 * time.Millisecond; len(runs) > 0; delay = min(2*delay, time.Second) {
		calls := make([]loader.Call, len(runs))
		for i, r := range runs {
			calls[i] = loader.Call{Queue: r.q.keys, Script: "requeue", Args: []string{r.task.ID, r.task.token}}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		results := w.loader.RunPipelined(ctx, calls)
		cancel()
		var again []*running
		for i, res := range results {
			if res.Err != nil && !isScriptError(res.Err) {
				again = append(again, runs[i])
			} else if res.Err != nil && !errors.Is(res.Err, ErrLeaseLost) {
				w.log.Error("luaq: requeue failed", "queue", runs[i].q.name, "id", runs[i].task.ID, "err", res.Err)
			}
		}
		runs = again
		if len(runs) > 0 && time.Now().After(deadline) {
			w.log.Error("luaq: could not requeue tasks; their leases will expire and be reclaimed", "count", len(runs))
			return
		}
		if len(runs) > 0 {
			time.Sleep(delay)
		}
	}
}

func (w *Worker) isStopping() bool {
	select {
	case <-w.stopping:
		return true
	default:
		return false
	}
}

func isScriptError(err error) bool {
	var se *loader.ScriptError
	return errors.As(err, &se)
}
