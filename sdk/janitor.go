package sdk

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// JanitorConfig configures a Janitor. Zero fields take the defaults
// documented on each.
type JanitorConfig struct {
	// Queues to clean. Required.
	Queues []string
	// Interval between cleaning rounds. Default 2s.
	Interval time.Duration
	// LockTTL is the lifetime of a queue's janitor lock: only a safety net
	// for a janitor that crashes mid-round, since the lock is released as
	// soon as the round is done. Default 1 minute.
	LockTTL time.Duration
	// Limit is the most items one clean call handles per step. Default 500.
	Limit int
	// ReclaimBackoff is the delay before a task whose lease expired runs
	// again. Default 1s.
	ReclaimBackoff time.Duration
	// Logger receives the janitor's logs. Default slog.Default().
	Logger *slog.Logger
}

// maxCleanCalls bounds the clean calls of one queue in one round, so a
// round always ends; what remains is handled in the next round.
const maxCleanCalls = 100

// Janitor keeps queues clean: it reclaims expired leases, expires tasks not
// started in time, trims archives, deletes completed tasks whose retention
// ended, frees expired unique keys, and deletes per-day stats older than
// each queue's QueueConfig.StatsDays. Any number of janitors may run (every
// Worker runs one); per queue, a lock with an owner token lets one at a time
// clean, and each releases the lock as soon as it is done.
type Janitor struct {
	loader *loader.Loader
	cfg    JanitorConfig
	queues []keys.Queue
	owner  string
	log    *slog.Logger
}

// JanitorReport sums what one round did.
type JanitorReport struct {
	Reclaimed        int64 // expired leases turned into failed runs
	Expired          int64 // tasks that expired before they started
	RetentionDeleted int64 // completed tasks deleted after their retention
	UniqueFreed      int64 // unique keys whose TTL passed
	StatsTrimmed     int64 // per-day stats fields older than the queue's StatsDays
	WorkersPruned    int64 // registrations of workers whose heartbeat lapsed
	Skipped          int   // queues whose lock another janitor held
}

// NewJanitor returns a Janitor over rdb.
func NewJanitor(rdb redis.UniversalClient, cfg JanitorConfig) (*Janitor, error) {
	b, err := scripts.Load()
	if err != nil {
		return nil, fmt.Errorf("luaq: loading the bundle: %w", err)
	}
	return newJanitor(loader.New(rdb, b), cfg)
}

func newJanitor(l *loader.Loader, cfg JanitorConfig) (*Janitor, error) {
	if len(cfg.Queues) == 0 {
		return nil, fmt.Errorf("luaq: janitor config: %w: no queues", ErrBadArg)
	}
	setDefault(&cfg.Interval, 2*time.Second)
	setDefault(&cfg.LockTTL, time.Minute)
	setDefault(&cfg.ReclaimBackoff, time.Second)
	if cfg.Limit == 0 {
		cfg.Limit = 500
	}
	if cfg.Limit < 1 || cfg.Limit > 1000 {
		return nil, fmt.Errorf("luaq: janitor config: %w: limit %d, want 1..1000", ErrBadArg, cfg.Limit)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	j := &Janitor{loader: l, cfg: cfg, log: cfg.Logger}
	for _, name := range cfg.Queues {
		q, err := validQueue(name)
		if err != nil {
			return nil, fmt.Errorf("luaq: janitor config: %w", err)
		}
		j.queues = append(j.queues, q)
	}
	var token [12]byte
	if _, err := rand.Read(token[:]); err != nil {
		return nil, fmt.Errorf("luaq: janitor owner token: %w", err)
	}
	j.owner = "janitor-" + hex.EncodeToString(token[:])
	return j, nil
}

// Owner returns the janitor's owner token, unique per Janitor.
func (j *Janitor) Owner() string { return j.owner }

// Run cleans every Interval until ctx is done; a round's errors are logged
// and the next round tries again.
func (j *Janitor) Run(ctx context.Context) error {
	t := time.NewTicker(j.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := j.RunOnce(ctx); err != nil && ctx.Err() == nil {
			j.log.Warn("luaq: janitor round failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RunOnce does one cleaning round over every queue whose lock it can take,
// releasing each lock as soon as that queue is clean.
func (j *Janitor) RunOnce(ctx context.Context) (JanitorReport, error) {
	var rep JanitorReport
	var errs []error
	for _, q := range j.queues {
		if err := j.cleanQueue(ctx, q, &rep); err != nil {
			errs = append(errs, fmt.Errorf("queue %q: %w", q.Name(), err))
		}
	}
	return rep, errors.Join(errs...)
}

func (j *Janitor) lock(ctx context.Context, q keys.Queue, op string, ttl time.Duration) (bool, error) {
	v, err := j.loader.Run(ctx, q, "janitor-lock", op, j.owner, strconv.FormatInt(ceilMs(ttl), 10))
	if err != nil {
		return false, fmt.Errorf("janitor-lock %s: %w", op, err)
	}
	n, err := loader.Int(v)
	return n == 1, err
}

func (j *Janitor) cleanQueue(ctx context.Context, q keys.Queue, rep *JanitorReport) (err error) {
	got, err := j.lock(ctx, q, "acquire", j.cfg.LockTTL)
	if err != nil {
		return err
	}
	if !got {
		rep.Skipped++
		return nil
	}
	defer func() {
		// Release at once, even when ctx is done: the lock must not wait
		// for its TTL.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, rerr := j.lock(rctx, q, "release", 0); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	pruned, err := j.loader.Run(ctx, q, "prune-workers", strconv.Itoa(j.cfg.Limit))
	if err != nil {
		return fmt.Errorf("prune-workers: %w", err)
	}
	if ids, err := loader.Slice(pruned); err == nil {
		rep.WorkersPruned += int64(len(ids))
	}
	for call := 0; call < maxCleanCalls; call++ {
		v, err := j.loader.Run(ctx, q, "clean", j.owner, strconv.Itoa(j.cfg.Limit),
			strconv.FormatInt(ceilMs(j.cfg.ReclaimBackoff), 10))
		if err != nil {
			return fmt.Errorf("clean: %w", err)
		}
		arr, err := loader.Slice(v)
		if err != nil || len(arr) != 6 {
			return fmt.Errorf("clean: unexpected reply %v", v)
		}
		var n [6]int64
		for i := range n {
			if n[i], err = loader.Int(arr[i]); err != nil {
				return fmt.Errorf("clean: %w", err)
			}
		}
		rep.Reclaimed += n[0]
		rep.Expired += n[1]
		rep.RetentionDeleted += n[2]
		rep.UniqueFreed += n[3]
		rep.StatsTrimmed += n[4]
		if n[5] == 0 {
			return nil
		}
		if ok, err := j.lock(ctx, q, "renew", j.cfg.LockTTL); err != nil || !ok {
			return errors.Join(err, errors.New("lost the janitor lock mid-round"))
		}
	}
	return nil
}
