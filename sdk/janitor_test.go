package sdk

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/loader"
)

// TestJanitorLock checks the per-queue janitor lock: a janitor releases it as
// soon as its round is done, another janitor skips the queue while the lock
// is held, only the owner can renew or release it, and the TTL only matters
// for a janitor that crashed holding it.
func TestJanitorLock(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	l := f.c.loader

	// expireSome enqueues n tasks that expire 20ms later and waits for that,
	// so a janitor round has work to do.
	expireSome := func(t *testing.T, queue string, n int) {
		t.Helper()
		var last *TaskInfo
		for i := 0; i < n; i++ {
			last = f.enqueue(t, queue, "job", ExpireIn(20*time.Millisecond))
		}
		waitServerPast(t, f.rdb, last.EnqueuedAt.Add(20*time.Millisecond))
	}

	t.Run("released right after RunOnce", func(t *testing.T) {
		const queue = "lock-release"
		lock := testQueueKeys(t, queue).Key("lock")
		// Limit 1 makes the round take several clean calls, renewing the
		// lock in between.
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}, Limit: 1, LockTTL: 15 * time.Minute})
		if rep := cleanOnce(t, j); rep.Skipped != 0 {
			t.Fatalf("round on an empty queue: %+v", rep)
		}
		if n := f.rdb.Exists(ctx, lock).Val(); n != 0 {
			t.Fatalf("lock still exists after a round on an empty queue")
		}
		expireSome(t, queue, 3)
		if rep := cleanOnce(t, j); rep.Expired != 3 || rep.Skipped != 0 {
			t.Fatalf("round: %+v, want 3 expired in one round", rep)
		}
		if n := f.rdb.Exists(ctx, lock).Val(); n != 0 {
			t.Fatalf("lock still exists after a round that renewed it")
		}
		// And the next round can take it at once.
		if rep := cleanOnce(t, j); rep.Skipped != 0 {
			t.Fatalf("next round skipped: %+v", rep)
		}
	})

	t.Run("a second janitor skips while the first is mid-round", func(t *testing.T) {
		const queue = "lock-busy"
		lock := testQueueKeys(t, queue).Key("lock")
		// Janitor A on its own connection, whose clean calls wait at a gate.
		ardb := f.srv.Client(t)
		spy := newScriptSpy(t, ardb)
		gate := make(chan struct{})
		var openOnce sync.Once
		openGate := func() { openOnce.Do(func() { close(gate) }) }
		t.Cleanup(openGate) // never leave A blocked when the test fails early
		spy.intercept = func(ctx context.Context, names []string) (context.Context, error) {
			if hasName(names, "clean") {
				<-gate
			}
			return ctx, nil
		}
		ja := newTestJanitor(t, ardb, JanitorConfig{Queues: []string{queue}, LockTTL: 15 * time.Minute})
		jb := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}, LockTTL: 15 * time.Minute})
		expireSome(t, queue, 2)

		type result struct {
			rep JanitorReport
			err error
		}
		aDone := make(chan result, 1)
		go func() {
			rep, err := ja.RunOnce(ctx)
			aDone <- result{rep, err}
		}()
		waitFor(t, hangGuard, "janitor A to start cleaning", func() bool { return spy.count("clean") >= 1 })
		if owner := f.rdb.Get(ctx, lock).Val(); owner != ja.Owner() {
			t.Fatalf("lock held by %q mid-round, want A (%s)", owner, ja.Owner())
		}
		rep := cleanOnce(t, jb)
		if rep.Skipped != 1 || rep.Expired != 0 {
			t.Errorf("B's round while A holds the lock: %+v, want Skipped 1 and nothing done", rep)
		}
		if owner := f.rdb.Get(ctx, lock).Val(); owner != ja.Owner() {
			t.Errorf("lock held by %q after B's skipped round, want still A", owner)
		}
		openGate()
		a := recv(t, aDone, hangGuard, "A's round to end")
		if a.err != nil || a.rep.Expired != 2 || a.rep.Skipped != 0 {
			t.Fatalf("A's round: %+v (%v), want 2 expired", a.rep, a.err)
		}
		if n := f.rdb.Exists(ctx, lock).Val(); n != 0 {
			t.Fatalf("lock still exists after A's round")
		}
		if rep := cleanOnce(t, jb); rep.Skipped != 0 {
			t.Errorf("B's round after A released: %+v, want not skipped", rep)
		}
	})

	t.Run("a lock taken through the loader makes RunOnce skip", func(t *testing.T) {
		const queue = "lock-loader"
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		expireSome(t, queue, 1)
		if got := lockScript(t, l, queue, "acquire", "someone-else", time.Minute); got != 1 {
			t.Fatalf("acquire: %d, want 1", got)
		}
		if rep := cleanOnce(t, j); rep.Skipped != 1 || rep.Expired != 0 {
			t.Fatalf("round under another's lock: %+v, want Skipped 1", rep)
		}
		if got := lockScript(t, l, queue, "release", "someone-else", 0); got != 1 {
			t.Fatalf("release by the owner: %d, want 1", got)
		}
		if rep := cleanOnce(t, j); rep.Skipped != 0 || rep.Expired != 1 {
			t.Fatalf("round after release: %+v, want the task expired", rep)
		}
	})

	t.Run("a non-owner cannot release, renew or clean", func(t *testing.T) {
		const queue = "lock-owner"
		lock := testQueueKeys(t, queue).Key("lock")
		ja := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		jb := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		if got := lockScript(t, l, queue, "acquire", ja.Owner(), time.Minute); got != 1 {
			t.Fatalf("acquire as A: %d, want 1", got)
		}
		for _, op := range []struct {
			name string
			ttl  time.Duration
		}{{"acquire", 24 * time.Hour}, {"renew", 24 * time.Hour}, {"release", 0}} {
			if got := lockScript(t, l, queue, op.name, jb.Owner(), op.ttl); got != 0 {
				t.Errorf("%s as B while A holds the lock: %d, want 0", op.name, got)
			}
			owner := f.rdb.Get(ctx, lock).Val()
			ttl := f.rdb.PTTL(ctx, lock).Val()
			if owner != ja.Owner() || ttl <= 0 || ttl > time.Minute {
				t.Errorf("after B's %s: lock %q with TTL %s, want A's (%s) with its TTL of at most 1m", op.name, owner, ttl, ja.Owner())
			}
		}
		_, err := l.Run(ctx, testQueueKeys(t, queue), "clean", jb.Owner(), "10", "0")
		if !errors.Is(err, loader.ErrNotOwner) {
			t.Errorf("clean as B: err %v, want ErrNotOwner", err)
		}
		// The owner can renew and release; a second release finds nothing.
		if got := lockScript(t, l, queue, "renew", ja.Owner(), 2*time.Minute); got != 1 {
			t.Errorf("renew as A: %d, want 1", got)
		}
		if ttl := f.rdb.PTTL(ctx, lock).Val(); ttl <= time.Minute {
			t.Errorf("TTL after A's renew %s, want about 2m", ttl)
		}
		if got := lockScript(t, l, queue, "release", ja.Owner(), 0); got != 1 {
			t.Errorf("release as A: %d, want 1", got)
		}
		if n := f.rdb.Exists(ctx, lock).Val(); n != 0 {
			t.Errorf("lock exists after the owner released it")
		}
		if got := lockScript(t, l, queue, "release", ja.Owner(), 0); got != 0 {
			t.Errorf("second release as A: %d, want 0", got)
		}
	})

	t.Run("the lock of a crashed janitor lapses after its TTL", func(t *testing.T) {
		const queue = "lock-crashed"
		j := newTestJanitor(t, f.rdb, JanitorConfig{Queues: []string{queue}})
		expireSome(t, queue, 1)
		if got := lockScript(t, l, queue, "acquire", "crashed-janitor", 150*time.Millisecond); got != 1 {
			t.Fatalf("acquire: %d, want 1", got)
		}
		if rep := cleanOnce(t, j); rep.Skipped != 1 {
			t.Fatalf("round under the crashed janitor's lock: %+v, want Skipped 1", rep)
		}
		waitFor(t, hangGuard, "the crashed janitor's lock to lapse", func() bool {
			return f.rdb.Exists(ctx, testQueueKeys(t, queue).Key("lock")).Val() == 0
		})
		if rep := cleanOnce(t, j); rep.Skipped != 0 || rep.Expired != 1 {
			t.Fatalf("round after the lock lapsed: %+v, want the task expired", rep)
		}
	})
}
