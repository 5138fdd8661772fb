package scripts_test

// "Bad input → the documented error reply and the whole keyspace unchanged",
// for every script and every error code its header lists.

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/luaq/luaq/scripttest"
)

// baseline builds the state every bad-input case starts from: a leased task
// a (token 1), a pending task b, a scheduled task s, an archived task z
// (token 2, archived), a pending task u with an expiry, a retention period
// and the unique key "uk", a completed task r kept for its retention with a
// result, the janitor lock held by owner "j1", a live worker "w1" and a
// worker "wd" whose heartbeat has passed, so that a call that wrongly went
// ahead would change something.
func baseline(t *testing.T) *scripttest.Env {
	t.Helper()
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), task{id: "z", typ: "t", maxRetry: 0}, tk("b"), task{id: "s", typ: "t", in: 5000})...)
	dequeue(t, env, 2, 30000, 0, 0, 0) // a 1, z 2
	mustRun(t, env, "retry-or-archive", "z", "2", "gone", "0", "0")
	mustRun(t, env, "enqueue", enqArgs(baselineU)...)
	// r: completed under retention (written directly: leasing it through
	// the scripts would need the tokens above to change).
	hset(t, env, "tasks", "r", rec{retention: 60000, enqueued: epochMS, typ: "t", payload: "p-r"}.enc())
	hset(t, env, "results", "r", "res-r")
	if _, err := env.Miniredis().ZAdd(key("completed"), float64(epochMS+60000), "r"); err != nil {
		t.Fatal(err)
	}
	if got := mustRun(t, env, "janitor-lock", "acquire", "j1", "600000"); got != int64(1) {
		t.Fatalf("janitor-lock acquire = %#v, want 1", got)
	}
	mustRun(t, env, "register", "w1", "host=a", "600000")
	// wd: dead (heartbeat passed), written directly to keep the clock.
	if _, err := env.Miniredis().ZAdd(key("workers"), float64(epochMS-1), "wd"); err != nil {
		t.Fatal(err)
	}
	hset(t, env, "worker_info", "wd", "host=dead")
	return env
}

// baselineU is the baseline's task with an expiry and a unique key.
var baselineU = task{id: "u", typ: "t", payload: "p-u", maxRetry: 3, expireIn: 60000, retention: 60000, unique: "uk", uniqueTTL: 60000}

// validArgs is a call of each script that succeeds on the baseline.
var validArgs = map[string][]string{
	"enqueue":          enqArgs(tk("x")),
	"dequeue":          deqArgs(1, 1000, 10, 10, 0),
	"extend":           {"a", "1", "1000"},
	"complete":         {"a", "1", "res", "1", "1000", "10"},
	"retry-or-archive": {"a", "1", "boom", "0", "0"},
	"requeue":          {"a", "1"},
	"set-paused":       {"1"},
	"queue-info":       {},
	"janitor-lock":     {"renew", "j1", "30000"},
	"clean":            {"j1", "100", "0"},
	"configure":        {"100", "60000", "30"},
	"daily-stats":      {"7"},
	"delete-task":      {"b"},
	"deregister":       {"w1", "a", "1"},
	"list-workers":     {"10"},
	"prune-workers":    {"10"},
	"register":         {"w2", "host=b", "30000"},
	"run-archived":     {"z"},
	"task-info":        {"b"},
}

// with returns a copy of args with args[i] = v.
func with(args []string, i int, v string) []string {
	out := slices.Clone(args)
	out[i] = v
	return out
}

