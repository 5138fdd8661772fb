package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/internal/keys"
	"github.com/luaq/luaq/internal/keyspace"
	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// Hostile input, Go side. The limits come from scripts/SPEC.md section 2
// ("Names and limits") and the README:
//
//	queue name  1..128 bytes of 0x21..0x7e without '{' or '}' (checked in Go)
//	task id     1..128 bytes of 0x21..0x7e, not all digits (enqueue: LQ_BADARG)
//	task type   1..128 bytes of 0x21..0x7e (enqueue)
//	payload     0..16,777,216 bytes, any bytes (enqueue)
//	unique key  1..1024 bytes, any bytes (enqueue)
//	result      0..16,777,216 bytes (complete; the worker archives a bigger one)
//	error text  0..8192 bytes (retry-or-archive; the worker truncates)
//	tasks/call  1..1000 (enqueue; EnqueueBatch checks it in Go)
//	max_retry   0..1,000,000 (enqueue's header and manifest)
//	instants    0..253,402,300,799,999 Unix ms in enqueue.lua (MAX_MS); SPEC.md
//	            says 253,402,299,999,999, see TestHostileEnqueueLimits.
//
// A refusal must be an error that names the argument (ErrBadArg from a
// script, or an error the SDK returns before sending anything), must not
// echo binary input, and must leave the keyspace exactly as it was.

const (
	hostileMaxPayload = 16 << 20 // 16,777,216
	// hostileMaxMs is enqueue.lua's MAX_MS: 9999-12-31T23:59:59.999Z.
	hostileMaxMs = 253402300799999
	// hostileSpecMaxMs is the bound SPEC.md section 2 states.
	hostileSpecMaxMs = 253402299999999
)

// hostileCmdLog is a go-redis hook that records the name and the keys of
// every command a client sends (EVALSHA: its KEYS; BLPOP: its lists).
type hostileCmdLog struct {
	mu   sync.Mutex
	cmds []hostileCmd
}

type hostileCmd struct {
	name string
	keys []string
}

func (h *hostileCmdLog) add(cmds ...redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range cmds {
		args := c.Args()
		rec := hostileCmd{name: c.Name()}
		switch rec.name {
		case "evalsha":
			if len(args) >= 3 {
				n, _ := args[2].(int)
				for i := 0; i < n && 3+i < len(args); i++ {
					k, _ := args[3+i].(string)
					rec.keys = append(rec.keys, k)
				}
			}
		case "blpop":
			for _, a := range args[1 : len(args)-1] {
				k, _ := a.(string)
				rec.keys = append(rec.keys, k)
			}
		}
		h.cmds = append(h.cmds, rec)
	}
}

func (h *hostileCmdLog) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.cmds)
}

// since returns the commands recorded after the first n.
func (h *hostileCmdLog) since(n int) []hostileCmd {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hostileCmd(nil), h.cmds[n:]...)
}

func (h *hostileCmdLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *hostileCmdLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.add(cmd)
		return next(ctx, cmd)
	}
}

func (h *hostileCmdLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.add(cmds...)
		return next(ctx, cmds)
	}
}

// hostileEnv is a private server, an SDK client whose commands are logged,
// and a separate plain client for keyspace dumps.
type hostileEnv struct {
	srv  *redistest.Server
	rdb  *redis.Client // the SDK's client, hooked
	raw  *redis.Client // dumps and direct reads
	c    *Client
	cmds *hostileCmdLog
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	srv := redistest.Start(t)
	if srv.External() {
		t.Skip("compares the whole keyspace: needs a private server, not LUAQ_REDIS_URL")
	}
	e := &hostileEnv{srv: srv, rdb: srv.Client(t), raw: srv.Client(t), cmds: &hostileCmdLog{}}
	e.rdb.AddHook(e.cmds)
	var err error
	if e.c, err = NewClient(e.rdb); err != nil {
		t.Fatal(err)
	}
	return e
}

