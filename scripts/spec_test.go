package scripts_test

// Tests that SPEC.md, the manifest and the scripts agree. SPEC.md is written
// for people, but its tables and per-script entries follow fixed shapes so
// that these tests can read them:
//
//   - section "Keys": table rows "| `role` | type | ... | written by | ... |";
//   - section "The task record": rows "| n | `field` | ... |";
//   - section "Error codes": rows "| `LQ_CODE` | meaning | ... |";
//   - section "States and transitions": a state table and a transition
//     table whose third column names scripts;
//   - section "Scripts": one "### `name`" entry per script with the lines
//     "- KEYS:", "- ARGV:" and "- Errors:" listing backticked names in order;
//   - section "Worked example": a text block replayed against the scripts.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/scripttest"
)

const specFile = "SPEC.md"

// specDoc returns SPEC.md.
func specDoc(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(specFile)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// specBundle returns the embedded bundle.
func specBundle(t *testing.T) *scripts.Bundle {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var specHeading = regexp.MustCompile(`^## (?:\d+\. )?(.+)$`)

// specSection returns the body of the level-2 section titled title (its
// number, if any, ignored), up to the next level-2 heading.
func specSection(t *testing.T, doc, title string) string {
	t.Helper()
	var body []string
	in := false
	for _, line := range strings.Split(doc, "\n") {
		if m := specHeading.FindStringSubmatch(line); m != nil {
			if in {
				break
			}
			in = m[1] == title
			continue
		}
		if in {
			body = append(body, line)
		}
	}
	if !in {
		t.Fatalf("%s has no section %q", specFile, title)
	}
	return strings.Join(body, "\n")
}

// specRows returns the cells of every table body row in text (header and
// separator rows excluded).
func specRows(text string) [][]string {
	var rows [][]string
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			continue
		}
		if strings.HasPrefix(line, "|---") {
			continue
		}
		if i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "|---") {
			continue // a header row
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for j := range cells {
			cells[j] = strings.TrimSpace(cells[j])
		}
		rows = append(rows, cells)
	}
	return rows
}

var specTicks = regexp.MustCompile("`([^`]*)`")

// specTicked returns the backticked names of s, in order.
func specTicked(s string) []string {
	var out []string
	for _, m := range specTicks.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

// specEntries returns the "### `name`" entries of the Scripts section.
func specEntries(t *testing.T, doc string) map[string]string {
	t.Helper()
	sec := specSection(t, doc, "Scripts")
	entries := map[string]string{}
	var name string
	for _, line := range strings.Split(sec, "\n") {
		if rest, ok := strings.CutPrefix(line, "### "); ok {
			ticked := specTicked(rest)
			if len(ticked) != 1 {
				t.Fatalf("script heading %q: want one backticked name", line)
			}
			name = ticked[0]
			if _, dup := entries[name]; dup {
				t.Fatalf("script %s has two entries", name)
			}
			entries[name] = ""
			continue
		}
		if name != "" {
			entries[name] += line + "\n"
		}
	}
	return entries
}

// specListLine returns the backticked names on the entry's line that starts
// with prefix ("- KEYS:" ...).
func specListLine(t *testing.T, script, entry, prefix string) []string {
	t.Helper()
	for _, line := range strings.Split(entry, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return specTicked(rest)
		}
	}
	t.Errorf("%s entry of %s has no %q line", specFile, script, prefix)
	return nil
}

// TestSpecScripts checks every script's entry against its manifest entry:
// KEYS roles and ARGV names in order, and the error codes.
func TestSpecScripts(t *testing.T) {
	doc := specDoc(t)
	b := specBundle(t)
	entries := specEntries(t, doc)
	for _, s := range b.Scripts() {
		entry, ok := entries[s.Name]
		if !ok {
			t.Errorf("%s has no entry for script %s", specFile, s.Name)
			continue
		}
		delete(entries, s.Name)
		if diff := cmp.Diff(s.Roles(), specListLine(t, s.Name, entry, "- KEYS:")); diff != "" {
			t.Errorf("%s KEYS in %s differ from the manifest (-manifest +spec):\n%s", s.Name, specFile, diff)
		}
		var args []string
		for _, a := range s.Args {
			args = append(args, a.Name)
		}
		if diff := cmp.Diff(args, specListLine(t, s.Name, entry, "- ARGV:")); diff != "" {
			t.Errorf("%s ARGV in %s differ from the manifest (-manifest +spec):\n%s", s.Name, specFile, diff)
		}
		want := append([]string(nil), s.Errors...)
		got := specListLine(t, s.Name, entry, "- Errors:")
		sort.Strings(want)
		sort.Strings(got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s error codes in %s differ from the manifest (-manifest +spec):\n%s", s.Name, specFile, diff)
		}
	}
	for name := range entries {
		t.Errorf("%s has an entry for %s, which is not a script of the bundle", specFile, name)
	}
}