// cat concatenates argument lists.
func cat(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

type badCase struct {
	name  string
	args  []string
	code  string
	setup func(t *testing.T, env *scripttest.Env) // optional, after baseline
}

var (
	long129 = strings.Repeat("i", 129)
	long128 = strings.Repeat("i", 128)
)

// enqueueGroup is one valid enqueue group with field i replaced by v.
func enqueueGroup(i int, v string) []string { return with(tk("x").args(), i, v) }

// pastLockTTL moves the clock past the baseline's janitor lock TTL.
func pastLockTTL(t *testing.T, env *scripttest.Env) {
	advance(env, 600000)
	if _, ok := env.Snapshot(t)[key("lock")]; ok {
		t.Fatal("the janitor lock outlived its TTL")
	}
}

func badInputCases() map[string][]badCase {
	g := tk("x").args()
	one := func(i int, v string) []string { return cat([]string{"1"}, enqueueGroup(i, v)) }
	deq := validArgs["dequeue"]
	ext := validArgs["extend"]
	cpl := validArgs["complete"]
	roa := validArgs["retry-or-archive"]
	rq := validArgs["requeue"]
	jl := validArgs["janitor-lock"]
	cl := validArgs["clean"]
	cf := validArgs["configure"]
	dt := validArgs["delete-task"]
	dr := validArgs["deregister"]
	rg := validArgs["register"]
	ra := validArgs["run-archived"]
	// pairs1001 is deregister's worker w1 with 1001 (id, token) pairs, the
	// first of them a's current lease.
	pairs1001 := []string{"w1", "a", "1"}
	for i := 1; i <= 1000; i++ {
		pairs1001 = append(pairs1001, "t"+strconv.Itoa(i), "1")
	}
	// uq is a group of task x holding unique key k.
	uq := func(k string) []string { return with(enqueueGroup(fUnique, k), fUniqueTTL, "60000") }
	// pastLocks moves the clock past every lease, expiry, retention and
	// unique TTL of the baseline (not past the lock's TTL), so that a
	// clean that wrongly went ahead would have work to do.
	pastLocks := func(t *testing.T, env *scripttest.Env) { advance(env, 100000) }
	return map[string][]badCase{
		"enqueue": {
			{"no arguments", nil, codeBadArg, nil},
			{"count without groups", []string{"1"}, codeBadArg, nil},
			{"count 0", []string{"0"}, codeBadArg, nil},
			{"count 0 with a group", cat([]string{"0"}, g), codeBadArg, nil},
			{"count 1001", []string{"1001"}, codeBadArg, nil},
			{"count negative", cat([]string{"-1"}, g), codeBadArg, nil},
			{"count not an integer", cat([]string{"one"}, g), codeBadArg, nil},
			{"count with a fraction", cat([]string{"1.0"}, g), codeBadArg, nil},
			{"count with an exponent", cat([]string{"1e0"}, g), codeBadArg, nil},
			{"count with a plus sign", cat([]string{"+1"}, g), codeBadArg, nil},
			{"count with a space", cat([]string{" 1"}, g), codeBadArg, nil},
			{"count empty", cat([]string{""}, g), codeBadArg, nil},
			{"count of 17 digits", cat([]string{"00000000000000001"}, g), codeBadArg, nil},
			{"group one value short", cat([]string{"1"}, g[:groupLen-1]), codeBadArg, nil},
			{"group of the old 8 values", cat([]string{"1"}, g[:8]), codeBadArg, nil},
			{"group one value long", cat([]string{"1"}, g, []string{"x"}), codeBadArg, nil},
			{"count 2 with one group", cat([]string{"2"}, g), codeBadArg, nil},
			{"id with space", one(fID, "a b"), codeBadArg, nil},
			{"id with tab", one(fID, "a\tb"), codeBadArg, nil},
			{"id with newline", one(fID, "a\n"), codeBadArg, nil},
			{"id with NUL", one(fID, "a\x00"), codeBadArg, nil},
			{"id with DEL", one(fID, "a\x7f"), codeBadArg, nil},
			{"id not ASCII", one(fID, "caf\xc3\xa9"), codeBadArg, nil},
			{"id of 129 bytes", one(fID, long129), codeBadArg, nil},
			{"id all digits", one(fID, "123"), codeBadArg, nil},
			{"id one digit", one(fID, "0"), codeBadArg, nil},
			{"type empty", one(fType, ""), codeBadArg, nil},
			{"type with space", one(fType, "send mail"), codeBadArg, nil},
			{"type of 129 bytes", one(fType, long129), codeBadArg, nil},
			{"max_retry negative", one(fMaxRetry, "-1"), codeBadArg, nil},
			{"max_retry above 1000000", one(fMaxRetry, "1000001"), codeBadArg, nil},
			{"max_retry with a fraction", one(fMaxRetry, "3.5"), codeBadArg, nil},
			{"max_retry empty", one(fMaxRetry, ""), codeBadArg, nil},
			{"timeout negative", one(fTimeout, "-1"), codeBadArg, nil},
			{"timeout above max", one(fTimeout, "253402300800000"), codeBadArg, nil},
			{"timeout hex", one(fTimeout, "0x10"), codeBadArg, nil},
			{"deadline in the past", one(fDeadline, ms(epochMS-1)), codeBadArg, nil},
			{"deadline now", one(fDeadline, ms(epochMS)), codeBadArg, nil},
			{"deadline negative", one(fDeadline, "-5"), codeBadArg, nil},
			{"deadline above max", one(fDeadline, "253402300800000"), codeBadArg, nil},
			{"process_at and process_in both set", cat([]string{"1"}, with(enqueueGroup(fAt, ms(epochMS+1000)), fIn, "1000")), codeBadArg, nil},
			{"deadline before process_at", cat([]string{"1"}, with(enqueueGroup(fAt, ms(epochMS+5000)), fDeadline, ms(epochMS+4000))), codeBadArg, nil},
			{"deadline at the end of process_in", cat([]string{"1"}, with(enqueueGroup(fIn, "1000"), fDeadline, ms(epochMS+1000))), codeBadArg, nil},
			{"process_at above max", one(fAt, "253402300800000"), codeBadArg, nil},
			{"process_at negative", one(fAt, "-1"), codeBadArg, nil},
			{"process_in negative", one(fIn, "-1000"), codeBadArg, nil},
			{"process_in with a fraction", one(fIn, "0.5"), codeBadArg, nil},
			{"duplicate id in the batch", enqArgs(tk("x"), tk("y"), tk("x")), codeBadArg, nil},
			{"second task bad", cat([]string{"2"}, g, with(tk("y").args(), fType, "")), codeBadArg, nil},
			{"bad argument wins over a duplicate of a stored id", cat([]string{"2"}, tk("a").args(), with(tk("y").args(), fMaxRetry, "-1")), codeBadArg, nil},
			{"id of a leased task", enqArgs(tk("a")), codeConflict, nil},
			{"id of a pending task", enqArgs(tk("b")), codeConflict, nil},
			{"id of a scheduled task", enqArgs(tk("s")), codeConflict, nil},
			{"id of an archived task", enqArgs(tk("z")), codeConflict, nil},
			{"duplicate after new tasks", enqArgs(tk("x"), tk(""), task{id: long128, typ: "t"}, tk("b")), codeConflict, nil},
			{"id of a task kept for its retention", enqArgs(tk("r")), codeConflict, nil},
			{"id of a task with an expiry", enqArgs(tk("u")), codeConflict, nil},
			// expiry
			{"expire_at and expire_in both set", cat([]string{"1"}, with(enqueueGroup(fExpireAt, ms(epochMS+5000)), fExpireIn, "5000")), codeBadArg, nil},
			{"expire_at in the past", one(fExpireAt, ms(epochMS-1)), codeBadArg, nil},
			{"expire_at now", one(fExpireAt, ms(epochMS)), codeBadArg, nil},
			{"expire_at 1", one(fExpireAt, "1"), codeBadArg, nil},
			{"expire_at negative", one(fExpireAt, "-1"), codeBadArg, nil},
			{"expire_at above max", one(fExpireAt, "253402300800000"), codeBadArg, nil},
			{"expire_at with a fraction", one(fExpireAt, ms(epochMS+5000)+".5"), codeBadArg, nil},
			{"expire_at at process_at", cat([]string{"1"}, with(enqueueGroup(fAt, ms(epochMS+5000)), fExpireAt, ms(epochMS+5000))), codeBadArg, nil},
			{"expire_at before process_at", cat([]string{"1"}, with(enqueueGroup(fAt, ms(epochMS+5000)), fExpireAt, ms(epochMS+4999))), codeBadArg, nil},
			{"expire_at at the end of process_in", cat([]string{"1"}, with(enqueueGroup(fIn, "1000"), fExpireAt, ms(epochMS+1000))), codeBadArg, nil},
			{"expire_in equal to process_in", cat([]string{"1"}, with(enqueueGroup(fIn, "1000"), fExpireIn, "1000")), codeBadArg, nil},
			{"expire_in shorter than process_in", cat([]string{"1"}, with(enqueueGroup(fIn, "1000"), fExpireIn, "999")), codeBadArg, nil},
			{"expire_in before process_at", cat([]string{"1"}, with(enqueueGroup(fAt, ms(epochMS+5000)), fExpireIn, "4000")), codeBadArg, nil},
			{"expire_in negative", one(fExpireIn, "-1"), codeBadArg, nil},
			{"expire_in above max", one(fExpireIn, "253402300800000"), codeBadArg, nil},
			{"expire_in not an integer", one(fExpireIn, "soon"), codeBadArg, nil},
			{"expire_archive 2", one(fExpireArchive, "2"), codeBadArg, nil},
			{"expire_archive empty", one(fExpireArchive, ""), codeBadArg, nil},
			{"expire_archive true", one(fExpireArchive, "true"), codeBadArg, nil},
			{"expire_archive -1", one(fExpireArchive, "-1"), codeBadArg, nil},
			// retention
			{"retention negative", one(fRetention, "-1"), codeBadArg, nil},
			{"retention above max", one(fRetention, "253402300800000"), codeBadArg, nil},
			{"retention not an integer", one(fRetention, "1h"), codeBadArg, nil},
			{"retention empty", one(fRetention, ""), codeBadArg, nil},
			// unique keys
			{"unique_key without ttl", one(fUnique, "k"), codeBadArg, nil},
			{"unique_ttl without key", one(fUniqueTTL, "60000"), codeBadArg, nil},
			{"unique_ttl negative", cat([]string{"1"}, with(uq("k"), fUniqueTTL, "-1")), codeBadArg, nil},
			{"unique_ttl above max", cat([]string{"1"}, with(uq("k"), fUniqueTTL, "253402300800000")), codeBadArg, nil},
			{"unique_ttl not an integer", cat([]string{"1"}, with(uq("k"), fUniqueTTL, "1m")), codeBadArg, nil},
			{"unique_key of 1025 bytes", cat([]string{"1"}, uq(strings.Repeat("k", 1025))), codeBadArg, nil},
			{"duplicate unique key in the batch", cat([]string{"2"}, uq("k"), with(with(tk("y").args(), fUnique, "k"), fUniqueTTL, "5")), codeBadArg, nil},
			{"duplicate held unique key in the batch", cat([]string{"2"}, uq("uk"), with(with(tk("y").args(), fUnique, "uk"), fUniqueTTL, "5")), codeBadArg, nil},
			{"bad argument wins over a held unique key", cat([]string{"2"}, uq("uk"), with(tk("y").args(), fExpireArchive, "x")), codeBadArg, nil},
			{"unique key held by a live task", cat([]string{"1"}, uq("uk")), codeConflict, nil},
			{"unique key held, asked for 1 ms", cat([]string{"1"}, with(uq("uk"), fUniqueTTL, "1")), codeConflict, nil},
			{"unique key held, after new tasks", cat([]string{"3"}, tk("y").args(), tk("").args(), uq("uk")), codeConflict, nil},
			{"unique key held, by a generated-id task", cat([]string{"2"}, with(tk("").args(), fMaxRetry, "0"), with(uq("uk"), fID, "")), codeConflict, nil},
		},
		"dequeue": {
			{"no arguments", nil, codeBadArg, nil},
			{"four arguments", deq[:4], codeBadArg, nil},
			{"six arguments", cat(deq, []string{"0"}), codeBadArg, nil},
			{"count 0", with(deq, 0, "0"), codeBadArg, nil},
			{"count 1001", with(deq, 0, "1001"), codeBadArg, nil},
			{"count negative", with(deq, 0, "-1"), codeBadArg, nil},
			{"count not an integer", with(deq, 0, "x"), codeBadArg, nil},
			{"count empty", with(deq, 0, ""), codeBadArg, nil},
			{"lease_ms 0", with(deq, 1, "0"), codeBadArg, nil},
			{"lease_ms above 2^31-1", with(deq, 1, "2147483648"), codeBadArg, nil},
			{"lease_ms negative", with(deq, 1, "-1"), codeBadArg, nil},
			{"lease_ms with a fraction", with(deq, 1, "1.5"), codeBadArg, nil},
			{"promote_limit negative", with(deq, 2, "-1"), codeBadArg, nil},
			{"promote_limit 1001", with(deq, 2, "1001"), codeBadArg, nil},
			{"promote_limit not an integer", with(deq, 2, "ten"), codeBadArg, nil},
			{"reclaim_limit negative", with(deq, 3, "-1"), codeBadArg, nil},
			{"reclaim_limit 1001", with(deq, 3, "1001"), codeBadArg, nil},
			{"reclaim_backoff_ms negative", with(deq, 4, "-1"), codeBadArg, nil},
			{"reclaim_backoff_ms above a year", with(deq, 4, "31536000001"), codeBadArg, nil},
			{"reclaim_backoff_ms with an exponent", with(deq, 4, "1e3"), codeBadArg, nil},
		},
		"extend": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", ext[:2], codeBadArg, nil},
			{"four arguments", cat(ext, []string{"1"}), codeBadArg, nil},
			{"id empty", with(ext, 0, ""), codeBadArg, nil},
			{"id with space", with(ext, 0, "a b"), codeBadArg, nil},
			{"id of 129 bytes", with(ext, 0, long129), codeBadArg, nil},
			{"id with NUL", with(ext, 0, "a\x00"), codeBadArg, nil},
			{"token 0", with(ext, 1, "0"), codeBadArg, nil},
			{"token negative", with(ext, 1, "-1"), codeBadArg, nil},
			{"token not an integer", with(ext, 1, "x"), codeBadArg, nil},
			{"token empty", with(ext, 1, ""), codeBadArg, nil},
			{"token with a fraction", with(ext, 1, "1.0"), codeBadArg, nil},
			{"token above 2^53", with(ext, 1, "9007199254740994"), codeBadArg, nil},
			{"token of 17 digits", with(ext, 1, "10000000000000000"), codeBadArg, nil},
			{"lease_ms 0", with(ext, 2, "0"), codeBadArg, nil},
			{"lease_ms above 2^31-1", with(ext, 2, "2147483648"), codeBadArg, nil},
			{"lease_ms negative", with(ext, 2, "-1"), codeBadArg, nil},
			{"stale token", with(ext, 1, "2"), codeLeaseLost, nil},
			{"task not leased", []string{"b", "1", "1000"}, codeLeaseLost, nil},
			{"archived task", []string{"z", "2", "1000"}, codeLeaseLost, nil},
			{"unknown id", []string{"nope", "1", "1000"}, codeLeaseLost, nil},
		},
		"complete": {
			{"no arguments", nil, codeBadArg, nil},
			{"five arguments", cpl[:5], codeBadArg, nil},
			{"the old five arguments", []string{"a", "1", "1", "1000", "10"}, codeBadArg, nil},
			{"seven arguments", cat(cpl, []string{"0"}), codeBadArg, nil},
			{"id empty", with(cpl, 0, ""), codeBadArg, nil},
			{"id with space", with(cpl, 0, "a b"), codeBadArg, nil},
			{"id of 129 bytes", with(cpl, 0, long129), codeBadArg, nil},
			{"token 0", with(cpl, 1, "0"), codeBadArg, nil},
			{"token not an integer", with(cpl, 1, "one"), codeBadArg, nil},
			{"result of 16 MiB + 1 byte", with(cpl, 2, strings.Repeat("r", 16777217)), codeBadArg, nil},
			{"next_count negative", with(cpl, 3, "-1"), codeBadArg, nil},
			{"next_count 1001", with(cpl, 3, "1001"), codeBadArg, nil},
			{"next_count not an integer", with(cpl, 3, "x"), codeBadArg, nil},
			{"lease_ms 0 with next_count 1", with(cpl, 4, "0"), codeBadArg, nil},
			{"lease_ms negative without next", with(with(cpl, 3, "0"), 4, "-1"), codeBadArg, nil},
			{"lease_ms above 2^31-1", with(cpl, 4, "2147483648"), codeBadArg, nil},
			{"promote_limit negative", with(cpl, 5, "-1"), codeBadArg, nil},
			{"promote_limit 1001", with(cpl, 5, "1001"), codeBadArg, nil},
			{"stale token", with(cpl, 1, "2"), codeLeaseLost, nil},
			{"stale token without next", with(with(cpl, 1, "2"), 3, "0"), codeLeaseLost, nil},
			{"task not leased", with(cpl, 0, "b"), codeLeaseLost, nil},
			{"task with an expiry not leased", with(cpl, 0, "u"), codeLeaseLost, nil},
			{"archived task", []string{"z", "2", "", "0", "0", "0"}, codeLeaseLost, nil},
			{"completed task kept for its retention", []string{"r", "1", "", "0", "0", "0"}, codeLeaseLost, nil},
			{"unknown id", with(cpl, 0, "nope"), codeLeaseLost, nil},
			{"leased task without a record", cpl, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				env.Miniredis().HDel(key("tasks"), "a")
			}},
		},
		"retry-or-archive": {
			{"no arguments", nil, codeBadArg, nil},
			{"four arguments", roa[:4], codeBadArg, nil},
			{"six arguments", cat(roa, []string{"0"}), codeBadArg, nil},
			{"id empty", with(roa, 0, ""), codeBadArg, nil},
			{"id with space", with(roa, 0, "a b"), codeBadArg, nil},
			{"token 0", with(roa, 1, "0"), codeBadArg, nil},
			{"token not an integer", with(roa, 1, "x"), codeBadArg, nil},
			{"message of 8193 bytes", with(roa, 2, strings.Repeat("m", 8193)), codeBadArg, nil},
			{"backoff negative", with(roa, 3, "-1"), codeBadArg, nil},
			{"backoff above a year", with(roa, 3, "31536000001"), codeBadArg, nil},
			{"backoff not an integer", with(roa, 3, "soon"), codeBadArg, nil},
			{"skip_retry 2", with(roa, 4, "2"), codeBadArg, nil},
			{"skip_retry empty", with(roa, 4, ""), codeBadArg, nil},
			{"skip_retry true", with(roa, 4, "true"), codeBadArg, nil},
			{"skip_retry 01", with(roa, 4, "01"), codeBadArg, nil},
			{"skip_retry -1", with(roa, 4, "-1"), codeBadArg, nil},
			{"stale token", with(roa, 1, "2"), codeLeaseLost, nil},
			{"stale token with skip", with(with(roa, 1, "2"), 4, "1"), codeLeaseLost, nil},
			{"task not leased", with(roa, 0, "b"), codeLeaseLost, nil},
			{"archived task", []string{"z", "2", "again", "0", "0"}, codeLeaseLost, nil},
			{"unknown id", with(roa, 0, "nope"), codeLeaseLost, nil},
			{"leased task without a record", roa, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				env.Miniredis().HDel(key("tasks"), "a")
			}},
		},
		"requeue": {
			{"no arguments", nil, codeBadArg, nil},
			{"one argument", rq[:1], codeBadArg, nil},
			{"three arguments", cat(rq, []string{"1"}), codeBadArg, nil},
			{"id empty", with(rq, 0, ""), codeBadArg, nil},
			{"id with space", with(rq, 0, "a b"), codeBadArg, nil},
			{"id of 129 bytes", with(rq, 0, long129), codeBadArg, nil},
			{"token 0", with(rq, 1, "0"), codeBadArg, nil},
			{"token negative", with(rq, 1, "-1"), codeBadArg, nil},
			{"token with a fraction", with(rq, 1, "1.0"), codeBadArg, nil},
			{"stale token", with(rq, 1, "2"), codeLeaseLost, nil},
			{"scheduled task", []string{"s", "1"}, codeLeaseLost, nil},
			{"archived task", []string{"z", "2"}, codeLeaseLost, nil},
			{"unknown id", []string{"nope", "1"}, codeLeaseLost, nil},
		},
		"set-paused": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", []string{"1", "1"}, codeBadArg, nil},
			{"flag 2", []string{"2"}, codeBadArg, nil},
			{"flag empty", []string{""}, codeBadArg, nil},
			{"flag yes", []string{"yes"}, codeBadArg, nil},
			{"flag -1", []string{"-1"}, codeBadArg, nil},
			{"flag 10", []string{"10"}, codeBadArg, nil},
			{"flag with a space", []string{" 1"}, codeBadArg, nil},
		},
		"queue-info": {
			{"one argument", []string{"x"}, codeBadArg, nil},
			{"one empty argument", []string{""}, codeBadArg, nil},
		},
		"janitor-lock": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", jl[:2], codeBadArg, nil},
			{"four arguments", cat(jl, []string{"0"}), codeBadArg, nil},
			{"op empty", with(jl, 0, ""), codeBadArg, nil},
			{"op upper case", with(jl, 0, "RENEW"), codeBadArg, nil},
			{"op unknown", with(jl, 0, "steal"), codeBadArg, nil},
			{"op with a space", with(jl, 0, "renew "), codeBadArg, nil},
			{"owner empty", with(jl, 1, ""), codeBadArg, nil},
			{"owner with space", with(jl, 1, "j 1"), codeBadArg, nil},
			{"owner with NUL", with(jl, 1, "j1\x00"), codeBadArg, nil},
			{"owner of 129 bytes", with(jl, 1, long129), codeBadArg, nil},
			{"acquire ttl 0", []string{"acquire", "j2", "0"}, codeBadArg, pastLockTTL},
			{"acquire ttl empty", []string{"acquire", "j2", ""}, codeBadArg, pastLockTTL},
			{"acquire by the holder ttl 0", []string{"acquire", "j1", "0"}, codeBadArg, nil},
			{"renew ttl 0", with(jl, 2, "0"), codeBadArg, nil},
			{"renew ttl negative", with(jl, 2, "-1"), codeBadArg, nil},
			{"renew ttl above a day", with(jl, 2, "86400001"), codeBadArg, nil},
			{"renew ttl with a fraction", with(jl, 2, "1.5"), codeBadArg, nil},
			{"release ttl negative", []string{"release", "j1", "-1"}, codeBadArg, nil},
			{"release ttl empty", []string{"release", "j1", ""}, codeBadArg, nil},
			{"release ttl above a day", []string{"release", "j1", "86400001"}, codeBadArg, nil},
			{"release owner empty", []string{"release", "", "0"}, codeBadArg, nil},
		},
		"clean": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", cl[:2], codeBadArg, nil},
			{"four arguments", cat(cl, []string{"0"}), codeBadArg, nil},
			{"owner empty", with(cl, 0, ""), codeBadArg, pastLocks},
			{"owner with space", with(cl, 0, "j 1"), codeBadArg, pastLocks},
			{"owner of 129 bytes", with(cl, 0, long129), codeBadArg, pastLocks},
			{"limit 0", with(cl, 1, "0"), codeBadArg, pastLocks},
			{"limit 1001", with(cl, 1, "1001"), codeBadArg, pastLocks},
			{"limit negative", with(cl, 1, "-1"), codeBadArg, pastLocks},
			{"limit not an integer", with(cl, 1, "all"), codeBadArg, pastLocks},
			{"reclaim_backoff_ms negative", with(cl, 2, "-1"), codeBadArg, pastLocks},
			{"reclaim_backoff_ms above a year", with(cl, 2, "31536000001"), codeBadArg, pastLocks},
			{"reclaim_backoff_ms with an exponent", with(cl, 2, "1e3"), codeBadArg, pastLocks},
			{"bad argument wins over a foreign owner", with(with(cl, 0, "j2"), 1, "0"), codeBadArg, pastLocks},
			{"another owner", with(cl, 0, "j2"), codeNotOwner, pastLocks},
			{"owner prefix", with(cl, 0, "j"), codeNotOwner, pastLocks},
			{"lock released", cl, codeNotOwner, func(t *testing.T, env *scripttest.Env) {
				pastLocks(t, env)
				mustRun(t, env, "janitor-lock", "release", "j1", "0")
			}},
			{"lock expired", cl, codeNotOwner, pastLockTTL},
			{"lock taken over after it expired", cl, codeNotOwner, func(t *testing.T, env *scripttest.Env) {
				pastLockTTL(t, env)
				mustRun(t, env, "janitor-lock", "acquire", "j2", "600000")
			}},
		},
		"configure": {
			{"no arguments", nil, codeBadArg, nil},
			{"one argument", cf[:1], codeBadArg, nil},
			{"two arguments (without stats_days)", cf[:2], codeBadArg, nil},
			{"four arguments", cat(cf, []string{"0"}), codeBadArg, nil},
			{"archive_max negative", with(cf, 0, "-1"), codeBadArg, nil},
			{"archive_max 10000001", with(cf, 0, "10000001"), codeBadArg, nil},
			{"archive_max not an integer", with(cf, 0, "many"), codeBadArg, nil},
			{"archive_max empty", with(cf, 0, ""), codeBadArg, nil},
			{"archive_max with a fraction", with(cf, 0, "1.5"), codeBadArg, nil},
			{"archive_max with a plus sign", with(cf, 0, "+1"), codeBadArg, nil},
			{"archive_age_ms 0", with(cf, 1, "0"), codeBadArg, nil},
			{"archive_age_ms negative", with(cf, 1, "-1"), codeBadArg, nil},
			{"archive_age_ms above 100 years", with(cf, 1, "3153600000001"), codeBadArg, nil},
			{"archive_age_ms with an exponent", with(cf, 1, "6e4"), codeBadArg, nil},
			{"archive_age_ms empty", with(cf, 1, ""), codeBadArg, nil},
			{"bad age after a good max", []string{"5", "x", "30"}, codeBadArg, nil},
			{"stats_days 0", with(cf, 2, "0"), codeBadArg, nil},
			{"stats_days 3651", with(cf, 2, "3651"), codeBadArg, nil},
			{"stats_days negative", with(cf, 2, "-1"), codeBadArg, nil},
			{"stats_days not an integer", with(cf, 2, "month"), codeBadArg, nil},
			{"stats_days empty", with(cf, 2, ""), codeBadArg, nil},
			{"stats_days with a fraction", with(cf, 2, "7.5"), codeBadArg, nil},
			{"stats_days with an exponent", with(cf, 2, "3e1"), codeBadArg, nil},
			{"stats_days with a space", with(cf, 2, "30 "), codeBadArg, nil},
			{"bad stats_days after good bounds", []string{"0", "1", "x"}, codeBadArg, nil},
		},
		"daily-stats": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", []string{"7", "7"}, codeBadArg, nil},
			{"days 0", []string{"0"}, codeBadArg, nil},
			{"days 3651", []string{"3651"}, codeBadArg, nil},
			{"days negative", []string{"-1"}, codeBadArg, nil},
			{"days not an integer", []string{"week"}, codeBadArg, nil},
			{"days empty", []string{""}, codeBadArg, nil},
			{"days with a fraction", []string{"1.0"}, codeBadArg, nil},
			{"days with an exponent", []string{"1e1"}, codeBadArg, nil},
			{"days with a plus sign", []string{"+7"}, codeBadArg, nil},
		},
		"delete-task": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", cat(dt, []string{"s"}), codeBadArg, nil},
			{"id empty", with(dt, 0, ""), codeBadArg, nil},
			{"id with space", with(dt, 0, "a b"), codeBadArg, nil},
			{"id with NUL", with(dt, 0, "b\x00"), codeBadArg, nil},
			{"id not ASCII", with(dt, 0, "caf\xc3\xa9"), codeBadArg, nil},
			{"id of 129 bytes", with(dt, 0, long129), codeBadArg, nil},
			{"bad argument wins over a running task", []string{"a", "a"}, codeBadArg, nil},
			{"pending holds more than 100000 ids", dt, codeBadArg, func(t *testing.T, env *scripttest.Env) {
				fill := make([]string, 100000)
				for i := range fill {
					fill[i] = "f" + strconv.Itoa(i)
				}
				if _, err := env.Miniredis().Push(key("pending"), fill...); err != nil {
					t.Fatal(err)
				}
			}},
			{"running task", []string{"a"}, codeConflict, nil},
			{"running task after its lease expired", []string{"a"}, codeConflict, func(t *testing.T, env *scripttest.Env) {
				advance(env, 30001)
			}},
			{"unknown id", []string{"nope"}, codeNotFound, nil},
			{"id of 128 bytes, unknown", []string{long128}, codeNotFound, nil},
			{"deleted already", dt, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				if got := mustRun(t, env, "delete-task", dt...); got != "pending" {
					t.Fatalf("delete-task b = %#v, want pending", got)
				}
			}},
			{"pending id without a record", dt, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				env.Miniredis().HDel(key("tasks"), "b")
			}},
			{"leased id without a record", []string{"a"}, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				env.Miniredis().HDel(key("tasks"), "a")
			}},
		},
		"deregister": {
			{"no arguments", nil, codeBadArg, nil},
			{"worker_id empty", with(dr, 0, ""), codeBadArg, nil},
			{"worker_id with space", with(dr, 0, "w 1"), codeBadArg, nil},
			{"worker_id with NUL", with(dr, 0, "w1\x00"), codeBadArg, nil},
			{"worker_id of 129 bytes", with(dr, 0, long129), codeBadArg, nil},
			{"id without a token", dr[:2], codeBadArg, nil},
			{"a pair and a half", cat(dr, []string{"b"}), codeBadArg, nil},
			{"id empty", with(dr, 1, ""), codeBadArg, nil},
			{"id with space", with(dr, 1, "a b"), codeBadArg, nil},
			{"id of 129 bytes", with(dr, 1, long129), codeBadArg, nil},
			{"token 0", with(dr, 2, "0"), codeBadArg, nil},
			{"token negative", with(dr, 2, "-1"), codeBadArg, nil},
			{"token not an integer", with(dr, 2, "x"), codeBadArg, nil},
			{"token empty", with(dr, 2, ""), codeBadArg, nil},
			{"token with a fraction", with(dr, 2, "1.0"), codeBadArg, nil},
			{"token above 2^53", with(dr, 2, "9007199254740994"), codeBadArg, nil},
			{"bad second pair after a current lease", cat(dr, []string{"b", "x"}), codeBadArg, nil},
			{"1001 pairs", pairs1001, codeBadArg, nil},
		},
		"list-workers": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", []string{"10", "10"}, codeBadArg, nil},
			{"limit 0", []string{"0"}, codeBadArg, nil},
			{"limit 1001", []string{"1001"}, codeBadArg, nil},
			{"limit negative", []string{"-1"}, codeBadArg, nil},
			{"limit not an integer", []string{"all"}, codeBadArg, nil},
			{"limit empty", []string{""}, codeBadArg, nil},
			{"limit with a fraction", []string{"1.5"}, codeBadArg, nil},
		},
		"prune-workers": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", []string{"10", "10"}, codeBadArg, nil},
			{"limit 0", []string{"0"}, codeBadArg, nil},
			{"limit 1001", []string{"1001"}, codeBadArg, nil},
			{"limit negative", []string{"-1"}, codeBadArg, nil},
			{"limit not an integer", []string{"all"}, codeBadArg, nil},
			{"limit empty", []string{""}, codeBadArg, nil},
			{"limit with an exponent", []string{"1e1"}, codeBadArg, nil},
		},
		"register": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", rg[:2], codeBadArg, nil},
			{"four arguments", cat(rg, []string{"0"}), codeBadArg, nil},
			{"worker_id empty", with(rg, 0, ""), codeBadArg, nil},
			{"worker_id with space", with(rg, 0, "w 2"), codeBadArg, nil},
			{"worker_id with NUL", with(rg, 0, "w2\x00"), codeBadArg, nil},
			{"worker_id not ASCII", with(rg, 0, "w\xc3\xa9"), codeBadArg, nil},
			{"worker_id of 129 bytes", with(rg, 0, long129), codeBadArg, nil},
			{"info of 65537 bytes", with(rg, 1, strings.Repeat("i", 65537)), codeBadArg, nil},
			{"ttl_ms 0", with(rg, 2, "0"), codeBadArg, nil},
			{"ttl_ms negative", with(rg, 2, "-1"), codeBadArg, nil},
			{"ttl_ms above a day", with(rg, 2, "86400001"), codeBadArg, nil},
			{"ttl_ms with a fraction", with(rg, 2, "1.5"), codeBadArg, nil},
			{"ttl_ms empty", with(rg, 2, ""), codeBadArg, nil},
			{"ttl_ms not an integer", with(rg, 2, "30s"), codeBadArg, nil},
			{"renewal with a bad ttl_ms", []string{"w1", "host=a", "0"}, codeBadArg, nil},
		},
		"run-archived": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", cat(ra, []string{"z"}), codeBadArg, nil},
			{"id empty", with(ra, 0, ""), codeBadArg, nil},
			{"id with space", with(ra, 0, "z z"), codeBadArg, nil},
			{"id with NUL", with(ra, 0, "z\x00"), codeBadArg, nil},
			{"id of 129 bytes", with(ra, 0, long129), codeBadArg, nil},
			{"unknown id", []string{"nope"}, codeNotFound, nil},
			{"running task", []string{"a"}, codeNotFound, nil},
			{"pending task", []string{"b"}, codeNotFound, nil},
			{"scheduled task", []string{"s"}, codeNotFound, nil},
			{"pending task with an expiry", []string{"u"}, codeNotFound, nil},
			{"completed task kept for its retention", []string{"r"}, codeNotFound, nil},
			{"archived id without a record", ra, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				env.Miniredis().HDel(key("tasks"), "z")
			}},
			{"run already", ra, codeNotFound, func(t *testing.T, env *scripttest.Env) {
				mustRun(t, env, "run-archived", ra...)
			}},
		},
		"task-info": {
			{"no arguments", nil, codeBadArg, nil},
			{"two arguments", []string{"b", "b"}, codeBadArg, nil},
			{"id empty", []string{""}, codeBadArg, nil},
			{"id with space", []string{"b b"}, codeBadArg, nil},
			{"id of 129 bytes", []string{long129}, codeBadArg, nil},
			{"unknown id", []string{"nope"}, codeNotFound, nil},
		},
	}
}

