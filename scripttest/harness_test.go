package scripttest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keyspace"
)

// hasViolation reports whether some violation contains sub.
func hasViolation(res Result, sub string) bool {
	for _, v := range res.Violations {
		if strings.Contains(v, sub) {
			return true
		}
	}
	return false
}

// checkViolations asserts that the violations are exactly described by
// subs (each sub matched by one violation, no extra violations).
func checkViolations(t *testing.T, res Result, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !hasViolation(res, s) {
			t.Errorf("missing violation containing %q; got %q", s, res.Violations)
		}
	}
	if len(res.Violations) != len(subs) {
		t.Errorf("got %d violations %q, want %d (%q)", len(res.Violations), res.Violations, len(subs), subs)
	}
}

func scriptErr(t *testing.T, err error) *ScriptError {
	t.Helper()
	var se *ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("err = %#v, want *ScriptError", err)
	}
	return se
}

var twoKeys = []string{"{q}:a", "{q}:b"}

func TestReturnConversion(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    any
		wantErr string // exact Err text for an error reply
		viol    []string
	}{
		{"integer", `return 42`, int64(42), "", nil},
		{"negative integer", `return -7`, int64(-7), "", nil},
		{"2^53", `return 2^53`, int64(1 << 53), "", nil},
		{"float truncates toward zero", `return 3.7`, int64(3), "", []string{"return floats as strings"}},
		{"negative float truncates toward zero", `return -3.7`, int64(-3), "", []string{"return floats as strings"}},
		{"inf", `return 1/0`, int64(math.MinInt64), "", []string{"return floats as strings"}},
		{"huge", `return 1e300`, int64(math.MinInt64), "", nil},
		{"string", `return 'hello'`, "hello", "", nil},
		{"empty string", `return ''`, "", "", nil},
		{"true is 1", `return true`, int64(1), "", nil},
		{"false is nil", `return false`, nil, "", nil},
		{"nil", `return nil`, nil, "", nil},
		{"no value", `local x = 1`, nil, "", nil},
		{"array", `return {1, 'two', 3}`, []any{int64(1), "two", int64(3)}, "", nil},
		{"nil truncates", `return {1, 2, nil, 4}`, []any{int64(1), int64(2)}, "", []string{"nil at index 3"}},
		{"leading nil", `return {nil, 2}`, []any{}, "", []string{"nil at index 1"}},
		{"false element", `return {1, false, 3}`, []any{int64(1), nil, int64(3)}, "", nil},
		{"nested", `return {1, {2, {'x'}}, {}}`, []any{int64(1), []any{int64(2), []any{"x"}}, []any{}}, "", nil},
		{"nested nil truncates", `return {{1, nil, 3}}`, []any{[]any{int64(1)}}, "", []string{"nil at index 2"}},
		{"float in array", `return {0.5}`, []any{int64(0)}, "", []string{"return floats as strings"}},
		{"empty table", `return {}`, []any{}, "", nil},
		{"string keys dropped", `return {a = 1}`, []any{}, "", []string{"non-array key a"}},
		{"status table", `return {ok = 'FINE'}`, "FINE", "", nil},
		{"status_reply", `return redis.status_reply('QUEUED')`, "QUEUED", "", nil},
		{"status in array", `return {redis.status_reply('OK'), 1}`, []any{"OK", int64(1)}, "", nil},
		{"err table", `return {err = 'LQ_BADARG count must be 1..1000'}`, nil, "LQ_BADARG count must be 1..1000", nil},
		{"error_reply", `return redis.error_reply('LQ_BADARG count must be 1..1000')`, nil, "LQ_BADARG count must be 1..1000", nil},
		{"error_reply with dash", `return redis.error_reply('-LQ_X bad thing')`, nil, "LQ_X bad thing", nil},
		{"one-word error_reply", `return redis.error_reply('LQ_X')`, nil, "ERR LQ_X", []string{"has no message"}},
		{"double table", `return {double = 1.5}`, []any{}, "", []string{"{double=...}", "non-array key double"}},
		{"function", `return function() end`, nil, "", []string{"returned a function"}},
		{"first of several values", `return 1, 2`, int64(1), "", nil},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, tc.src, nil)
			if tc.wantErr != "" {
				se := scriptErr(t, res.Err)
				if se.Error() != tc.wantErr || se.Kind != KindReply || se.Raw {
					t.Errorf("Err = %+v, want reply error %q", se, tc.wantErr)
				}
				if res.Value != nil {
					t.Errorf("Value = %#v with an error, want nil", res.Value)
				}
			} else if res.Err != nil {
				t.Fatalf("Err = %v", res.Err)
			}
			if d := cmp.Diff(tc.want, res.Value); d != "" {
				t.Errorf("Value mismatch (-want +got):\n%s", d)
			}
			checkViolations(t, res, tc.viol...)
		})
	}
}

