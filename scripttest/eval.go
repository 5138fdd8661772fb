package scripttest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	lua "github.com/yuin/gopher-lua"
)

// Call is one redis.call or redis.pcall made by a script, as the harness
// saw it (TIME and refused commands included).
type Call struct {
	// Cmd is the command name, upper-cased.
	Cmd string
	// Args are the arguments after the command name, as sent (numbers
	// already converted to strings).
	Args []string
}

// Result is what one Eval produced.
type Result struct {
	// Value is the script's reply as go-redis would return it under RESP2:
	// int64 for integers (and true), string for bulk and status replies,
	// []any for arrays, nil for nil/false. Nested {err=...} elements appear
	// as *ScriptError values. Value is nil when Err is set.
	Value any
	// Err is a *ScriptError when the script returned an error reply or
	// failed (see ErrorKind), else nil.
	Err error
	// Calls logs every redis.call / redis.pcall in order.
	Calls []Call
	// Violations lists the contract violations found, each once, in the
	// order they were found. Eval fails the test when it is non-empty.
	Violations []string
}

// ErrorKind tells how a script failed.
type ErrorKind int

const (
	// KindReply: the script returned an error reply ({err=...} or
	// redis.error_reply). The only kind that is not a raw Lua error.
	KindReply ErrorKind = iota
	// KindRuntime: a Lua runtime error: error(), a bad operation, a
	// sandbox refusal (undefined global, global write, ...).
	KindRuntime
	// KindCommand: redis.call got an error reply and raised it.
	KindCommand
	// KindCompile: the source did not compile.
	KindCompile
	// KindTimeout: the script ran longer than Env.Timeout.
	KindTimeout
	// KindHarness: the harness itself failed (connection to miniredis).
	KindHarness
)

var kindNames = [...]string{"reply", "runtime", "command", "compile", "timeout", "harness"}

// String returns the kind's name.
func (k ErrorKind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("ErrorKind(%d)", int(k))
}

// ScriptError is the error of a failed Eval (Result.Err) or a nested error
// element of a returned array.
type ScriptError struct {
	// Kind tells how the script failed.
	Kind ErrorKind
	// Raw is true for every kind except KindReply: the client would see
	// a raw Lua error rather than a deliberate redis.error_reply. The
	// contract says scripts never fail this way on bad input.
	Raw bool
	// Msg is the error text. For KindReply it is exactly what a Redis 7
	// client receives (e.g. "LQ_BADARG count must be 1..1000"); for
	// KindCommand it is the command's error reply (e.g. "WRONGTYPE ...");
	// otherwise it is gopher-lua's message, with its position
	// ("user_script:3: boom").
	Msg string
	// Traceback is the Lua stack traceback of a raw error, when known.
	Traceback string
}

// Error returns Msg.
func (e *ScriptError) Error() string { return e.Msg }

// chunkName is the name the script is compiled under; error positions read
// "user_script:<line>:", as on Redis 7.
const chunkName = "user_script"

// removedGlobals are base-library functions Redis does not offer (or
// miniredis only adds), removed after the libraries are opened.
var removedGlobals = []string{
	"print", "dofile", "loadfile", "load", "loadstring", "require", "module",
	"setfenv", "getfenv", "newproxy", "collectgarbage",
	"_printregs", "_GOPHER_LUA_VERSION",
}

// maxBulk is the largest unpack / table.concat a script may do at once
// (lua-compat §5.1 rule 8).
const maxBulk = 1000

// Eval runs the Lua source src with KEYS = keys and ARGV = args and returns
// the Result. It fails the test (t.Errorf) when the run found contract
// Violations. A script error is not a test failure by itself: check
// Result.Err.
func (e *Env) Eval(t testing.TB, src string, keys []string, args ...string) Result {
	t.Helper()
	res := e.EvalRaw(t, src, keys, args...)
	if len(res.Violations) > 0 {
		t.Errorf("scripttest: script contract violations:\n\t%s", strings.Join(res.Violations, "\n\t"))
	}
	return res
}

