package scripts_test

// Conformance vectors: language-neutral scenarios in
// scripts/testdata/conformance/*.json that every luaq client and every
// engine must reproduce. tools/node/CONFORMANCE.md is the full format
// reference; in short, one file is one scenario:
//
//	{"format": "luaq-conformance/1", "name": ..., "description": ...,
//	 "clock_start_ms": 1767225600000,
//	 "steps": [{"note": ..., "advance_ms": 250, "script": "dequeue", "queue": "q",
//	            "args": ["1", ["spliced", "group"], {"hex": "00ff"}],
//	            "reply": [...] | "error": "LQ_BADARG",
//	            "keyspace": {...}  (optional: expected right after this step)},
//	           {"queue": "q", "command": ["DEL", "${key:wake}"]}  (raw setup, reply ignored)],
//	 "keyspace": {"luaq:{q}:meta": {"type": "hash", "ttl": false, "value": {...}}, ...}}
//
// Values: a JSON number is an integer reply; a JSON string is a bulk string
// (UTF-8 text); {"hex": "..."} is bytes; {"concat": [part, ...]} joins text
// and hex parts; {"int": "${...}"} is an integer reply given by a
// placeholder; null is a nil reply; an array is an array reply. In text,
// "${t}", "${t+N}", "${t-N}" stand for an instant (clock start + N ms),
// "${day+N}" for the stats day (floor(t / 86400000) + N) and "${wait:N}" for
// a remaining duration of N ms. An exact runner (this file on scripttest,
// clock injected) substitutes exact values; a real-server runner binds t to
// the server's TIME at scenario start and accepts an instant v for t+N when
// 0 <= v-(t+N) <= tolerance, a wait v when N-tolerance <= v <= N (and v >= 0);
// this runner widens the tolerance to the lag it measured after a slow step.
// Error steps must also leave the keyspace unchanged. Keyspaces list every
// luaq key (type, value, TTL presence); zsets compare as member -> score. A
// real-server run that sees the UTC day change is run once more.
//
// TestConformance runs every vector on scripttest (exact) and on a real
// redis-server through loader.Run (tolerant). Regenerate the expectations
// from scripttest with
//
//	go test ./scripts/ -run TestConformance -update-conformance
//
// and then review every changed line: the vectors are a contract, not a
// snapshot.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/loader"
	"github.com/luaq/luaq/scripttest"
)

var updateConformance = flag.Bool("update-conformance", false,
	"rewrite the expectations of scripts/testdata/conformance/*.json from scripttest (review the diff!)")

const (
	cfDir    = "testdata/conformance"
	cfFormat = "luaq-conformance/1"
	cfDayMS  = 86400000
	// cfTolerance is how far (ms) a real server's instant may lag behind
	// the vector's; LUAQ_CONFORMANCE_TOLERANCE_MS overrides it. A slower
	// step widens it to the lag measured after it (see cfRun).
	cfTolerance = 2000
)

// ---- the file format ----

type cfVector struct {
	Format       string           `json:"format"`
	Name         string           `json:"name"`
	Description  string           `json:"description"`
	ClockStartMS int64            `json:"clock_start_ms"`
	Steps        []cfStep         `json:"steps"`
	Keyspace     map[string]cfKey `json:"keyspace"`

	file string
}

type cfStep struct {
	Note      string            `json:"note"`
	AdvanceMS int64             `json:"advance_ms"`
	Script    string            `json:"script"`
	Queue     string            `json:"queue"`
	Args      []json.RawMessage `json:"args"`
	// Command, instead of a script call, is a raw setup command (its
	// reply is not compared); "${key:<role>}" is the key of the step's
	// queue for a role.
	Command []json.RawMessage `json:"command"`
	// Reply is nil when absent; a JSON null reply is the raw "null".
	Reply    json.RawMessage  `json:"reply"`
	Error    string           `json:"error"`
	Keyspace map[string]cfKey `json:"keyspace"` // nil: not checked after this step
}

type cfKey struct {
	Type  string `json:"type"`
	TTL   bool   `json:"ttl"`
	Value any    `json:"value"`
}

func cfDecode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	d.DisallowUnknownFields()
	return d.Decode(v)
}

func cfLoadVectors(t *testing.T) []*cfVector {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cfDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no conformance vectors in %s (%v)", cfDir, err)
	}
	sort.Strings(files)
	var out []*cfVector
	names := map[string]bool{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		v := &cfVector{file: f}
		if err := cfDecode(data, v); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if v.Format != cfFormat {
			t.Fatalf("%s: format %q, want %q", f, v.Format, cfFormat)
		}
		if v.Name == "" || names[v.Name] {
			t.Fatalf("%s: missing or repeated name %q", f, v.Name)
		}
		names[v.Name] = true
		if v.Keyspace == nil && !*updateConformance {
			t.Fatalf("%s: no final keyspace", f)
		}
		for i, st := range v.Steps {
			if (st.Script == "") == (st.Command == nil) || st.Queue == "" {
				t.Fatalf("%s: step %d: queue and exactly one of script and command are required", f, i+1)
			}
			if st.Command != nil && (st.Reply != nil || st.Error != "" || st.Args != nil) {
				t.Fatalf("%s: step %d: a command step has no args, reply or error", f, i+1)
			}
			if _, err := keys.ForQueue(st.Queue); err != nil {
				t.Fatalf("%s: step %d: %v", f, i+1, err)
			}
			if st.AdvanceMS < 0 || st.AdvanceMS > 300 {
				t.Fatalf("%s: step %d: advance_ms %d outside 0..300 (real servers sleep it)", f, i+1, st.AdvanceMS)
			}
			if !*updateConformance && st.Command == nil && (st.Reply == nil) == (st.Error == "") {
				t.Fatalf("%s: step %d: exactly one of reply and error is required", f, i+1)
			}
		}
		out = append(out, v)
	}
	return out
}

