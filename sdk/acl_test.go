package sdk

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// readmeACL returns the ACL SETUSER command the README documents for
// producers and workers.
func readmeACL(t *testing.T) []any {
	t.Helper()
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "ACL SETUSER luaq ") {
			var args []any
			for _, f := range strings.Fields(line) {
				args = append(args, f)
			}
			return args
		}
	}
	t.Fatal("README documents no `ACL SETUSER luaq ...` line")
	return nil
}

// TestLeastPrivilegeACL creates the README's ACL user on a private server,
// runs the whole lifecycle with it (enqueue, worker with retries and
// archiving, janitor, inspection), and shows that the same user can neither
// read nor write keys outside luaq's prefix, nor run arbitrary scripts.
func TestLeastPrivilegeACL(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client(t)
	ctx := context.Background()
	acl := readmeACL(t)
	// The README shows the password as <password>; use a real one here.
	for i, a := range acl {
		if a == "><password>" {
			acl[i] = ">s3cret"
		}
	}
	if err := admin.Do(ctx, acl...).Err(); err != nil {
		t.Fatalf("%v: %v", acl, err)
	}
	if err := admin.Set(ctx, "other:secret", "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Username: "luaq", Password: "s3cret"})
	t.Cleanup(func() { rdb.Close() })

	c, _ := NewClient(rdb)
	var runs atomic.Int32
	w, err := NewWorker(rdb, WorkerConfig{
		Queues: map[string]int{"acl": 1}, Concurrency: 4, JanitorInterval: 50 * time.Millisecond,
		Logger:  (&logCapture{}).logger(),
		Backoff: func(int, error, *Task) time.Duration { return time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	w.HandleFunc("job", func(ctx context.Context, task *Task) error {
		if runs.Add(1)%3 == 0 {
			return errors.New("every third run fails")
		}
		task.SetResult([]byte("ok"))
		return nil
	})
	stop := runWorker(t, w)
	for i := 0; i < 50; i++ {
		if _, err := c.Enqueue(ctx, "acl", "job", []byte{0, 1, 2}, MaxRetry(1), Retention(time.Minute)); err != nil {
			t.Fatalf("enqueue as the ACL user: %v", err)
		}
	}
	waitTerminal(t, c, "acl", 50)
	if list, err := c.Workers(ctx, "acl", 10); err != nil || len(list) != 1 {
		t.Errorf("Workers as the ACL user: %v, %v", list, err)
	}
	if _, err := c.GetTask(ctx, "acl", "1"); err != nil {
		t.Errorf("GetTask as the ACL user: %v", err)
	}
	if _, err := c.DailyStats(ctx, "acl", 2); err != nil {
		t.Errorf("DailyStats as the ACL user: %v", err)
	}
	stop()

	denied := []struct {
		name string
		cmd  []any
	}{
		{"read outside the prefix", []any{"GET", "other:secret"}},
		{"write outside the prefix", []any{"SET", "other:new", "x"}},
		{"delete outside the prefix", []any{"DEL", "other:secret"}},
		{"list keys", []any{"KEYS", "*"}},
		{"flush", []any{"FLUSHALL"}},
		{"arbitrary script", []any{"EVAL", "return 1", "0"}},
	}
	for _, d := range denied {
		err := rdb.Do(ctx, d.cmd...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
			t.Errorf("%s (%v): err %v, want NOPERM", d.name, d.cmd, err)
		}
	}
	// The bundle's own script on another prefix is refused for the key, not
	// for a missing script: check with the real SHA.
	s, _ := c.loader.Bundle().Script("queue-info")
	var foreign []string
	for _, role := range s.Roles() {
		foreign = append(foreign, "other:{q}:"+role)
	}
	err = rdb.EvalSha(ctx, s.SHA, foreign).Err()
	if err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("queue-info on other:* keys: %v, want NOPERM", err)
	}
	if v, _ := admin.Get(ctx, "other:secret").Result(); v != "x" {
		t.Errorf("other:secret = %q after the run", v)
	}
}
