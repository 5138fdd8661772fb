package sdk

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/luaq/luaq/scripts"
	"github.com/redis/go-redis/v9"
)

// hangGuard bounds a wait for something bound to happen, only so that a
// hung test fails with a message instead of at the go test timeout. It is
// no timing target: no assertion depends on it, and a loaded machine is
// nowhere near it. Tests that check how soon something happens compare
// events they observed instead (see callLog).
const hangGuard = 2 * time.Minute

// scriptCall is one call of a bundle script as a client saw it: when it
// was sent, when its reply arrived, and the reply.
type scriptCall struct {
	name       string
	argv       []string // ARGV, as sent
	start, end time.Time
	reply      any
	err        error
}

// callLog is a go-redis hook that records every bundle script call of the
// clients it is added to (single commands and pipelines). Tests use it to
// order events on one clock (the machine's, which is the test Redis
// servers' clock too) instead of timing them against fixed budgets.
type callLog struct {
	names map[string]string // SHA -> script name

	mu    sync.Mutex
	calls []scriptCall
}

func newCallLog(t *testing.T) *callLog {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	l := &callLog{names: map[string]string{}}
	for _, s := range b.Scripts() {
		l.names[s.SHA] = s.Name
	}
	return l
}

// of returns the recorded calls of the named script, in the order their
// replies arrived.
func (l *callLog) of(name string) []scriptCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []scriptCall
	for _, c := range l.calls {
		if c.name == name {
			out = append(out, c)
		}
	}
	return out
}

// reset forgets every call recorded so far.
func (l *callLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = nil
}

func (l *callLog) record(cmds []redis.Cmder, start, end time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cmds {
		args := c.Args()
		if c.Name() != "evalsha" || len(args) < 2 {
			continue
		}
		sha, _ := args[1].(string)
		name, ok := l.names[sha]
		if !ok {
			continue
		}
		call := scriptCall{name: name, argv: evalArgv(args), start: start, end: end, err: c.Err()}
		if v, ok := c.(*redis.Cmd); ok {
			call.reply = v.Val()
		}
		l.calls = append(l.calls, call)
	}
}

// evalArgv returns the ARGV of an EVALSHA command's arguments: after the
// SHA, the key count and the keys.
func evalArgv(args []any) []string {
	if len(args) < 3 {
		return nil
	}
	nkeys, err := strconv.Atoi(fmt.Sprint(args[2]))
	if err != nil || len(args) < 3+nkeys {
		return nil
	}
	var argv []string
	for _, a := range args[3+nkeys:] {
		argv = append(argv, fmt.Sprint(a))
	}
	return argv
}

func (l *callLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *callLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		l.record([]redis.Cmder{cmd}, start, time.Now())
		return err
	}
}

func (l *callLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		l.record(cmds, start, time.Now())
		return err
	}
}

// cleanReclaimed returns how many expired leases a clean call reclaimed
// (the first field of its reply), or -1 if the call failed.
func cleanReclaimed(c scriptCall) int64 {
	arr, ok := c.reply.([]any)
	if c.err != nil || !ok || len(arr) == 0 {
		return -1
	}
	n, ok := arr[0].(int64)
	if !ok {
		return -1
	}
	return n
}

// idleSpellStart returns when the idle spell under way at at began: when
// the reply of the worker's last dequeue call answered before at came back
// (an idle spell follows a dequeue that leased nothing). dequeues are the
// worker's own dequeue calls.
func idleSpellStart(t *testing.T, dequeues []scriptCall, at time.Time) time.Time {
	t.Helper()
	var spell time.Time
	for _, d := range dequeues {
		if d.end.Before(at) && d.end.After(spell) {
			spell = d.end
		}
	}
	if spell.IsZero() {
		t.Fatalf("the worker made no dequeue call before %v", at.Format(time.StampMicro))
	}
	return spell
}

// checkWoken checks that a worker idle when sent (with MaxIdleWait maxIdle)
// ran a task at ranAt because something woke it (a wake token, a next-due
// hint), not because its idle spell ran out: an idle spell that began at
// spell would have ended by itself only at spell+maxIdle. This holds
// however slow the machine is, unlike a fixed latency bound.
func checkWoken(t *testing.T, what string, spell, sent, ranAt time.Time, maxIdle time.Duration) {
	t.Helper()
	t.Logf("%s: ran %s after %s, %s into the idle spell", what, ranAt.Sub(sent).Round(time.Millisecond), sent.Format(time.StampMilli), ranAt.Sub(spell).Round(time.Millisecond))
	if !ranAt.Before(spell.Add(maxIdle)) {
		t.Errorf("%s: ran %s into the idle spell that began %s before %s, not before its MaxIdleWait %s: nothing woke the worker",
			what, ranAt.Sub(spell), sent.Sub(spell), sent.Format(time.StampMilli), maxIdle)
	}
}
