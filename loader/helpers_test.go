package loader

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/scripts"
)

// bundle loads the embedded bundle or fails the test.
func bundle(t testing.TB) *scripts.Bundle {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatalf("scripts.Load: %v", err)
	}
	return b
}

// queue returns the key builder of name or fails the test.
func queue(t testing.TB, name string) keys.Queue {
	t.Helper()
	q, err := keys.ForQueue(name)
	if err != nil {
		t.Fatalf("keys.ForQueue(%q): %v", name, err)
	}
	return q
}

// argv builds the ARGV of script from values named as in its header, in
// header order: fixed for the arguments that appear once, then one map per
// repeated group. It fails the test when a header argument has no value or a
// value names no header argument, so a changed header gives a clear message.
func argv(t testing.TB, b *scripts.Bundle, script string, fixed map[string]string, groups ...map[string]string) []string {
	t.Helper()
	s, err := b.Script(script)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	used := map[string]bool{}
	take := func(m map[string]string, a scripts.Arg) {
		v, ok := m[a.Name]
		if !ok {
			t.Fatalf("test gives no value for ARGV %s of script %s (header changed?)", a.Name, script)
		}
		used[a.Name] = true
		out = append(out, v)
	}
	for _, a := range s.Args {
		if !a.Repeated {
			take(fixed, a)
		}
	}
	for _, g := range groups {
		for _, a := range s.Args {
			if a.Repeated {
				take(g, a)
			}
		}
	}
	for _, m := range append([]map[string]string{fixed}, groups...) {
		for name := range m {
			if !used[name] {
				t.Fatalf("test gives ARGV %s, which script %s's header does not declare", name, script)
			}
		}
	}
	return out
}

// task is one enqueue group for a ready-now task with id (may be "").
func task(id string) map[string]string {
	return map[string]string{
		"id": id, "type": "email", "payload": "hello", "max_retry": "3", "timeout_ms": "0",
		"deadline_ms": "0", "process_at_ms": "0", "process_in_ms": "0",
		"expire_at_ms": "0", "expire_in_ms": "0", "expire_archive": "0", "retention_ms": "0",
		"unique_key": "", "unique_ttl_ms": "0",
	}
}

// enqueueArgs is the ARGV of an enqueue of tasks with the given ids.
func enqueueArgs(t testing.TB, b *scripts.Bundle, ids ...string) []string {
	t.Helper()
	groups := make([]map[string]string, len(ids))
	for i, id := range ids {
		groups[i] = task(id)
	}
	return argv(t, b, "enqueue", map[string]string{"count": strconv.Itoa(len(ids))}, groups...)
}

// dequeueArgs is the ARGV of a dequeue of up to count tasks.
func dequeueArgs(t testing.TB, b *scripts.Bundle, count int) []string {
	t.Helper()
	return argv(t, b, "dequeue", map[string]string{
		"count": strconv.Itoa(count), "lease_ms": "60000", "promote_limit": "100",
		"reclaim_limit": "0", "reclaim_backoff_ms": "0",
	})
}

// lease is one task of a dequeue reply.
type lease struct {
	id    string
	token string
}

// leases decodes the tasks of a dequeue reply (9 values per task after 3).
func leases(t testing.TB, v any) []lease {
	t.Helper()
	arr, err := Slice(v)
	if err != nil {
		t.Fatalf("dequeue reply: %v", err)
	}
	if len(arr) < 3 {
		t.Fatalf("dequeue reply has %d elements, want at least 3: %v", len(arr), arr)
	}
	n, err := Int(arr[0])
	if err != nil {
		t.Fatalf("dequeue reply leased: %v", err)
	}
	if want := 3 + 9*int(n); len(arr) != want {
		t.Fatalf("dequeue reply has %d elements for %d leased tasks, want %d: %v", len(arr), n, want, arr)
	}
	out := make([]lease, n)
	for i := range out {
		id, err := String(arr[3+9*i])
		if err != nil {
			t.Fatalf("dequeue reply id: %v", err)
		}
		tok, err := Int(arr[4+9*i])
		if err != nil {
			t.Fatalf("dequeue reply token: %v", err)
		}
		out[i] = lease{id: id, token: strconv.FormatInt(tok, 10)}
	}
	return out
}

// info decodes a queue-info reply into a map.
func info(t testing.TB, v any) map[string]int64 {
	t.Helper()
	arr, err := Slice(v)
	if err != nil {
		t.Fatalf("queue-info reply: %v", err)
	}
	if len(arr)%2 != 0 {
		t.Fatalf("queue-info reply has an odd number of elements: %v", arr)
	}
	out := map[string]int64{}
	for i := 0; i < len(arr); i += 2 {
		name, err := String(arr[i])
		if err != nil {
			t.Fatalf("queue-info name: %v", err)
		}
		n, err := Int(arr[i+1])
		if err != nil {
			t.Fatalf("queue-info %s: %v", name, err)
		}
		out[name] = n
	}
	return out
}

// cmdLog is a go-redis hook that counts the commands a client sends, by
// lower-case name ("evalsha", "eval", "script load"), in pipelines too.
type cmdLog struct {
	mu     sync.Mutex
	counts map[string]int
}

func newCmdLog() *cmdLog { return &cmdLog{counts: map[string]int{}} }

func cmdName(c redis.Cmder) string {
	name := strings.ToLower(c.Name())
	if name == "script" && len(c.Args()) > 1 {
		name += " " + strings.ToLower(fmt.Sprint(c.Args()[1]))
	}
	return name
}

func (l *cmdLog) record(cmds ...redis.Cmder) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cmds {
		l.counts[cmdName(c)]++
	}
}

// count returns how many commands called name were sent.
func (l *cmdLog) count(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.counts[name]
}

// reset forgets every count.
func (l *cmdLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.counts = map[string]int{}
}

func (l *cmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *cmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		l.record(cmd)
		return next(ctx, cmd)
	}
}

func (l *cmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		l.record(cmds...)
		return next(ctx, cmds)
	}
}

// allSHAs returns the SHA of every script of b.
func allSHAs(b *scripts.Bundle) []string {
	var out []string
	for _, s := range b.Scripts() {
		out = append(out, s.SHA)
	}
	return out
}

// missingScripts returns the names of b's scripts that node does not have.
func missingScripts(ctx context.Context, t testing.TB, node *redis.Client, b *scripts.Bundle) []string {
	t.Helper()
	exists, err := node.ScriptExists(ctx, allSHAs(b)...).Result()
	if err != nil {
		t.Fatalf("SCRIPT EXISTS on %s: %v", node.Options().Addr, err)
	}
	var missing []string
	for i, s := range b.Scripts() {
		if !exists[i] {
			missing = append(missing, s.Name)
		}
	}
	slices.Sort(missing)
	return missing
}