// TestSpecErrorCodes checks that the error table lists every code of the
// manifest with the manifest's meaning, and nothing else.
func TestSpecErrorCodes(t *testing.T) {
	doc := specDoc(t)
	m, err := specBundle(t).Manifest()
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, r := range specRows(specSection(t, doc, "Error codes")) {
		if ticked := specTicked(r[0]); len(ticked) == 1 && len(r) > 1 {
			rows[ticked[0]] = r[1]
		}
	}
	for _, e := range m.Errors {
		meaning, ok := rows[e.Code]
		switch {
		case !ok:
			t.Errorf("%s error table lacks %s", specFile, e.Code)
		case meaning != e.Meaning:
			t.Errorf("%s: %s means %q, the manifest says %q", specFile, e.Code, meaning, e.Meaning)
		}
		delete(rows, e.Code)
	}
	for code := range rows {
		t.Errorf("%s error table lists %s, which the bundle does not have", specFile, code)
	}
}

// specKeyRow is one row of the key tables.
type specKeyRow struct {
	typ       string
	writtenBy []string
}

func specKeyRows(t *testing.T, doc string) map[string]specKeyRow {
	t.Helper()
	out := map[string]specKeyRow{}
	for _, r := range specRows(specSection(t, doc, "Keys")) {
		ticked := specTicked(r[0])
		if len(ticked) != 1 || len(r) < 5 {
			t.Fatalf("key table row %q: want `role` | type | members | written by | lifetime", strings.Join(r, " | "))
		}
		if _, dup := out[ticked[0]]; dup {
			t.Errorf("key table lists %s twice", ticked[0])
		}
		out[ticked[0]] = specKeyRow{typ: r[1], writtenBy: specTicked(r[3])}
	}
	return out
}

