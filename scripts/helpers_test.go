package scripts_test

// Shared helpers of the bundle's unit tests (gopher-lua + miniredis through
// scripttest) and differential tests (the same scenarios on a real
// redis-server through the loader).

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/scripttest"
)

// The bundle's error codes (scripts/lib/errors.lua).
const (
	codeBadArg    = "LQ_BADARG"
	codeConflict  = "LQ_CONFLICT"
	codeNotFound  = "LQ_NOTFOUND"
	codeLeaseLost = "LQ_LEASE_LOST"
	codeSchema    = "LQ_SCHEMA"
	codeNotOwner  = "LQ_NOT_OWNER"
)

// allScripts names every script of the bundle; TestAllScriptsCovered checks
// the list against the bundle.
var allScripts = []string{"clean", "complete", "configure", "daily-stats", "delete-task", "dequeue", "deregister", "enqueue", "extend",
	"janitor-lock", "list-workers", "prune-workers", "queue-info", "register", "requeue", "retry-or-archive",
	"run-archived", "set-paused", "task-info"}

var (
	bundleOnce sync.Once
	bundleVal  *scripts.Bundle
	bundleErr  error
)

// testBundle returns the embedded bundle, loaded once per test binary.
func testBundle(t testing.TB) *scripts.Bundle {
	t.Helper()
	bundleOnce.Do(func() { bundleVal, bundleErr = scripts.Load() })
	if bundleErr != nil {
		t.Fatalf("scripts.Load: %v", bundleErr)
	}
	return bundleVal
}