// all dumps every key of the server.
func (e *hostileEnv) all(t *testing.T) keyspace.Snapshot {
	t.Helper()
	snap, err := keyspace.Dump(context.Background(), e.raw, "*")
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// hostileCheckRefusal checks the error of a refused call: it names the
// argument (every string of want appears in it), it is code (ErrBadArg,
// ErrConflict) when a script refused, and a Go-side error that sent nothing
// when code is nil, and it does not echo raw binary input.
func hostileCheckRefusal(t *testing.T, err error, code error, sent int, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("the call succeeded, want a refusal")
	}
	msg := err.Error()
	if code != nil && !errors.Is(err, code) {
		t.Errorf("error %q is not %v", msg, code)
	}
	if code == nil {
		if isScriptError(err) {
			t.Errorf("error %q came from a script, want a Go-side refusal", msg)
		}
		if sent != 0 {
			t.Errorf("a Go-side refusal sent %d commands to Redis", sent)
		}
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if !utf8.ValidString(msg) || strings.ContainsRune(msg, 0) {
		t.Errorf("error %q echoes binary input", msg)
	}
}

// hostilePrintable returns every byte 0x21..0x7e except those in drop.
func hostilePrintable(drop string) string {
	var b strings.Builder
	for c := byte(0x21); c <= 0x7e; c++ {
		if !strings.ContainsRune(drop, rune(c)) {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// hostileAllBytes returns n bytes cycling through 0x00..0xff.
func hostileAllBytes(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i)
	}
	return string(b)
}

// TestHostileEnqueueLimits enqueues at every documented limit (accepted,
// stored exactly, every new key inside luaq:{<queue>}:) and one past it
// (refused with an error naming the argument, nothing written).
func TestHostileEnqueueLimits(t *testing.T) {
	e := newHostileEnv(t)
	ctx := context.Background()
	// A populated queue, so a refusal has something to corrupt.
	for i := 0; i < 3; i++ {
		if _, err := e.c.Enqueue(ctx, "h", "job", []byte("x"), Unique(fmt.Sprintf("held-%d", i), time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.c.Enqueue(ctx, "h", "job", nil, ID("taken"), ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}

	one := func(typ string, payload string, opts ...Option) []NewTask {
		return []NewTask{{Type: typ, Payload: []byte(payload), Options: opts}}
	}
	many := func(n int, last NewTask) []NewTask {
		out := make([]NewTask, n)
		for i := range out {
			out[i] = NewTask{Type: "job", Payload: []byte{byte(i)}}
		}
		if last.Type != "" || last.Options != nil {
			out[n-1] = last
		}
		return out
	}
	far := func(ms int64) time.Time { return time.UnixMilli(ms) }
	type tc struct {
		name  string
		queue string // default "h"
		tasks []NewTask
		// ok: accepted. Otherwise code is the error a script refuses with,
		// nil when the SDK must refuse before sending anything, and want
		// lists words the error must contain.
		ok   bool
		code error
		want []string
	}
	tests := []tc{
		// Queue names: checked by the SDK only (scripts never see them).
		{name: "queue 1 byte", queue: "x", tasks: one("job", ""), ok: true},
		{name: "queue 128 bytes", queue: strings.Repeat("q", 128), tasks: one("job", ""), ok: true},
		{name: "queue every allowed byte", queue: hostilePrintable("{}"), tasks: one("job", ""), ok: true},
		{name: "queue with colons", queue: ":a:b:", tasks: one("job", ""), ok: true},
		{name: "queue empty", queue: "", tasks: one("job", ""), want: []string{"queue name", "empty"}},
		{name: "queue 129 bytes", queue: strings.Repeat("q", 129), tasks: one("job", ""), want: []string{"queue name", "129", "128"}},
		{name: "queue with space", queue: "a b", tasks: one("job", ""), want: []string{"queue name", "0x20"}},
		{name: "queue with NUL", queue: "a\x00", tasks: one("job", ""), want: []string{"queue name", "0x00"}},
		{name: "queue with DEL", queue: "a\x7f", tasks: one("job", ""), want: []string{"queue name", "0x7f"}},
		{name: "queue with invalid UTF-8", queue: "a\xff", tasks: one("job", ""), want: []string{"queue name", "0xff"}},
		{name: "queue with UTF-8", queue: "é", tasks: one("job", ""), want: []string{"queue name", "0xc3"}},
		{name: "queue with open brace", queue: "{a", tasks: one("job", ""), want: []string{"queue name", "brace"}},
		{name: "queue with close brace", queue: "a}b", tasks: one("job", ""), want: []string{"queue name", "brace"}},

		// Task ids.
		{name: "id 1 byte", tasks: one("job", "", ID("i")), ok: true},
		{name: "id 128 bytes", tasks: one("job", "", ID(strings.Repeat("i", 128))), ok: true},
		{name: "id every printable byte", tasks: one("job", "", ID(hostilePrintable(""))), ok: true},
		{name: "id with braces", tasks: one("job", "", ID("}:{h}:pending")), ok: true},
		{name: "id digits and a sign", tasks: one("job", "", ID("-12")), ok: true},
		{name: "id 129 bytes", tasks: one("job", "", ID(strings.Repeat("i", 129))), code: ErrBadArg, want: []string{"id", "128"}},
		{name: "id all digits", tasks: one("job", "", ID("0123")), code: ErrBadArg, want: []string{"id", "digits"}},
		{name: "id with space", tasks: one("job", "", ID("a b")), code: ErrBadArg, want: []string{"id", "printable"}},
		{name: "id with NUL", tasks: one("job", "", ID("a\x00")), code: ErrBadArg, want: []string{"id", "printable"}},
		{name: "id with 0x80", tasks: one("job", "", ID("a\x80")), code: ErrBadArg, want: []string{"id", "printable"}},
		{name: "id taken", tasks: one("job", "", ID("taken")), code: ErrConflict, want: []string{"id taken", "exists"}},
		{name: "id empty", tasks: one("job", "", ID("")), want: []string{"id", "empty"}},

		// Task types.
		{name: "type 1 byte", tasks: one("t", ""), ok: true},
		{name: "type 128 bytes", tasks: one(strings.Repeat("t", 128), ""), ok: true},
		{name: "type every printable byte", tasks: one(hostilePrintable(""), ""), ok: true},
		{name: "type empty", tasks: one("", ""), code: ErrBadArg, want: []string{"type", "1..128"}},
		{name: "type 129 bytes", tasks: one(strings.Repeat("t", 129), ""), code: ErrBadArg, want: []string{"type", "1..128"}},
		{name: "type with space", tasks: one("a b", ""), code: ErrBadArg, want: []string{"type", "printable"}},
		{name: "type with NUL", tasks: one("a\x00b", ""), code: ErrBadArg, want: []string{"type", "printable"}},
		{name: "type with DEL", tasks: one("a\x7f", ""), code: ErrBadArg, want: []string{"type", "printable"}},
		{name: "type with invalid UTF-8", tasks: one("\xc0\xaf", ""), code: ErrBadArg, want: []string{"type", "printable"}},

		// Unique keys: any bytes.
		{name: "unique key 1 byte NUL", tasks: one("job", "", Unique("\x00", time.Hour)), ok: true},
		{name: "unique key 1024 bytes", tasks: one("job", "", Unique(strings.Repeat("u", 1024), time.Hour)), ok: true},
		{name: "unique key 1024 binary bytes", tasks: one("job", "", Unique(hostileAllBytes(1024), time.Hour)), ok: true},
		{name: "unique key like a key name", tasks: one("job", "", Unique("luaq:{x}:meta", time.Hour)), ok: true},
		{name: "unique key 1025 bytes", tasks: one("job", "", Unique(strings.Repeat("u", 1025), time.Hour)), code: ErrBadArg, want: []string{"unique_key", "1..1024"}},
		{name: "unique key 1025 binary bytes", tasks: one("job", "", Unique(hostileAllBytes(1025), time.Hour)), code: ErrBadArg, want: []string{"unique_key", "1..1024"}},
		{name: "unique key held", tasks: one("job", "", Unique("held-1", time.Hour)), code: ErrConflict, want: []string{"unique key", "held"}},
		{name: "unique key empty", tasks: one("job", "", Unique("", time.Hour)), want: []string{"Unique"}},
		{name: "unique key without TTL", tasks: one("job", "", Unique("k", 0)), want: []string{"Unique", "TTL"}},

		// Payloads (the 16 MiB bound is in TestHostilePayloadRoundTrip).
		{name: "payload empty", tasks: one("job", ""), ok: true},
		{name: "payload every byte", tasks: one("job", hostileAllBytes(256)), ok: true},

		// Numbers and instants.
		{name: "max retry 1000000", tasks: one("job", "", MaxRetry(1000000)), ok: true},
		{name: "max retry 1000001", tasks: one("job", "", MaxRetry(1000001)), code: ErrBadArg, want: []string{"max_retry", "1000000"}},
		{name: "process at the last instant", tasks: one("job", "", ProcessAt(far(hostileMaxMs))), ok: true},
		{name: "process at SPEC.md's bound", tasks: one("job", "", ProcessAt(far(hostileSpecMaxMs))), ok: true},
		{name: "process at one ms later", tasks: one("job", "", ProcessAt(far(hostileMaxMs+1))), code: ErrBadArg, want: []string{"process_at_ms"}},
		{name: "deadline at the last instant", tasks: one("job", "", Deadline(far(hostileMaxMs))), ok: true},
		{name: "deadline one ms later", tasks: one("job", "", Deadline(far(hostileMaxMs+1))), code: ErrBadArg, want: []string{"deadline_ms"}},
		{name: "expire at the last instant", tasks: one("job", "", ExpireAt(far(hostileMaxMs))), ok: true},
		{name: "expire at one ms later", tasks: one("job", "", ExpireAt(far(hostileMaxMs+1))), code: ErrBadArg, want: []string{"expire_at_ms"}},

		// Batches: all or nothing.
		{name: "batch of 1000", tasks: many(MaxBatch, NewTask{}), ok: true},
		{name: "batch of 1001", tasks: many(MaxBatch+1, NewTask{}), want: []string{"1001", "1..1000"}},
		{name: "batch of 0", tasks: nil, want: []string{"0 tasks", "1..1000"}},
		{name: "batch with a bad last task", tasks: many(MaxBatch, NewTask{Type: "job", Options: []Option{ID(strings.Repeat("i", 129))}}),
			code: ErrBadArg, want: []string{"task 1000 id"}},
		{name: "batch with a bad type in the middle", tasks: append(many(10, NewTask{}), NewTask{Type: "a\x00"}, NewTask{Type: "job"}),
			code: ErrBadArg, want: []string{"task 11 type"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			queue := tc.queue
			if queue == "" && tc.name != "queue empty" {
				queue = "h"
			}
			before := e.all(t)
			sent := e.cmds.count()
			infos, err := e.c.EnqueueBatch(ctx, queue, tc.tasks)
			after := e.all(t)
			if !tc.ok {
				hostileCheckRefusal(t, err, tc.code, e.cmds.count()-sent, tc.want...)
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("a refused enqueue changed the keyspace (-before +after):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnqueueBatch at the limit: %v", err)
			}
			// Everything it wrote is inside the queue's own keys.
			prefix := keys.Prefix + "{" + queue + "}:"
			for k, v := range after {
				if old, ok := before[k]; (!ok || !cmp.Equal(old, v)) && !strings.HasPrefix(k, prefix) {
					t.Errorf("enqueue to %q changed key %q, outside %s", queue, k, prefix)
				}
			}
			for k := range before {
				if _, ok := after[k]; !ok {
					t.Errorf("enqueue to %q deleted key %q", queue, k)
				}
			}
			// And it stored exactly what was given.
			for i, in := range infos {
				ts, err := e.c.GetTask(ctx, queue, in.ID)
				if err != nil {
					t.Fatalf("GetTask(%q, %q): %v", queue, in.ID, err)
				}
				if ts.Type != tc.tasks[i].Type || !bytes.Equal(ts.Payload, tc.tasks[i].Payload) {
					t.Errorf("task %d stored type %q payload %q, want %q %q", i, ts.Type, ts.Payload, tc.tasks[i].Type, tc.tasks[i].Payload)
				}
			}
			if len(infos) == 1 && tc.tasks[0].Options != nil {
				rec, err := decodeRecord(after[prefix+"tasks"].Hash[infos[0].ID])
				if err != nil {
					t.Fatal(err)
				}
				if infos[0].UniqueKey != "" && (rec.Unique != infos[0].UniqueKey || after[prefix+"unique"].Hash[infos[0].UniqueKey] != infos[0].ID) {
					t.Errorf("unique key %q: record holds %q, unique hash %q", infos[0].UniqueKey, rec.Unique, after[prefix+"unique"].Hash[infos[0].UniqueKey])
				}
			}
		})
	}

	// Reading and administering by id has the same id limits.
	t.Run("task id limits of the admin calls", func(t *testing.T) {
		long := strings.Repeat("i", 128)
		if _, err := e.c.GetTask(ctx, "h", long); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("GetTask with a 128-byte id: %v", err)
		}
		before := e.all(t)
		for name, call := range map[string]func(id string) error{
			"GetTask":     func(id string) error { _, err := e.c.GetTask(ctx, "h", id); return err },
			"DeleteTask":  func(id string) error { _, err := e.c.DeleteTask(ctx, "h", id); return err },
			"RunArchived": func(id string) error { return e.c.RunArchived(ctx, "h", id) },
		} {
			for _, id := range []string{long + "i", "", "a b", "a\x00"} {
				err := call(id)
				hostileCheckRefusal(t, err, ErrBadArg, 0, "id")
				if err != nil && !strings.Contains(err.Error(), "LQ_BADARG") {
					t.Errorf("%s: %v", name, err)
				}
			}
		}
		if diff := cmp.Diff(before, e.all(t)); diff != "" {
			t.Errorf("refused admin calls changed the keyspace (-before +after):\n%s", diff)
		}
	})

	// Limits the SDK checks in the worker and janitor configuration (the
	// scripts' "at most 1000" per lease, promote, reclaim and janitor call).
	t.Run("worker and janitor config limits", func(t *testing.T) {
		for _, c := range []struct {
			cfg WorkerConfig
			ok  bool
		}{
			{WorkerConfig{Concurrency: 1000}, true},
			{WorkerConfig{Concurrency: 1001}, false},
			{WorkerConfig{PromoteLimit: 1000, ReclaimLimit: 1000}, true},
			{WorkerConfig{PromoteLimit: 1001}, false},
			{WorkerConfig{ReclaimLimit: 1001}, false},
			{WorkerConfig{Queues: map[string]int{strings.Repeat("q", 128): 1}}, true},
			{WorkerConfig{Queues: map[string]int{strings.Repeat("q", 129): 1}}, false},
		} {
			_, err := NewWorker(e.rdb, c.cfg)
			if (err == nil) != c.ok {
				t.Errorf("NewWorker(%+v): err %v, want ok=%v", c.cfg, err, c.ok)
			}
		}
		for _, c := range []struct {
			limit int
			ok    bool
		}{{1000, true}, {1001, false}} {
			_, err := NewJanitor(e.rdb, JanitorConfig{Queues: []string{"h"}, Limit: c.limit})
			if (err == nil) != c.ok {
				t.Errorf("NewJanitor(limit %d): err %v, want ok=%v", c.limit, err, c.ok)
			}
		}
	})
}

// TestHostilePayloadRoundTrip sends binary payloads (every byte value, runs
// of NUL, invalid UTF-8, bytes that look like a record or RESP, and one of
// exactly 16 MiB) through Enqueue, the worker (the handler sees the same
// bytes), the stored record, and, as the handler's result, retention and
// GetTask. One byte more than 16 MiB is refused at enqueue with nothing
// written, and as a result it archives the task without storing it. An error
// text over 8192 bytes is stored cut to exactly 8192.
func TestHostilePayloadRoundTrip(t *testing.T) {
	e := newHostileEnv(t)
	ctx := context.Background()
	const q = "bin:payload"

	rng := rand.New(rand.NewPCG(7, 8))
	big := make([]byte, hostileMaxPayload)
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	for i := 0; i < 4096; i++ { // a run of NUL and one of 0xff inside
		big[1000+i], big[hostileMaxPayload-5000+i] = 0, 0xff
	}
	payloads := map[string][]byte{
		"empty":        {},
		"every-byte":   []byte(hostileAllBytes(256)),
		"every-byte-x": []byte(hostileAllBytes(256 * 64)),
		"nul":          {0},
		"nul-run":      make([]byte, 64<<10),
		"bad-utf8":     []byte("\xff\xfe\xfd \xc0\xaf \xe0\x80\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \x80\xbf \xc3"),
		"record-like":  []byte("0:0:0:0:0:0:0:0:3:abc0:1:2:3:\x00:"),
		"resp-like":    []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n-ERR x\r\n"),
		"lua-like":     []byte("\x1bLua redis.call('FLUSHALL') ]] --[["),
		"max":          big,
	}
	ids := make([]string, 0, len(payloads))
	for id := range payloads {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	type seen struct {
		id      string
		payload []byte
	}
	got := make(chan seen, 64)
	w, _ := newTestWorker(t, e.rdb, WorkerConfig{
		Queues: map[string]int{q: 1}, Concurrency: 2, LeaseDuration: 10 * time.Second,
	})
	w.HandleFunc("echo", func(ctx context.Context, task *Task) error {
		got <- seen{task.ID, append([]byte(nil), task.Payload...)}
		task.SetResult(task.Payload)
		return nil
	})
	w.HandleFunc("result-too-big", func(ctx context.Context, task *Task) error {
		task.SetResult(make([]byte, hostileMaxPayload+1))
		return nil
	})
	w.HandleFunc("long-error", func(ctx context.Context, task *Task) error {
		return errors.New(hostileAllBytes(20000))
	})
	stop := runWorker(t, w)

	// Enqueue them all before checking, so the worker runs them meanwhile.
	for _, id := range ids {
		info, err := e.c.Enqueue(ctx, q, "echo", payloads[id], ID("p-"+id), Retention(time.Hour), MaxRetry(0))
		if errors.Is(err, ErrConflict) {
			// On a loaded machine a 16 MiB call can outlast the client's
			// read timeout; go-redis then sends it again, and the retry
			// meets the task its first attempt stored (the README's
			// idempotent enqueue). The task must hold our payload.
			t.Logf("enqueue of %s was retried after a lost reply: %v", id, err)
			continue
		}
		if err != nil {
			t.Fatalf("enqueue payload %s (%d bytes): %v", id, len(payloads[id]), err)
		}
		if !bytes.Equal(info.Payload, payloads[id]) {
			t.Errorf("TaskInfo of %s does not hold the payload", id)
		}
	}
	for range ids {
		s := recv(t, got, hangGuard, "the handler to run")
		want := payloads[strings.TrimPrefix(s.id, "p-")]
		if !bytes.Equal(s.payload, want) {
			t.Errorf("handler of %s saw %d bytes, differing from the %d enqueued", s.id, len(s.payload), len(want))
		}
	}
	for _, id := range ids {
		var ts *TaskState
		waitFor(t, hangGuard, "task p-"+id+" to complete", func() bool {
			var err error
			ts, err = e.c.GetTask(ctx, q, "p-"+id)
			return err == nil && ts.State == "completed"
		})
		if !bytes.Equal(ts.Payload, payloads[id]) {
			t.Errorf("GetTask(p-%s): payload of %d bytes differs from the %d enqueued", id, len(ts.Payload), len(payloads[id]))
		}
		if len(payloads[id]) == 0 {
			if len(ts.Result) != 0 {
				t.Errorf("GetTask(p-%s): result %q, want empty", id, ts.Result)
			}
		} else if !bytes.Equal(ts.Result, payloads[id]) {
			t.Errorf("GetTask(p-%s): result of %d bytes differs from the %d set", id, len(ts.Result), len(payloads[id]))
		}
		if ts.Type != "echo" || ts.Retention != time.Hour || ts.Retried != 0 || ts.LastError != "" {
			t.Errorf("GetTask(p-%s): %+v", id, ts)
		}
		// The stored bytes themselves: record and result, byte for byte.
		rec, err := e.raw.HGet(ctx, queueKeyName(q, "tasks"), "p-"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		r, err := decodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		if r.Payload != string(payloads[id]) || r.Type != "echo" {
			t.Errorf("stored record of p-%s: type %q, payload of %d bytes, want echo and the %d enqueued", id, r.Type, len(r.Payload), len(payloads[id]))
		}
		res, err := e.raw.HGet(ctx, queueKeyName(q, "results"), "p-"+id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if res != string(payloads[id]) {
			t.Errorf("stored result of p-%s: %d bytes, want the %d set", id, len(res), len(payloads[id]))
		}
	}

	// Unique keys are binary-safe too: held, refused, freed on completion.
	binKey := "\x00\xff{" + q + "}\r\n"
	if _, err := e.c.Enqueue(ctx, q, "echo", nil, ID("u1"), Unique(binKey, time.Hour), ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Enqueue(ctx, q, "echo", nil, Unique(binKey, time.Hour)); !errors.Is(err, ErrConflict) {
		t.Fatalf("second holder of a binary unique key: %v, want ErrConflict", err)
	}
	if _, err := e.c.DeleteTask(ctx, q, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Enqueue(ctx, q, "echo", []byte{0}, ID("u2"), Unique(binKey, time.Hour)); err != nil {
		t.Fatalf("binary unique key after its holder was deleted: %v", err)
	}
	if s := recv(t, got, hangGuard, "u2 to run"); s.id != "u2" || !bytes.Equal(s.payload, []byte{0}) {
		t.Errorf("handler saw %s %q, want u2 NUL", s.id, s.payload)
	}

	// A result over the limit: archived without storing it.
	if _, err := e.c.Enqueue(ctx, q, "result-too-big", nil, ID("r-big"), Retention(time.Hour), MaxRetry(5)); err != nil {
		t.Fatal(err)
	}
	// An error text over the limit: stored cut to 8192 bytes.
	if _, err := e.c.Enqueue(ctx, q, "long-error", nil, ID("e-long"), MaxRetry(0)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r-big", "e-long"} {
		var ts *TaskState
		waitFor(t, hangGuard, id+" to be archived", func() bool {
			var err error
			ts, err = e.c.GetTask(ctx, q, id)
			return err == nil && ts.State == "archived"
		})
		switch id {
		case "r-big":
			if len(ts.Result) != 0 || !strings.Contains(ts.LastError, "16777217 bytes exceeds the 16777216-byte limit") {
				t.Errorf("over-limit result: archived with error %q and a %d-byte result", ts.LastError, len(ts.Result))
			}
		case "e-long":
			if len(ts.LastError) != maxErrorMessage || ts.LastError != hostileAllBytes(20000)[:maxErrorMessage] {
				t.Errorf("long error stored as %d bytes, want its first %d", len(ts.LastError), maxErrorMessage)
			}
		}
	}
	stop()

	// One byte over the payload limit: refused, nothing written.
	over := append(big, 0)
	before := e.all(t)
	sent := e.cmds.count()
	_, err := e.c.Enqueue(ctx, q, "echo", over)
	hostileCheckRefusal(t, err, ErrBadArg, e.cmds.count()-sent, "payload", "16777216")
	if _, err2 := e.c.EnqueueBatch(ctx, q, []NewTask{{Type: "echo"}, {Type: "echo", Payload: over}}); !errors.Is(err2, ErrBadArg) {
		t.Errorf("batch with an over-limit payload: %v, want ErrBadArg", err2)
	}
	if diff := cmp.Diff(before, e.all(t)); diff != "" {
		// Keep the report short: the values are megabytes.
		t.Errorf("an over-limit payload changed the keyspace: %d keys before, %d after", len(before), len(e.all(t)))
	}
}

// TestHashTagSafety checks that queue names can never reach another queue's
// keys: names with a brace are refused by every call that takes a queue,
// before anything is sent; names with ':' work end to end; running "a:b"
// leaves every key of "a" untouched and the other way round, also with
// hostile task ids, types and unique keys that look like other keys; and
// every key any call names or writes is inside luaq:{<queue>}:.
func TestHashTagSafety(t *testing.T) {
	e := newHostileEnv(t)
	ctx := context.Background()

	t.Run("braces refused everywhere", func(t *testing.T) {
		before := e.all(t)
		for _, name := range []string{"a}b", "{a", "a{b}", "{", "}", "{}", "}{", "a{", "}a", "{a}", "a:{b}:c"} {
			sent := e.cmds.count()
			calls := map[string]error{}
			_, calls["Enqueue"] = e.c.Enqueue(ctx, name, "job", nil)
			_, calls["EnqueueBatch"] = e.c.EnqueueBatch(ctx, name, []NewTask{{Type: "job"}})
			_, calls["QueueInfo"] = e.c.QueueInfo(ctx, name)
			_, calls["GetTask"] = e.c.GetTask(ctx, name, "1")
			_, calls["DeleteTask"] = e.c.DeleteTask(ctx, name, "1")
			calls["RunArchived"] = e.c.RunArchived(ctx, name, "1")
			_, calls["Pause"] = e.c.Pause(ctx, name)
			_, calls["Resume"] = e.c.Resume(ctx, name)
			calls["Configure"] = e.c.Configure(ctx, name, DefaultQueueConfig())
			_, calls["DailyStats"] = e.c.DailyStats(ctx, name, 1)
			_, calls["Workers"] = e.c.Workers(ctx, name, 10)
			_, calls["NewWorker"] = NewWorker(e.rdb, WorkerConfig{Queues: map[string]int{"ok": 1, name: 1}})
			_, calls["NewJanitor"] = NewJanitor(e.rdb, JanitorConfig{Queues: []string{"ok", name}})
			for call, err := range calls {
				if err == nil || !strings.Contains(err.Error(), "brace") {
					t.Errorf("%s(%q): err %v, want a refusal naming the brace", call, name, err)
				}
			}
			if n := e.cmds.count() - sent; n != 0 {
				t.Errorf("calls on queue %q sent %d commands", name, n)
			}
		}
		if diff := cmp.Diff(before, e.all(t)); diff != "" {
			t.Errorf("refused calls changed the keyspace (-before +after):\n%s", diff)
		}
	})

	// run sends a mix of tasks through queue (a worker with its janitor,
	// retries, an archive, retention, unique keys, scheduling, admin calls)
	// and returns once it is quiet. Every command it causes must name only
	// keys of queue.
	run := func(t *testing.T, queue string, round int) {
		t.Helper()
		mark := e.cmds.count()
		var ran sync.Map
		w, logs := newTestWorker(t, e.rdb, WorkerConfig{
			Queues: map[string]int{queue: 1}, Concurrency: 4, JanitorInterval: 50 * time.Millisecond,
		})
		handler := func(ctx context.Context, task *Task) error {
			if task.Queue != queue {
				return fmt.Errorf("task of queue %q ran on a worker of %q", task.Queue, queue)
			}
			n, _ := ran.LoadOrStore(task.ID, new(int))
			*n.(*int)++
			switch task.Type {
			case "{a}:fail-once":
				if task.Retried == 0 {
					return errors.New("first run fails")
				}
			case "luaq:{a}:skip":
				return fmt.Errorf("skip: %w", ErrSkipRetry)
			case "}keep{":
				task.SetResult([]byte("luaq:{a}:results"))
			}
			return nil
		}
		for _, typ := range []string{"job", "{a}:fail-once", "luaq:{a}:skip", "}keep{"} {
			w.HandleFunc(typ, handler)
		}
		stop := runWorker(t, w)
		var tasks []NewTask
		for i := 0; i < 20; i++ {
			tasks = append(tasks,
				NewTask{Type: "job", Payload: []byte("luaq:{a}:pending"), Options: []Option{ID(fmt.Sprintf("}:{a}:%d:%d", round, i))}},
				NewTask{Type: "{a}:fail-once", Options: []Option{MaxRetry(1)}},
				NewTask{Type: "luaq:{a}:skip"},
				NewTask{Type: "}keep{", Options: []Option{Retention(150 * time.Millisecond), Unique(fmt.Sprintf("luaq:{a}:unique:%d", i), time.Minute)}},
				NewTask{Type: "job", Options: []Option{ProcessIn(300 * time.Millisecond), ExpireIn(time.Minute),
					Unique(fmt.Sprintf("luaq:{a}:unique:s%d", i), time.Minute)}},
			)
		}
		if _, err := e.c.EnqueueBatch(ctx, queue, tasks); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Enqueue(ctx, queue, "job", nil, Unique("luaq:{a}:unique:s0", time.Minute)); !errors.Is(err, ErrConflict) {
			t.Fatalf("enqueue with a held unique key: %v, want ErrConflict", err)
		}
		waitFor(t, hangGuard, "queue "+queue+" to settle", func() bool {
			qi, err := e.c.QueueInfo(ctx, queue)
			return err == nil && qi.Pending == 0 && qi.Scheduled == 0 && qi.Active == 0 && qi.Completed == 0 &&
				qi.Processed == int64(80*round) && qi.ArchivedTotal == int64(20*round)
		})
		// Admin calls on the archive.
		qi, err := e.c.QueueInfo(ctx, queue)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Archived == 0 {
			t.Fatal("nothing archived")
		}
		if _, err := e.c.Workers(ctx, queue, 10); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.DailyStats(ctx, queue, 2); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Pause(ctx, queue); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Resume(ctx, queue); err != nil {
			t.Fatal(err)
		}
		stop()
		if logs.contains("level=ERROR") {
			t.Errorf("worker of %q logged errors:\n%s", queue, logs)
		}
		prefix := keys.Prefix + "{" + queue + "}:"
		named := 0
		for _, c := range e.cmds.since(mark) {
			named += len(c.keys)
			for _, k := range c.keys {
				if !strings.HasPrefix(k, prefix) {
					t.Errorf("%s during the run of %q named key %q, outside %s", c.name, queue, k, prefix)
				}
			}
		}
		if named < 1000 {
			t.Errorf("the run of %q named only %d keys: the command log is not seeing it", queue, named)
		}
	}
	// byQueue splits a snapshot by the queue whose prefix a key has; keys
	// of no luaq queue land under "".
	byQueue := func(snap keyspace.Snapshot, queues ...string) map[string]keyspace.Snapshot {
		out := map[string]keyspace.Snapshot{}
		for k, v := range snap {
			owner := ""
			for _, q := range queues {
				if strings.HasPrefix(k, keys.Prefix+"{"+q+"}:") {
					owner = q
				}
			}
			if out[owner] == nil {
				out[owner] = keyspace.Snapshot{}
			}
			out[owner][k] = v
		}
		return out
	}
	queues := []string{"a", "a:b", "a:b:c"}

	t.Run("colon queues isolated", func(t *testing.T) {
		for round, q := range []string{"a", "a:b", "a:b:c", "a", "a:b:c", "a:b"} {
			others := func(snap keyspace.Snapshot) keyspace.Snapshot {
				out := keyspace.Snapshot{}
				for owner, part := range byQueue(snap, queues...) {
					if owner != q {
						for k, v := range part {
							out[k] = v
						}
					}
				}
				return out
			}
			before := others(e.all(t))
			t.Run(fmt.Sprintf("%d %s", round, q), func(t *testing.T) {
				n := 1
				if round >= 3 {
					n = 2
				}
				run(t, q, n)
			})
			if diff := cmp.Diff(before, others(e.all(t))); diff != "" {
				t.Fatalf("running %q changed keys of other queues (-before +after):\n%s", q, diff)
			}
		}
		// Every key is a known role inside one queue's prefix.
		roles := map[string]bool{"meta": true, "stats": true, "wake": true, "tasks": true, "archived": true, "errors": true}
		for owner, part := range byQueue(e.all(t), queues...) {
			for k := range part {
				role, _ := strings.CutPrefix(k, keys.Prefix+"{"+owner+"}:")
				if owner == "" || !roles[role] {
					t.Errorf("key %q: not a bookkeeping or archive key of a queue", k)
				}
				if redistest.KeySlot(k) != redistest.KeySlot(keys.Prefix+"{"+owner+"}:meta") {
					t.Errorf("key %q hashes to another slot than its queue", k)
				}
			}
		}
	})

	t.Run("one worker on all of them", func(t *testing.T) {
		// On one server a worker blocks on all wake lists with one BLPOP;
		// each task must still run as a task of its own queue.
		w, logs := newTestWorker(t, e.rdb, WorkerConfig{
			Queues: map[string]int{"a": 1, "a:b": 2, "a:b:c": 3}, Concurrency: 4,
		})
		var mu sync.Mutex
		wrong, runs := 0, 0
		w.HandleFunc("whose", func(ctx context.Context, task *Task) error {
			mu.Lock()
			defer mu.Unlock()
			runs++
			if string(task.Payload) != task.Queue {
				wrong++
			}
			return nil
		})
		stop := runWorker(t, w)
		time.Sleep(50 * time.Millisecond) // idle: tasks arrive through the wake lists
		for i := 0; i < 30; i++ {
			q := queues[i%3]
			if _, err := e.c.Enqueue(ctx, q, "whose", []byte(q)); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, hangGuard, "30 runs", func() bool { mu.Lock(); defer mu.Unlock(); return runs == 30 })
		stop()
		if wrong != 0 || logs.contains("level=ERROR") {
			t.Errorf("%d tasks ran as tasks of another queue; log:\n%s", wrong, logs)
		}
	})
}
