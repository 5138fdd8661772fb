package scripts_test

// Differential tests: every scenario runs step by step on scripttest
// (gopher-lua + miniredis, injected clock) and on a real redis-server
// (through the loader, EVALSHA, the server's own clock). After every step the
// normalised replies, the error texts and the queue's keyspace must agree.
//
// Time: the real server reads its real clock, so absolute instants (integers
// >= 1e12 in replies, zset scores >= 1e12, the deadline, expire_at and
// enqueued fields of task records) are replaced by a placeholder on both sides, arguments
// that are instants are written "$now+N" and resolved on each side's clock,
// and a step's sleep is a real sleep on the server side and a clock advance
// in the harness. Durations that depend on elapsed time (next_due_in_ms) are
// compared with a tolerance. Scenarios only rely on a task being "not due
// yet" for long delays (a minute), and on "due" after a sleep past the delay.
// Stats days (lib/stats.lua) are compared relative to each side's today:
// "$day-N" in arguments is the side's day number minus N, day fields of the
// stats hash become "<counter>:today-N", and reply indices listed in a
// step's days become "today-N".

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripttest"
)

// dstep is one step of a differential scenario.
type dstep struct {
	// sleep is waited before the step: a real sleep on the server, a
	// clock advance in the harness.
	sleep time.Duration
	// script and args make a script call. Arguments may hold
	// "$now+<ms>" (the side's clock plus ms) and "$token:<id>" (the side's
	// current fencing token of id).
	script string
	args   []string
	// direct sends the call by EVALSHA on the server without the loader's
	// argument-count check (to test the scripts' own count checks).
	direct bool
	// cmd, instead of a script, is a raw setup command; "$key:<role>" is
	// the queue's key of role.
	cmd []string
	// fuzzy lists top-level reply indices holding elapsed-time-dependent
	// durations (ms), compared within fuzzTolerance.
	fuzzy []int
	// days lists top-level reply indices holding stats day numbers,
	// compared relative to each side's today.
	days []int
	// wantErr, when set, is the error code both sides must return.
	wantErr string
}

type dscenario struct {
	name  string
	steps []dstep
}

// fuzzTolerance bounds how far apart elapsed-time-dependent durations may be.
const fuzzTolerance = 10000

// timePlaceholder replaces absolute instants.
const timePlaceholder = "<time>"

// side is one engine the scenarios run on.
type side interface {
	name() string
	nowMS() int64
	sleep(d time.Duration)
	// call runs a script; errText is "<CODE> <message>" for a deliberate
	// error reply. Raw errors fail the test.
	call(t *testing.T, st dstep, args []string) (v any, errText string)
	do(t *testing.T, cmd []string)
	token(t *testing.T, id string) string
	dump(t *testing.T) keyspace.Snapshot
	queue() keys.Queue
}

// ---- the harness side ----

type harnessSide struct {
	env *scripttest.Env
	q   keys.Queue
}

func (h *harnessSide) name() string          { return "scripttest" }
func (h *harnessSide) nowMS() int64          { return h.env.Now().UnixMilli() }
func (h *harnessSide) sleep(d time.Duration) { h.env.Advance(d) }
func (h *harnessSide) queue() keys.Queue     { return h.q }

func (h *harnessSide) call(t *testing.T, st dstep, args []string) (any, string) {
	t.Helper()
	res := runOn(t, h.env, h.q.Name(), st.script, args...)
	if res.Err == nil {
		return res.Value, ""
	}
	var se *scripttest.ScriptError
	if !errors.As(res.Err, &se) || se.Raw {
		t.Fatalf("scripttest: %s: raw error %v", st.script, res.Err)
	}
	return nil, se.Msg
}

func (h *harnessSide) do(t *testing.T, cmd []string) {
	t.Helper()
	if err := h.env.Client().Do(context.Background(), toAny(cmd)...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("scripttest: %v: %v", cmd, err)
	}
}

func (h *harnessSide) token(t *testing.T, id string) string {
	t.Helper()
	v, err := h.env.Client().HGet(context.Background(), h.q.Key("tokens"), id).Result()
	if err != nil {
		t.Fatalf("scripttest: token of %s: %v", id, err)
	}
	return v
}

func (h *harnessSide) dump(t *testing.T) keyspace.Snapshot {
	t.Helper()
	return h.env.Snapshot(t)
}

// ---- the real server side ----

type serverSide struct {
	client *redis.Client
	l      *loader.Loader
	q      keys.Queue
}