// script returns the bundle script called name or fails the test.
func script(t testing.TB, name string) *scripts.Script {
	t.Helper()
	s, err := testBundle(t).Script(name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// queueKeys returns the key builder of queue name or fails the test.
func queueKeys(t testing.TB, name string) keys.Queue {
	t.Helper()
	q, err := keys.ForQueue(name)
	if err != nil {
		t.Fatalf("keys.ForQueue(%q): %v", name, err)
	}
	return q
}

// runOn runs bundle script name on env for queue: KEYS are the queue's keys
// for the roles of the script's header, ARGV are args. Eval fails the test on
// any contract violation.
func runOn(t testing.TB, env *scripttest.Env, queue, name string, args ...string) scripttest.Result {
	t.Helper()
	s := script(t, name)
	res := env.Eval(t, s.Source, queueKeys(t, queue).Keys(s.Roles()), args...)
	checkWhenFull(t, s, res)
	return res
}

// checkWhenFull fails the test when a run's first write disagrees with the
// script's WHEN FULL header: a script that runs when the server is full must
// open its writes with a command that cannot grow memory (lib/full), one
// that is refused must open them with one that can (so Redis refuses it
// before anything changed), and a reader must not write.
func checkWhenFull(t testing.TB, s *scripts.Script, res scripttest.Result) {
	t.Helper()
	cmd, grows, wrote := scripttest.FirstWrite(res.Calls)
	if !wrote {
		return
	}
	switch {
	case s.WhenFull == scripts.WhenFullReads:
		t.Errorf("%s is a reader (WHEN FULL: reads) but wrote with %s", s.Name, cmd)
	case s.WhenFull == scripts.WhenFullRuns && grows:
		t.Errorf("%s must run when the server is full, but its first write %s can grow memory: call begin_writes() first", s.Name, cmd)
	case s.WhenFull == scripts.WhenFullRefused && !grows:
		t.Errorf("%s must be refused when the server is full, but its first write %s cannot grow memory, so Redis would let it run", s.Name, cmd)
	}
}

// run is runOn for queue "q".
func run(t testing.TB, env *scripttest.Env, name string, args ...string) scripttest.Result {
	t.Helper()
	return runOn(t, env, "q", name, args...)
}

// mustRun runs name on queue "q" and fails the test when it returned an error.
func mustRun(t testing.TB, env *scripttest.Env, name string, args ...string) any {
	t.Helper()
	res := run(t, env, name, args...)
	if res.Err != nil {
		t.Fatalf("%s %q: unexpected error %v", name, abbrev(args), res.Err)
	}
	return res.Value
}

// abbrev shortens long argument lists in failure messages.
func abbrev(args []string) []string {
	if len(args) <= 12 {
		return args
	}
	return append(append([]string(nil), args[:12]...), fmt.Sprintf("...(%d more)", len(args)-12))
}

// checkCode asserts that res failed with a deliberate error reply (not a raw
// Lua error) whose text starts with "<code> ".
func checkCode(t testing.TB, res scripttest.Result, code string) {
	t.Helper()
	if res.Err == nil {
		t.Fatalf("got reply %#v, want a %s error", res.Value, code)
	}
	var se *scripttest.ScriptError
	if !errors.As(res.Err, &se) {
		t.Fatalf("error %#v is not a *scripttest.ScriptError", res.Err)
	}
	if se.Raw || se.Kind != scripttest.KindReply {
		t.Fatalf("raw Lua error (kind %v): %s\n%s", se.Kind, se.Msg, se.Traceback)
	}
	if !strings.HasPrefix(res.Err.Error(), code+" ") {
		t.Fatalf("error %q, want prefix %q", res.Err.Error(), code+" ")
	}
	if res.Value != nil {
		t.Errorf("Value = %#v alongside an error, want nil", res.Value)
	}
}

// nowMS is the env's clock in Unix ms.
func nowMS(env *scripttest.Env) int64 { return env.Now().UnixMilli() }

// epochMS is the clock every env starts at.
var epochMS = scripttest.Epoch.UnixMilli()

// ms formats an integer argument.
func ms(n int64) string { return strconv.FormatInt(n, 10) }

// ---- the expected keyspace ----

// key is the key of role in queue "q".
func key(role string) string { return "luaq:{q}:" + role }

// hashV is a hash value from field, value pairs.
func hashV(kv ...string) keyspace.Value {
	if len(kv)%2 != 0 {
		panic("hashV: odd number of arguments")
	}
	h := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return keyspace.Value{Type: keyspace.TypeHash, Hash: h}
}

// dayMS is the length of a stats day (lib/stats.lua).
const dayMS = 86400000

// dayOf is the stats day (days since the Unix epoch, UTC) of an instant in ms.
func dayOf(msec int64) int64 { return msec / dayMS }

// epochDay is the stats day every env starts in.
var epochDay = dayOf(epochMS)

// statsOn is the stats hash holding the lifetime totals of counter, count
// pairs, every one of them counted on day: each total also appears as the
// day field "<counter>:<day>" (lib/stats.lua).
func statsOn(day int64, kv ...string) keyspace.Value {
	v := hashV(kv...)
	for i := 0; i < len(kv); i += 2 {
		v.Hash[kv[i]+":"+ms(day)] = kv[i+1]
	}
	return v
}

// statsV is statsOn for the day the env's clock starts in, where every
// test that does not cross midnight counts.
func statsV(kv ...string) keyspace.Value { return statsOn(epochDay, kv...) }

// listV is a list value, head first.
func listV(items ...string) keyspace.Value {
	return keyspace.Value{Type: keyspace.TypeList, List: items}
}

// zm is one expected sorted-set member.
type zm struct {
	member string
	score  int64
}

// zsetV is a sorted-set value, members in rank order.
func zsetV(ms ...zm) keyspace.Value {
	v := keyspace.Value{Type: keyspace.TypeZSet}
	for _, m := range ms {
		v.ZSet = append(v.ZSet, keyspace.Member{Member: m.member, Score: float64(m.score)})
	}
	return v
}

// wakeV is the wake list as every signal leaves it: one token with a TTL.
func wakeV() keyspace.Value {
	v := listV("1")
	v.TTL = true
	return v
}

// checkSnapshot compares the whole keyspace with want.
func checkSnapshot(t testing.TB, env *scripttest.Env, want keyspace.Snapshot) {
	t.Helper()
	if d := cmp.Diff(want, env.Snapshot(t)); d != "" {
		t.Errorf("keyspace mismatch (-want +got):\n%s", d)
	}
}

// checkKeys compares only the given keys of the keyspace with want (a key
// missing from want must be absent).
func checkKeys(t testing.TB, env *scripttest.Env, want keyspace.Snapshot, roles ...string) {
	t.Helper()
	got := env.Snapshot(t)
	sub, wsub := keyspace.Snapshot{}, keyspace.Snapshot{}
	for _, r := range roles {
		if v, ok := got[key(r)]; ok {
			sub[key(r)] = v
		}
		if v, ok := want[key(r)]; ok {
			wsub[key(r)] = v
		}
	}
	if d := cmp.Diff(wsub, sub); d != "" {
		t.Errorf("keys %v mismatch (-want +got):\n%s", roles, d)
	}
}

// unchanged runs fn and fails the test when the keyspace differs after it.
func unchanged(t testing.TB, env *scripttest.Env, fn func()) {
	t.Helper()
	before := env.Snapshot(t)
	fn()
	if d := cmp.Diff(before, env.Snapshot(t)); d != "" {
		t.Errorf("keyspace changed (-before +after):\n%s", d)
	}
}

// rec is a decoded task record (lib/record.lua).
type rec struct {
	retried, maxRetry, timeout, deadline, expireAt, retention, enqueued, onExpiry int64
	typ, unique, payload                                                          string
}

// enc encodes r in the record format of lib/record.lua.
func (r rec) enc() string {
	return fmt.Sprintf("%d:%d:%d:%d:%d:%d:%d:%d:%d:%s%d:%s%s", r.retried, r.maxRetry, r.timeout, r.deadline,
		r.expireAt, r.retention, r.enqueued, r.onExpiry, len(r.typ), r.typ, len(r.unique), r.unique, r.payload)
}

// started is r as a lease rewrites it (lib/lease.lua): a task leased before
// its expiry started in time, so its expire_at becomes 0.
func (r rec) started() rec {
	r.expireAt = 0
	return r
}

// record builds the record of a task without expiry, retention or unique key.
func record(retried, maxRetry, timeout, deadline, enqueued int64, typ, payload string) string {
	return rec{retried: retried, maxRetry: maxRetry, timeout: timeout, deadline: deadline, enqueued: enqueued,
		typ: typ, payload: payload}.enc()
}

// ---- arguments ----

// task is one enqueue group.
type task struct {
	id, typ, payload                    string
	maxRetry, timeout, deadline, at, in int64
	expireAt, expireIn                  int64
	expireArchive                       bool
	retention                           int64
	unique                              string
	uniqueTTL                           int64
}

// tk is a ready-now task with type "t", payload "p-<id>" and 3 retries.
func tk(id string) task { return task{id: id, typ: "t", payload: "p-" + id, maxRetry: 3} }

// enqueue group field indices (the order of enqueue's header).
const (
	fID = iota
	fType
	fPayload
	fMaxRetry
	fTimeout
	fDeadline
	fAt
	fIn
	fExpireAt
	fExpireIn
	fExpireArchive
	fRetention
	fUnique
	fUniqueTTL
	groupLen
)

func (x task) args() []string {
	flag := "0"
	if x.expireArchive {
		flag = "1"
	}
	return []string{x.id, x.typ, x.payload, ms(x.maxRetry), ms(x.timeout), ms(x.deadline), ms(x.at), ms(x.in),
		ms(x.expireAt), ms(x.expireIn), flag, ms(x.retention), x.unique, ms(x.uniqueTTL)}
}

// rec is the record enqueue writes for x at enqueued, given its resolved
// expire_at (expireAt, or enqueued + expireIn).
func (x task) rec(enqueued int64) rec {
	exp := x.expireAt
	if x.expireIn > 0 {
		exp = enqueued + x.expireIn
	}
	var onExp int64
	if x.expireArchive {
		onExp = 1
	}
	return rec{maxRetry: x.maxRetry, timeout: x.timeout, deadline: x.deadline, expireAt: exp,
		retention: x.retention, enqueued: enqueued, onExpiry: onExp, typ: x.typ, unique: x.unique, payload: x.payload}
}

// enqArgs is the ARGV of enqueue for tasks.
func enqArgs(ts ...task) []string {
	out := []string{strconv.Itoa(len(ts))}
	for _, x := range ts {
		out = append(out, x.args()...)
	}
	return out
}

// deqArgs is the ARGV of dequeue.
func deqArgs(count, leaseMS, promote, reclaim, backoff int64) []string {
	return []string{ms(count), ms(leaseMS), ms(promote), ms(reclaim), ms(backoff)}
}

// ---- replies ----

// leased is one task of a dequeue (or complete lease-next) reply.
type leased struct {
	ID         string
	Token      int64
	Type       string
	Payload    string
	Retried    int64
	MaxRetry   int64
	Timeout    int64
	Deadline   int64
	LeaseUntil int64
}

// deqReply is a decoded dequeue reply.
type deqReply struct {
	Leased  int64
	NextDue int64
	Paused  int64
	Tasks   []leased
}

// decodeDeq decodes a dequeue-shaped reply, failing the test on a bad shape.
func decodeDeq(t testing.TB, v any) deqReply {
	t.Helper()
	arr, ok := v.([]any)
	if !ok || len(arr) < 3 || (len(arr)-3)%9 != 0 {
		t.Fatalf("dequeue reply %#v: want an array of 3 + 9n elements", v)
	}
	i64 := func(x any) int64 {
		n, ok := x.(int64)
		if !ok {
			t.Fatalf("dequeue reply element %#v: want an integer", x)
		}
		return n
	}
	str := func(x any) string {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("dequeue reply element %#v: want a string", x)
		}
		return s
	}
	r := deqReply{Leased: i64(arr[0]), NextDue: i64(arr[1]), Paused: i64(arr[2])}
	for i := 3; i < len(arr); i += 9 {
		r.Tasks = append(r.Tasks, leased{
			ID: str(arr[i]), Token: i64(arr[i+1]), Type: str(arr[i+2]), Payload: str(arr[i+3]),
			Retried: i64(arr[i+4]), MaxRetry: i64(arr[i+5]), Timeout: i64(arr[i+6]),
			Deadline: i64(arr[i+7]), LeaseUntil: i64(arr[i+8]),
		})
	}
	if int(r.Leased) != len(r.Tasks) {
		t.Fatalf("dequeue reply says %d leased but carries %d tasks", r.Leased, len(r.Tasks))
	}
	return r
}

// dequeue runs dequeue on queue "q" and decodes its reply.
func dequeue(t testing.TB, env *scripttest.Env, count, leaseMS, promote, reclaim, backoff int64) deqReply {
	t.Helper()
	return decodeDeq(t, mustRun(t, env, "dequeue", deqArgs(count, leaseMS, promote, reclaim, backoff)...))
}

// lt is the leased entry expected for task x (retried times) under token,
// leased at now for leaseMS.
func lt(x task, token, retried, leaseUntil int64) leased {
	return leased{ID: x.id, Token: token, Type: x.typ, Payload: x.payload, Retried: retried,
		MaxRetry: x.maxRetry, Timeout: x.timeout, Deadline: x.deadline, LeaseUntil: leaseUntil}
}

// tokenOf reads the current fencing token of id from the tokens hash.
func tokenOf(t testing.TB, env *scripttest.Env, id string) string {
	t.Helper()
	v, ok := env.Snapshot(t)[key("tokens")].Hash[id]
	if !ok {
		t.Fatalf("task %s holds no lease", id)
	}
	return v
}

// hset writes hash fields directly into the store (test setup).
func hset(t testing.TB, env *scripttest.Env, role string, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		env.Miniredis().HSet(key(role), kv[i], kv[i+1])
	}
}

// advance moves env's clock by n ms.
func advance(env *scripttest.Env, n int64) { env.Advance(time.Duration(n) * time.Millisecond) }