func TestNestedErrorElement(t *testing.T) {
	e := New(t)
	res := e.Eval(t, `return {1, {err = 'LQ_X inner'}}`, nil)
	arr, ok := res.Value.([]any)
	if !ok || len(arr) != 2 {
		t.Fatalf("Value = %#v", res.Value)
	}
	se, ok := arr[1].(*ScriptError)
	if !ok || se.Msg != "LQ_X inner" || se.Raw {
		t.Errorf("element 2 = %#v, want reply error LQ_X inner", arr[1])
	}
}

// TestCallReplyConversion checks what redis.call hands to Lua (lua-compat §1.3).
func TestCallReplyConversion(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *Env)
		src   string
		want  any
	}{
		{"missing GET is false", nil,
			`local v = redis.call('GET', KEYS[1]); if v == false then return 'false' end; return type(v)`, "false"},
		{"bulk string", func(e *Env) { e.Miniredis().Set("{q}:a", "0") },
			`local v = redis.call('GET', KEYS[1]); if v then return {type(v), v} end; return 'falsy'`, []any{"string", "0"}},
		{"empty bulk string is truthy", func(e *Env) { e.Miniredis().Set("{q}:a", "") },
			`local v = redis.call('GET', KEYS[1]); if v then return 'truthy' end; return 'falsy'`, "truthy"},
		{"status is a table", nil,
			`local r = redis.call('SET', KEYS[1], 'v'); return {type(r), r.ok, r == 'OK'}`, []any{"table", "OK", nil}},
		{"integer is a number", nil,
			`local n = redis.call('INCR', KEYS[1]); return {type(n), n + 1}`, []any{"number", int64(2)}},
		{"array with null elements", func(e *Env) { e.Miniredis().HSet("{q}:a", "f1", "v1") },
			`local r = redis.call('HMGET', KEYS[1], 'f1', 'nope', 'f1'); return {#r, r[1], type(r[2]), r[2] == false, r[3]}`,
			[]any{int64(3), "v1", "boolean", int64(1), "v1"}},
		{"empty array", nil,
			`local r = redis.call('LRANGE', KEYS[1], 0, -1); return {type(r), #r}`, []any{"table", int64(0)}},
		{"null from LPOP", nil,
			`local r = redis.call('LPOP', KEYS[1]); return {type(r), r == false}`, []any{"boolean", int64(1)}},
		{"miniredis score exponent", func(e *Env) { e.Miniredis().ZAdd("{q}:a", 1e10, "m") },
			`local s = redis.call('ZSCORE', KEYS[1], 'm'); return {s, string.format('%d', s + 0)}`, []any{"1e+10", "10000000000"}},
		{"HGETALL flat array", func(e *Env) { e.Miniredis().HSet("{q}:a", "f", "v") },
			`return redis.call('HGETALL', KEYS[1])`, []any{"f", "v"}},
		{"pcall error table", func(e *Env) { e.Miniredis().Set("{q}:a", "x") },
			`local r = redis.pcall('INCR', KEYS[1]); return {type(r), r.err}`, []any{"table", "ERR value is not an integer or out of range"}},
		{"pcall success is plain", nil,
			`local r = redis.pcall('INCR', KEYS[1]); return {type(r), r}`, []any{"number", int64(1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			res := e.Eval(t, tc.src, twoKeys)
			if res.Err != nil {
				t.Fatalf("Err = %v", res.Err)
			}
			if d := cmp.Diff(tc.want, res.Value); d != "" {
				t.Errorf("Value mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestCallsAreLogged(t *testing.T) {
	e := New(t)
	res := e.Eval(t, `
		redis.call('set', KEYS[1], 'v', 'PX', 100)
		redis.pcall('hget', KEYS[2], 'f')
		redis.call('TIME')
		return redis.call('PUBLISH', 'chan', ARGV[1])`, twoKeys, "msg")
	want := []Call{
		{Cmd: "SET", Args: []string{"{q}:a", "v", "PX", "100"}},
		{Cmd: "HGET", Args: []string{"{q}:b", "f"}},
		{Cmd: "TIME"},
		{Cmd: "PUBLISH", Args: []string{"chan", "msg"}},
	}
	if d := cmp.Diff(want, res.Calls); d != "" {
		t.Errorf("Calls mismatch (-want +got):\n%s", d)
	}
	if res.Value != int64(0) {
		t.Errorf("PUBLISH reply = %#v, want 0 subscribers", res.Value)
	}
}

func TestUndeclaredKeys(t *testing.T) {
	tests := []struct {
		name string
		src  string
		viol []string
	}{
		{"declared", `return redis.call('GET', KEYS[1])`, nil},
		{"literal key", `return redis.call('GET', '{q}:other')`, []string{`undeclared key "{q}:other" used by GET`}},
		{"built key", `return redis.call('HSET', KEYS[1] .. ':x', 'f', 'v')`, []string{`undeclared key "{q}:a:x" used by HSET`}},
		{"DEL checks every key", `return redis.call('DEL', KEYS[1], KEYS[2], 'zzz')`, []string{`undeclared key "zzz" used by DEL`}},
		{"EXISTS checks every key", `return redis.call('EXISTS', 'k1', KEYS[2])`, []string{`undeclared key "k1" used by EXISTS`}},
		{"LMOVE destination", `return redis.call('LMOVE', KEYS[1], 'dst', 'LEFT', 'RIGHT')`, []string{`undeclared key "dst" used by LMOVE`}},
		{"LMOVE both declared", `return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')`, nil},
		{"members are not keys", `return redis.call('ZADD', KEYS[1], '1', 'not-a-key')`, nil},
		{"PUBLISH channel is not a key", `return redis.call('PUBLISH', 'anything', 'x')`, nil},
		{"pcall is checked too", `return redis.pcall('GET', 'nope')`, []string{`undeclared key "nope" used by GET`}},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, tc.src, twoKeys)
			if res.Err != nil {
				t.Fatalf("Err = %v", res.Err)
			}
			checkViolations(t, res, tc.viol...)
		})
	}
}

func TestHashSlot(t *testing.T) {
	if got := crc16("123456789"); got != 0x31C3 {
		t.Errorf("crc16(123456789) = %#x, want 0x31c3", got)
	}
	// Values from CLUSTER KEYSLOT.
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "hello": 866, "": 0} {
		if got := HashSlot(key); got != want {
			t.Errorf("HashSlot(%q) = %d, want %d", key, got, want)
		}
	}
	// Hash-tag rules from the cluster spec.
	same := [][2]string{
		{"{user1000}.following", "{user1000}.followers"},
		{"{user1000}.following", "user1000"},
		{"foo{bar}{zap}", "bar"},
		{"foo{{bar}}zap", "{bar"},
		{"foo{}{bar}", "foo{}{bar}"},
	}
	for _, p := range same {
		if HashSlot(p[0]) != HashSlot(p[1]) {
			t.Errorf("HashSlot(%q) = %d != HashSlot(%q) = %d", p[0], HashSlot(p[0]), p[1], HashSlot(p[1]))
		}
	}
	// An empty tag hashes the whole key.
	if HashSlot("foo{}{bar}") != int(crc16("foo{}{bar}"))%NumSlots {
		t.Errorf("empty hash tag must hash the whole key")
	}
	if HashSlot("a{x}") == HashSlot("a{y}") {
		t.Errorf("different tags x and y landed in one slot; pick other test keys")
	}
}

func TestCrossSlotKeys(t *testing.T) {
	tests := []struct {
		name  string
		keys  []string
		cross bool
	}{
		{"no keys", nil, false},
		{"one key", []string{"foo"}, false},
		{"same tag", []string{"luaq:{emails}:pending", "luaq:{emails}:tasks", "luaq:{emails}:meta"}, false},
		{"different tags", []string{"luaq:{emails}:pending", "luaq:{sms}:tasks"}, true},
		{"no tags", []string{"foo", "bar"}, true},
		{"same key twice", []string{"foo", "foo"}, false},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, `return #KEYS`, tc.keys)
			if res.Value != int64(len(tc.keys)) {
				t.Errorf("#KEYS = %#v, want %d", res.Value, len(tc.keys))
			}
			if tc.cross {
				checkViolations(t, res, "more than one hash slot")
			} else {
				checkViolations(t, res)
			}
		})
	}
}