// ---- placeholders ----

var cfPlaceholder = regexp.MustCompile(`^(t|day)([+-][0-9]+)?$|^wait:([0-9]+)$`)

type cfPH struct {
	kind string // "t", "day" or "wait"
	n    int64
}

// cfSeg is one piece of a string pattern: literal bytes or a placeholder.
type cfSeg struct {
	lit []byte
	ph  *cfPH
}

// cfClock binds the placeholders of one scenario run.
type cfClock struct {
	t   int64 // clock start (exact) or the server's TIME at scenario start
	day int64 // the stats day of t
	tol int64 // 0 for an exact runner
}

func newCFClock(t, tol int64) cfClock { return cfClock{t: t, day: t / cfDayMS, tol: tol} }

func (c cfClock) value(ph cfPH) (int64, error) {
	switch ph.kind {
	case "t":
		return c.t + ph.n, nil
	case "day":
		return c.day + ph.n, nil
	}
	return 0, fmt.Errorf("${wait:%d} is only allowed in expected values", ph.n)
}

func (c cfClock) accepts(ph cfPH, v int64) bool {
	switch ph.kind {
	case "t":
		return v >= c.t+ph.n && v <= c.t+ph.n+c.tol
	case "day":
		return v == c.day+ph.n
	default: // wait
		return v <= ph.n && v >= max(0, ph.n-c.tol)
	}
}

func (c cfClock) describe(ph cfPH) string {
	switch ph.kind {
	case "t":
		if c.tol == 0 {
			return strconv.FormatInt(c.t+ph.n, 10)
		}
		return fmt.Sprintf("%d..%d", c.t+ph.n, c.t+ph.n+c.tol)
	case "day":
		return strconv.FormatInt(c.day+ph.n, 10)
	default:
		if c.tol == 0 {
			return strconv.FormatInt(ph.n, 10)
		}
		return fmt.Sprintf("%d..%d", max(0, ph.n-c.tol), ph.n)
	}
}

// cfParseText splits text into literals and placeholders.
func cfParseText(s string) ([]cfSeg, error) {
	var segs []cfSeg
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			if s != "" {
				segs = append(segs, cfSeg{lit: []byte(s)})
			}
			return segs, nil
		}
		if i > 0 {
			segs = append(segs, cfSeg{lit: []byte(s[:i])})
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("unterminated placeholder in %q", s)
		}
		inner := s[i+2 : i+j]
		m := cfPlaceholder.FindStringSubmatch(inner)
		if m == nil {
			return nil, fmt.Errorf("unknown placeholder ${%s}", inner)
		}
		ph := &cfPH{kind: m[1]}
		if m[3] != "" {
			ph.kind = "wait"
			ph.n, _ = strconv.ParseInt(m[3], 10, 64)
		} else if m[2] != "" {
			ph.n, _ = strconv.ParseInt(m[2], 10, 64)
		}
		segs = append(segs, cfSeg{ph: ph})
		s = s[i+j+1:]
	}
}

// cfPattern parses a string value: text, {"hex"} or {"concat"}.
func cfPattern(v any) ([]cfSeg, error) {
	switch x := v.(type) {
	case string:
		return cfParseText(x)
	case map[string]any:
		if len(x) != 1 {
			break
		}
		if h, ok := x["hex"].(string); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return nil, fmt.Errorf("bad hex %q: %v", h, err)
			}
			return []cfSeg{{lit: b}}, nil
		}
		if parts, ok := x["concat"].([]any); ok {
			var segs []cfSeg
			for _, p := range parts {
				s, err := cfPattern(p)
				if err != nil {
					return nil, err
				}
				segs = append(segs, s...)
			}
			return segs, nil
		}
	}
	return nil, fmt.Errorf("not a string value: %s", cfShow(v))
}

// cfExpand turns a pattern into bytes with exact placeholder values
// (arguments, hash field names, zset members).
func cfExpand(segs []cfSeg, c cfClock) ([]byte, error) {
	var b []byte
	for _, s := range segs {
		if s.ph == nil {
			b = append(b, s.lit...)
			continue
		}
		n, err := c.value(*s.ph)
		if err != nil {
			return nil, err
		}
		b = strconv.AppendInt(b, n, 10)
	}
	return b, nil
}

// cfMatchBytes matches actual bytes against a pattern; a placeholder takes
// an optionally signed run of digits.
func cfMatchBytes(segs []cfSeg, act []byte, c cfClock) bool {
	for _, s := range segs {
		if s.ph == nil {
			if !bytes.HasPrefix(act, s.lit) {
				return false
			}
			act = act[len(s.lit):]
			continue
		}
		i := 0
		if i < len(act) && act[i] == '-' {
			i++
		}
		j := i
		for j < len(act) && act[j] >= '0' && act[j] <= '9' {
			j++
		}
		if j == i {
			return false
		}
		n, err := strconv.ParseInt(string(act[:j]), 10, 64)
		if err != nil || !c.accepts(*s.ph, n) {
			return false
		}
		act = act[j:]
	}
	return len(act) == 0
}

