package scripts_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/luaq/luaq/scripttest"
)

// TestTaskInfoStates reads one task through every state it can be in and
// compares the whole reply.
func TestTaskInfoStates(t *testing.T) {
	env := scripttest.New(t)
	now := nowMS(env)
	x := tk("x")
	x.maxRetry = 1
	mustRun(t, env, "enqueue", enqArgs(x)...)
	info := func(state string, at, retried int64, lastErr, result string) []any {
		return []any{state, at, "t", "p-x", retried, int64(1), int64(0), int64(0), int64(0), int64(0), now, lastErr, result}
	}
	check := func(want []any) {
		t.Helper()
		if d := cmp.Diff(want, mustRun(t, env, "task-info", "x")); d != "" {
			t.Errorf("task-info (-want +got):\n%s", d)
		}
	}
	check(info("pending", 0, 0, "", ""))
	dequeue(t, env, 1, 1000, 10, 10, 0)
	check(info("active", now+1000, 0, "", ""))
	mustRun(t, env, "retry-or-archive", "x", tokenOf(t, env, "x"), "boom", "500", "0")
	check(info("retry", now+500, 1, "boom", ""))
	advance(env, 500)
	dequeue(t, env, 1, 1000, 10, 10, 0)
	mustRun(t, env, "retry-or-archive", "x", tokenOf(t, env, "x"), "boom again", "0", "0")
	check(info("archived", now+500, 1, "boom again", ""))
	mustRun(t, env, "delete-task", "x")
	checkCode(t, run(t, env, "task-info", "x"), "LQ_NOTFOUND")

	// A scheduled task, and a completed one kept with retention.
	y := tk("y")
	y.in = 2000
	mustRun(t, env, "enqueue", enqArgs(y)...)
	res := run(t, env, "task-info", "y")
	if res.Err != nil || res.Value.([]any)[0] != "scheduled" || res.Value.([]any)[1] != nowMS(env)+2000 {
		t.Errorf("task-info y = %v, %v; want scheduled at now+2000", res.Value, res.Err)
	}
}

// TestTaskInfoCompletedWithRetention checks that a retained task reports its
// completion time and its result.
func TestTaskInfoCompletedWithRetention(t *testing.T) {
	env := scripttest.New(t)
	args := enqArgs(tk("r"))
	args[1+fRetention] = "60000"
	mustRun(t, env, "enqueue", args...)
	dequeue(t, env, 1, 1000, 10, 10, 0)
	advance(env, 70)
	mustRun(t, env, "complete", "r", tokenOf(t, env, "r"), "the result", "0", "0", "0")
	got := mustRun(t, env, "task-info", "r").([]any)
	if got[0] != "completed" || got[1] != nowMS(env) || got[9] != int64(60000) || got[12] != "the result" {
		t.Errorf("task-info r = %v", got)
	}
	unchanged(t, env, func() { mustRun(t, env, "task-info", "r") })
}