func TestGlobals(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		viol    []string
		wantErr string // substring of a raw runtime error, "" for success
	}{
		{"locals are fine", `local x = 1; local function f() return x end; return f()`, nil, ""},
		{"read undefined", `return undefined_thing`, []string{"script read undefined global undefined_thing"},
			"Script attempted to access nonexistent global variable 'undefined_thing'"},
		{"read via _G", `return _G.nope`, []string{"script read undefined global nope"}, "nonexistent global"},
		{"write new", `counter = 1`, []string{"script wrote global counter"}, "Attempt to modify a readonly table"},
		{"global function", `function helper() end`, []string{"script wrote global helper"}, "readonly table"},
		{"overwrite existing", `KEYS = {}`, []string{"script wrote global KEYS"}, "readonly table"},
		{"overwrite library", `redis = nil`, []string{"script wrote global redis"}, "readonly table"},
		{"write via _G", `_G.x = 1`, []string{"script wrote global x"}, "readonly table"},
		{"rawset on _G", `rawset(_G, 'x', 1)`, []string{"script wrote global x"}, "readonly table"},
		{"library field", `string.trim = function() end`, []string{"script wrote string.trim"}, "readonly table"},
		{"redis field", `redis.call = nil`, []string{"script wrote redis.call"}, "readonly table"},
		{"setmetatable on _G", `setmetatable(_G, nil)`, nil, "protected metatable"},
		{"caught by pcall still counts", `pcall(function() leak = 1 end); return 1`, []string{"script wrote global leak"}, ""},
		{"rawget on _G reads through", `return rawget(_G, 'KEYS')[1]`, nil, ""},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, tc.src, []string{"k"})
			if tc.wantErr == "" {
				if res.Err != nil {
					t.Fatalf("Err = %v", res.Err)
				}
			} else {
				se := scriptErr(t, res.Err)
				if !se.Raw || se.Kind != KindRuntime || !strings.Contains(se.Msg, tc.wantErr) {
					t.Errorf("Err = %+v, want raw runtime error containing %q", se, tc.wantErr)
				}
			}
			checkViolations(t, res, tc.viol...)
		})
	}
}