func (s *serverSide) name() string          { return "redis-server" }
func (s *serverSide) nowMS() int64          { return time.Now().UnixMilli() }
func (s *serverSide) sleep(d time.Duration) { time.Sleep(d) }
func (s *serverSide) queue() keys.Queue     { return s.q }

func (s *serverSide) call(t *testing.T, st dstep, args []string) (any, string) {
	t.Helper()
	ctx := context.Background()
	if st.direct {
		sc := script(t, st.script)
		v, err := s.client.EvalSha(ctx, sc.SHA, s.q.Keys(sc.Roles()), toAny(args)...).Result()
		if err == nil {
			return v, ""
		}
		var rerr redis.Error
		if !errors.As(err, &rerr) || !strings.HasPrefix(rerr.Error(), "LQ_") {
			t.Fatalf("redis-server: %s (direct): %v", st.script, err)
		}
		return nil, rerr.Error()
	}
	v, err := s.l.Run(ctx, s.q, st.script, args...)
	if err == nil {
		return v, ""
	}
	var se *loader.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("redis-server: %s: %v", st.script, err)
	}
	return nil, se.Code + " " + se.Message
}

func (s *serverSide) do(t *testing.T, cmd []string) {
	t.Helper()
	if err := s.client.Do(context.Background(), toAny(cmd)...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("redis-server: %v: %v", cmd, err)
	}
}

func (s *serverSide) token(t *testing.T, id string) string {
	t.Helper()
	v, err := s.client.HGet(context.Background(), s.q.Key("tokens"), id).Result()
	if err != nil {
		t.Fatalf("redis-server: token of %s: %v", id, err)
	}
	return v
}

func (s *serverSide) dump(t *testing.T) keyspace.Snapshot {
	t.Helper()
	snap, err := keyspace.Dump(context.Background(), s.client, s.q.Pattern())
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	return snap
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// ---- resolution and normalisation ----

// dayPlaceholder is "$day" or "$day-N" anywhere in an argument.
var dayPlaceholder = regexp.MustCompile(`\$day(-[0-9]+)?`)

// relDay renders day relative to today: "today", "today-3", "today+1".
func relDay(day, today int64) string {
	switch d := day - today; {
	case d == 0:
		return "today"
	case d > 0:
		return "today+" + strconv.FormatInt(d, 10)
	default:
		return "today" + strconv.FormatInt(d, 10)
	}
}

// resolve replaces the placeholders of one argument list for side sd.
func resolve(t *testing.T, sd side, args []string) []string {
	t.Helper()
	out := make([]string, len(args))
	for i, a := range args {
		if dayPlaceholder.MatchString(a) {
			today := dayOf(sd.nowMS())
			out[i] = dayPlaceholder.ReplaceAllStringFunc(a, func(m string) string {
				n, _ := strconv.ParseInt(strings.TrimPrefix(m, "$day"), 10, 64) // "" -> 0
				return strconv.FormatInt(today+n, 10)
			})
			continue
		}
		switch {
		case strings.HasPrefix(a, "$now+"):
			n, err := strconv.ParseInt(strings.TrimPrefix(a, "$now+"), 10, 64)
			if err != nil {
				t.Fatalf("bad placeholder %q", a)
			}
			out[i] = strconv.FormatInt(sd.nowMS()+n, 10)
		case strings.HasPrefix(a, "$token:"):
			out[i] = sd.token(t, strings.TrimPrefix(a, "$token:"))
		case strings.HasPrefix(a, "$key:"):
			out[i] = sd.queue().Key(strings.TrimPrefix(a, "$key:"))
		default:
			out[i] = a
		}
	}
	return out
}

// normReply replaces instants in a reply by the placeholder.
func normReply(v any) any {
	switch x := v.(type) {
	case int64:
		if x >= 1e12 {
			return timePlaceholder
		}
		return x
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normReply(e)
		}
		return out
	default:
		return v
	}
}

// normRecord replaces the deadline, expire_at and enqueued instants of a
// task record (lib/record.lua: eight integers, then the length-prefixed type,
// unique key and payload, which stay as they are).
func normRecord(s string) string {
	f := strings.SplitN(s, ":", 10)
	if len(f) != 10 {
		return "<malformed record> " + s
	}
	for _, i := range []int{3, 4, 6} { // deadline, expire_at, enqueued
		if n, err := strconv.ParseInt(f[i], 10, 64); err == nil && n >= 1e12 {
			f[i] = timePlaceholder
		}
	}
	return strings.Join(f, ":")
}

