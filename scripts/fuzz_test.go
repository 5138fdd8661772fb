package scripts_test

import (
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/scripttest"
)

// argSep separates the ARGV values inside one fuzz input.
const argSep = "\x1f"

// maxFuzzArgs bounds the ARGV of one fuzz call, so that no input can make a
// script do more than a few tasks' worth of work.
const maxFuzzArgs = 64

// FuzzScriptArgs calls a bundle script with arbitrary ARGV on the baseline
// keyspace (tasks in every state, a lock, workers). Every call must either
// succeed or return a code of the bundle's error table — never a raw Lua
// error — and a call that returns an error must leave the keyspace exactly
// as it was. The harness also fails any contract violation (undeclared key,
// global, forbidden command). Seeds: every script's valid call and its
// bad-input cases; the checked-in corpus is in testdata/fuzz/FuzzScriptArgs.
func FuzzScriptArgs(f *testing.F) {
	for i, name := range allScripts {
		f.Add(uint8(i), strings.Join(validArgs[name], argSep))
		for _, c := range badInputCases()[name] {
			if c.setup == nil && len(c.args) <= maxFuzzArgs {
				f.Add(uint8(i), strings.Join(c.args, argSep))
			}
		}
	}
	codes := map[string]bool{}
	table, err := scripts.ErrorTable()
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range table {
		codes[e.Code] = true
	}
	f.Fuzz(func(t *testing.T, which uint8, joined string) {
		name := allScripts[int(which)%len(allScripts)]
		var args []string
		if joined != "" {
			args = strings.Split(joined, argSep)
		}
		if len(args) > maxFuzzArgs {
			t.Skip("more ARGV than one fuzz call may send")
		}
		env := baseline(t)
		before := env.Snapshot(t)
		res := run(t, env, name, args...) // fails the test on any contract violation
		if res.Err == nil {
			return
		}
		var se *scripttest.ScriptError
		if !errors.As(res.Err, &se) || se.Raw || se.Kind != scripttest.KindReply {
			t.Fatalf("%s %q: not a deliberate error reply: %v", name, args, res.Err)
		}
		code, _, _ := strings.Cut(res.Err.Error(), " ")
		if !codes[code] || !slices.Contains(script(t, name).Errors, code) {
			t.Fatalf("%s %q: error code %q is not one its header declares (%v)", name, args, code, script(t, name).Errors)
		}
		if d := cmp.Diff(before, env.Snapshot(t)); d != "" {
			t.Fatalf("%s %q failed with %v but changed the keyspace (-before +after):\n%s", name, args, res.Err, d)
		}
	})
}

// TestFuzzScriptArgsShortRun runs the fuzzer itself (coverage-guided, not only
// the seeds) for a short while, so CI exercises new inputs on every run. Set
// LUAQ_FUZZ_TIME (a Go duration, default 10s; "0" skips it) to change it.
func TestFuzzScriptArgsShortRun(t *testing.T) {
	d := os.Getenv("LUAQ_FUZZ_TIME")
	if d == "" {
		d = "10s"
	}
	if d == "0" {
		t.Skip("LUAQ_FUZZ_TIME=0")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	// go test puts its own GOROOT/bin first on the test's PATH, so this is
	// the toolchain running the test.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	cache := t.TempDir() // new inputs the run finds stay out of the source tree
	cmd := exec.Command(goBin, "test", "-run=^$", "-fuzz=^FuzzScriptArgs$", "-fuzztime="+d,
		"-parallel=2", "-test.fuzzcachedir="+cache, ".")
	cmd.Env = append(os.Environ(), "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fuzzing FuzzScriptArgs for %s failed: %v\n%s", d, err, out)
	}
	t.Logf("%s", lastLines(string(out), 4))
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
