package scripttest

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"

	lua "github.com/yuin/gopher-lua"
)

// Log levels of redis.log, as on Redis.
const (
	logDebug   = 0
	logVerbose = 1
	logNotice  = 2
	logWarning = 3
)

// smallIntLimit: Lua numbers passed to redis.call must be integers below
// this in absolute value (lua-compat §5.1 rule 4).
const smallIntLimit = 10000

// redisTable builds the script's redis table (before it is made read-only).
func (r *run) redisTable(L *lua.LState) *lua.LTable {
	tb := L.NewTable()
	set := func(name string, fn lua.LGFunction) { tb.RawSetString(name, L.NewFunction(fn)) }
	set("call", func(L *lua.LState) int { return r.redisCall(L, false) })
	set("pcall", func(L *lua.LState) int { return r.redisCall(L, true) })
	set("error_reply", func(L *lua.LState) int {
		s, ok := L.Get(1).(lua.LString)
		if L.GetTop() != 1 || !ok {
			L.RaiseError("wrong number or type of arguments")
		}
		L.Push(errorTable(L, r.errorReply(string(s))))
		return 1
	})
	set("status_reply", func(L *lua.LState) int {
		s, ok := L.Get(1).(lua.LString)
		if L.GetTop() != 1 || !ok {
			L.RaiseError("wrong number or type of arguments")
		}
		st := L.NewTable()
		st.RawSetString("ok", s)
		L.Push(st)
		return 1
	})
	set("sha1hex", func(L *lua.LState) int {
		if L.GetTop() != 1 {
			L.RaiseError("wrong number of arguments")
		}
		sum := sha1.Sum([]byte(L.CheckString(1)))
		L.Push(lua.LString(hex.EncodeToString(sum[:])))
		return 1
	})
	set("log", func(L *lua.LState) int {
		if L.GetTop() < 2 {
			L.RaiseError("redis.log() requires two arguments or more.")
		}
		lvl, ok := L.Get(1).(lua.LNumber)
		if !ok {
			L.RaiseError("First argument must be a number (log level).")
		}
		if lvl < logDebug || lvl > logWarning {
			L.RaiseError("Invalid debug level.")
		}
		return 0
	})
	tb.RawSetString("LOG_DEBUG", lua.LNumber(logDebug))
	tb.RawSetString("LOG_VERBOSE", lua.LNumber(logVerbose))
	tb.RawSetString("LOG_NOTICE", lua.LNumber(logNotice))
	tb.RawSetString("LOG_WARNING", lua.LNumber(logWarning))
	for _, name := range []string{"setresp", "set_repl", "replicate_commands"} {
		set(name, func(L *lua.LState) int {
			r.violate("script called redis.%s, which the bundle must not use (lua-compat §1.2, §5.1)", name)
			L.RaiseError("redis.%s is not available in luaq scripts", name)
			return 0
		})
	}
	return tb
}

// errorReply reproduces Redis 7's redis.error_reply text: a leading '-' is
// dropped, and a message without a space gets the code "ERR" (so
// error_reply('QERR_X') reaches the client as "ERR QERR_X"; Redis 6.2 would
// send "QERR_X"), which is a violation of the "CODE message" rule.
func (r *run) errorReply(s string) string {
	s = strings.TrimPrefix(s, "-")
	s = strings.TrimRight(s, "\r\n")
	if !strings.Contains(s, " ") {
		r.violate("redis.error_reply(%q) has no message: Redis 7 and miniredis answer %q, Redis 6.2 %q; use 'CODE message' (lua-compat §1.6)", s, "ERR "+s, s)
		return "ERR " + s
	}
	return s
}

func errorTable(L *lua.LState, msg string) *lua.LTable {
	tb := L.NewTable()
	tb.RawSetString("err", lua.LString(msg))
	return tb
}

