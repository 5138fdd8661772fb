package scripts_test

// Differential scenarios (see diff_test.go) for the janitor lock, clean,
// expiry, unique keys and retention. Only long delays (a minute) are relied
// on for "not yet", and sleeps well past short delays (100 ms) for "passed".
// Enqueue groups are written with all 14 fields: id type payload max_retry
// timeout deadline at in expire_at expire_in expire_archive retention
// unique_key unique_ttl.

import "time"

func expiryScenarios() []dscenario {
	const past = 150 * time.Millisecond // sleep past a 100 ms delay
	return []dscenario{
		{"janitor lock", []dstep{
			call("janitor-lock", "renew", "j1", "1000"),
			call("janitor-lock", "release", "j1", "0"),
			call("janitor-lock", "acquire", "j1", "60000"),
			call("janitor-lock", "acquire", "j2", "60000"),
			call("janitor-lock", "acquire", "j1", "60000"),
			call("janitor-lock", "renew", "j2", "60000"),
			call("janitor-lock", "release", "j2", "0"),
			call("janitor-lock", "renew", "j1", "120000"),
			callErr(codeNotOwner, "clean", "j2", "100", "0"),
			call("clean", "j1", "100", "0"),
			call("janitor-lock", "release", "j1", "0"),
			callErr(codeNotOwner, "clean", "j1", "100", "0"),
			call("janitor-lock", "release", "j1", "0"),
			call("janitor-lock", "acquire", "j2", "50"),
			{sleep: past, script: "janitor-lock", args: []string{"renew", "j2", "1000"}},
			callErr(codeNotOwner, "clean", "j2", "100", "0"),
			call("janitor-lock", "acquire", "j1", "60000"),
			callErr(codeBadArg, "janitor-lock", "steal", "j1", "1000"),
			callErr(codeBadArg, "janitor-lock", "acquire", "j 1", "1000"),
			callErr(codeBadArg, "janitor-lock", "acquire", "", "1000"),
			callErr(codeBadArg, "janitor-lock", "renew", "j1", "0"),
			callErr(codeBadArg, "janitor-lock", "renew", "j1", "86400001"),
			callErr(codeBadArg, "janitor-lock", "release", "j1", "-1"),
			{script: "janitor-lock", args: []string{"acquire", "j1"}, direct: true, wantErr: codeBadArg},
			callErr(codeBadArg, "clean", "j1", "0", "0"),
			callErr(codeBadArg, "clean", "j1", "1001", "0"),
			callErr(codeBadArg, "clean", "", "10", "0"),
			callErr(codeBadArg, "clean", "j1", "10", "-1"),
			callErr(codeBadArg, "clean", "j2", "10", "31536000001"),
			{script: "clean", args: []string{"j1", "10"}, direct: true, wantErr: codeBadArg},
			{cmd: []string{"HSET", "$key:meta", "schema", "3"}},
			callErr(codeSchema, "janitor-lock", "release", "j1", "0"),
			callErr(codeSchema, "clean", "j1", "10", "0"),
		}},
		{"expiry", []dstep{
			call("enqueue", enq(
				g("a", "t", "pa", "3", "0", "0", "0", "0", "0", "100", "0", "0", "", "0"),
				g("b", "t", "pb", "3", "0", "0", "0", "0", "0", "100", "1", "0", "", "0"),
				g("c", "t", "pc", "3", "0", "0", "0", "0", "0", "60000", "1", "0", "", "0"),
				g("d", "t", "pd", "3", "0", "0", "0", "0", "$now+100", "0", "0", "0", "kd", "60000"),
				g("s", "t", "ps", "3", "0", "0", "0", "50", "0", "100", "1", "0", "", "0"),
				g("s2", "t", "ps2", "3", "0", "0", "0", "50", "0", "100", "0", "0", "ks2", "60000"),
				g("f", "t", "pf", "3", "0", "0", "0", "60000", "0", "120000", "0", "0", "", "0"),
			)...),
			callErr(codeConflict, "enqueue", enq(g("x", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kd", "10"))...),
			call("queue-info"),
			// a, b, d and the promoted s expired; c is leased and leaves the index.
			{sleep: past, script: "dequeue", args: deqArgs(10, 30000, 1, 0, 0)},
			call("enqueue", enq(g("d2", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kd", "60000"))...),
			call("enqueue", enq(
				g("p1", "t", "p1", "0", "0", "0", "0", "0", "0", "100", "0", "0", "kp1", "60000"),
				g("p2", "t", "p2", "0", "0", "0", "0", "0", "0", "100", "1", "0", "", "0"),
				g("x", "t", "px", "0", "0", "0", "0", "0", "0", "60000", "0", "0", "", "0"),
			)...),
			call("janitor-lock", "acquire", "j1", "60000"),
			// s2 (scheduled, expired first) alone: the limit is used up.
			{sleep: past, script: "clean", args: []string{"j1", "1", "0"}},
			call("clean", "j1", "1000", "0"),
			call("clean", "j1", "1000", "0"),
			call("queue-info"),
			call("enqueue", enq(g("y", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kp1", "60000"))...),
			call("dequeue", deqArgs(10, 30000, 0, 0, 0)...),
			call("complete", "c", "$token:c", "", "0", "0", "0"),
			call("janitor-lock", "release", "j1", "0"),
			call("queue-info"),
		}},
		{"unique and retention", []dstep{
			call("enqueue", enq(g("a", "t", "pa", "3", "0", "0", "0", "0", "0", "0", "0", "60000", "k", "60000"))...),
			callErr(codeConflict, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k", "1000"))...),
			callErr(codeBadArg, "enqueue", enq(
				g("b", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k2", "1000"),
				g("c", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k2", "1000"),
			)...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k3", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "", "1000"))...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "$now+60000", "60000", "0", "0", "", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "$now+0", "0", "0", "0", "", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "2000", "0", "1000", "0", "0", "", "0"))...),
			callErr(codeBadArg, "enqueue", enq(g("b", "t", "", "0", "0", "0", "0", "0", "0", "0", "2", "0", "", "0"))...),
			call("enqueue", enq(g("c", "t", "pc", "3", "0", "0", "0", "0", "0", "0", "0", "100", "kc", "100"))...),
			call("dequeue", deqArgs(2, 30000, 0, 0, 0)...),
			call("complete", "a", "$token:a", "res-a", "0", "0", "0"),
			call("complete", "c", "$token:c", "\x00bin:ary\xff", "0", "0", "0"),
			call("queue-info"),
			callErr(codeConflict, "enqueue", enq(g("a", "t", "", "0", "0", "0", "0", "0", "0", "0", "0", "0", "", "0"))...),
			call("enqueue", enq(
				g("b", "t", "pb", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k", "60000"),
				g("d", "t", "pd", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kd", "100"),
			)...),
			call("janitor-lock", "acquire", "j1", "60000"),
			// c's retention and kd's TTL have passed.
			{sleep: past, script: "clean", args: []string{"j1", "100", "0"}},
			call("enqueue", enq(
				g("c", "t", "pc again", "0", "0", "0", "0", "0", "0", "0", "0", "0", "", "0"),
				g("e", "t", "pe", "0", "0", "0", "0", "0", "0", "0", "0", "0", "kd", "60000"),
			)...),
			call("dequeue", deqArgs(5, 30000, 0, 0, 0)...),
			call("retry-or-archive", "b", "$token:b", "fatal", "0", "1"),
			call("enqueue", enq(g("f", "t", "pf", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k", "60000"))...),
			call("complete", "d", "$token:d", "", "1", "30000", "0"),
			call("clean", "j1", "100", "0"),
			call("janitor-lock", "release", "j1", "0"),
			call("queue-info"),
		}},
		// A task leased before its expiry, then requeued or retried: both
		// engines must agree on what dequeue does with it after expire_at
		// (see TestExpiryNoLongerAppliesOnceStarted for what it should do).
		// A 2s expiry: the first dequeue must come before it even on a
		// loaded machine; the last one comes after it.
		{"expiry after start", []dstep{
			call("enqueue", enq(
				g("g", "t", "pg", "3", "0", "0", "0", "0", "0", "2000", "0", "0", "kg", "60000"),
				g("h", "t", "ph", "3", "0", "0", "0", "0", "0", "2000", "1", "0", "", "0"),
			)...),
			call("dequeue", deqArgs(2, 30000, 0, 0, 0)...),
			call("requeue", "g", "$token:g"),
			call("retry-or-archive", "h", "$token:h", "boom", "0", "0"),
			{sleep: 2*time.Second + past, script: "dequeue", args: deqArgs(2, 30000, 10, 0, 0), fuzzy: []int{1}},
			call("queue-info"),
		}},
		{"clean reclaim and trim", []dstep{
			{cmd: []string{"HSET", "$key:meta", "archive_max", "1"}},
			call("enqueue", enq(
				g("r1", "t", "p1", "1", "0", "0", "0", "0", "0", "0", "0", "0", "", "0"),
				g("r2", "t", "p2", "0", "0", "0", "0", "0", "0", "0", "0", "0", "k2", "60000"),
				g("r3", "t", "p3", "0", "0", "0", "0", "0", "0", "0", "0", "0", "", "0"),
			)...),
			call("dequeue", deqArgs(3, 50, 0, 0, 0)...),
			call("janitor-lock", "acquire", "j1", "60000"),
			{sleep: 100 * time.Millisecond, script: "clean", args: []string{"j1", "2", "60000"}},
			call("clean", "j1", "2", "60000"),
			call("clean", "j1", "2", "60000"),
			call("queue-info"),
			{cmd: []string{"HSET", "$key:meta", "archive_max", "0"}},
			call("clean", "j1", "1000", "0"),
			call("janitor-lock", "release", "j1", "0"),
			call("queue-info"),
		}},
	}
}