func TestSandboxGlobals(t *testing.T) {
	e := New(t)
	absent := []string{"print", "dofile", "loadfile", "load", "loadstring", "require", "module",
		"setfenv", "getfenv", "newproxy", "collectgarbage", "os", "io", "package", "debug",
		"coroutine", "channel", "_printregs", "_GOPHER_LUA_VERSION"}
	present := []string{"KEYS", "ARGV", "redis", "string", "table", "math", "_G", "assert", "error",
		"getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget", "rawset", "select",
		"setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall", "_VERSION"}
	src := `
		local found = {}
		for i = 1, #ARGV do
			if rawget(_G, ARGV[i]) ~= nil then found[#found + 1] = ARGV[i] end
		end
		return found`
	res := e.Eval(t, src, nil, absent...)
	if d := cmp.Diff([]any{}, res.Value); d != "" {
		t.Errorf("globals that must be absent are present (-want +got):\n%s", d)
	}
	res = e.Eval(t, src, nil, present...)
	want := make([]any, len(present))
	for i, p := range present {
		want[i] = p
	}
	if d := cmp.Diff(want, res.Value); d != "" {
		t.Errorf("globals that must be present (-want +got):\n%s", d)
	}
	// KEYS and ARGV are string arrays.
	res = e.Eval(t, `return {#KEYS, #ARGV, type(ARGV[1]), ARGV[1], KEYS[2]}`, []string{"{a}1", "{a}2"}, "7")
	if d := cmp.Diff([]any{int64(2), int64(1), "string", "7", "{a}2"}, res.Value); d != "" {
		t.Errorf("KEYS/ARGV (-want +got):\n%s", d)
	}
}