// cfDescribe renders a pattern for a failure message: the literal text
// quoted, each placeholder as <accepted values>.
func cfDescribe(segs []cfSeg, c cfClock) string {
	var b strings.Builder
	b.WriteString(`"`)
	for _, s := range segs {
		if s.ph == nil {
			q := strconv.Quote(string(s.lit))
			b.WriteString(q[1 : len(q)-1])
		} else {
			b.WriteString("<" + c.describe(*s.ph) + ">")
		}
	}
	b.WriteString(`"`)
	return b.String()
}

var cfKeyPlaceholder = regexp.MustCompile(`\$\{key:([a-z_]+)\}`)

// cfArgs flattens and expands a step's arguments. With q set (command
// steps), "${key:<role>}" becomes q's key of role.
func cfArgs(raw []json.RawMessage, c cfClock, q *keys.Queue) ([]string, error) {
	var out []string
	var add func(v any) error
	add = func(v any) error {
		if arr, ok := v.([]any); ok {
			for _, e := range arr {
				if err := add(e); err != nil {
					return err
				}
			}
			return nil
		}
		if str, ok := v.(string); ok && q != nil {
			v = cfKeyPlaceholder.ReplaceAllStringFunc(str, func(m string) string {
				return q.Key(cfKeyPlaceholder.FindStringSubmatch(m)[1])
			})
		}
		segs, err := cfPattern(v)
		if err != nil {
			return err
		}
		b, err := cfExpand(segs, c)
		if err != nil {
			return err
		}
		out = append(out, string(b))
		return nil
	}
	for _, r := range raw {
		var v any
		if err := cfDecode(r, &v); err != nil {
			return nil, err
		}
		if err := add(v); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ---- matching ----

func cfShow(v any) string {
	switch x := v.(type) {
	case string:
		if utf8.ValidString(x) {
			return strconv.Quote(x)
		}
		return "hex:" + hex.EncodeToString([]byte(x))
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cfShow(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case nil:
		return "nil"
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprintf("%#v", v)
}

// cfMatch compares an actual reply value (int64, string, []any, nil) with
// an expected JSON value and returns the mismatches.
func cfMatch(path string, exp, act any, c cfClock) []string {
	bad := func(want string) []string {
		return []string{fmt.Sprintf("%s: got %s, want %s", path, cfShow(act), want)}
	}
	switch x := exp.(type) {
	case nil:
		if act != nil {
			return bad("nil")
		}
		return nil
	case json.Number:
		n, err := x.Int64()
		if err != nil {
			return []string{fmt.Sprintf("%s: expected number %s is not an integer", path, x)}
		}
		if a, ok := act.(int64); !ok || a != n {
			return bad(x.String())
		}
		return nil
	case []any:
		a, ok := act.([]any)
		if !ok || len(a) != len(x) {
			return bad(fmt.Sprintf("an array of %d", len(x)))
		}
		var out []string
		for i := range x {
			out = append(out, cfMatch(fmt.Sprintf("%s[%d]", path, i), x[i], a[i], c)...)
		}
		return out
	case map[string]any:
		if p, ok := x["int"]; ok && len(x) == 1 {
			segs, err := cfPattern(p)
			if err != nil {
				return []string{path + ": " + err.Error()}
			}
			a, ok := act.(int64)
			if !ok || !cfMatchBytes(segs, strconv.AppendInt(nil, a, 10), c) {
				return bad("integer " + cfDescribe(segs, c))
			}
			return nil
		}
	}
	segs, err := cfPattern(exp)
	if err != nil {
		return []string{path + ": " + err.Error()}
	}
	if a, ok := act.(string); !ok || !cfMatchBytes(segs, []byte(a), c) {
		return bad("string " + cfDescribe(segs, c))
	}
	return nil
}

// cfSnap is an actual keyspace with key names as the vector writes them.
type cfSnap map[string]keyspace.Value

func cfMatchKeyspace(path string, exp map[string]cfKey, act cfSnap, c cfClock) []string {
	var out []string
	for _, k := range sortedKeys(exp) {
		e := exp[k]
		a, ok := act[k]
		p := path + " " + k
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing (want a %s)", p, e.Type))
			continue
		}
		if a.Type != e.Type {
			out = append(out, fmt.Sprintf("%s: type %s, want %s", p, a.Type, e.Type))
			continue
		}
		if a.TTL != e.TTL {
			out = append(out, fmt.Sprintf("%s: ttl %v, want %v", p, a.TTL, e.TTL))
		}
		out = append(out, cfMatchKey(p, e, a, c)...)
	}
	for _, k := range sortedKeys(act) {
		if _, ok := exp[k]; !ok {
			out = append(out, fmt.Sprintf("%s %s: unexpected %s key %s", path, k, act[k].Type, cfShowKey(act[k])))
		}
	}
	return out
}

func cfShowKey(v keyspace.Value) string {
	g := cfGen{}
	b, _ := json.Marshal(g.key(v).Value)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func cfMatchKey(p string, e cfKey, a keyspace.Value, c cfClock) []string {
	fail := func(format string, args ...any) []string {
		return []string{p + ": " + fmt.Sprintf(format, args...)}
	}
	switch e.Type {
	case keyspace.TypeString:
		return cfMatch(p, e.Value, a.String, c)
	case keyspace.TypeList:
		el, ok := e.Value.([]any)
		if !ok {
			return fail("expected list value is not an array")
		}
		act := make([]any, len(a.List))
		for i, s := range a.List {
			act[i] = s
		}
		return cfMatch(p, el, act, c)
	case keyspace.TypeSet:
		el, ok := e.Value.([]any)
		if !ok {
			return fail("expected set value is not an array")
		}
		want := map[string]any{}
		for _, m := range el {
			segs, err := cfPattern(m)
			if err != nil {
				return fail("%v", err)
			}
			b, err := cfExpand(segs, c)
			if err != nil {
				return fail("%v", err)
			}
			want[string(b)] = true
		}
		got := map[string]any{}
		for _, m := range a.Set {
			got[m] = true
		}
		if d := cmp.Diff(want, got); d != "" {
			return fail("set members differ (-want +got):\n%s", d)
		}
		return nil
	case keyspace.TypeHash:
		want, err := cfHashPairs(e.Value, c)
		if err != nil {
			return fail("%v", err)
		}
		var out []string
		for _, f := range sortedKeys(want) {
			v, ok := a.Hash[f]
			if !ok {
				out = append(out, fmt.Sprintf("%s field %s: missing", p, cfShow(f)))
				continue
			}
			out = append(out, cfMatch(p+" field "+cfShow(f), want[f], v, c)...)
		}
		for _, f := range sortedKeys(a.Hash) {
			if _, ok := want[f]; !ok {
				out = append(out, fmt.Sprintf("%s field %s: unexpected, value %s", p, cfShow(f), cfShow(a.Hash[f])))
			}
		}
		return out
	case keyspace.TypeZSet:
		el, ok := e.Value.([]any)
		if !ok {
			return fail("expected zset value is not an array")
		}
		want := map[string]any{}
		for _, m := range el {
			pair, ok := m.([]any)
			if !ok || len(pair) != 2 {
				return fail("zset element %s is not a [member, score] pair", cfShow(m))
			}
			segs, err := cfPattern(pair[0])
			if err != nil {
				return fail("%v", err)
			}
			b, err := cfExpand(segs, c)
			if err != nil {
				return fail("%v", err)
			}
			want[string(b)] = pair[1]
		}
		got := map[string]float64{}
		for _, m := range a.ZSet {
			got[m.Member] = m.Score
		}
		var out []string
		for _, m := range sortedKeys(want) {
			s, ok := got[m]
			if !ok {
				out = append(out, fmt.Sprintf("%s member %s: missing", p, cfShow(m)))
				continue
			}
			if s != math.Trunc(s) || math.Abs(s) > 1<<53 {
				out = append(out, fmt.Sprintf("%s member %s: score %v is not an integer", p, cfShow(m), s))
				continue
			}
			ws := want[m]
			if str, ok := ws.(string); ok {
				ws = map[string]any{"int": str}
			}
			out = append(out, cfMatch(p+" member "+cfShow(m), ws, int64(s), c)...)
		}
		for _, m := range sortedKeys(got) {
			if _, ok := want[m]; !ok {
				out = append(out, fmt.Sprintf("%s member %s: unexpected, score %v", p, cfShow(m), got[m]))
			}
		}
		return out
	}
	return fail("unsupported type %s", e.Type)
}

// cfHashPairs reads an expected hash: an object (field -> value) or an
// array of [field, value] pairs (for fields that are not text).
func cfHashPairs(v any, c cfClock) (map[string]any, error) {
	out := map[string]any{}
	add := func(f, val any) error {
		segs, err := cfPattern(f)
		if err != nil {
			return err
		}
		b, err := cfExpand(segs, c)
		if err != nil {
			return err
		}
		out[string(b)] = val
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		for f, val := range x {
			if err := add(f, val); err != nil {
				return nil, err
			}
		}
	case []any:
		for _, e := range x {
			pair, ok := e.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("hash element %s is not a [field, value] pair", cfShow(e))
			}
			if err := add(pair[0], pair[1]); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("expected hash value is neither an object nor an array of pairs")
	}
	return out, nil
}

// ---- generating expectations (update mode) ----

// cfGen turns actual values of an exact run into expected JSON values with
// placeholders. Its heuristics (instants within 400 days of t, stats day
// fields, next_due_in_ms) are why generated vectors must be reviewed.
type cfGen struct{ t, day int64 }

const cfInstantSpan = 400 * cfDayMS

func (g cfGen) instant(n int64) (string, bool) {
	if g.t == 0 || n < g.t-cfInstantSpan || n > g.t+cfInstantSpan {
		return "", false
	}
	switch d := n - g.t; {
	case d == 0:
		return "${t}", true
	case d > 0:
		return "${t+" + strconv.FormatInt(d, 10) + "}", true
	default:
		return "${t" + strconv.FormatInt(d, 10) + "}", true
	}
}

func (g cfGen) intValue(n int64) any {
	if s, ok := g.instant(n); ok {
		return map[string]any{"int": s}
	}
	return n
}

var cfDigits = regexp.MustCompile(`-?[0-9]+`)

func (g cfGen) text(s string) string {
	return cfDigits.ReplaceAllStringFunc(s, func(m string) string {
		if n, err := strconv.ParseInt(m, 10, 64); err == nil {
			if p, ok := g.instant(n); ok {
				return p
			}
		}
		return m
	})
}

// str renders bytes: text with instants as placeholders; bytes that are not
// UTF-8 (or that hold "${") as hex, joined with text by concat.
func (g cfGen) str(s string) any {
	var parts []any
	var text strings.Builder
	var bin []byte
	flushText := func() {
		if text.Len() > 0 {
			parts = append(parts, g.text(text.String()))
			text.Reset()
		}
	}
	flushBin := func() {
		if len(bin) > 0 {
			parts = append(parts, map[string]any{"hex": hex.EncodeToString(bin)})
			bin = nil
		}
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && size == 1) || strings.HasPrefix(s[i:], "${") {
			flushText()
			bin = append(bin, s[i:i+size]...)
		} else {
			flushBin()
			text.WriteString(s[i : i+size])
		}
		i += size
	}
	flushText()
	flushBin()
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0]
	}
	return map[string]any{"concat": parts}
}

func (g cfGen) reply(v any) any {
	switch x := v.(type) {
	case int64:
		return g.intValue(x)
	case string:
		return g.str(x)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = g.reply(e)
		}
		return out
	case nil:
		return nil
	}
	return fmt.Sprintf("<unsupported %T>", v)
}

