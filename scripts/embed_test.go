package scripts

import (
	"strings"
	"testing"
	"testing/fstest"
)

func TestLoadEmbeddedBundle(t *testing.T) {
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clean", "complete", "configure", "daily-stats", "delete-task", "dequeue", "deregister", "enqueue", "extend", "janitor-lock", "list-workers", "prune-workers", "queue-info", "register", "requeue", "retry-or-archive", "run-archived", "set-paused", "task-info"}
	var got []string
	for _, s := range b.Scripts() {
		got = append(got, s.Name)
		if strings.Contains(s.Source, includePrefix) {
			t.Errorf("%s: flattened source still has an include line", s.Name)
		}
		if !strings.HasPrefix(s.Source, "-- luaq bundle "+Version+": "+s.Name+"\n") {
			t.Errorf("%s: flattened source does not start with the version stamp", s.Name)
		}
		if len(s.SHA) != 40 {
			t.Errorf("%s: SHA %q", s.Name, s.SHA)
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("scripts = %v, want %v", got, want)
	}
}

func TestEachLibIsInlinedOnce(t *testing.T) {
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.Script("complete")
	if err != nil {
		t.Fatal(err)
	}
	// complete uses these helpers (some only through others) ...
	for _, fn := range []string{"err_reply", "arg_int", "now_ms", "record_decode", "lease_tasks", "archive_task", "signal_wake", "expire_task"} {
		if n := strings.Count(s.Source, "local function "+fn+"("); n != 1 {
			t.Errorf("%s is defined %d times in complete, want 1", fn, n)
		}
	}
	// ... and never these, so they are not compiled on every call.
	for _, fn := range []string{"reclaim_expired", "sweep_expired", "unique_sweep", "unique_holder", "worker_forget", "arg_flag"} {
		if strings.Contains(s.Source, "local function "+fn+"(") {
			t.Errorf("complete carries %s, which it never calls", fn)
		}
	}
	if !strings.Contains(s.Source, "local K = {meta = KEYS[1], tasks = KEYS[2],") {
		t.Errorf("complete does not start with its K table:\n%s", s.Source[:200])
	}
}

func TestBadBundles(t *testing.T) {
	good := "-- luaq script: %s\n-- Does a thing.\n-- KEYS:\n--   meta  the meta hash\n-- ARGV:\n-- REPLY: 1\n-- ERRORS: LQ_BADARG\n-- COST: O(1)\n-- WHEN FULL: reads\n"
	tests := []struct {
		name    string
		files   map[string]string
		wantErr string
	}{
		{"no name line", map[string]string{"a.lua": "return 1\n"}, "first line"},
		{"name mismatch", map[string]string{"a.lua": strings.Replace(good, "%s", "b", 1)}, "want \"a\""},
		{"missing section", map[string]string{"a.lua": "-- luaq script: a\n-- Does.\n-- KEYS:\n--   meta m\n"}, "no ARGV"},
		{"bad arg type", map[string]string{"a.lua": strings.Replace(strings.Replace(good, "%s", "a", 1), "-- ARGV:\n", "-- ARGV:\n--   x  float  a number\n", 1)}, "type \"float\""},
		{"missing lib", map[string]string{"a.lua": strings.Replace(good, "%s", "a", 1) + "-- @include nope\nreturn 1\n"}, "includes \"nope\""},
		{"include cycle", map[string]string{
			"a.lua":     strings.Replace(good, "%s", "a", 1) + "-- @include x\n",
			"lib/x.lua": "-- @include y\n",
			"lib/y.lua": "-- @include x\n",
		}, "include cycle"},
		{"duplicate role", map[string]string{"a.lua": strings.Replace(strings.Replace(good, "%s", "a", 1), "-- ARGV:", "--   meta again\n-- ARGV:", 1)}, "listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, body := range tc.files {
				fsys[name] = &fstest.MapFile{Data: []byte(body)}
			}
			_, err := LoadFS(fsys)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("LoadFS error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}