// TestSpecKeyTable checks that the key tables list exactly the roles the
// scripts use, that every script said to write a key declares it, and that
// every key has the Redis type the table says.
func TestSpecKeyTable(t *testing.T) {
	doc := specDoc(t)
	b := specBundle(t)
	rows := specKeyRows(t, doc)
	used := map[string]bool{}
	for _, s := range b.Scripts() {
		for _, r := range s.Roles() {
			used[r] = true
			if _, ok := rows[r]; !ok {
				t.Errorf("script %s uses role %s, which %s's key table lacks", s.Name, r, specFile)
			}
		}
	}
	for role, row := range rows {
		if !used[role] {
			t.Errorf("%s's key table lists %s, which no script uses", specFile, role)
		}
		if len(row.writtenBy) == 0 {
			t.Errorf("key %s: no script writes it?", role)
		}
		for _, name := range row.writtenBy {
			s, err := b.Script(name)
			if err != nil {
				t.Errorf("key %s is written by %q: %v", role, name, err)
				continue
			}
			if !specContains(s.Roles(), role) {
				t.Errorf("key %s is said to be written by %s, which does not declare it in KEYS", role, name)
			}
		}
	}
	if !strings.Contains(doc, "`luaq:{<queue>}:<role>`") || scripts.KeyPattern != "luaq:{<queue>}:<role>" {
		t.Errorf("%s does not give the key pattern %s", specFile, scripts.KeyPattern)
	}

	// Bring every key into existence and compare its type with the table.
	env := scripttest.New(t)
	q, err := keys.ForQueue("kt")
	if err != nil {
		t.Fatal(err)
	}
	call := func(name string, args ...string) any {
		t.Helper()
		s, err := b.Script(name)
		if err != nil {
			t.Fatal(err)
		}
		res := env.Eval(t, s.Source, q.Keys(s.Roles()), args...)
		if res.Err != nil {
			t.Fatalf("%s %q: %v", name, args, res.Err)
		}
		return res.Value
	}
	task := func(id, retention, processIn, expireIn, unique, uniqueTTL string) []string {
		return []string{id, "t", "p", "3", "0", "0", "0", processIn, "0", expireIn, "0", retention, unique, uniqueTTL}
	}
	args := []string{"5"}
	args = append(args, task("a", "60000", "0", "0", "", "0")...)
	args = append(args, task("c", "0", "0", "0", "", "0")...)
	args = append(args, task("e", "0", "0", "0", "", "0")...)
	args = append(args, task("f", "0", "0", "0", "", "0")...)
	args = append(args, task("b", "0", "60000", "120000", "u", "60000")...)
	call("enqueue", args...)
	call("dequeue", "3", "30000", "0", "0", "0")         // a, c, e: tokens 1, 2, 3
	call("complete", "a", "1", "result", "0", "0", "0")  // a: completed, with result
	call("retry-or-archive", "c", "2", "boom", "0", "1") // c: archived, with error
	call("register", "w1", "{}", "60000")                // the worker registry
	call("janitor-lock", "acquire", "j1", "60000")       // the lock
	ctx := context.Background()
	// A stale entry: s expires behind a backlog longer than clean's scan
	// budget (100,000 list elements).
	filler := make([]any, 100000)
	for i := range filler {
		filler[i] = "f" + strconv.Itoa(i)
	}
	if err := env.Client().RPush(ctx, q.Key("pending"), filler...).Err(); err != nil {
		t.Fatal(err)
	}
	call("enqueue", append([]string{"1"}, task("s", "0", "0", "10", "", "0")...)...)
	env.Advance(10 * time.Millisecond)
	call("clean", "j1", "100", "0")
	for role, row := range rows {
		got, err := env.Client().Type(ctx, q.Key(role)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != row.typ {
			t.Errorf("key %s has type %s, %s says %s", role, got, specFile, row.typ)
		}
	}
}

func specContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var specRecordNameRE = regexp.MustCompile(`[a-z_]+`)

// specRecordFormat reads the field names of the record format documented in
// lib/record.lua ("-- Format:" and the lines after it, up to the first
// field description), and the literal format lines.
func specRecordFormat(t *testing.T) (fields []string, format string) {
	t.Helper()
	src, err := scripts.ReadSource("lib/record.lua")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(src, "\n")
	for i, line := range lines {
		if !strings.HasPrefix(line, "-- Format:") {
			continue
		}
		for _, l := range lines[i+1:] {
			rest, ok := strings.CutPrefix(l, "--   ")
			if !ok {
				if format == "" {
					continue // prose before the format lines
				}
				break
			}
			rest = strings.TrimSpace(rest)
			format += rest
			fields = append(fields, specRecordNameRE.FindAllString(rest, -1)...)
		}
		break
	}
	if len(fields) == 0 {
		t.Fatal("lib/record.lua: no format lines after '-- Format:'")
	}
	return fields, format
}

// TestSpecRecordFields checks that SPEC.md describes the record of
// lib/record.lua field by field, in order, and that the record library
// decodes its numbers in the documented order.
func TestSpecRecordFields(t *testing.T) {
	doc := specDoc(t)
	want, format := specRecordFormat(t)
	sec := specSection(t, doc, "The task record")
	var got []string
	for _, r := range specRows(sec) {
		if len(r) < 2 {
			continue
		}
		if n, err := strconv.Atoi(r[0]); err != nil || n != len(got)+1 {
			t.Errorf("record table row %q: want number %d first", strings.Join(r, " | "), len(got)+1)
		}
		if ticked := specTicked(r[1]); len(ticked) == 1 {
			got = append(got, ticked[0])
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("record fields of %s differ from lib/record.lua (-lib +spec):\n%s", specFile, diff)
	}
	if !strings.Contains(sec, "\n"+format+"\n") {
		t.Errorf("%s's record section does not show the format line %s", specFile, format)
	}

	// The names the decoder uses for the eight numbers must be those fields
	// (the comment may add a unit suffix such as _ms).
	src, err := scripts.ReadSource("lib/record.lua")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`local RECORD_NUMBERS = \{([^}]*)\}`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("lib/record.lua has no RECORD_NUMBERS")
	}
	numbers := regexp.MustCompile(`'([a-z_]+)'`).FindAllStringSubmatch(m[1], -1)
	if len(numbers) != 8 {
		t.Fatalf("RECORD_NUMBERS has %d names, the format 8 numbers", len(numbers))
	}
	for i, n := range numbers {
		if want[i] != n[1] && want[i] != n[1]+"_ms" {
			t.Errorf("record number %d: decoder calls it %s, the format %s", i+1, n[1], want[i])
		}
	}
}

// TestSpecStates checks the state table against the states task-info
// reports (plus "gone"), and that the transition table names only scripts.
func TestSpecStates(t *testing.T) {
	doc := specDoc(t)
	b := specBundle(t)
	info, err := b.Script("task-info")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{}
	for _, m := range regexp.MustCompile(`'([a-z]+)'`).FindAllStringSubmatch(info.Reply, -1) {
		want = append(want, m[1])
	}
	want = append(want, "gone")
	sec := specSection(t, doc, "States and transitions")
	var states []string
	transitions := 0
	for _, r := range specRows(sec) {
		if len(r) == 3 {
			states = append(states, r[0])
			continue
		}
		if len(r) != 4 {
			t.Errorf("row %q: want 3 cells (state table) or 4 (transitions)", strings.Join(r, " | "))
			continue
		}
		transitions++
		names := specTicked(r[2])
		if len(names) == 0 {
			t.Errorf("transition %s -> %s names no script", r[0], r[1])
		}
		for _, name := range names {
			if _, err := b.Script(name); err != nil {
				t.Errorf("transition %s -> %s: %v", r[0], r[1], err)
			}
		}
	}
	sort.Strings(want)
	sort.Strings(states)
	if diff := cmp.Diff(want, states); diff != "" {
		t.Errorf("states of %s differ from task-info's plus gone (-want +spec):\n%s", specFile, diff)
	}
	if transitions == 0 {
		t.Error("no transition table")
	}
}

// TestSpecVersioning checks the version, schema, stamp and other constants
// SPEC.md quotes from the bundle.
func TestSpecVersioning(t *testing.T) {
	doc := specDoc(t)
	b := specBundle(t)
	src, err := scripts.ReadSource("lib/schema.lua")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^local SCHEMA = (\d+)$`).FindStringSubmatch(src)
	if m == nil {
		t.Fatal("lib/schema.lua has no SCHEMA")
	}
	if want := fmt.Sprintf("bundle\nversion %s, data schema %s.", b.Version, m[1]); !strings.Contains(doc, want) {
		t.Errorf("%s does not say %q", specFile, want)
	}
	if !strings.Contains(doc, "`-- luaq bundle <version>: <name>`") {
		t.Errorf("%s does not describe the version stamp", specFile)
	}
	for _, s := range b.Scripts() {
		first, rest, _ := strings.Cut(s.Source, "\n")
		if want := fmt.Sprintf("-- luaq bundle %s: %s", b.Version, s.Name); first != want {
			t.Errorf("%s starts with %q, the spec says %q", s.Name, first, want)
		}
		if !strings.HasPrefix(rest, "local K = {") {
			t.Errorf("%s's second line is not the K table", s.Name)
		}
	}
	wake, err := scripts.ReadSource("lib/wake.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(wake, "WAKE_TTL_MS = '60000'") || !strings.Contains(doc, "`PEXPIRE 60000`") {
		t.Error("the wake TTL of lib/wake.lua and SPEC.md differ")
	}
	// Defaults of the meta table.
	defaults := map[string]string{}
	for _, lib := range []string{"lib/archive.lua", "lib/stats.lua"} {
		src, err := scripts.ReadSource(lib)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`(?m)^local ([A-Z_]+_DEFAULT) = (\d+)`).FindAllStringSubmatch(src, -1) {
			defaults[m[1]] = m[2]
		}
	}
	meta := map[string]string{}
	for _, r := range specRows(specSection(t, doc, "The meta hash")) {
		if ticked := specTicked(r[0]); len(ticked) == 1 && len(r) == 4 {
			meta[ticked[0]] = strings.Fields(r[3] + " x")[0]
		}
	}
	for field, constant := range map[string]string{
		"archive_max": "ARCHIVE_MAX_DEFAULT", "archive_age_ms": "ARCHIVE_AGE_MS_DEFAULT", "stats_days": "STATS_DAYS_DEFAULT",
	} {
		if meta[field] != defaults[constant] || defaults[constant] == "" {
			t.Errorf("meta %s: %s gives default %q, the bundle %q", field, specFile, meta[field], defaults[constant])
		}
	}
}

// TestSpecWorkedExample replays the worked example: each "> script ARGV"
// line is run on queue emails with the clock the section names, each
// "$ command" is sent as is, and each reply must be the line that follows.
func TestSpecWorkedExample(t *testing.T) {
	doc := specDoc(t)
	b := specBundle(t)
	sec := specSection(t, doc, "Worked example")
	clock := regexp.MustCompile(`\((\d{13})\)`).FindStringSubmatch(sec)
	if clock == nil {
		t.Fatal("the worked example names no clock (Unix ms in parentheses)")
	}
	ms, _ := strconv.ParseInt(clock[1], 10, 64)
	_, block, ok := strings.Cut(sec, "```text\n")
	if !ok {
		t.Fatal("the worked example has no text block")
	}
	block, _, _ = strings.Cut(block, "```")
	lines := strings.Split(strings.TrimRight(block, "\n"), "\n")
	if len(lines)%2 != 0 {
		t.Fatalf("the worked example has %d lines; want command and reply pairs", len(lines))
	}

	env := scripttest.New(t)
	env.SetNow(time.UnixMilli(ms))
	q, err := keys.ForQueue("emails")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < len(lines); i += 2 {
		line, want := lines[i], lines[i+1]
		var got string
		switch {
		case strings.HasPrefix(line, "> "):
			f := strings.Fields(strings.TrimPrefix(line, "> "))
			s, err := b.Script(f[0])
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			res := env.Eval(t, s.Source, q.Keys(s.Roles()), f[1:]...)
			if res.Err != nil {
				got = res.Err.Error()
			} else {
				got = specFlatten(res.Value)
			}
		case strings.HasPrefix(line, "$ "):
			f := strings.Fields(strings.TrimPrefix(line, "$ "))
			cmd := make([]any, len(f))
			for j, a := range f {
				cmd[j] = a
			}
			v, err := env.Client().Do(ctx, cmd...).Result()
			switch {
			case errors.Is(err, redis.Nil):
				got = "(nil)"
			case err != nil:
				t.Fatalf("%s: %v", line, err)
			default:
				got = specFlatten(v)
			}
			if strings.EqualFold(f[0], "HGETALL") {
				got, want = specSortPairs(got), specSortPairs(want)
			}
		default:
			t.Fatalf("worked example line %q: want '> script ...' or '$ command ...'", line)
		}
		if got != want {
			t.Errorf("%s\n got: %s\nwant: %s", line, got, want)
		}
	}
}

// specFlatten renders a reply on one line, arrays flattened.
func specFlatten(v any) string {
	switch v := v.(type) {
	case nil:
		return "(nil)"
	case []any:
		parts := make([]string, len(v))
		for i, x := range v {
			parts[i] = specFlatten(x)
		}
		return strings.Join(parts, " ")
	case map[any]any: // HGETALL over RESP3
		var parts []string
		for k, x := range v {
			parts = append(parts, specFlatten(k)+" "+specFlatten(x))
		}
		sort.Strings(parts)
		return strings.Join(parts, " ")
	case float64: // a score over RESP3; every score luaq writes is an integer
		if v == float64(int64(v)) {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

// specSortPairs sorts the field/value pairs of a flattened HGETALL reply.
func specSortPairs(s string) string {
	f := strings.Fields(s)
	var pairs []string
	for i := 0; i+1 < len(f); i += 2 {
		pairs = append(pairs, f[i]+" "+f[i+1])
	}
	sort.Strings(pairs)
	return strings.Join(pairs, " ")
}

// TestSpecWhenFull checks the table of section 16 against every script's
// WHEN FULL header: each script is listed once, in the row of its value.
func TestSpecWhenFull(t *testing.T) {
	got := map[string]string{}
	for _, r := range specRows(specSection(t, specDoc(t), "When the server is full")) {
		if len(r) < 3 {
			continue
		}
		for _, name := range specTicked(r[2]) {
			if prev, dup := got[name]; dup {
				t.Errorf("%s lists %s under both %q and %q", specFile, name, prev, r[0])
			}
			got[name] = r[0]
		}
	}
	want := map[string]string{}
	for _, s := range specBundle(t).Scripts() {
		want[s.Name] = s.WhenFull
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("%s section 16 disagrees with the headers' WHEN FULL (-headers +spec):\n%s", specFile, diff)
	}
}
