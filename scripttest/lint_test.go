package scripttest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLint(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // "line N: <substring>" per hit, in order
	}{
		{"clean", "local x = tonumber(ARGV[1])\nreturn string.format('%d', x)", nil},
		{"shebang", "#!lua flags=no-writes\nreturn 1", []string{"line 1: `#!`"}},
		{"length operator first", "#{1}", nil},
		{"goto", "local i = 1\n::top::\ni = i + 1\nif i < 3 then goto top end", []string{"line 4: `goto`"}},
		{"floor division", "local a = 7 // 2", []string{"line 1: `//`"}},
		{"setresp", "redis.setresp(3)", []string{"line 1: redis.setresp"}},
		{"set_repl", "redis.set_repl(redis.REPL_ALL)", []string{"line 1: redis.set_repl"}},
		{"cmsgpack", "return cmsgpack.pack({})", []string{"line 1: cmsgpack"}},
		{"struct", "return struct.pack('>I', 1)", []string{"line 1: `struct.`"}},
		{"bit", "return bit.band(1, 3)", []string{"line 1: `bit.`"}},
		{"os", "return os.clock()", []string{"line 1: `os.`"}},
		{"spaced field access", "return os . time()", []string{"line 1: `os.`"}},
		{"math.random", "local r = math.random(10)", []string{"line 1: math.random"}},
		{"math.randomseed", "math.randomseed(1)", []string{"line 1: math.randomseed"}},
		{"loadstring", "local f = loadstring('return 1')", []string{"line 1: loadstring"}},
		{"tostring", "return 'n=' .. tostring(5)", []string{"line 1: tostring"}},
		{"tostring alias", "local ts = tostring", []string{"line 1: tostring"}},
		{"several on several lines", "local a = os.time()\n\nlocal b = bit.bor(1, 2)",
			[]string{"line 1: `os.`", "line 3: `bit.`"}},
		{"line comment", "-- goto, os.time(), tostring(1), http://x, math.random\nreturn 1", nil},
		{"long comment", "--[[ goto\nos.x // ]] return 1", nil},
		{"leveled long comment", "--[==[ ]] goto ]==] return 1", nil},
		{"strings", `return {'goto', "os.time() // x", 'it''s', "a\"tostring(", [[bit.band
		cmsgpack]], [=[ ]] math.random ]=]}`, nil},
		{"line count after long string", "local s = [[\n\n]]\nlocal x = os.time()", []string{"line 4: `os.`"}},
		{"line count after escaped newline", "local s = 'a\\\nb'\nreturn tostring(1)", []string{"line 3: tostring"}},
		{"fields are not globals", "local t = {}; t.os = {}; t.os.x = 1; local y = job.bit.z; local z = obj:tostring()", nil},
		{"similar names", "local pos = {}; pos.x = 1; local orbit = {}; orbit.y = 2; local mystruct = {}; mystruct.z = 3", nil},
		{"other math", "return math.floor(math.max(1, 2))", nil},
		{"division", "return 7 / 2", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Lint(tc.src)
			if len(got) != len(tc.want) {
				t.Fatalf("Lint = %q, want %d hits %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], "lint: ") || !strings.Contains(got[i], w) {
					t.Errorf("hit %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}
}

func TestEvalReportsLintHits(t *testing.T) {
	e := New(t)
	res := e.EvalRaw(t, "-- header\nreturn tostring(1)", nil)
	if d := cmp.Diff(Lint("-- header\nreturn tostring(1)"), res.Violations); d != "" {
		t.Errorf("Violations (-want +got):\n%s", d)
	}
	if len(res.Violations) != 1 || !strings.Contains(res.Violations[0], "line 2") {
		t.Errorf("Violations = %q", res.Violations)
	}
	if res.Value != "1" || res.Err != nil {
		t.Errorf("lint hits must not stop the run: Value=%#v Err=%v", res.Value, res.Err)
	}
}