func TestForbiddenCommands(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(e *Env)
		src     string
		want    any
		wantErr string
		viol    []string
	}{
		{"allowed", nil, `return redis.call('ZCARD', KEYS[1])`, int64(0), "", nil},
		{"lower-case allowed", nil, `return redis.call('zcard', KEYS[1])`, int64(0), "", nil},
		{"forbidden but forwarded", func(e *Env) { e.Miniredis().SAdd("{q}:a", "m") },
			`return redis.call('SMEMBERS', KEYS[1])`, []any{"m"}, "", []string{"command SMEMBERS is not in the allow-list"}},
		{"KEYS", nil, `return #redis.call('KEYS', '*')`, int64(0), "", []string{"command KEYS is not in the allow-list"}},
		{"blocking command is refused, not sent", nil, `return redis.call('BLPOP', KEYS[1], '0')`, nil,
			notAllowedFromScript, []string{"command BLPOP is not in the allow-list"}},
		{"MULTI refused", nil, `return redis.pcall('MULTI')`, nil,
			notAllowedFromScript, []string{"command MULTI is not in the allow-list"}},
		{"EXPIRE NX is 7.0", func(e *Env) { e.Miniredis().Set("{q}:a", "v") },
			`return redis.call('EXPIRE', KEYS[1], '10', 'nx')`, int64(1), "", []string{"EXPIRE NX needs Redis 7.0"}},
		{"setresp", nil, `redis.setresp(3); return 1`, nil, "redis.setresp is not available",
			[]string{"script called redis.setresp", "lint: line 1: redis.setresp"}},
		{"set_repl", nil, `redis.set_repl(0); return 1`, nil, "redis.set_repl is not available",
			[]string{"script called redis.set_repl", "lint: line 1: redis.set_repl"}},
		{"replicate_commands", nil, `return redis.replicate_commands()`, nil, "redis.replicate_commands is not available",
			[]string{"script called redis.replicate_commands"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := New(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			res := e.EvalRaw(t, tc.src, twoKeys)
			if tc.wantErr != "" {
				if res.Err == nil || !strings.Contains(res.Err.Error(), tc.wantErr) {
					t.Errorf("Err = %v, want one containing %q", res.Err, tc.wantErr)
				}
			} else if res.Err != nil {
				t.Fatalf("Err = %v", res.Err)
			}
			if d := cmp.Diff(tc.want, res.Value); d != "" {
				t.Errorf("Value mismatch (-want +got):\n%s", d)
			}
			checkViolations(t, res, tc.viol...)
		})
	}
}

func TestNumberArguments(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantArg string // the SET value as sent
		viol    bool
	}{
		{"string", `redis.call('SET', KEYS[1], '100000')`, "100000", false},
		{"small integer", `redis.call('SET', KEYS[1], 9999)`, "9999", false},
		{"small negative", `redis.call('SET', KEYS[1], -9999)`, "-9999", false},
		{"zero", `redis.call('SET', KEYS[1], 0)`, "0", false},
		{"10000", `redis.call('SET', KEYS[1], 10000)`, "10000", true},
		{"-10000", `redis.call('SET', KEYS[1], -10000)`, "-10000", true},
		{"1e9", `redis.call('SET', KEYS[1], 1e9)`, "1000000000", true},
		{"ms timestamp", `redis.call('SET', KEYS[1], 1767225600000)`, "1767225600000", true},
		{"float", `redis.call('SET', KEYS[1], 1.5)`, "1.5", true},
		{"0.1", `redis.call('SET', KEYS[1], 0.1)`, "0.10000000000000001", true},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, tc.src, []string{"{q}:a"})
			if res.Err != nil {
				t.Fatalf("Err = %v", res.Err)
			}
			if len(res.Calls) != 1 || len(res.Calls[0].Args) != 2 || res.Calls[0].Args[1] != tc.wantArg {
				t.Fatalf("Calls = %v, want SET {q}:a %s", res.Calls, tc.wantArg)
			}
			if got, _ := e.Miniredis().Get("{q}:a"); got != tc.wantArg {
				t.Errorf("stored %q, want %q", got, tc.wantArg)
			}
			if tc.viol {
				checkViolations(t, res, "pass numbers as strings")
			} else {
				checkViolations(t, res)
			}
		})
	}

	t.Run("LIMIT literals", func(t *testing.T) {
		res := e.EvalRaw(t, `return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '+inf', 'LIMIT', 0, 100)`, []string{"{q}:z"})
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		checkViolations(t, res)
	})
	t.Run("boolean argument", func(t *testing.T) {
		res := e.EvalRaw(t, `return redis.call('SET', KEYS[1], true)`, []string{"{q}:a"})
		se := scriptErr(t, res.Err)
		if !se.Raw || !strings.Contains(se.Msg, "must be strings or integers") {
			t.Errorf("Err = %+v", se)
		}
		checkViolations(t, res, "argument 3 is a boolean")
		if len(res.Calls) != 0 {
			t.Errorf("Calls = %v, want none", res.Calls)
		}
	})
}

