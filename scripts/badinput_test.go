package scripts_test

// "Bad input → the documented error reply and the whole keyspace unchanged",
// for every script and every error code its header lists.

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/luaq/luaq/scripttest"
)

// baseline builds the state every bad-input case starts from: a leased task
// a (token 1), a pending task b, a scheduled task s and an archived task z
// (token 2, archived), so that a call that wrongly went ahead would change
// something.
func baseline(t *testing.T) *scripttest.Env {
	t.Helper()
	env := scripttest.New(t)
	mustRun(t, env, "enqueue", enqArgs(tk("a"), task{id: "z", typ: "t", maxRetry: 0}, tk("b"), task{id: "s", typ: "t", in: 5000})...)
	dequeue(t, env, 2, 30000, 0, 0, 0) // a 1, z 2
	mustRun(t, env, "retry-or-archive", "z", "2", "gone", "0", "0")
	return env
}

// validArgs is a call of each script that succeeds on the baseline.
var validArgs = map[string][]string{
	"enqueue":          enqArgs(tk("x")),
	"dequeue":          deqArgs(1, 1000, 10, 10, 0),
	"extend":           {"a", "1", "1000"},
	"complete":         {"a", "1", "1", "1000", "10"},
	"retry-or-archive": {"a", "1", "boom", "0", "0"},
	"requeue":          {"a", "1"},
	"set-paused":       {"1"},
	"queue-info":       {},
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

func badInputCases() map[string][]badCase {
	g := tk("x").args()
	// group field indices
	const (
		fID = iota
		fType
		fPayload
		fMaxRetry
		fTimeout
		fDeadline
		fAt
		fIn
	)
	one := func(i int, v string) []string { return cat([]string{"1"}, enqueueGroup(i, v)) }
	deq := validArgs["dequeue"]
	ext := validArgs["extend"]
	cpl := validArgs["complete"]
	roa := validArgs["retry-or-archive"]
	rq := validArgs["requeue"]
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
			{"group one value short", cat([]string{"1"}, g[:7]), codeBadArg, nil},
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
			{"four arguments", cpl[:4], codeBadArg, nil},
			{"six arguments", cat(cpl, []string{"0"}), codeBadArg, nil},
			{"id empty", with(cpl, 0, ""), codeBadArg, nil},
			{"id with space", with(cpl, 0, "a b"), codeBadArg, nil},
			{"id of 129 bytes", with(cpl, 0, long129), codeBadArg, nil},
			{"token 0", with(cpl, 1, "0"), codeBadArg, nil},
			{"token not an integer", with(cpl, 1, "one"), codeBadArg, nil},
			{"next_count negative", with(cpl, 2, "-1"), codeBadArg, nil},
			{"next_count 1001", with(cpl, 2, "1001"), codeBadArg, nil},
			{"next_count not an integer", with(cpl, 2, "x"), codeBadArg, nil},
			{"lease_ms 0 with next_count 1", with(cpl, 3, "0"), codeBadArg, nil},
			{"lease_ms negative without next", with(with(cpl, 2, "0"), 3, "-1"), codeBadArg, nil},
			{"lease_ms above 2^31-1", with(cpl, 3, "2147483648"), codeBadArg, nil},
			{"promote_limit negative", with(cpl, 4, "-1"), codeBadArg, nil},
			{"promote_limit 1001", with(cpl, 4, "1001"), codeBadArg, nil},
			{"stale token", with(cpl, 1, "2"), codeLeaseLost, nil},
			{"stale token without next", with(with(cpl, 1, "2"), 2, "0"), codeLeaseLost, nil},
			{"task not leased", with(cpl, 0, "b"), codeLeaseLost, nil},
			{"archived task", []string{"z", "2", "0", "0", "0"}, codeLeaseLost, nil},
			{"unknown id", with(cpl, 0, "nope"), codeLeaseLost, nil},
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
	for _, schema := range []string{"2", "10"} {
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
	// The current schema, written explicitly, is accepted.
	for _, name := range allScripts {
		t.Run(name+"/schema 1", func(t *testing.T) {
			env := baseline(t)
			hset(t, env, "meta", "schema", "1")
			mustRun(t, env, name, validArgs[name]...)
		})
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