// scriptSpecific marks the reply values an exact run cannot tell from
// plain integers: dequeue's and complete's next_due_in_ms (a remaining
// duration) and daily-stats' day numbers.
func (g cfGen) scriptSpecific(script string, r any) {
	arr, ok := r.([]any)
	if !ok {
		return
	}
	switch script {
	case "dequeue", "complete":
		if len(arr) > 1 {
			if n, ok := arr[1].(int64); ok && n > 0 {
				arr[1] = map[string]any{"int": "${wait:" + strconv.FormatInt(n, 10) + "}"}
			}
		}
	case "daily-stats":
		for i := 0; i < len(arr); i += 6 {
			if n, ok := arr[i].(int64); ok {
				arr[i] = map[string]any{"int": g.dayText(n)}
			}
		}
	}
}

func (g cfGen) dayText(n int64) string {
	switch d := n - g.day; {
	case d == 0:
		return "${day}"
	case d > 0:
		return fmt.Sprintf("${day+%d}", d)
	default:
		return fmt.Sprintf("${day%d}", d)
	}
}

var cfDayField = regexp.MustCompile(`^([a-z_]+):([0-9]+)$`)

func (g cfGen) field(f string) (any, bool) {
	if m := cfDayField.FindStringSubmatch(f); m != nil && g.day != 0 {
		if n, err := strconv.ParseInt(m[2], 10, 64); err == nil && n >= g.day-400 && n <= g.day+400 {
			return m[1] + ":" + g.dayText(n), true
		}
	}
	s := g.str(f)
	str, ok := s.(string)
	return s, ok && str == f
}