func TestTime(t *testing.T) {
	e := New(t)
	const src = `local t = redis.call('TIME'); return {t[1], t[2], type(t[1]), t[1] * 1000 + math.floor(t[2] / 1000)}`
	check := func(want time.Time) {
		t.Helper()
		res := e.Eval(t, src, nil)
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		wantV := []any{
			fmt.Sprint(want.Unix()), fmt.Sprint(want.Nanosecond() / 1000), "string", want.UnixMilli(),
		}
		if d := cmp.Diff(wantV, res.Value); d != "" {
			t.Errorf("TIME at %v (-want +got):\n%s", want, d)
		}
		if !e.Now().Equal(want) {
			t.Errorf("Now() = %v, want %v", e.Now(), want)
		}
	}
	check(Epoch)
	e.Advance(1500*time.Millisecond + 3*time.Microsecond)
	check(Epoch.Add(1500*time.Millisecond + 3*time.Microsecond))
	later := time.Date(2027, 6, 15, 12, 30, 45, 123456789, time.UTC)
	e.SetNow(later)
	check(later.Truncate(time.Microsecond).Add(789)) // Now keeps ns; TIME shows µs
	earlier := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	e.SetNow(earlier)
	check(earlier)

	res := e.EvalRaw(t, `return redis.call('TIME', 'x')`, nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "wrong number of arguments") {
		t.Errorf("TIME with an argument: Err = %v", res.Err)
	}
}

func TestTTLFollowsClock(t *testing.T) {
	e := New(t)
	keys := []string{"{q}:ttl", "{q}:at"}
	res := e.Eval(t, `
		local t = redis.call('TIME')
		local now = t[1] * 1000 + math.floor(t[2] / 1000)
		redis.call('SET', KEYS[1], 'v', 'PX', '1000')
		redis.call('SET', KEYS[2], 'v')
		redis.call('PEXPIREAT', KEYS[2], string.format('%d', now + 5000))
		return redis.call('PTTL', KEYS[2])`, keys)
	if res.Value != int64(5000) {
		t.Errorf("PTTL after PEXPIREAT now+5s = %#v, want 5000 (miniredis time must follow the Clock)", res.Value)
	}
	exists := func() []any {
		t.Helper()
		return e.Eval(t, `return {redis.call('EXISTS', KEYS[1]), redis.call('EXISTS', KEYS[2])}`, keys).Value.([]any)
	}
	e.Advance(999 * time.Millisecond)
	if d := cmp.Diff([]any{int64(1), int64(1)}, exists()); d != "" {
		t.Errorf("after 999ms (-want +got):\n%s", d)
	}
	e.Advance(time.Millisecond)
	if d := cmp.Diff([]any{int64(0), int64(1)}, exists()); d != "" {
		t.Errorf("after 1000ms (-want +got):\n%s", d)
	}
	e.SetNow(e.Now().Add(4 * time.Second))
	if d := cmp.Diff([]any{int64(0), int64(0)}, exists()); d != "" {
		t.Errorf("after SetNow(+4s) (-want +got):\n%s", d)
	}
}

func TestCallVersusPcall(t *testing.T) {
	t.Run("call aborts the script", func(t *testing.T) {
		e := New(t)
		e.Miniredis().Set("{q}:a", "not a number")
		res := e.Eval(t, `
			redis.call('INCR', KEYS[1])
			redis.call('SET', KEYS[2], 'never')
			return 'unreachable'`, twoKeys)
		se := scriptErr(t, res.Err)
		if se.Kind != KindCommand || !se.Raw || se.Msg != "ERR value is not an integer or out of range" {
			t.Errorf("Err = %+v, want the raised INCR error", se)
		}
		if res.Value != nil {
			t.Errorf("Value = %#v, want nil", res.Value)
		}
		if len(res.Calls) != 1 {
			t.Errorf("Calls = %v, want only INCR", res.Calls)
		}
		if e.Miniredis().Exists("{q}:b") {
			t.Errorf("the SET after the failing call ran")
		}
	})
	t.Run("pcall returns the error and continues", func(t *testing.T) {
		e := New(t)
		e.Miniredis().Set("{q}:a", "not a number")
		res := e.Eval(t, `
			local r = redis.pcall('INCR', KEYS[1])
			redis.call('SET', KEYS[2], 'after')
			if type(r) == 'table' and r.err then
				return redis.error_reply('LQ_WRONGTYPE ' .. r.err)
			end
			return r`, twoKeys)
		se := scriptErr(t, res.Err)
		if se.Kind != KindReply || se.Raw || se.Msg != "LQ_WRONGTYPE ERR value is not an integer or out of range" {
			t.Errorf("Err = %+v", se)
		}
		if got, _ := e.Miniredis().Get("{q}:b"); got != "after" {
			t.Errorf("{q}:b = %q, want after", got)
		}
	})
	t.Run("WRONGTYPE via call", func(t *testing.T) {
		e := New(t)
		e.Miniredis().Set("{q}:a", "s")
		res := e.Eval(t, `return redis.call('HGET', KEYS[1], 'f')`, twoKeys)
		se := scriptErr(t, res.Err)
		if se.Kind != KindCommand || !strings.HasPrefix(se.Msg, "WRONGTYPE ") {
			t.Errorf("Err = %+v", se)
		}
	})
	t.Run("Lua pcall around call gets the message", func(t *testing.T) {
		e := New(t)
		e.Miniredis().Set("{q}:a", "s")
		res := e.Eval(t, `local ok, msg = pcall(redis.call, 'INCR', KEYS[1]); return {ok, msg}`, twoKeys)
		if d := cmp.Diff([]any{nil, "ERR value is not an integer or out of range"}, res.Value); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
		if res.Err != nil {
			t.Errorf("Err = %v", res.Err)
		}
	})
}