// redisCall implements redis.call (protected=false) and redis.pcall.
func (r *run) redisCall(L *lua.LState, protected bool) int {
	n := L.GetTop()
	if n == 0 {
		L.RaiseError("Please specify at least one argument for this redis lib call")
	}
	args := make([]string, n)
	for i := 1; i <= n; i++ {
		switch v := L.Get(i).(type) {
		case lua.LString:
			args[i-1] = string(v)
		case lua.LNumber:
			args[i-1] = r.numberArg(args, i, float64(v))
		default:
			r.violate("redis.call argument %d is a %s; arguments must be strings", i, v.Type())
			L.RaiseError("Lua redis lib command arguments must be strings or integers")
		}
	}
	cmd := strings.ToUpper(args[0])
	rest := args[1:]
	r.calls = append(r.calls, Call{Cmd: cmd, Args: append([]string(nil), rest...)})

	keysOf, ok := allowed[cmd]
	if !ok {
		r.violate("command %s is not in the allow-list of lua-compat §5.2", cmd)
	} else {
		for _, k := range keysOf(rest) {
			if !r.keys[k] {
				r.violate("undeclared key %q used by %s (every key must be passed in KEYS)", k, cmd)
			}
		}
		if why := checkCommandOptions(cmd, rest); why != "" {
			r.violate("%s", why)
		}
	}

	var rep respReply
	switch {
	case cmd == "TIME":
		rep = r.timeReply(rest)
	case notForwarded[cmd]:
		rep = respReply{kind: '-', str: notAllowedFromScript}
	default:
		var err error
		rep, err = r.forward(args)
		if err != nil {
			r.harnessErr = err
			r.t.Errorf("scripttest: harness: %s: %v", cmd, err)
			L.RaiseError("scripttest harness: %s: %v", cmd, err)
		}
	}

	if rep.kind == '-' {
		if protected {
			L.Push(errorTable(L, rep.str))
			return 1
		}
		r.cmdErr, r.cmdErrSet = rep.str, true
		L.Error(lua.LString(rep.str), 0)
		return 0
	}
	L.Push(replyToLua(L, rep))
	return 1
}

// numberArg converts a Lua number argument of redis.call the way Redis 7.0
// does and records a violation unless it is a small integer.
func (r *run) numberArg(args []string, i int, f float64) string {
	cmd := "?"
	if i > 1 {
		cmd = strings.ToUpper(args[0])
	}
	if !isInteger(f) {
		r.violate("redis.call(%s) argument %d is the non-integer Lua number %v: pass numbers as strings (engines format it differently, lua-compat §1.5, §5.1 rule 4)", cmd, i, f)
		return strconv.FormatFloat(f, 'g', 17, 64)
	}
	if math.Abs(f) >= smallIntLimit {
		r.violate("redis.call(%s) argument %d is the Lua number %.0f: pass numbers as strings (only integers below %d may stay numbers, lua-compat §5.1 rule 4)", cmd, i, f, smallIntLimit)
	}
	if math.Abs(f) < 1<<63 {
		return strconv.FormatInt(int64(f), 10)
	}
	return strconv.FormatFloat(f, 'g', 17, 64)
}

// timeReply answers TIME from the Clock: seconds and microseconds as bulk
// strings.
func (r *run) timeReply(args []string) respReply {
	if len(args) != 0 {
		return respReply{kind: '-', str: "ERR wrong number of arguments for 'time' command"}
	}
	now := r.env.Now()
	return respReply{kind: '*', elems: []respReply{
		{kind: '$', str: strconv.FormatInt(now.Unix(), 10)},
		{kind: '$', str: strconv.Itoa(now.Nanosecond() / 1000)},
	}}
}

// forward sends one command to miniredis over the harness's connection,
// dialling it if needed. On an I/O error the connection is dropped.
func (r *run) forward(args []string) (respReply, error) {
	e := r.env
	if e.conn == nil {
		c, err := dialRESP(r.ctx, e.mr.Addr())
		if err != nil {
			return respReply{}, fmt.Errorf("dial miniredis: %w", err)
		}
		e.conn = c
	}
	rep, err := e.conn.do(r.ctx, args)
	if err != nil {
		_ = e.conn.close()
		e.conn = nil
		return respReply{}, err
	}
	return rep, nil
}

// replyToLua converts a reply the way redis.call does under RESP2
// (lua-compat §1.3).
func replyToLua(L *lua.LState, rep respReply) lua.LValue {
	switch rep.kind {
	case ':':
		return lua.LNumber(float64(rep.num))
	case '$':
		if rep.null {
			return lua.LFalse
		}
		return lua.LString(rep.str)
	case '+':
		tb := L.NewTable()
		tb.RawSetString("ok", lua.LString(rep.str))
		return tb
	case '-':
		return errorTable(L, rep.str)
	case '*':
		if rep.null {
			return lua.LFalse
		}
		tb := L.CreateTable(len(rep.elems), 0)
		for i, el := range rep.elems {
			tb.RawSetInt(i+1, replyToLua(L, el))
		}
		return tb
	}
	return lua.LFalse
}
