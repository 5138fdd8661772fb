package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the recovery scenario's worker
// child process, as the bench binary does.
func TestMain(m *testing.M) {
	if childMode() {
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestHarnessSmall runs the whole harness in-process at scale 0.005 on a
// private redis-server. It skips when redis-server is not installed; with
// -short it leaves out the recovery scenario (which waits on fixed timers).
func TestHarnessSmall(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not on PATH")
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		t.Skip("redis-benchmark not on PATH")
	}
	dir := t.TempDir()
	cfg := config{
		Scale:           0.005,
		JSON:            filepath.Join(dir, "bench.json"),
		PNG:             filepath.Join(dir, "bench.png"),
		RecoveryTimeout: 15 * time.Second,
		Progress:        testWriter{t},
		Command:         "go test",
	}
	if testing.Short() {
		only := map[string]bool{}
		for _, n := range scenarioNames {
			only[n] = n != "recovery"
		}
		cfg.Only = only
	}
	rep, err := run(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	rep.printTable(&sb)
	t.Log("\n" + sb.String())

	for _, s := range rep.Scenarios {
		for _, r := range []*sysResult{s.Luaq, s.Asynq} {
			if r != nil && r.Err != "" {
				t.Errorf("scenario %s: %s", s.Name, r.Err)
			}
		}
	}
	wantRows := 12
	if !testing.Short() {
		wantRows++
	}
	if len(rep.Rows) != wantRows {
		t.Errorf("got %d rows, want %d", len(rep.Rows), wantRows)
	}
	for _, r := range rep.Rows {
		if r.Luaq == nil || *r.Luaq < 0 {
			t.Errorf("row %q: no luaq value", r.Scenario)
		}
	}
	if rep.Ceiling == nil || rep.Ceiling.CallsPerSec <= 0 || rep.LuaqE2EShare == nil {
		t.Errorf("no server ceiling or share: %+v", rep.Ceiling)
	}
	data, err := os.ReadFile(cfg.JSON)
	if err != nil {
		t.Fatal(err)
	}
	var back report
	if err := json.Unmarshal(data, &back); err != nil || len(back.Rows) != len(rep.Rows) {
		t.Errorf("JSON round trip: %v, %d rows", err, len(back.Rows))
	}
	png, err := os.ReadFile(cfg.PNG)
	if err != nil || len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("PNG not written: %v", err)
	}
}