// TestValidArgsSucceed proves that the bad-input cases differ from a
// successful call only by what they name.
func TestValidArgsSucceed(t *testing.T) {
	for _, name := range allScripts {
		t.Run(name, func(t *testing.T) {
			env := baseline(t)
			mustRun(t, env, name, validArgs[name]...)
		})
	}
}

func TestBadInputLeavesKeyspaceUnchanged(t *testing.T) {
	for name, cases := range badInputCases() {
		t.Run(name, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					env := baseline(t)
					if tc.setup != nil {
						tc.setup(t, env)
					}
					unchanged(t, env, func() {
						checkCode(t, run(t, env, name, tc.args...), tc.code)
					})
				})
			}
		})
	}
}

// TestSchemaRefusal: a queue written by a newer schema is refused by every
// script, before any write, whatever else the call would do.
func TestSchemaRefusal(t *testing.T) {
	for _, schema := range []string{"3", "10"} {
		for _, name := range allScripts {
			t.Run(name+"/schema "+schema, func(t *testing.T) {
				t.Parallel()
				env := baseline(t)
				hset(t, env, "meta", "schema", schema)
				unchanged(t, env, func() {
					res := run(t, env, name, validArgs[name]...)
					checkCode(t, res, codeSchema)
					if !strings.Contains(res.Err.Error(), "schema "+schema) {
						t.Errorf("error %q does not name the queue's schema", res.Err)
					}
				})
			})
		}
	}
	// The schemas this bundle understands, written explicitly, are
	// accepted: 1 (what a queue starts with) and 2 (stale pending entries).
	for _, schema := range []string{"1", "2"} {
		for _, name := range allScripts {
			t.Run(name+"/schema "+schema, func(t *testing.T) {
				env := baseline(t)
				hset(t, env, "meta", "schema", schema)
				mustRun(t, env, name, validArgs[name]...)
			})
		}
	}
}

// TestErrorCodesCovered checks that the tables above exercise exactly the
// error codes each script's header declares, and cover every script.
func TestErrorCodesCovered(t *testing.T) {
	var names []string
	for _, s := range testBundle(t).Scripts() {
		names = append(names, s.Name)
	}
	if !slices.Equal(names, allScripts) {
		t.Fatalf("bundle scripts %v, tests know %v", names, allScripts)
	}
	cases := badInputCases()
	for _, name := range allScripts {
		seen := map[string]bool{codeSchema: true} // TestSchemaRefusal
		for _, tc := range cases[name] {
			seen[tc.code] = true
		}
		var got []string
		for c := range seen {
			got = append(got, c)
		}
		sort.Strings(got)
		want := slices.Clone(script(t, name).Errors)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s: tests exercise %v, header declares %v", name, got, want)
		}
		if _, ok := validArgs[name]; !ok {
			t.Errorf("%s: no valid call", name)
		}
	}
}
