package scripts_test

// Differential scenarios (see diff_test.go) for the worker registry
// (register, list-workers, prune-workers, deregister) and the admin scripts
// (configure, run-archived, delete-task). Only long delays (a minute) are
// relied on for "not yet", and sleeps well past short delays for "passed".
// Enqueue groups are written with all 14 fields: id type payload max_retry
// timeout deadline at in expire_at expire_in expire_archive retention
// unique_key unique_ttl.

import (
	"strconv"
	"time"
)

func adminScenarios() []dscenario {
	const past = 150 * time.Millisecond // sleep past a 100 ms delay
	const gap = 2 * time.Millisecond    // apart enough to order archive times
	ready := func(id string) []string { return g(id, "t", "p-"+id, "3", "0", "0", "0", "0") }
	once := func(id string) []string { return g(id, "t", "p-"+id, "0", "0", "0", "0", "0") }
	// pairs1001 is deregister's worker w with 1001 (id, token) pairs.
	pairs1001 := []string{"w"}
	for i := 0; i < 1001; i++ {
		pairs1001 = append(pairs1001, "t"+strconv.Itoa(i), "1")
	}
	return []dscenario{
		{"workers", []dstep{
			call("enqueue", enq(ready("a"), ready("b"), ready("c"), ready("d"))...),
			call("register", "w1", "host=a pid=1", "60000"),
			// w2's heartbeat lasts 2s: long enough that a loaded machine
			// does not let it lapse before the listings below, which expect
			// it alive on both sides.
			call("register", "w2", "host=b pid=2 \x00\xff", "2000"),
			call("register", "w3", "", "60000"),
			call("list-workers", "10"),
			call("list-workers", "1"),
			call("prune-workers", "10"), // nobody is dead yet
			call("dequeue", deqArgs(3, 30000, 0, 0, 0)...),
			// w2 missed its heartbeat: no longer listed, pruned once.
			{sleep: 2*time.Second + past, script: "list-workers", args: []string{"10"}},
			call("register", "w1", "host=a pid=1 inflight=a,b,c", "60000"),
			call("prune-workers", "10"),
			call("prune-workers", "10"),
			call("list-workers", "10"),
			// w1 leaves with a and b; its token for c is stale, so c stays leased.
			call("deregister", "w1", "a", "$token:a", "b", "$token:b", "c", "999"),
			call("deregister", "w1", "a", "1"), // twice: harmless
			call("deregister", "w3"),
			call("deregister", "never-registered", "c", "999"),
			call("list-workers", "10"),
			call("queue-info"),
			// b and a went back to the head of pending, without a retry.
			call("dequeue", deqArgs(10, 30000, 0, 0, 0)...),
			call("deregister", "w9", "b", "$token:b", "a", "$token:a", "d", "$token:d", "c", "$token:c"),
			call("queue-info"),
			callErr(codeBadArg, "register", "w 1", "", "1000"),
			callErr(codeBadArg, "register", "w1", "", "0"),
			callErr(codeBadArg, "register", "w1", "", "86400001"),
			{script: "register", args: []string{"w1", ""}, direct: true, wantErr: codeBadArg},
			{script: "deregister", args: nil, direct: true, wantErr: codeBadArg},
			{script: "deregister", args: []string{"w1", "a"}, direct: true, wantErr: codeBadArg},
			callErr(codeBadArg, "deregister", "w1", "a", "x"),
			callErr(codeBadArg, "deregister", "", "a", "1"),
			callErr(codeBadArg, "deregister", pairs1001...),
			callErr(codeBadArg, "list-workers", "0"),
			callErr(codeBadArg, "list-workers", "1001"),
			{script: "list-workers", args: nil, direct: true, wantErr: codeBadArg},
			callErr(codeBadArg, "prune-workers", "0"),
			callErr(codeBadArg, "prune-workers", "x"),
			call("register", "w4", "last", "60000"),
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "register", "w5", "", "1000"),
			callErr(codeSchema, "list-workers", "10"),
			callErr(codeSchema, "prune-workers", "10"),
			callErr(codeSchema, "deregister", "w4"),
		}},
		{"configure and archive trims", []dstep{
			call("configure", "2", "60000", "30"),
			call("enqueue", enq(once("a1"), once("a2"), once("a3"), once("a4"), once("a5"))...),
			call("dequeue", deqArgs(5, 30000, 0, 0, 0)...),
			call("retry-or-archive", "a1", "$token:a1", "e1", "0", "0"),
			{sleep: gap, script: "retry-or-archive", args: []string{"a2", "$token:a2", "e2", "0", "0"}},
			// The third archived task trims the oldest (a1).
			{sleep: gap, script: "retry-or-archive", args: []string{"a3", "$token:a3", "e3", "0", "0"}},
			// A lower bound is applied by the next trim, not by configure.
			call("configure", "1", "60000", "30"),
			call("queue-info"),
			call("janitor-lock", "acquire", "j1", "60000"),
			call("clean", "j1", "100", "0"),
			call("queue-info"), // archived 1: a3
			{sleep: gap, script: "retry-or-archive", args: []string{"a4", "$token:a4", "e4", "0", "1"}},
			call("queue-info"), // archived 1: a4 (a3 was the oldest beyond 1)
			call("configure", "100", "50", "30"),
			// a4 is now older than 50 ms: the janitor's trim deletes it.
			{sleep: past, script: "clean", args: []string{"j1", "100", "0"}},
			call("queue-info"), // archived 0
			call("configure", "0", "60000", "30"),
			// Nothing is kept: a5 is deleted as it is archived.
			call("retry-or-archive", "a5", "$token:a5", "e5", "0", "0"),
			call("configure", "10000000", "3153600000000", "3650"),
			call("janitor-lock", "release", "j1", "0"),
			call("queue-info"),
			callErr(codeBadArg, "configure", "-1", "1000", "30"),
			callErr(codeBadArg, "configure", "10000001", "1000", "30"),
			callErr(codeBadArg, "configure", "1", "0", "30"),
			callErr(codeBadArg, "configure", "1", "3153600000001", "30"),
			callErr(codeBadArg, "configure", "x", "1", "30"),
			callErr(codeBadArg, "configure", "1", "1000", "0"),
			callErr(codeBadArg, "configure", "1", "1000", "3651"),
			callErr(codeBadArg, "configure", "1", "1000", "x"),
			{script: "configure", args: []string{"1"}, direct: true, wantErr: codeBadArg},
			{script: "configure", args: []string{"1", "1000"}, direct: true, wantErr: codeBadArg},
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "configure", "1", "1000", "30"),
		}},
		// Per-day stats: every counter lands on today's field beside its
		// total; daily-stats reads them oldest first with zeros for gaps;
		// clean deletes day fields older than stats_days and keeps the
		// totals. Older days are written directly ("$day-N").
		{"daily stats", []dstep{
			{script: "daily-stats", args: []string{"3"}, days: dayIdx(3)}, // nothing yet
			call("configure", "10000", "2592000000", "2"),
			call("enqueue", enq(
				once("a"), once("b"), ready("r"),
				g("e", "t", "pe", "3", "0", "0", "0", "0", "0", "100", "0", "0", "", "0"),
				g("ea", "t", "pea", "3", "0", "0", "0", "0", "0", "100", "1", "0", "", "0"),
			)...),
			call("dequeue", deqArgs(3, 30000, 0, 0, 0)...),
			call("complete", "a", "$token:a", "", "0", "0", "0"),
			call("retry-or-archive", "b", "$token:b", "fatal", "0", "0"),
			call("retry-or-archive", "r", "$token:r", "again", "60000", "0"),
			// e and ea expired before they started: counted (ea also archived).
			{sleep: past, script: "dequeue", args: deqArgs(5, 30000, 0, 0, 0), fuzzy: []int{1}},
			{script: "daily-stats", args: []string{"1"}, days: dayIdx(1)},
			{cmd: []string{"HSET", "$key:stats", "processed:$day-1", "4", "failed:$day-1", "1",
				"processed:$day-2", "7", "expired:$day-2", "2", "archived:$day-400", "9"}},
			{script: "daily-stats", args: []string{"4"}, days: dayIdx(4)},
			call("queue-info"),
			call("janitor-lock", "acquire", "j1", "60000"),
			// stats_days 2 keeps today and yesterday.
			call("clean", "j1", "100", "0"),
			{script: "daily-stats", args: []string{"4"}, days: dayIdx(4)},
			call("configure", "10000", "2592000000", "1"),
			call("clean", "j1", "1", "0"), // one of yesterday's two fields: more
			call("clean", "j1", "1", "0"),
			{script: "daily-stats", args: []string{"3650"}, days: dayIdx(3650)},
			call("queue-info"),
			callErr(codeBadArg, "daily-stats", "0"),
			callErr(codeBadArg, "daily-stats", "3651"),
			callErr(codeBadArg, "daily-stats", "x"),
			{script: "daily-stats", args: nil, direct: true, wantErr: codeBadArg},
			{script: "daily-stats", args: []string{"1", "1"}, direct: true, wantErr: codeBadArg},
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "daily-stats", "1"),
		}},
		// configure on a queue nothing has written yet writes the schema.
		{"configure a new queue", []dstep{
			call("configure", "0", "1", "1"),
			call("queue-info"),
		}},
		{"run-archived and delete-task", []dstep{
			call("enqueue", enq(
				// q expires before it starts and is archived ('expired').
				g("q", "t", "pq", "0", "0", "0", "0", "0", "0", "100", "1", "0", "kq", "60000"),
				// x fails once (a retry), then is archived with its unique key freed.
				g("x", "t", "px", "2", "0", "0", "0", "0", "0", "60000", "0", "0", "kx", "60000"),
				once("y"),
				g("c", "t", "pc", "0", "0", "0", "0", "0", "0", "0", "0", "60000", "kc", "60000"),
				ready("l"),
			)...),
			{sleep: past, script: "dequeue", args: deqArgs(10, 30000, 0, 0, 0)},
			call("retry-or-archive", "x", "$token:x", "first", "0", "0"),
			call("dequeue", deqArgs(10, 30000, 10, 0, 0)...),
			call("retry-or-archive", "x", "$token:x", "fatal", "0", "1"),
			call("retry-or-archive", "y", "$token:y", "boom", "0", "0"),
			call("complete", "c", "$token:c", "res-c", "0", "0", "0"),
			call("queue-info"),
			call("task-info", "c"),
			call("task-info", "x"),
			call("task-info", "y"),
			call("task-info", "l"),
			callErr(codeNotFound, "task-info", "nope"),
			// z (scheduled) takes x's freed unique key.
			call("enqueue", enq(g("z", "t", "pz", "0", "0", "0", "0", "60000", "0", "0", "0", "0", "kx", "60000"))...),
			// x runs again: retry count 0, no error, no unique key.
			call("run-archived", "x"),
			// q runs again: its expiry is cleared.
			call("run-archived", "q"),
			callErr(codeNotFound, "run-archived", "x"),
			callErr(codeNotFound, "run-archived", "c"),
			callErr(codeNotFound, "run-archived", "l"),
			callErr(codeNotFound, "run-archived", "z"),
			callErr(codeNotFound, "run-archived", "nope"),
			callErr(codeBadArg, "run-archived", ""),
			{script: "run-archived", args: nil, direct: true, wantErr: codeBadArg},
			{sleep: past, script: "dequeue", args: deqArgs(10, 30000, 0, 0, 0)},
			call("complete", "x", "$token:x", "", "0", "0", "0"),
			call("enqueue", enq(
				ready("p"),
				g("e", "t", "pe", "3", "0", "0", "0", "0", "0", "60000", "0", "0", "ke", "60000"),
			)...),
			call("queue-info"),
			call("delete-task", "p"),
			call("delete-task", "e"),
			call("delete-task", "z"),
			call("delete-task", "c"),
			call("delete-task", "y"),
			callErr(codeConflict, "delete-task", "l"),
			callErr(codeConflict, "delete-task", "q"),
			callErr(codeNotFound, "delete-task", "p"),
			callErr(codeNotFound, "delete-task", "x"), // completed without retention: gone already
			callErr(codeNotFound, "delete-task", "nope"),
			callErr(codeBadArg, "delete-task", ""),
			callErr(codeBadArg, "delete-task", "a b"),
			{script: "delete-task", args: []string{"l", "q"}, direct: true, wantErr: codeBadArg},
			call("queue-info"),
			// Every id and unique key the deletes freed can be taken again.
			call("enqueue", enq(
				ready("p"), ready("y"), ready("c"),
				g("e", "t", "pe2", "0", "0", "0", "0", "0", "0", "0", "0", "0", "ke", "60000"),
				g("z", "t", "pz2", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kx", "60000"),
			)...),
			call("delete-task", "p"),
			call("queue-info"),
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "delete-task", "y"),
			callErr(codeSchema, "run-archived", "y"),
		}},
	}
}