func TestNoRollback(t *testing.T) {
	e := New(t)
	res := e.Eval(t, `
		redis.call('SET', KEYS[1], 'written')
		redis.call('RPUSH', KEYS[2], 'x')
		error('boom')`, twoKeys)
	se := scriptErr(t, res.Err)
	if se.Kind != KindRuntime || !se.Raw || se.Msg != "user_script:4: boom" {
		t.Errorf("Err = %+v, want raw runtime error user_script:4: boom", se)
	}
	want := keyspace.Snapshot{
		"{q}:a": {Type: keyspace.TypeString, String: "written"},
		"{q}:b": {Type: keyspace.TypeList, List: []string{"x"}},
	}
	if d := cmp.Diff(want, e.Snapshot(t)); d != "" {
		t.Errorf("keyspace after a failing script (-want +got):\n%s", d)
	}
}

func TestCompileError(t *testing.T) {
	e := New(t)
	res := e.EvalRaw(t, `return (`, nil)
	se := scriptErr(t, res.Err)
	if se.Kind != KindCompile || !se.Raw || !strings.HasPrefix(se.Msg, "Error compiling script") {
		t.Errorf("Err = %+v", se)
	}
	res = e.EvalRaw(t, "#!lua\nreturn 1", nil)
	if se := scriptErr(t, res.Err); se.Kind != KindCompile {
		t.Errorf("shebang: Err = %+v, want a compile error like miniredis", se)
	}
	checkViolations(t, res, "shebang")
}

func TestTimeout(t *testing.T) {
	e := New(t)
	e.Timeout = 200 * time.Millisecond
	start := time.Now()
	res := e.EvalRaw(t, `while true do end`, nil)
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("runaway script took %v", el)
	}
	se := scriptErr(t, res.Err)
	if se.Kind != KindTimeout || !se.Raw {
		t.Errorf("Err = %+v, want timeout", se)
	}
	checkViolations(t, res, "did not finish within 200ms")
	// The Env is still usable.
	if res := e.Eval(t, `return 1`, nil); res.Value != int64(1) {
		t.Errorf("after timeout: %+v", res)
	}
}

func TestBulkGuards(t *testing.T) {
	tests := []struct {
		name string
		src  string
		n    string
		want any
		viol []string
	}{
		{"unpack 1000", `local t = {}; for i = 1, ARGV[1] + 0 do t[i] = 'x' end; return select('#', unpack(t))`, "1000", int64(1000), nil},
		{"unpack 1001", `local t = {}; for i = 1, ARGV[1] + 0 do t[i] = 'x' end; return select('#', unpack(t))`, "1001", int64(1001), []string{"unpack of 1001 items"}},
		{"unpack range", `local t = {}; for i = 1, ARGV[1] + 0 do t[i] = 'x' end; return select('#', unpack(t, 2, 1001))`, "3000", int64(1000), nil},
		{"concat 1000", `local t = {}; for i = 1, ARGV[1] + 0 do t[i] = 'x' end; return #table.concat(t, ',')`, "1000", int64(1999), nil},
		{"concat 1001", `local t = {}; for i = 1, ARGV[1] + 0 do t[i] = 'x' end; return #table.concat(t)`, "1001", int64(1001), []string{"table.concat of 1001 items"}},
		{"concat range", `local t = {'a', 'b', 'c', 'd'}; return table.concat(t, '-', 2, 3)`, "0", "b-c", nil},
	}
	e := New(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := e.EvalRaw(t, tc.src, nil, tc.n)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if d := cmp.Diff(tc.want, res.Value); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			checkViolations(t, res, tc.viol...)
		})
	}
}