// statsDayField is a per-day field of the stats hash.
var statsDayField = regexp.MustCompile(`^([a-z]+):([0-9]+)$`)

// normDays replaces the day numbers at reply indices idx by their distance
// from today.
func normDays(v any, idx []int, today int64) any {
	arr, ok := v.([]any)
	if !ok || len(idx) == 0 {
		return v
	}
	arr = slices.Clone(arr)
	for _, i := range idx {
		if i < len(arr) {
			if n, ok := arr[i].(int64); ok {
				arr[i] = relDay(n, today)
			}
		}
	}
	return arr
}

// dayIdx lists the day indices of a daily-stats reply of n days.
func dayIdx(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = 6 * i
	}
	return out
}

// normSnap renames keys to their role (so queue names may differ between
// sides), replaces instants, orders zset members by normalised score and
// member, and names stats day fields relative to today (the day of nowMS).
func normSnap(snap keyspace.Snapshot, q keys.Queue, nowMS int64) map[string]keyspace.Value {
	prefix := q.Key("")
	out := map[string]keyspace.Value{}
	for k, v := range snap {
		role, ok := strings.CutPrefix(k, prefix)
		if !ok {
			role = "<foreign key> " + k
		}
		switch v.Type {
		case keyspace.TypeZSet:
			z := slices.Clone(v.ZSet)
			for i := range z {
				if z[i].Score >= 1e12 {
					z[i].Score = -1 // the placeholder
				}
			}
			sort.SliceStable(z, func(i, j int) bool {
				if z[i].Score != z[j].Score {
					return z[i].Score < z[j].Score
				}
				return z[i].Member < z[j].Member
			})
			v.ZSet = z
		case keyspace.TypeHash:
			if role == "tasks" {
				h := map[string]string{}
				for f, r := range v.Hash {
					h[f] = normRecord(r)
				}
				v.Hash = h
			}
			if role == "stats" {
				h := map[string]string{}
				for f, n := range v.Hash {
					if m := statsDayField.FindStringSubmatch(f); m != nil {
						day, _ := strconv.ParseInt(m[2], 10, 64)
						f = m[1] + ":" + relDay(day, dayOf(nowMS))
					}
					h[f] = n
				}
				v.Hash = h
			}
		}
		out[role] = v
	}
	return out
}

// compareFuzzy checks the fuzzy reply indices within tolerance and replaces
// them by a placeholder in both replies.
func compareFuzzy(t *testing.T, idx []int, a, b any) (any, any) {
	t.Helper()
	aa, ok1 := a.([]any)
	bb, ok2 := b.([]any)
	if !ok1 || !ok2 {
		return a, b
	}
	aa, bb = slices.Clone(aa), slices.Clone(bb)
	for _, i := range idx {
		if i >= len(aa) || i >= len(bb) {
			continue
		}
		x, ok1 := aa[i].(int64)
		y, ok2 := bb[i].(int64)
		if !ok1 || !ok2 {
			continue
		}
		if d := x - y; d > fuzzTolerance || d < -fuzzTolerance || (x < 0) != (y < 0) {
			t.Errorf("reply element %d: %d vs %d, more than %d ms apart (or of different sign)", i, x, y, fuzzTolerance)
		}
		aa[i], bb[i] = "<duration>", "<duration>"
	}
	return aa, bb
}

// ---- scenarios ----