func (g cfGen) key(v keyspace.Value) cfKey {
	k := cfKey{Type: v.Type, TTL: v.TTL}
	switch v.Type {
	case keyspace.TypeString:
		k.Value = g.str(v.String)
	case keyspace.TypeList:
		l := make([]any, len(v.List))
		for i, e := range v.List {
			l[i] = g.str(e)
		}
		k.Value = l
	case keyspace.TypeSet:
		l := make([]any, len(v.Set))
		for i, e := range v.Set {
			l[i] = g.str(e)
		}
		k.Value = l
	case keyspace.TypeHash:
		obj := map[string]any{}
		var pairs []any
		plain := true
		for _, f := range sortedKeys(v.Hash) {
			name, ok := g.field(f)
			if !ok {
				plain = false
			}
			pairs = append(pairs, []any{name, g.str(v.Hash[f])})
			if s, isStr := name.(string); isStr {
				obj[s] = g.str(v.Hash[f])
			}
		}
		if plain {
			k.Value = obj
		} else {
			k.Value = pairs
		}
	case keyspace.TypeZSet:
		l := make([]any, len(v.ZSet))
		for i, m := range v.ZSet {
			var score any = m.Score
			if m.Score == math.Trunc(m.Score) {
				n := int64(m.Score)
				score = n
				if s, ok := g.instant(n); ok {
					score = s
				}
			}
			l[i] = []any{g.str(m.Member), score}
		}
		k.Value = l
	}
	return k
}

func (g cfGen) keyspace(s cfSnap) map[string]cfKey {
	out := map[string]cfKey{}
	for k, v := range s {
		out[k] = g.key(v)
	}
	return out
}

// ---- writing vector files ----