func TestRedisLib(t *testing.T) {
	e := New(t)
	res := e.Eval(t, `return {redis.sha1hex(''), redis.sha1hex('abc'),
		redis.LOG_DEBUG, redis.LOG_VERBOSE, redis.LOG_NOTICE, redis.LOG_WARNING,
		redis.log(redis.LOG_WARNING, 'hello') == nil}`, nil)
	want := []any{"da39a3ee5e6b4b0d3255bfef95601890afd80709", "a9993e364706816aba3e25717850c26c9cd0d89d",
		int64(0), int64(1), int64(2), int64(3), int64(1)}
	if d := cmp.Diff(want, res.Value); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	for _, src := range []string{`redis.log('x')`, `redis.log(9, 'x')`, `return redis.error_reply(1)`, `return redis.call()`} {
		if res := e.EvalRaw(t, src, nil); res.Err == nil || !scriptErr(t, res.Err).Raw {
			t.Errorf("%s: Err = %v, want a raw error", src, res.Err)
		}
	}
}

func TestSnapshotAndClient(t *testing.T) {
	e := New(t)
	ctx := context.Background()
	if err := e.Client().HSet(ctx, "luaq:{q}:tasks", "t1", "payload").Err(); err != nil {
		t.Fatal(err)
	}
	e.Eval(t, `
		redis.call('ZADD', KEYS[2], ARGV[1], 't1')
		redis.call('PEXPIRE', KEYS[1], '60000')
		return 1`, []string{"luaq:{q}:tasks", "luaq:{q}:scheduled"}, "1767225600000")
	want := keyspace.Snapshot{
		"luaq:{q}:tasks":     {Type: keyspace.TypeHash, Hash: map[string]string{"t1": "payload"}, TTL: true},
		"luaq:{q}:scheduled": {Type: keyspace.TypeZSet, ZSet: []keyspace.Member{{Member: "t1", Score: 1767225600000}}},
	}
	if d := cmp.Diff(want, e.Snapshot(t)); d != "" {
		t.Errorf("Snapshot (-want +got):\n%s", d)
	}
	if e.Addr() != e.Miniredis().Addr() || e.Addr() == "" {
		t.Errorf("Addr() = %q", e.Addr())
	}
}

// recorder captures Errorf calls so the test can check that Eval fails
// the test on violations.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestEvalFailsTestOnViolations(t *testing.T) {
	e := New(t)
	rec := &recorder{TB: t}
	res := e.Eval(rec, `return redis.call('GET', 'undeclared')`, []string{"k"})
	if len(res.Violations) != 1 {
		t.Fatalf("Violations = %q", res.Violations)
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], `undeclared key "undeclared"`) {
		t.Errorf("Eval reported %q, want one error naming the undeclared key", rec.errors)
	}

	rec = &recorder{TB: t}
	e.Eval(rec, `return redis.call('GET', KEYS[1])`, []string{"k"})
	if len(rec.errors) != 0 {
		t.Errorf("clean script: Eval reported %q", rec.errors)
	}

	rec = &recorder{TB: t}
	e.EvalRaw(rec, `return redis.call('GET', 'undeclared')`, []string{"k"})
	if len(rec.errors) != 0 {
		t.Errorf("EvalRaw reported %q, want nothing", rec.errors)
	}
}

func TestViolationsAreDeduplicated(t *testing.T) {
	e := New(t)
	res := e.EvalRaw(t, `for i = 1, 5 do redis.call('GET', 'x') end; return 1`, nil)
	checkViolations(t, res, `undeclared key "x"`)
	if len(res.Calls) != 5 {
		t.Errorf("Calls = %d, want 5", len(res.Calls))
	}
}

func TestConcurrentEvals(t *testing.T) {
	e := New(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				// GET then SET is not atomic across clients; Evals on one
				// Env are serialised, so no increment may be lost.
				e.Eval(t, `
					local v = redis.call('GET', KEYS[1]) or '0'
					redis.call('SET', KEYS[1], string.format('%d', v + 1))
					return 1`, []string{"n"})
			}
		}()
	}
	wg.Wait()
	if got, _ := e.Miniredis().Get("n"); got != "80" {
		t.Errorf("n = %q, want 80", got)
	}
}
