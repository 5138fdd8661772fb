package loader

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/alicebob/miniredis/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/scripts"
)

// mini is a loader on a fresh miniredis with a command log.
type mini struct {
	srv    *miniredis.Miniredis
	client *redis.Client
	log    *cmdLog
	l      *Loader
	b      *scripts.Bundle
}

func newMini(t *testing.T) *mini {
	t.Helper()
	return newMiniBundle(t, bundle(t))
}

func newMiniBundle(t *testing.T, b *scripts.Bundle) *mini {
	t.Helper()
	srv := miniredis.RunT(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = client.Close() })
	log := newCmdLog()
	client.AddHook(log)
	return &mini{srv: srv, client: client, log: log, l: New(client, b), b: b}
}

// noEval fails the test if the loader ever sent EVAL.
func (m *mini) noEval(t *testing.T) {
	t.Helper()
	if n := m.log.count("eval"); n != 0 {
		t.Errorf("loader sent EVAL %d times; it must only use EVALSHA", n)
	}
}

func TestCodesMatchErrorsLua(t *testing.T) {
	src, err := scripts.ReadSource("lib/errors.lua")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^local ERR_[A-Z_]+ = '([A-Z_]+)'`)
	var lua []string
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		lua = append(lua, m[1])
	}
	if len(lua) == 0 {
		t.Fatal("found no codes in lib/errors.lua; did its format change?")
	}
	got := Codes()
	sort.Strings(lua)
	sort.Strings(got)
	if diff := cmp.Diff(lua, got); diff != "" {
		t.Errorf("loader.Codes() and lib/errors.lua disagree (-lua +go):\n%s", diff)
	}
	known := map[string]bool{}
	for _, c := range Codes() {
		known[c] = true
		if sentinel(c) == nil {
			t.Errorf("code %s has no sentinel", c)
		}
	}
	for _, s := range bundle(t).Scripts() {
		if len(s.Errors) == 0 {
			t.Errorf("script %s lists no ERRORS", s.Name)
		}
		for _, c := range s.Errors {
			if !known[c] {
				t.Errorf("script %s lists error %s, which the loader's table lacks", s.Name, c)
			}
		}
	}
}

func TestLoadThenRun(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	if err := m.l.Load(ctx); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if missing := missingScripts(ctx, t, m.client, m.b); len(missing) > 0 {
		t.Fatalf("after Load the server lacks %v", missing)
	}
	if got, want := m.log.count("script load"), len(m.b.Scripts()); got != want {
		t.Errorf("Load sent %d SCRIPT LOADs, want one per script (%d)", got, want)
	}
	q := queue(t, "emails")
	v, err := m.l.Run(ctx, q, "enqueue", enqueueArgs(t, m.b, "t1")...)
	if err != nil {
		t.Fatalf("Run enqueue: %v", err)
	}
	arr, err := Slice(v)
	if err != nil {
		t.Fatal(err)
	}
	if len(arr) != 4 || arr[1] != "t1" || arr[2] != "pending" {
		t.Fatalf("enqueue reply = %#v, want [now, t1, pending, due]", arr)
	}
	// The keys came from the queue's key builder: the task is in its hash.
	if ok, err := m.client.HExists(ctx, q.Key("tasks"), "t1").Result(); err != nil || !ok {
		t.Fatalf("HEXISTS %s t1 = %v, %v; want true", q.Key("tasks"), ok, err)
	}
	v, err = m.l.Run(ctx, q, "dequeue", dequeueArgs(t, m.b, 10)...)
	if err != nil {
		t.Fatalf("Run dequeue: %v", err)
	}
	if got := leases(t, v); len(got) != 1 || got[0].id != "t1" {
		t.Fatalf("dequeue leased %v, want t1", got)
	}
	if got := m.log.count("evalsha"); got != 2 {
		t.Errorf("sent %d EVALSHAs, want 2", got)
	}
	if got := m.log.count("script load"); got != len(m.b.Scripts()) {
		t.Errorf("Run reloaded scripts (%d SCRIPT LOADs in all) without a NOSCRIPT", got)
	}
	m.noEval(t)
}

func TestRunLoadsOnFirstNoScript(t *testing.T) {
	ctx := context.Background()
	m := newMini(t) // no Load: the first EVALSHA gets NOSCRIPT
	q := queue(t, "q")
	v, err := m.l.Run(ctx, q, "queue-info")
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := info(t, v)["pending"]; got != 0 {
		t.Errorf("pending = %d, want 0", got)
	}
	if got := m.log.count("evalsha"); got != 2 {
		t.Errorf("sent %d EVALSHAs, want 2 (NOSCRIPT, then success)", got)
	}
	if got := m.log.count("script load"); got != len(m.b.Scripts()) {
		t.Errorf("sent %d SCRIPT LOADs, want %d (one load of the bundle)", got, len(m.b.Scripts()))
	}
	m.noEval(t)
}

func TestLoadRejectsWrongSHA(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	m.client.AddHook(shaRewriter{})
	err := m.l.Load(ctx)
	if err == nil {
		t.Fatal("Load accepted SHAs the bundle did not compute")
	}
	for _, want := range []string{m.srv.Addr(), "enqueue", "bundle expects"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error %q does not mention %q", err, want)
		}
	}
}

// shaRewriter makes every SCRIPT LOAD in a pipeline report a wrong SHA.
type shaRewriter struct{}

func (shaRewriter) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (shaRewriter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (shaRewriter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if sc, ok := c.(*redis.StringCmd); ok && cmdName(c) == "script load" {
				sc.SetVal(strings.Repeat("0", 40))
			}
		}
		return err
	}
}

// wrapped is a UniversalClient the loader cannot see through.
type wrapped struct{ *redis.Client }

func TestLoadRejectsUnknownClientType(t *testing.T) {
	m := newMini(t)
	l := New(wrapped{m.client}, m.b)
	err := l.Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("Load on %T = %v, want a 'not supported' error", wrapped{}, err)
	}
	if n := m.log.count("script load"); n != 0 {
		t.Errorf("sent %d SCRIPT LOADs through an unsupported client", n)
	}
}

func TestLoadReportsServerErrors(t *testing.T) {
	srv := miniredis.RunT(t)
	addr := srv.Addr()
	srv.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialerRetries: 1})
	t.Cleanup(func() { _ = client.Close() })
	err := New(client, bundle(t)).Load(context.Background())
	if err == nil {
		t.Fatal("Load on a closed server succeeded")
	}
	if !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "SCRIPT LOAD") {
		t.Errorf("Load error %q does not name the node and the command", err)
	}
}

func TestRunValidatesBeforeSending(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	if err := m.l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b := m.b
	tests := []struct {
		name      string
		script    string
		args      []string
		argCount  bool // want ErrArgCount
		wantError string
	}{
		{name: "unknown script", script: "no-such-script", wantError: `no script named "no-such-script"`},
		{name: "extend too few", script: "extend", args: []string{"id", "1"}, argCount: true},
		{name: "extend too many", script: "extend", args: []string{"id", "1", "1000", "x"}, argCount: true},
		{name: "queue-info with an arg", script: "queue-info", args: []string{"x"}, argCount: true},
		{name: "enqueue without count", script: "enqueue", argCount: true},
		{name: "enqueue partial group", script: "enqueue", args: enqueueArgs(t, b, "a")[:8], argCount: true},
		{name: "enqueue group and a half", script: "enqueue", args: append(enqueueArgs(t, b, "a"), "x", "y", "z"), argCount: true},
	}
	q := queue(t, "v")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m.log.reset()
			_, err := m.l.Run(ctx, q, tc.script, tc.args...)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			if tc.argCount != errors.Is(err, ErrArgCount) {
				t.Errorf("errors.Is(%v, ErrArgCount) = %v, want %v", err, !tc.argCount, tc.argCount)
			}
			if tc.wantError != "" && !strings.Contains(err.Error(), tc.wantError) {
				t.Errorf("error %q does not contain %q", err, tc.wantError)
			}
			if n := m.log.count("evalsha"); n != 0 {
				t.Errorf("sent %d EVALSHAs for an invalid call", n)
			}
			res := m.l.RunPipelined(ctx, []Call{{Queue: q, Script: tc.script, Args: tc.args}})
			if len(res) != 1 || res[0].Err == nil || errors.Is(res[0].Err, ErrArgCount) != tc.argCount {
				t.Errorf("RunPipelined = %+v, want the same validation error", res)
			}
			if n := m.log.count("evalsha"); n != 0 {
				t.Errorf("RunPipelined sent %d EVALSHAs for an invalid call", n)
			}
		})
	}
	t.Run("zero queue", func(t *testing.T) {
		m.log.reset()
		var zero keys.Queue
		_, err := m.l.Run(ctx, zero, "queue-info")
		if err == nil || !strings.Contains(err.Error(), "zero keys.Queue") {
			t.Errorf("Run on the zero Queue = %v, want an error about it", err)
		}
		if n := m.log.count("evalsha"); n != 0 {
			t.Errorf("sent %d EVALSHAs for the zero Queue", n)
		}
	})
	t.Run("enqueue with zero groups is sent", func(t *testing.T) {
		// fixed + 0 groups fits the header; the script itself rejects count 0.
		m.log.reset()
		_, err := m.l.Run(ctx, q, "enqueue", "0")
		if !errors.Is(err, ErrBadArg) {
			t.Errorf("Run enqueue 0 = %v, want ErrBadArg from the script", err)
		}
		if n := m.log.count("evalsha"); n != 1 {
			t.Errorf("sent %d EVALSHAs, want 1", n)
		}
	})
}

func TestErrorMapping(t *testing.T) {
	m := newMini(t)
	checkErrorMapping(t, m.client, m.l, "errs")
}

// checkErrorMapping produces each code of the error table with real bundle
// scripts on queues named prefix+code, and checks how Run and RunPipelined
// report it.
func checkErrorMapping(t *testing.T, client redis.UniversalClient, l *Loader, prefix string) {
	ctx := context.Background()
	if err := l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	b := l.Bundle()
	m := struct {
		client redis.UniversalClient
		l      *Loader
	}{client, l}
	// leased enqueues task id on q and leases it, returning its lease.
	leased := func(t *testing.T, q string, id string) lease {
		t.Helper()
		if _, err := m.l.Run(ctx, queue(t, q), "enqueue", enqueueArgs(t, b, id)...); err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		v, err := m.l.Run(ctx, queue(t, q), "dequeue", dequeueArgs(t, b, 1)...)
		if err != nil {
			t.Fatalf("dequeue: %v", err)
		}
		ls := leases(t, v)
		if len(ls) != 1 {
			t.Fatalf("dequeue leased %v, want one task", ls)
		}
		return ls[0]
	}
	tests := []struct {
		code   string
		want   error
		script string
		// call sets up queue q and returns the ARGV of the failing call.
		call func(t *testing.T, q string) []string
	}{
		{"LQ_BADARG", ErrBadArg, "enqueue", func(t *testing.T, q string) []string {
			args := enqueueArgs(t, b, "a")
			args[0] = "x" // count is not an integer
			return args
		}},
		{"LQ_CONFLICT", ErrConflict, "enqueue", func(t *testing.T, q string) []string {
			if _, err := m.l.Run(ctx, queue(t, q), "enqueue", enqueueArgs(t, b, "dup")...); err != nil {
				t.Fatalf("first enqueue: %v", err)
			}
			return enqueueArgs(t, b, "dup")
		}},
		{"LQ_LEASE_LOST", ErrLeaseLost, "extend", func(t *testing.T, q string) []string {
			ls := leased(t, q, "a")
			stale := "1"
			if ls.token == stale {
				stale = "2"
			}
			return argv(t, b, "extend", map[string]string{"id": ls.id, "token": stale, "lease_ms": "1000"})
		}},
		{"LQ_NOTFOUND", ErrNotFound, "retry-or-archive", func(t *testing.T, q string) []string {
			ls := leased(t, q, "a")
			// A leased task whose record vanished.
			if err := m.client.HDel(ctx, queue(t, q).Key("tasks"), ls.id).Err(); err != nil {
				t.Fatal(err)
			}
			return argv(t, b, "retry-or-archive", map[string]string{
				"id": ls.id, "token": ls.token, "message": "boom", "backoff_ms": "0", "skip_retry": "0",
			})
		}},
		{"LQ_NOT_OWNER", ErrNotOwner, "clean", func(t *testing.T, q string) []string {
			// Another janitor holds the lock.
			v, err := m.l.Run(ctx, queue(t, q), "janitor-lock", argv(t, b, "janitor-lock", map[string]string{
				"op": "acquire", "owner": "other", "ttl_ms": "60000",
			})...)
			if err != nil || v != int64(1) {
				t.Fatalf("janitor-lock acquire = %v, %v; want 1", v, err)
			}
			return argv(t, b, "clean", map[string]string{"owner": "me", "limit": "100", "reclaim_backoff_ms": "0"})
		}},
		{"LQ_SCHEMA", ErrSchema, "queue-info", func(t *testing.T, q string) []string {
			if err := m.client.HSet(ctx, queue(t, q).Key("meta"), "schema", "999").Err(); err != nil {
				t.Fatal(err)
			}
			return nil
		}},
	}
	covered := map[string]bool{}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			covered[tc.code] = true
			q := prefix + "-" + strings.ToLower(tc.code)
			args := tc.call(t, q)
			_, err := m.l.Run(ctx, queue(t, q), tc.script, args...)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Run %s = %v, want errors.Is %v", tc.script, err, tc.want)
			}
			var se *ScriptError
			if !errors.As(err, &se) {
				t.Fatalf("error %v is not a *ScriptError", err)
			}
			if se.Script != tc.script || se.Code != tc.code || se.Message == "" {
				t.Errorf("ScriptError = %+v, want script %s, code %s and a message", se, tc.script, tc.code)
			}
			if want := "script " + tc.script + ": " + tc.code + " " + se.Message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
			for _, other := range []error{ErrBadArg, ErrConflict, ErrNotFound, ErrLeaseLost, ErrSchema, ErrNotOwner, ErrInternal} {
				if other != tc.want && errors.Is(err, other) {
					t.Errorf("error %v also matches %v", err, other)
				}
			}
			// The same mapping inside a pipeline (a repeat of the same call
			// fails the same way: scripts validate before writing).
			res := m.l.RunPipelined(ctx, []Call{{Queue: queue(t, q), Script: tc.script, Args: args}})
			if !errors.Is(res[0].Err, tc.want) {
				t.Errorf("RunPipelined %s = %v, want errors.Is %v", tc.script, res[0].Err, tc.want)
			}
		})
	}
	for _, c := range Codes() {
		if !covered[c] {
			t.Errorf("code %s has no mapping test", c)
		}
	}
}

// faultBundle is a bundle of scripts that fail in ways the error table does
// not describe.
func faultBundle(t *testing.T) *scripts.Bundle {
	t.Helper()
	script := func(name, body string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte(fmt.Sprintf(`-- luaq script: %s
-- A test script.
--
-- KEYS:
--   meta  a key
-- ARGV:
-- REPLY: nothing
-- ERRORS: LQ_BADARG
-- COST: O(1)
-- WHEN FULL: reads
%s
`, name, body))}
	}
	b, err := scripts.LoadFS(fstest.MapFS{
		"raise.lua":        script("raise", "error('boom')"),
		"unknown-code.lua": script("unknown-code", "return redis.error_reply('LQ_NOPE no such code')"),
		"wrong-type.lua":   script("wrong-type", "redis.call('SET', K.meta, 'x')\nreturn redis.call('HGET', K.meta, 'f')"),
		"one-word.lua":     script("one-word", "return redis.error_reply('LQ_BADARG')"),
		"nil-reply.lua":    script("nil-reply", "return false"),
	})
	if err != nil {
		t.Fatalf("LoadFS: %v", err)
	}
	return b
}

// checkFaults runs faultBundle's scripts through l and checks the mapping.
func checkFaults(ctx context.Context, t *testing.T, l *Loader) {
	q := queue(t, "faults")
	for _, name := range []string{"raise", "unknown-code", "wrong-type"} {
		_, err := l.Run(ctx, q, name)
		if !errors.Is(err, ErrInternal) {
			t.Errorf("%s: error %v does not match ErrInternal", name, err)
		}
		var rerr redis.Error
		if !errors.As(err, &rerr) {
			t.Errorf("%s: error %v does not wrap the Redis error", name, err)
		}
		var se *ScriptError
		if errors.As(err, &se) {
			t.Errorf("%s: internal fault %v decoded as a ScriptError", name, err)
		}
		for _, s := range []error{ErrBadArg, ErrConflict, ErrNotFound, ErrLeaseLost, ErrSchema} {
			if errors.Is(err, s) {
				t.Errorf("%s: internal fault %v matches %v", name, err, s)
			}
		}
		if !strings.Contains(err.Error(), "script "+name) {
			t.Errorf("%s: error %q does not name the script", name, err)
		}
	}
	_, err := l.Run(ctx, q, "one-word")
	if !errors.Is(err, ErrBadArg) {
		t.Errorf("one-word error_reply: %v, want ErrBadArg", err)
	}
	v, err := l.Run(ctx, q, "nil-reply")
	if v != nil || err != nil {
		t.Errorf("nil reply: Run = %v, %v; want nil, nil", v, err)
	}
}

func TestInternalFaults(t *testing.T) {
	m := newMiniBundle(t, faultBundle(t))
	checkFaults(context.Background(), t, m.l)
}

func TestRunRecoversAfterScriptFlush(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	if err := m.l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	q := queue(t, "flush")
	if _, err := m.l.Run(ctx, q, "enqueue", enqueueArgs(t, m.b, "a")...); err != nil {
		t.Fatal(err)
	}
	if err := m.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if missing := missingScripts(ctx, t, m.client, m.b); len(missing) != len(m.b.Scripts()) {
		t.Fatalf("SCRIPT FLUSH left scripts behind: only %v missing", missing)
	}
	m.log.reset()
	v, err := m.l.Run(ctx, q, "dequeue", dequeueArgs(t, m.b, 1)...)
	if err != nil {
		t.Fatalf("Run after SCRIPT FLUSH: %v", err)
	}
	if ls := leases(t, v); len(ls) != 1 || ls[0].id != "a" {
		t.Errorf("dequeue leased %v, want a", ls)
	}
	if got := m.log.count("evalsha"); got != 2 {
		t.Errorf("sent %d EVALSHAs, want 2", got)
	}
	if missing := missingScripts(ctx, t, m.client, m.b); len(missing) > 0 {
		t.Errorf("after recovery the server lacks %v; the whole bundle should be reloaded", missing)
	}
	m.noEval(t)
}

// badSHA makes the server answer NOSCRIPT to every EVALSHA, however often
// the bundle is loaded.
type badSHA struct{}

func (badSHA) DialHook(next redis.DialHook) redis.DialHook { return next }

func (badSHA) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		breakSHA(cmd)
		return next(ctx, cmd)
	}
}

func (badSHA) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			breakSHA(c)
		}
		return next(ctx, cmds)
	}
}

func breakSHA(cmd redis.Cmder) {
	if cmdName(cmd) == "evalsha" {
		cmd.Args()[1] = strings.Repeat("f", 40)
	}
}

func TestRunGivesUpAfterMaxAttempts(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	m.client.AddHook(badSHA{})
	q := queue(t, "never")
	_, err := m.l.Run(ctx, q, "queue-info")
	if !isNoScript(err) {
		t.Fatalf("Run = %v, want a NOSCRIPT error", err)
	}
	if !strings.Contains(err.Error(), "queue-info") || !strings.Contains(err.Error(), "attempts") {
		t.Errorf("error %q does not say which script and how often", err)
	}
	if got := m.log.count("evalsha"); got != MaxAttempts {
		t.Errorf("sent %d EVALSHAs, want MaxAttempts = %d", got, MaxAttempts)
	}
	if got, want := m.log.count("script load"), (MaxAttempts-1)*len(m.b.Scripts()); got != want {
		t.Errorf("sent %d SCRIPT LOADs, want %d (a full load before each retry)", got, want)
	}

	m.log.reset()
	calls := make([]Call, 20)
	for i := range calls {
		calls[i] = Call{Queue: q, Script: "queue-info"}
	}
	for i, r := range m.l.RunPipelined(ctx, calls) {
		if !isNoScript(r.Err) || r.Value != nil {
			t.Errorf("call %d: %+v, want a NOSCRIPT error", i, r)
		}
	}
	if got := m.log.count("evalsha"); got != MaxAttempts*len(calls) {
		t.Errorf("pipeline sent %d EVALSHAs, want %d", got, MaxAttempts*len(calls))
	}
	if got, want := m.log.count("script load"), (MaxAttempts-1)*len(m.b.Scripts()); got != want {
		t.Errorf("pipeline sent %d SCRIPT LOADs, want %d (one load per retry round)", got, want)
	}
	m.noEval(t)
}

func TestRunPipelinedRecoversOnlyFailedCalls(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		preloaded []string // scripts loaded after the flush, before the pipeline
		evalshas  int      // EVALSHAs expected in all
	}{
		// 10 enqueues + 10 queue-infos: all fail, all are re-sent once.
		{name: "nothing cached", evalshas: 40},
		// Only the 10 queue-infos fail; enqueues must not be sent twice.
		{name: "enqueue cached", preloaded: []string{"enqueue"}, evalshas: 30},
		// Nothing fails: no reload, no re-send.
		{name: "all cached", preloaded: []string{"enqueue", "queue-info"}, evalshas: 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newMini(t)
			if err := m.l.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.client.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.preloaded {
				s, err := m.b.Script(name)
				if err != nil {
					t.Fatal(err)
				}
				if err := m.client.ScriptLoad(ctx, s.Source).Err(); err != nil {
					t.Fatal(err)
				}
			}
			m.log.reset()
			q := queue(t, "pipe")
			var calls []Call
			for i := 0; i < 10; i++ {
				calls = append(calls,
					Call{Queue: q, Script: "enqueue", Args: enqueueArgs(t, m.b, fmt.Sprintf("t%d", i))},
					Call{Queue: q, Script: "queue-info"})
			}
			calls = append(calls, Call{Queue: q, Script: "nope"}) // never sent
			res := m.l.RunPipelined(ctx, calls)
			if len(res) != len(calls) {
				t.Fatalf("got %d results for %d calls", len(res), len(calls))
			}
			for i, r := range res[:20] {
				if r.Err != nil {
					t.Fatalf("call %d (%s): %v", i, calls[i].Script, r.Err)
				}
				arr, err := Slice(r.Value)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				switch calls[i].Script {
				case "enqueue": // results are in call order
					if want := fmt.Sprintf("t%d", i/2); len(arr) < 2 || arr[1] != want {
						t.Errorf("call %d: enqueue reply %v, want task %s", i, arr, want)
					}
				case "queue-info":
					if len(arr) < 2 || arr[0] != "pending" {
						t.Errorf("call %d: queue-info reply %v", i, arr)
					}
				}
			}
			if res[20].Err == nil || res[20].Value != nil {
				t.Errorf("unknown script: %+v, want an error", res[20])
			}
			if got := m.log.count("evalsha"); got != tc.evalshas {
				t.Errorf("sent %d EVALSHAs, want %d", got, tc.evalshas)
			}
			wantLoads := 0
			if tc.evalshas > 20 {
				wantLoads = len(m.b.Scripts())
			}
			if got := m.log.count("script load"); got != wantLoads {
				t.Errorf("sent %d SCRIPT LOADs, want %d", got, wantLoads)
			}
			// Each enqueue ran exactly once.
			if n, err := m.client.LLen(ctx, q.Key("pending")).Result(); err != nil || n != 10 {
				t.Errorf("LLEN pending = %d, %v; want 10", n, err)
			}
			if got := info(t, res[19].Value)["pending"]; got != 10 {
				t.Errorf("last queue-info saw %d pending, want 10", got)
			}
			m.noEval(t)
		})
	}
}

func TestRunPipelinedEmpty(t *testing.T) {
	m := newMini(t)
	if res := m.l.RunPipelined(context.Background(), nil); len(res) != 0 {
		t.Errorf("RunPipelined(nil) = %v", res)
	}
	if n := m.log.count("evalsha") + m.log.count("script load"); n != 0 {
		t.Errorf("an empty pipeline sent %d commands", n)
	}
}

func TestConcurrentRecovery(t *testing.T) {
	ctx := context.Background()
	m := newMini(t)
	if err := m.l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.client.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	q := queue(t, "conc")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				_, errs[i] = m.l.Run(ctx, q, "queue-info")
			} else {
				errs[i] = m.l.RunPipelined(ctx, []Call{{Queue: q, Script: "queue-info"}})[0].Err
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("goroutine %d: %v", i, err)
		}
	}
	m.noEval(t)
}

func TestLoadHonoursContext(t *testing.T) {
	m := newMini(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.l.Load(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context = %v, want context.Canceled", err)
	}
	if _, err := m.l.Run(ctx, queue(t, "q"), "queue-info"); !errors.Is(err, context.Canceled) {
		t.Errorf("Run with a cancelled context = %v, want context.Canceled", err)
	}
}

// otherNoScript is a NOSCRIPT reply worded differently from Redis's, as
// another server might send it; errors.Is(err, redis.ErrNoScript) misses it.
type otherNoScript string

func (e otherNoScript) Error() string { return string(e) }
func (otherNoScript) RedisError()     {}

// fakeNoScript answers the first EVALSHA of every single call and of every
// pipeline with otherNoScript, without sending it.
type fakeNoScript struct{}

func (fakeNoScript) DialHook(next redis.DialHook) redis.DialHook { return next }

func (fakeNoScript) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	var once sync.Once
	return func(ctx context.Context, cmd redis.Cmder) error {
		faked := false
		if cmdName(cmd) == "evalsha" {
			once.Do(func() { faked = true })
		}
		if faked {
			cmd.SetErr(otherNoScript("NOSCRIPT script not in cache"))
			return cmd.Err()
		}
		return next(ctx, cmd)
	}
}

func (fakeNoScript) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	var once sync.Once
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && cmdName(cmds[0]) == "evalsha" {
			faked := false
			once.Do(func() { faked = true })
			if faked {
				cmds[0].SetErr(otherNoScript("NOSCRIPT script not in cache"))
				return next(ctx, cmds[1:])
			}
		}
		return next(ctx, cmds)
	}
}

func TestNoScriptByPrefix(t *testing.T) {
	if errors.Is(otherNoScript("NOSCRIPT script not in cache"), redis.ErrNoScript) {
		t.Fatal("the fake NOSCRIPT matches redis.ErrNoScript; the test would prove nothing")
	}
	ctx := context.Background()
	m := newMini(t)
	if err := m.l.Load(ctx); err != nil {
		t.Fatal(err)
	}
	m.client.AddHook(fakeNoScript{})
	loads := m.l.loads.Load()
	q := queue(t, "prefix")
	if _, err := m.l.Run(ctx, q, "queue-info"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := m.l.loads.Load(); got != loads+1 {
		t.Errorf("Run did %d loads, want 1", got-loads)
	}
	res := m.l.RunPipelined(ctx, []Call{{Queue: q, Script: "queue-info"}, {Queue: q, Script: "queue-info"}})
	for i, r := range res {
		if r.Err != nil {
			t.Errorf("pipelined call %d: %v", i, r.Err)
		}
	}
	if got := m.l.loads.Load(); got != loads+2 {
		t.Errorf("RunPipelined did %d loads, want 1", got-loads-1)
	}
}