// EvalRaw is Eval without failing the test on Violations; it is meant for
// tests of the harness itself and for tests that expect a violation. It
// still fails the test when the harness cannot reach miniredis.
func (e *Env) EvalRaw(t testing.TB, src string, keys []string, args ...string) Result {
	t.Helper()
	e.evalMu.Lock()
	defer e.evalMu.Unlock()

	timeout := e.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	r := &run{
		env:       e,
		t:         t,
		ctx:       ctx,
		keys:      make(map[string]bool, len(keys)),
		seen:      make(map[string]bool),
		protected: make(map[*lua.LTable]string),
	}
	for _, k := range keys {
		r.keys[k] = true
	}
	for _, v := range Lint(src) {
		r.violate("%s", v)
	}
	r.checkSlots(keys)

	res := r.exec(src, keys, args)
	res.Calls = r.calls
	res.Violations = r.violations
	return res
}

// run is the state of one Eval.
type run struct {
	env  *Env
	t    testing.TB
	ctx  context.Context
	keys map[string]bool

	calls      []Call
	violations []string
	seen       map[string]bool

	// protected maps read-only proxy tables to their global name
	// ("_G" for the globals table).
	protected map[*lua.LTable]string
	// cmdErr is the message of the last error raised by redis.call, to
	// recognise it when it aborts the script.
	cmdErr    string
	cmdErrSet bool
	// harnessErr is set when the connection to miniredis failed.
	harnessErr error
}

// violate records a violation once.
func (r *run) violate(format string, args ...any) {
	v := fmt.Sprintf(format, args...)
	if !r.seen[v] {
		r.seen[v] = true
		r.violations = append(r.violations, v)
	}
}

// checkSlots records a violation when KEYS span more than one hash slot.
func (r *run) checkSlots(keys []string) {
	if len(keys) < 2 {
		return
	}
	first := HashSlot(keys[0])
	for _, k := range keys[1:] {
		if s := HashSlot(k); s != first {
			r.violate("KEYS span more than one hash slot: %q is in slot %d, %q in slot %d (CROSSSLOT on Redis Cluster)",
				keys[0], first, k, s)
			return
		}
	}
}

func (r *run) exec(src string, keys, args []string) Result {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()

	env := r.sandbox(L, keys, args)

	fn, err := L.Load(strings.NewReader(src), chunkName)
	if err != nil {
		return Result{Err: &ScriptError{Kind: KindCompile, Raw: true, Msg: "Error compiling script: " + err.Error()}}
	}
	fn.Env = env

	L.SetContext(r.ctx)
	L.Push(fn)
	err = L.PCall(0, 1, nil)
	if err != nil {
		return Result{Err: r.classify(err)}
	}
	ret := L.Get(-1)
	L.Pop(1)
	return r.convertReturn(ret)
}

// classify turns a PCall error into a *ScriptError.
func (r *run) classify(err error) *ScriptError {
	se := &ScriptError{Kind: KindRuntime, Raw: true, Msg: err.Error()}
	var api *lua.ApiError
	if errors.As(err, &api) {
		se.Msg = api.Object.String()
		se.Traceback = api.StackTrace
		if tb, ok := api.Object.(*lua.LTable); ok {
			// error({err='...'}): Redis 7 reports the err field.
			if s, ok := tb.RawGetString("err").(lua.LString); ok {
				se.Msg = string(s)
			}
		}
	}
	switch {
	case r.harnessErr != nil:
		se.Kind = KindHarness
	case r.ctx.Err() != nil:
		se.Kind = KindTimeout
		r.violate("script did not finish within %v (runaway loop? BUSY on Redis)", r.env.timeout())
	case r.cmdErrSet && se.Msg == r.cmdErr:
		se.Kind = KindCommand
	}
	return se
}

func (e *Env) timeout() time.Duration {
	if e.Timeout <= 0 {
		return DefaultTimeout
	}
	return e.Timeout
}