// enq builds enqueue args from groups (see g).
func enq(groups ...[]string) []string {
	out := []string{strconv.Itoa(len(groups))}
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

// g is one enqueue group: id type payload max_retry timeout deadline at in,
// optionally followed by expire_at expire_in expire_archive retention
// unique_key unique_ttl (default: none of them).
func g(fields ...string) []string {
	switch len(fields) {
	case groupLen:
		return fields
	case 8:
		return append(slices.Clone(fields), "0", "0", "0", "0", "", "0")
	}
	panic(fmt.Sprintf("enqueue group needs 8 or %d fields, got %d", groupLen, len(fields)))
}

func call(script string, args ...string) dstep { return dstep{script: script, args: args} }

func callErr(code, script string, args ...string) dstep {
	return dstep{script: script, args: args, wantErr: code}
}

func scenarios() []dscenario {
	batch := func(n int) []string {
		out := []string{strconv.Itoa(n)}
		for i := 0; i < n; i++ {
			out = append(out, g("b"+strconv.Itoa(i), "t", "payload "+strconv.Itoa(i), "1", "0", "0", "0", "0")...)
		}
		return out
	}
	return append([]dscenario{
		{"lifecycle", []dstep{
			call("enqueue", enq(
				g("a", "email", "hello:world", "1", "5000", "$now+3600000", "0", "0"),
				g("b", "t", "\x00\xff binary", "0", "0", "0", "0", "0"),
				g("c", "t", "pc", "3", "0", "0", "0", "0"),
				g("", "gen", "", "3", "0", "0", "0", "0"),
				g("s", "t", "later", "3", "0", "0", "0", "60000"),
				g("s2", "t", "later", "3", "0", "0", "$now+120000", "0"),
			)...),
			call("enqueue", enq(g("", "gen", "second", "3", "0", "0", "0", "0"))...),
			call("queue-info"),
			call("dequeue", deqArgs(2, 30000, 10, 10, 0)...),
			call("extend", "a", "$token:a", "60000"),
			call("complete", "a", "$token:a", "", "1", "30000", "10"),
			call("retry-or-archive", "c", "$token:c", "boom", "0", "0"),
			call("retry-or-archive", "b", "$token:b", "fatal", "0", "0"),
			call("dequeue", deqArgs(5, 30000, 10, 0, 0)...),
			call("requeue", "c", "$token:c"),
			call("set-paused", "1"),
			call("set-paused", "1"),
			call("dequeue", deqArgs(5, 30000, 10, 0, 0)...),
			call("enqueue", enq(g("p", "t", "while paused", "0", "0", "0", "0", "0"))...),
			call("set-paused", "0"),
			call("set-paused", "0"),
			call("dequeue", deqArgs(10, 30000, 0, 0, 0)...),
			call("retry-or-archive", "p", "$token:p", "skip me", "1000", "1"),
			call("complete", "c", "$token:c", "", "0", "0", "0"),
			call("queue-info"),
			{script: "dequeue", args: deqArgs(10, 30000, 10, 10, 0), fuzzy: []int{1}},
			callErr(codeLeaseLost, "complete", "c", "3", "", "0", "0", "0"),
			callErr(codeLeaseLost, "extend", "1", "1", "1000"),
			{script: "complete", args: []string{"1", "$token:1", "", "5", "1000", "0"}, fuzzy: []int{1}},
			call("queue-info"),
		}},
		{"errors", []dstep{
			call("enqueue", enq(g("a", "t", "pa", "3", "0", "0", "0", "0"), g("b", "t", "pb", "3", "0", "0", "0", "0"))...),
			call("dequeue", deqArgs(1, 30000, 0, 0, 0)...),
			callErr(codeBadArg, "enqueue", enq(g("x y", "t", "", "0", "0", "0", "0", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("123", "t", "", "0", "0", "0", "0", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("x", "", "", "0", "0", "0", "0", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("x", "t", "", "-1", "0", "0", "0", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("x", "t", "", "0", "0", "1000", "0", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("x", "t", "", "0", "0", "0", "$now+1000", "1000"))...),
			callErr(codeBadArg, "enqueue", enq(g("x", "t", "", "0", "0", "0", "0", "0"), g("x", "t", "", "0", "0", "0", "0", "0"))...),
			callErr(codeConflict, "enqueue", enq(g("x", "t", "", "0", "0", "0", "0", "0"), g("a", "t", "", "0", "0", "0", "0", "0"))...),
			{script: "enqueue", args: enq(g("x", "t", "", "0", "0", "0", "0", "0"))[1:], direct: true, wantErr: codeBadArg}, // groups without count
			{script: "enqueue", args: append([]string{"2"}, g("x", "t", "", "0", "0", "0", "0", "0")...), direct: true, wantErr: codeBadArg},
			{script: "enqueue", args: []string{"1", "x", "t", "", "0", "0", "0", "0", "0"}, direct: true, wantErr: codeBadArg}, // an old 8-value group
			{script: "enqueue", args: []string{"1001"}, direct: true, wantErr: codeBadArg},
			callErr(codeBadArg, "dequeue", deqArgs(0, 1000, 0, 0, 0)...),
			callErr(codeBadArg, "dequeue", deqArgs(1, 2147483648, 0, 0, 0)...),
			callErr(codeBadArg, "dequeue", deqArgs(1, 1000, 1001, 0, 0)...),
			callErr(codeBadArg, "dequeue", deqArgs(1, 1000, 0, -1, 0)...),
			callErr(codeBadArg, "dequeue", deqArgs(1, 1000, 0, 0, 31536000001)...),
			{script: "dequeue", args: []string{"1"}, direct: true, wantErr: codeBadArg},
			callErr(codeBadArg, "extend", "a", "0", "1000"),
			callErr(codeBadArg, "extend", "", "1", "1000"),
			callErr(codeBadArg, "extend", "a", "1", "0"),
			callErr(codeLeaseLost, "extend", "a", "2", "1000"),
			callErr(codeLeaseLost, "extend", "b", "1", "1000"),
			callErr(codeBadArg, "complete", "a", "1", "", "1", "0", "0"),
			callErr(codeBadArg, "complete", "a", "1", "", "1001", "1000", "0"),
			callErr(codeLeaseLost, "complete", "a", "9", "", "0", "0", "0"),
			callErr(codeBadArg, "retry-or-archive", "a", "1", strings.Repeat("m", 8193), "0", "0"),
			callErr(codeBadArg, "retry-or-archive", "a", "1", "m", "0", "2"),
			callErr(codeBadArg, "retry-or-archive", "a", "1", "m", "-1", "0"),
			callErr(codeLeaseLost, "retry-or-archive", "b", "1", "m", "0", "0"),
			callErr(codeBadArg, "requeue", "", "1"),
			callErr(codeBadArg, "requeue", "a", "x"),
			callErr(codeLeaseLost, "requeue", "a", "5"),
			callErr(codeBadArg, "set-paused", "2"),
			{script: "set-paused", args: nil, direct: true, wantErr: codeBadArg},
			{script: "queue-info", args: []string{"x"}, direct: true, wantErr: codeBadArg},
			{cmd: []string{"HDEL", "$key:tasks", "a"}},
			callErr(codeNotFound, "retry-or-archive", "a", "1", "m", "0", "0"),
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "enqueue", enq(g("x", "t", "", "0", "0", "0", "0", "0"))...),
			callErr(codeSchema, "dequeue", deqArgs(1, 1000, 10, 10, 0)...),
			callErr(codeSchema, "extend", "a", "1", "1000"),
			callErr(codeSchema, "complete", "a", "1", "", "0", "0", "0"),
			callErr(codeSchema, "retry-or-archive", "a", "1", "m", "0", "0"),
			callErr(codeSchema, "requeue", "a", "1"),
			callErr(codeSchema, "set-paused", "1"),
			callErr(codeSchema, "queue-info"),
		}},
		{"time", []dstep{
			call("enqueue", enq(
				g("x", "t", "px", "0", "0", "0", "0", "0"),
				g("y", "t", "py", "2", "0", "0", "0", "0"),
				g("s", "t", "ps", "0", "0", "0", "0", "50"),
			)...),
			call("dequeue", deqArgs(2, 50, 0, 0, 0)...),
			// Both leases expire; x has no retries left, y is retried at once.
			{sleep: 60 * time.Millisecond, script: "dequeue", args: deqArgs(10, 30000, 0, 10, 0)},
			call("dequeue", deqArgs(10, 30000, 10, 0, 0)...),
			call("retry-or-archive", "y", "$token:y", "again", "50", "0"),
			call("enqueue", enq(g("d", "t", "pd", "3", "0", "$now+150", "0", "0"))...),
			// y is due again, d missed its deadline before it started.
			{sleep: 200 * time.Millisecond, script: "dequeue", args: deqArgs(10, 30000, 10, 0, 0)},
			call("extend", "y", "$token:y", "100"),
			call("complete", "y", "$token:y", "", "0", "0", "0"),
			call("enqueue", enq(g("r", "t", "pr", "0", "0", "0", "0", "0"))...),
			call("dequeue", deqArgs(1, 50, 0, 0, 0)...),
			// r's lease expires: reclaimed and archived (no retries); s still holds a lease.
			{sleep: 60 * time.Millisecond, script: "dequeue", args: deqArgs(1, 30000, 0, 10, 0), fuzzy: []int{1}},
			call("queue-info"),
		}},
		{"archive trim", []dstep{
			{cmd: []string{"HSET", "$key:meta", "archive_max", "2"}},
			call("enqueue", enq(
				g("a1", "t", "", "0", "0", "0", "0", "0"),
				g("a2", "t", "", "0", "0", "0", "0", "0"),
				g("a3", "t", "", "0", "0", "0", "0", "0"),
			)...),
			call("dequeue", deqArgs(3, 30000, 0, 0, 0)...),
			call("retry-or-archive", "a1", "$token:a1", "e1", "0", "0"),
			{sleep: 2 * time.Millisecond, script: "retry-or-archive", args: []string{"a2", "$token:a2", "e2", "0", "1"}},
			{sleep: 2 * time.Millisecond, script: "retry-or-archive", args: []string{"a3", "$token:a3", "e3", "0", "0"}},
			{cmd: []string{"HSET", "$key:meta", "archive_max", "100", "archive_age_ms", "50"}},
			call("enqueue", enq(g("a4", "t", "", "0", "0", "0", "0", "0"))...),
			call("dequeue", deqArgs(1, 30000, 0, 0, 0)...),
			{sleep: 60 * time.Millisecond, script: "retry-or-archive", args: []string{"a4", "$token:a4", "e4", "0", "0"}},
			call("queue-info"),
		}},
		{"batch limit", []dstep{
			call("enqueue", batch(1000)...),
			callErr(codeBadArg, "enqueue", batch(1001)...),
			call("dequeue", deqArgs(1000, 30000, 0, 0, 0)...),
			call("queue-info"),
		}},
	}, append(expiryScenarios(), adminScenarios()...)...)
}

// TestDifferential runs every scenario on scripttest and on a real
// redis-server and compares them after every step.
func TestDifferential(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t)
	l := loader.New(client, testBundle(t))
	if err := l.Load(context.Background()); err != nil {
		t.Fatalf("loading the bundle: %v", err)
	}
	covered := map[string]bool{}
	for _, sc := range scenarios() {
		for _, st := range sc.steps {
			if st.script != "" {
				covered[st.script] = true
			}
		}
	}
	for _, name := range allScripts {
		if !covered[name] {
			t.Errorf("no differential scenario calls %s", name)
		}
	}
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			qname := "diff-" + strings.ReplaceAll(sc.name, " ", "-")
			hq := queueKeys(t, qname)
			rq := hq
			if srv.External() {
				rq = queueKeys(t, fmt.Sprintf("%s-%d-%d", qname, time.Now().UnixNano(), rand.Int64()))
			}
			h := &harnessSide{env: scripttest.New(t), q: hq}
			r := &serverSide{client: client, l: l, q: rq}
			if !srv.External() {
				// Align the harness clock with the real one, so instants in
				// arguments are comparable (they are normalised anyway).
				h.env.SetNow(time.Now())
			}
			runScenario(t, sc, h, r)
		})
	}
}

func runScenario(t *testing.T, sc dscenario, sides ...side) {
	for i, st := range sc.steps {
		label := fmt.Sprintf("step %d (%s%s)", i, st.script, strings.Join(st.cmd, " "))
		type outcome struct {
			v   any
			err string
		}
		var outs []outcome
		for _, sd := range sides {
			if st.sleep > 0 {
				sd.sleep(st.sleep)
			}
			args := resolve(t, sd, st.args)
			if st.cmd != nil {
				sd.do(t, resolve(t, sd, st.cmd))
				continue
			}
			v, errText := sd.call(t, st, args)
			outs = append(outs, outcome{normDays(normReply(v), st.days, dayOf(sd.nowMS())), errText})
		}
		if st.cmd != nil {
			continue
		}
		a, b := outs[0], outs[1]
		t.Logf("%s: %s %v %q | %s %v %q", label, sides[0].name(), a.v, a.err, sides[1].name(), b.v, b.err)
		if st.wantErr != "" {
			for j, o := range outs {
				if !strings.HasPrefix(o.err, st.wantErr+" ") {
					t.Errorf("%s: %s answered (%v, %q), want a %s error", label, sides[j].name(), o.v, o.err, st.wantErr)
				}
			}
		} else {
			for j, o := range outs {
				if o.err != "" {
					t.Errorf("%s: %s failed: %s", label, sides[j].name(), o.err)
				}
			}
		}
		if a.err != b.err {
			t.Errorf("%s: error %q on %s, %q on %s", label, a.err, sides[0].name(), b.err, sides[1].name())
		}
		av, bv := compareFuzzy(t, st.fuzzy, a.v, b.v)
		if d := cmp.Diff(av, bv); d != "" {
			t.Errorf("%s: reply differs (-%s +%s):\n%s", label, sides[0].name(), sides[1].name(), d)
		}
		ka := normSnap(sides[0].dump(t), sides[0].queue(), sides[0].nowMS())
		kb := normSnap(sides[1].dump(t), sides[1].queue(), sides[1].nowMS())
		if d := cmp.Diff(ka, kb); d != "" {
			t.Fatalf("%s: keyspace differs (-%s +%s):\n%s", label, sides[0].name(), sides[1].name(), d)
		}
	}
}