// cfJSON renders v as one line of JSON with a space after each comma and
// colon, object keys sorted.
func cfJSON(v any) string {
	switch x := v.(type) {
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cfJSON(e)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		parts := make([]string, 0, len(x))
		for _, k := range sortedKeys(x) {
			parts = append(parts, cfJSON(k)+": "+cfJSON(x[k]))
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// cfReplyJSON renders a reply; dequeue-shaped replies get one line per task.
func cfReplyJSON(script string, v any) string {
	arr, ok := v.([]any)
	if !ok || (script != "dequeue" && script != "complete") || len(arr) <= 3 || (len(arr)-3)%9 != 0 {
		return cfJSON(v)
	}
	var b strings.Builder
	b.WriteString("[" + cfJSON(arr[0]) + ", " + cfJSON(arr[1]) + ", " + cfJSON(arr[2]))
	for i := 3; i < len(arr); i += 9 {
		b.WriteString(",\n       ")
		s := cfJSON(arr[i : i+9])
		b.WriteString(s[1 : len(s)-1])
	}
	b.WriteString("]")
	return b.String()
}

func cfWriteKeyspace(b *strings.Builder, ks map[string]cfKey, indent string) {
	if len(ks) == 0 {
		b.WriteString("{}")
		return
	}
	b.WriteString("{\n")
	names := sortedKeys(ks)
	for i, k := range names {
		v := ks[k]
		fmt.Fprintf(b, "%s  %s: {\"type\": %s, \"ttl\": %v, \"value\": %s}", indent, cfJSON(k), cfJSON(v.Type), v.TTL, cfJSON(v.Value))
		if i < len(names)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString(indent + "}")
}

func cfWriteArgs(b *strings.Builder, args []json.RawMessage) {
	nested := false
	for _, a := range args {
		if bytes.HasPrefix(bytes.TrimSpace(a), []byte("[")) {
			nested = true
		}
	}
	b.WriteString("[")
	for i, a := range args {
		var av any
		if err := cfDecode(a, &av); err != nil {
			panic(err)
		}
		s := cfJSON(av)
		if i > 0 {
			if nested && strings.HasPrefix(s, "[") {
				b.WriteString(",\n       ")
			} else {
				b.WriteString(", ")
			}
		}
		b.WriteString(s)
	}
	b.WriteString("]")
}

func cfEncodeVector(v *cfVector) []byte {
	var b strings.Builder
	b.WriteString("{\n")
	fmt.Fprintf(&b, "  \"format\": %s,\n", cfJSON(v.Format))
	fmt.Fprintf(&b, "  \"name\": %s,\n", cfJSON(v.Name))
	fmt.Fprintf(&b, "  \"description\": %s,\n", cfJSON(v.Description))
	fmt.Fprintf(&b, "  \"clock_start_ms\": %d,\n", v.ClockStartMS)
	b.WriteString("  \"steps\": [\n")
	for i, st := range v.Steps {
		var fields []string
		if st.Note != "" {
			fields = append(fields, `"note": `+cfJSON(st.Note))
		}
		head := ""
		if st.AdvanceMS != 0 {
			head = fmt.Sprintf(`"advance_ms": %d, `, st.AdvanceMS)
		}
		if st.Command != nil {
			var cmd strings.Builder
			cmd.WriteString(head + fmt.Sprintf(`"queue": %s, "command": `, cfJSON(st.Queue)))
			cfWriteArgs(&cmd, st.Command)
			fields = append(fields, cmd.String())
		} else {
			head += fmt.Sprintf(`"script": %s, "queue": %s,`, cfJSON(st.Script), cfJSON(st.Queue))
			fields = append(fields, head)
			var args strings.Builder
			args.WriteString(`"args": `)
			cfWriteArgs(&args, st.Args)
			fields = append(fields, args.String())
		}
		if st.Command != nil {
			// no expectation
		} else if st.Error != "" {
			fields = append(fields, `"error": `+cfJSON(st.Error))
		} else {
			var r any
			if err := cfDecode(st.Reply, &r); err != nil {
				panic(err)
			}
			fields = append(fields, `"reply": `+cfReplyJSON(st.Script, r))
		}
		if st.Keyspace != nil {
			var ks strings.Builder
			ks.WriteString(`"keyspace": `)
			cfWriteKeyspace(&ks, st.Keyspace, "     ")
			fields = append(fields, ks.String())
		}
		b.WriteString("    {")
		for j, f := range fields {
			if j > 0 {
				if strings.HasSuffix(fields[j-1], ",") {
					b.WriteString("\n     ")
				} else {
					b.WriteString(",\n     ")
				}
			}
			b.WriteString(f)
		}
		b.WriteString("}")
		if i < len(v.Steps)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ],\n")
	b.WriteString("  \"keyspace\": ")
	cfWriteKeyspace(&b, v.Keyspace, "  ")
	b.WriteString("\n}\n")
	return []byte(b.String())
}

// ---- engines ----

// cfEngine runs script calls and reads the keyspace of one scenario run.
type cfEngine interface {
	name() string
	// start returns the clock binding of a new scenario run.
	start(t *testing.T, v *cfVector) cfClock
	advance(ms int64)
	// call returns the reply, or the error code of a deliberate error reply.
	call(t *testing.T, queue, script string, args []string) (reply any, code string)
	// command sends a raw setup command.
	command(t *testing.T, args []string)
	// queue returns the key builder of a vector queue.
	queue(t *testing.T, name string) keys.Queue
	// snapshot returns every luaq key of the run, named as in the vector.
	snapshot(t *testing.T) cfSnap
	// today is the server's current stats day.
	today(t *testing.T) int64
	// lagMS is how far the engine's clock is now past logical (Unix ms):
	// no instant of a reply or keyspace read so far can lag more. 0 for an
	// exact runner, and for a real-server run with tolerance 0 (the
	// runner's self-check).
	lagMS(t *testing.T, logical int64) int64
}

type cfHarness struct {
	env *scripttest.Env
}

func (h *cfHarness) name() string { return "scripttest" }

func (h *cfHarness) start(t *testing.T, v *cfVector) cfClock {
	h.env = scripttest.New(t)
	h.env.SetNow(time.UnixMilli(v.ClockStartMS))
	return newCFClock(v.ClockStartMS, 0)
}

func (h *cfHarness) advance(ms int64) { h.env.Advance(time.Duration(ms) * time.Millisecond) }

func (h *cfHarness) call(t *testing.T, queue, name string, args []string) (any, string) {
	t.Helper()
	res := runOn(t, h.env, queue, name, args...)
	if res.Err == nil {
		return res.Value, ""
	}
	var se *scripttest.ScriptError
	if !errors.As(res.Err, &se) || se.Raw {
		t.Fatalf("scripttest: %s: raw error %v", name, res.Err)
	}
	code, _, _ := strings.Cut(se.Msg, " ")
	return nil, code
}

func (h *cfHarness) command(t *testing.T, args []string) {
	t.Helper()
	if err := h.env.Client().Do(context.Background(), toAny(args)...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("scripttest: command %q: %v", args, err)
	}
}

func (h *cfHarness) queue(t *testing.T, name string) keys.Queue { return queueKeys(t, name) }

func (h *cfHarness) snapshot(t *testing.T) cfSnap {
	t.Helper()
	// Every key, not only luaq:*: a stray key is a failure too.
	return cfSnap(h.env.Snapshot(t))
}

func (h *cfHarness) today(*testing.T) int64 { return h.env.Now().UnixMilli() / cfDayMS }

func (h *cfHarness) lagMS(*testing.T, int64) int64 { return 0 }

type cfServer struct {
	client *redis.Client
	l      *loader.Loader
	tol    int64
	prefix string // queue name prefix of the current run
}

func (s *cfServer) name() string { return "redis-server" }

func (s *cfServer) serverMS(t *testing.T) int64 {
	t.Helper()
	now, err := s.client.Time(context.Background()).Result()
	if err != nil {
		t.Fatalf("redis-server: TIME: %v", err)
	}
	return now.UnixMilli()
}

func (s *cfServer) start(t *testing.T, v *cfVector) cfClock {
	s.prefix = fmt.Sprintf("cf%08x.", rand.Uint32())
	prefix := s.prefix
	t.Cleanup(func() { s.clear(prefix) })
	return newCFClock(s.serverMS(t), s.tol)
}

func (s *cfServer) advance(ms int64) { time.Sleep(time.Duration(ms) * time.Millisecond) }

func (s *cfServer) call(t *testing.T, queue, name string, args []string) (any, string) {
	t.Helper()
	ctx := context.Background()
	q := queueKeys(t, s.prefix+queue)
	v, err := s.l.Run(ctx, q, name, args...)
	if errors.Is(err, loader.ErrArgCount) {
		// The vector tests the script's own argument count check, which
		// the loader does before sending: send EVALSHA directly.
		sc := script(t, name)
		v, err = s.client.EvalSha(ctx, sc.SHA, q.Keys(sc.Roles()), toAny(args)...).Result()
		if errors.Is(err, redis.Nil) {
			return nil, ""
		}
		var rerr redis.Error
		if errors.As(err, &rerr) {
			code, rest, _ := strings.Cut(rerr.Error(), " ")
			if code == "ERR" && strings.HasPrefix(rest, "LQ_") {
				code, _, _ = strings.Cut(rest, " ")
			}
			if strings.HasPrefix(code, "LQ_") {
				return nil, code
			}
		}
	}
	if err == nil {
		return v, ""
	}
	var se *loader.ScriptError
	if !errors.As(err, &se) {
		t.Fatalf("redis-server: %s: %v", name, err)
	}
	return nil, se.Code
}

func (s *cfServer) command(t *testing.T, args []string) {
	t.Helper()
	if err := s.client.Do(context.Background(), toAny(args)...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatalf("redis-server: command %q: %v", args, err)
	}
}

func (s *cfServer) queue(t *testing.T, name string) keys.Queue { return queueKeys(t, s.prefix+name) }

// snapshot returns the run's keys, the queue name prefix removed.
func (s *cfServer) snapshot(t *testing.T) cfSnap {
	t.Helper()
	snap, err := keyspace.Dump(context.Background(), s.client, keys.Prefix+"*")
	if err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	own := keys.Prefix + "{" + s.prefix
	out := cfSnap{}
	for k, v := range snap {
		if rest, ok := strings.CutPrefix(k, own); ok {
			out[keys.Prefix+"{"+rest] = v
		}
	}
	return out
}

// clear deletes the keys of the run with queue name prefix prefix.
func (s *cfServer) clear(prefix string) {
	ctx := context.Background()
	snap, err := keyspace.Dump(ctx, s.client, keys.Prefix+"*")
	if err != nil {
		return
	}
	own := keys.Prefix + "{" + prefix
	for k := range snap {
		if strings.HasPrefix(k, own) {
			s.client.Del(ctx, k)
		}
	}
}

func (s *cfServer) today(t *testing.T) int64 { return s.serverMS(t) / cfDayMS }

func (s *cfServer) lagMS(t *testing.T, logical int64) int64 {
	if s.tol == 0 {
		return 0
	}
	return s.serverMS(t) - logical
}

// ---- running a scenario ----

// cfRun runs one scenario on e and returns the mismatches. With gen set it
// also records the actual outcomes into v (update mode).
func cfRun(t *testing.T, e cfEngine, v *cfVector, gen bool) []string {
	t.Helper()
	c := e.start(t, v)
	g := cfGen{t: v.ClockStartMS, day: v.ClockStartMS / cfDayMS}
	var out []string
	// A real server's instants lag the logical clock by at most the lag
	// measured after they were computed: a slow step (a loaded machine)
	// widens the tolerance to what it observed, never narrows it.
	advanced := int64(0)
	widen := func() { c.tol = max(c.tol, e.lagMS(t, c.t+advanced)) }
	for i := range v.Steps {
		st := &v.Steps[i]
		what := st.Script
		if st.Command != nil {
			what = "command"
		}
		where := fmt.Sprintf("step %d (%s", i+1, what)
		if st.Note != "" {
			where += ": " + st.Note
		}
		where += ")"
		if st.AdvanceMS > 0 {
			e.advance(st.AdvanceMS)
			advanced += st.AdvanceMS
		}
		if st.Command != nil {
			q := e.queue(t, st.Queue)
			args, err := cfArgs(st.Command, c, &q)
			if err != nil {
				t.Fatalf("%s: %s: command: %v", v.file, where, err)
			}
			e.command(t, args)
			if st.Keyspace != nil {
				snap := e.snapshot(t)
				widen()
				if gen {
					st.Keyspace = g.keyspace(snap)
				}
				out = append(out, cfMatchKeyspace(where+": keyspace", st.Keyspace, snap, c)...)
			}
			continue
		}
		args, err := cfArgs(st.Args, c, nil)
		if err != nil {
			t.Fatalf("%s: %s: args: %v", v.file, where, err)
		}
		var before cfSnap
		if st.Error != "" || gen {
			before = e.snapshot(t)
		}
		reply, code := e.call(t, st.Queue, st.Script, args)
		widen()
		if gen {
			st.Reply, st.Error = nil, ""
			if code != "" {
				st.Error = code
			} else {
				r := g.reply(reply)
				g.scriptSpecific(st.Script, r)
				st.Reply = json.RawMessage(cfJSON(r))
			}
		}
		switch {
		case st.Error != "":
			if code != st.Error {
				out = append(out, fmt.Sprintf("%s: got %s, want error %s", where, cfOutcome(reply, code), st.Error))
			}
			if after := e.snapshot(t); !cmp.Equal(before, after) {
				out = append(out, fmt.Sprintf("%s: the error changed the keyspace (-before +after):\n%s", where, cmp.Diff(before, after)))
			}
		case code != "":
			out = append(out, fmt.Sprintf("%s: got error %s, want a reply", where, code))
		default:
			var exp any
			if err := cfDecode(st.Reply, &exp); err != nil {
				t.Fatalf("%s: %s: reply: %v", v.file, where, err)
			}
			out = append(out, cfMatch(where+": reply", exp, reply, c)...)
		}
		if st.Keyspace != nil {
			snap := e.snapshot(t)
			widen()
			if gen {
				st.Keyspace = g.keyspace(snap)
			}
			out = append(out, cfMatchKeyspace(where+": keyspace", st.Keyspace, snap, c)...)
		}
	}
	snap := e.snapshot(t)
	widen()
	if gen {
		v.Keyspace = g.keyspace(snap)
	}
	out = append(out, cfMatchKeyspace("final keyspace", v.Keyspace, snap, c)...)
	if len(out) > 0 && e.today(t) != c.day {
		// The UTC day changed during the run: day placeholders cannot
		// match; the caller runs the scenario again.
		return []string{cfDayChanged}
	}
	return out
}

const cfDayChanged = "the UTC day changed during the run"

func cfOutcome(reply any, code string) string {
	if code != "" {
		return "error " + code
	}
	return "reply " + cfShow(reply)
}

func cfReport(t *testing.T, e cfEngine, v *cfVector, bad []string) {
	t.Helper()
	if len(bad) == 0 {
		return
	}
	t.Errorf("%s on %s: %d mismatch(es) with %s:\n\t%s", v.Name, e.name(), len(bad), v.file, strings.Join(bad, "\n\t"))
}

func cfToleranceMS(t *testing.T) int64 {
	if s := os.Getenv("LUAQ_CONFORMANCE_TOLERANCE_MS"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			t.Fatalf("LUAQ_CONFORMANCE_TOLERANCE_MS=%q is not a non-negative integer", s)
		}
		return n
	}
	return cfTolerance
}

// TestConformance runs every vector on scripttest and on a real redis-server.
func TestConformance(t *testing.T) {
	vectors := cfLoadVectors(t)
	if *updateConformance {
		for _, v := range vectors {
			t.Run("update/"+v.Name, func(t *testing.T) {
				bad := cfRun(t, &cfHarness{}, v, true)
				if len(bad) > 0 {
					t.Fatalf("generated vector does not match itself:\n\t%s", strings.Join(bad, "\n\t"))
				}
				if err := os.WriteFile(v.file, cfEncodeVector(v), 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}
		return
	}
	steps := 0
	for _, v := range vectors {
		steps += len(v.Steps)
	}
	t.Logf("%d vectors, %d steps", len(vectors), steps)

	t.Run("scripttest", func(t *testing.T) {
		for _, v := range vectors {
			t.Run(v.Name, func(t *testing.T) {
				t.Parallel()
				e := &cfHarness{}
				cfReport(t, e, v, cfRun(t, e, v, false))
			})
		}
	})

	t.Run("redis-server", func(t *testing.T) {
		srv := redistest.Start(t)
		client := srv.Client(t)
		l := loader.New(client, testBundle(t))
		if err := l.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		tol := cfToleranceMS(t)
		for _, v := range vectors {
			t.Run(v.Name, func(t *testing.T) {
				t.Parallel()
				e := &cfServer{client: client, l: l, tol: tol}
				bad := cfRun(t, e, v, false)
				if len(bad) == 1 && bad[0] == cfDayChanged {
					t.Logf("%s: the UTC day changed during the run; running it again", v.Name)
					bad = cfRun(t, e, v, false)
				}
				cfReport(t, e, v, bad)
			})
		}
	})
}

// TestConformanceVectorsCover checks that the vectors call every script
// of the bundle at least once with a reply and once with an error code.
func TestConformanceVectorsCover(t *testing.T) {
	if *updateConformance {
		t.Skip("updating")
	}
	replies, errs := map[string]bool{}, map[string]bool{}
	for _, v := range cfLoadVectors(t) {
		for _, st := range v.Steps {
			if st.Command != nil {
				continue
			}
			if st.Error != "" {
				errs[st.Script] = true
			} else {
				replies[st.Script] = true
			}
		}
	}
	var missing []string
	for _, name := range allScripts {
		if !replies[name] {
			missing = append(missing, name+" (reply)")
		}
		if !errs[name] {
			missing = append(missing, name+" (error)")
		}
	}
	if len(missing) > 0 {
		t.Errorf("no conformance step for: %s", strings.Join(missing, ", "))
	}
}