// sandbox opens the libraries, builds KEYS, ARGV and redis, and returns the
// read-only globals table the script runs in.
func (r *run) sandbox(L *lua.LState, keys, args []string) *lua.LTable {
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
	} {
		L.Push(L.NewFunction(lib.open))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	g := L.G.Global
	for _, name := range removedGlobals {
		g.RawSetString(name, lua.LNil)
	}
	// Defensive: none of these may exist (SkipOpenLibs leaves them out).
	for _, name := range []string{"os", "io", "package", "debug", "coroutine", "channel"} {
		g.RawSetString(name, lua.LNil)
	}

	g.RawSetString("KEYS", stringTable(L, keys))
	g.RawSetString("ARGV", stringTable(L, args))

	r.installBulkGuards(L, g)
	r.installRawGuards(L, g)
	g.RawSetString("redis", r.redisTable(L))

	for _, lib := range []string{"string", "table", "math", "redis"} {
		real := g.RawGetString(lib).(*lua.LTable)
		g.RawSetString(lib, r.readOnly(L, real, lib))
	}

	// The script's globals: an empty proxy whose reads fall through to g
	// and whose writes are all refused; g itself refuses reads of
	// undefined names.
	gmt := L.NewTable()
	gmt.RawSetString("__index", L.NewFunction(func(L *lua.LState) int {
		name := L.Get(2).String()
		r.violate("script read undefined global %s", name)
		L.RaiseError("Script attempted to access nonexistent global variable '%s'", name)
		return 0
	}))
	L.SetMetatable(g, gmt)
	env := r.readOnly(L, g, "_G")
	g.RawSetString("_G", env)
	return env
}

// readOnly returns an empty proxy table that reads through to real and
// refuses every write, like Redis 7's read-only globals and library tables.
func (r *run) readOnly(L *lua.LState, real *lua.LTable, name string) *lua.LTable {
	proxy := L.NewTable()
	mt := L.NewTable()
	mt.RawSetString("__index", real)
	mt.RawSetString("__newindex", L.NewFunction(func(L *lua.LState) int {
		r.writeViolation(name, L.Get(2))
		L.RaiseError("Attempt to modify a readonly table")
		return 0
	}))
	mt.RawSetString("__metatable", lua.LFalse)
	L.SetMetatable(proxy, mt)
	r.protected[proxy] = name
	return proxy
}

func (r *run) writeViolation(table string, key lua.LValue) {
	if table == "_G" {
		r.violate("script wrote global %s (globals are read-only on Redis 7; use local)", key.String())
	} else {
		r.violate("script wrote %s.%s (library tables are read-only on Redis 7)", table, key.String())
	}
}

// installRawGuards wraps rawset and rawget so they cannot bypass the
// read-only proxies.
func (r *run) installRawGuards(L *lua.LState, g *lua.LTable) {
	g.RawSetString("rawset", L.NewFunction(func(L *lua.LState) int {
		tb := L.CheckTable(1)
		key := L.CheckAny(2)
		val := L.CheckAny(3)
		if name, ok := r.protected[tb]; ok {
			r.writeViolation(name, key)
			L.RaiseError("Attempt to modify a readonly table")
		}
		tb.RawSet(key, val)
		L.Push(tb)
		return 1
	}))
	g.RawSetString("rawget", L.NewFunction(func(L *lua.LState) int {
		tb := L.CheckTable(1)
		key := L.CheckAny(2)
		if _, ok := r.protected[tb]; ok {
			if real, ok := tb.Metatable.(*lua.LTable).RawGetString("__index").(*lua.LTable); ok {
				tb = real
			}
		}
		L.Push(tb.RawGet(key))
		return 1
	}))
}

