// Package scripttest runs luaq's Lua scripts in-process, on gopher-lua,
// against a miniredis store, in an environment that imitates Redis's script
// sandbox and checks the script contract of DESIGN.md as it goes.
//
// Each Eval gets a fresh Lua state with only the base, table, string and
// math libraries (minus print, load*, dofile, require, setfenv, ...), KEYS
// and ARGV, strict read-only globals, and a redis table whose call/pcall
// convert replies exactly as Redis does under RESP2 (lua-compat §1.3). Every
// command goes to miniredis over a raw RESP2 connection, except TIME, which
// the harness answers from its own Clock. The script's return value is
// converted as Redis would (lua-compat §1.4) into the Go values go-redis
// returns.
//
// While the script runs the harness records Violations of the contract:
// undeclared or cross-slot keys, commands outside the lua-compat §5.2
// allow-list, Lua numbers passed to redis.call, global reads and writes,
// returned floats, nil holes in returned arrays, forbidden redis.* functions,
// oversize unpack/table.concat, and Lint hits in the source. Eval fails the
// test when there is any; EvalRaw only reports them.
//
// Differences from a real server that remain: execution is not atomic with
// respect to other clients of the miniredis (do not write to it
// concurrently with Eval), error texts of runtime Lua errors are
// gopher-lua's, and miniredis's own command quirks (score formatting such as
// "1e+10", lua-compat §4.4) show through.
package scripttest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/redis/go-redis/v9"
)

// Epoch is the instant every Env's Clock starts at: 2026-01-01T00:00:00Z.
var Epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// DefaultTimeout bounds each Eval's run time, so a runaway loop fails the
// test instead of hanging it. It is a hang guard, not a timing target: a
// batch of 1000 tasks on gopher-lua under the race detector on a loaded
// two-core machine takes seconds, so the guard is far above that.
const DefaultTimeout = time.Minute

// Env is one test's Redis: a miniredis server, a go-redis client to it, a
// Clock that the scripts' TIME reads, and the harness's own RESP2
// connection. Evals on one Env are serialised. Create it with New.
type Env struct {
	// Timeout bounds each Eval (DefaultTimeout unless changed). Set it
	// before calling Eval, not concurrently with it.
	Timeout time.Duration

	mr     *miniredis.Miniredis
	client *redis.Client

	clockMu sync.Mutex
	now     time.Time

	evalMu sync.Mutex // serialises Evals and guards conn
	conn   *respConn
}

// New starts a miniredis for the test (stopped at cleanup), sets the Clock
// (and miniredis's time) to Epoch and returns the Env.
func New(t testing.TB) *Env {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(Epoch)
	e := &Env{
		Timeout: DefaultTimeout,
		mr:      mr,
		now:     Epoch,
	}
	e.client = redis.NewClient(&redis.Options{Addr: mr.Addr(), DisableIdentity: true})
	t.Cleanup(func() {
		_ = e.client.Close()
		e.evalMu.Lock()
		if e.conn != nil {
			_ = e.conn.close()
			e.conn = nil
		}
		e.evalMu.Unlock()
	})
	return e
}

// Now returns the Clock's current instant, the one TIME returns to scripts.
func (e *Env) Now() time.Time {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	return e.now
}

// Advance moves the Clock forward by d and fast-forwards miniredis by d, so
// that both TIME and key TTLs move. It panics if d is negative (use SetNow
// to go back in time).
func (e *Env) Advance(d time.Duration) {
	if d < 0 {
		panic("scripttest: Advance with a negative duration; use SetNow")
	}
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	e.now = e.now.Add(d)
	e.mr.SetTime(e.now)
	e.mr.FastForward(d)
}

// SetNow sets the Clock to t, and miniredis's time with it (which is what
// its EXPIREAT/PEXPIREAT compare against). When t is later than the current
// Clock, miniredis is also fast-forwarded by the difference so that TTLs
// expire as they would on a real server; going back in time leaves TTLs
// alone (miniredis keeps remaining durations, which cannot grow back).
func (e *Env) SetNow(t time.Time) {
	e.clockMu.Lock()
	defer e.clockMu.Unlock()
	d := t.Sub(e.now)
	e.now = t
	e.mr.SetTime(t)
	if d > 0 {
		e.mr.FastForward(d)
	}
}

// Addr returns the miniredis address (host:port).
func (e *Env) Addr() string { return e.mr.Addr() }

// Miniredis returns the underlying miniredis, for direct setup and
// inspection. Prefer Advance/SetNow over its SetTime/FastForward, so that the
// Clock and miniredis stay in step.
func (e *Env) Miniredis() *miniredis.Miniredis { return e.mr }

// Client returns a go-redis client connected to the miniredis (default
// options: RESP3), for setup and inspection. It is closed at test cleanup.
func (e *Env) Client() *redis.Client { return e.client }

// Snapshot returns every key of the store with its type, value and TTL
// presence (see keyspace.Dump). It fails the test on error.
func (e *Env) Snapshot(t testing.TB) keyspace.Snapshot {
	t.Helper()
	snap, err := keyspace.Dump(context.Background(), e.client, "*")
	if err != nil {
		t.Fatalf("scripttest: snapshot: %v", err)
	}
	return snap
}