// installBulkGuards replaces unpack and table.concat with versions that
// record a violation above maxBulk items.
func (r *run) installBulkGuards(L *lua.LState, g *lua.LTable) {
	g.RawSetString("unpack", L.NewFunction(func(L *lua.LState) int {
		tb := L.CheckTable(1)
		i := L.OptInt(2, 1)
		j := L.OptInt(3, tb.Len())
		if n := j - i + 1; n > maxBulk {
			r.violate("unpack of %d items (at most %d at a time, lua-compat §5.1 rule 8)", n, maxBulk)
		}
		for k := i; k <= j; k++ {
			L.Push(tb.RawGetInt(k))
		}
		return max(j-i+1, 0)
	}))
	tbl := g.RawGetString("table").(*lua.LTable)
	concat := tbl.RawGetString("concat")
	tbl.RawSetString("concat", L.NewFunction(func(L *lua.LState) int {
		tb := L.CheckTable(1)
		i := L.OptInt(3, 1)
		j := L.OptInt(4, tb.Len())
		if n := j - i + 1; n > maxBulk {
			r.violate("table.concat of %d items (at most %d at a time, lua-compat §5.1 rule 8)", n, maxBulk)
		}
		top := L.GetTop()
		L.Push(concat)
		for k := 1; k <= top; k++ {
			L.Push(L.Get(k))
		}
		L.Call(top, 1)
		return 1
	}))
}

func stringTable(L *lua.LState, ss []string) *lua.LTable {
	tb := L.CreateTable(len(ss), 0)
	for _, s := range ss {
		tb.Append(lua.LString(s))
	}
	return tb
}

// convertReturn converts the script's return value (lua-compat §1.4).
func (r *run) convertReturn(v lua.LValue) Result {
	if tb, ok := v.(*lua.LTable); ok {
		if s, ok := tb.RawGetString("err").(lua.LString); ok {
			return Result{Err: &ScriptError{Kind: KindReply, Msg: string(s)}}
		}
	}
	return Result{Value: r.toGo(v, 0)}
}

const maxReturnDepth = 32

func (r *run) toGo(v lua.LValue, depth int) any {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		if v {
			return int64(1)
		}
		return nil
	case lua.LString:
		return string(v)
	case lua.LNumber:
		f := float64(v)
		if !isInteger(f) {
			r.violate("script returned the non-integer number %v, which Redis truncates: return floats as strings (string.format('%%.17g'), lua-compat §1.4)", f)
		}
		return truncToInt64(f)
	case *lua.LTable:
		if depth >= maxReturnDepth {
			r.violate("returned table nested deeper than %d levels", maxReturnDepth)
			return nil
		}
		if s, ok := v.RawGetString("err").(lua.LString); ok {
			return &ScriptError{Kind: KindReply, Msg: string(s)}
		}
		if s, ok := v.RawGetString("ok").(lua.LString); ok {
			return string(s)
		}
		for _, f := range []string{"double", "map", "set", "big_number", "verbatim_string"} {
			if v.RawGetString(f) != lua.LNil {
				r.violate("script returned a {%s=...} table (RESP3 type; miniredis answers an empty array, lua-compat §1.4)", f)
			}
		}
		n := 0
		for v.RawGetInt(n+1) != lua.LNil {
			n++
		}
		out := make([]any, n)
		for i := range n {
			out[i] = r.toGo(v.RawGetInt(i+1), depth+1)
		}
		reported := false
		v.ForEach(func(k, _ lua.LValue) {
			if reported {
				return
			}
			if num, ok := k.(lua.LNumber); ok && isInteger(float64(num)) && float64(num) >= 1 && float64(num) <= float64(n) {
				return
			}
			reported = true
			if _, ok := k.(lua.LNumber); ok {
				r.violate("returned array has a nil at index %d, so Redis cuts it to %d elements (use false, lua-compat §1.4)", n+1, n)
			} else {
				r.violate("returned table has the non-array key %s, which Redis drops", k.String())
			}
		})
		return out
	default:
		r.violate("script returned a %s, which Redis turns into nil", v.Type())
		return nil
	}
}

// isInteger reports whether f is a finite whole number.
func isInteger(f float64) bool {
	return !math.IsInf(f, 0) && !math.IsNaN(f) && f == math.Trunc(f)
}

// truncToInt64 converts like Redis's (long long) cast: toward zero, with NaN,
// infinities and out-of-range values giving math.MinInt64 (as observed on
// Redis and miniredis).
func truncToInt64(f float64) int64 {
	if f != f || f >= 1<<63 || f < -(1<<63) {
		return -1 << 63
	}
	return int64(f)
}
