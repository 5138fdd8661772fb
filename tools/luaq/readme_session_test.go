package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
)

// The README section "Using luaq from another language" shows a shell
// session (a ```console block): it exports the bundle, loads scripts with
// redis-cli, enqueues a task and leases it by SHA. TestReadmeSession runs
// that session, command by command, in one POSIX shell against a private
// redis-server and compares every output with the README's.
//
// What the test changes, and why:
//   - the port 6379 becomes the private server's port;
//   - the export directory /tmp/luaq-bundle becomes a temporary directory;
//   - "go run ./tools/luaq" becomes this test binary acting as luaq
//     (TestReadmeSessionHelper), so no compiler runs inside the test;
//   - a command that starts with redis-cli prints to the reader's terminal,
//     where redis-cli formats replies ("1) (integer) 5"); the test gets
//     the same format through a pipe by adding --no-raw;
//   - Unix millisecond timestamps (13 digits) differ on every run and are
//     compared as "some timestamp".

const (
	readmeSection   = "## Using luaq from another language"
	readmeExportDir = "/tmp/luaq-bundle"
	readmePort      = "6379"
	helperEnv       = "LUAQ_README_SESSION_HELPER"
)

// TestReadmeSessionHelper is not a test: run with LUAQ_README_SESSION_HELPER=1
// it is the luaq command, with the arguments after "--".
func TestReadmeSessionHelper(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	os.Exit(run(flag.Args(), os.Stdout, os.Stderr))
}

// sessionStep is one command of the session and the output the README
// shows for it.
type sessionStep struct {
	command string // continuation lines joined
	output  string
}

// readmeSession extracts the console block of the README's section.
func readmeSession(t *testing.T) []sessionStep {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(data), "\n"+readmeSection+"\n")
	if !ok {
		t.Fatalf("README has no section %q", readmeSection)
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	_, block, ok := strings.Cut(sec, "```console\n")
	if !ok {
		t.Fatalf("README section %q has no ```console block", readmeSection)
	}
	block, _, _ = strings.Cut(block, "```")

	var steps []sessionStep
	lines := strings.Split(strings.TrimRight(block, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		cmd, ok := strings.CutPrefix(line, "$ ")
		if !ok {
			if len(steps) == 0 {
				t.Fatalf("README session starts with %q, not a command", line)
			}
			steps[len(steps)-1].output += line + "\n"
			continue
		}
		for strings.HasSuffix(cmd, "\\") && i+1 < len(lines) {
			i++
			cmd = strings.TrimRight(strings.TrimSuffix(cmd, "\\"), " ") + " " + strings.TrimSpace(lines[i])
		}
		steps = append(steps, sessionStep{command: cmd})
	}
	return steps
}

// needTool returns the path of name, or skips the test (fails it when
// LUAQ_REQUIRE_REDIS=1).
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv(redistest.EnvRequire) == "1" {
			t.Fatalf("%s=1 but %s is not on PATH", redistest.EnvRequire, name)
		}
		t.Skipf("%s is not on PATH", name)
	}
	return p
}

var timestampRE = regexp.MustCompile(`\b\d{13}\b`)

func normalizeSession(s string) string {
	return timestampRE.ReplaceAllString(s, "<unix-ms>")
}

func TestReadmeSession(t *testing.T) {
	steps := readmeSession(t)
	if len(steps) < 5 {
		t.Fatalf("README session has %d commands; want export, loads, enqueue and lease", len(steps))
	}
	// The session must name the port and directory the test replaces, or it
	// would reach a server (or write files) the test does not own.
	for i, s := range steps {
		if n := strings.Count(s.command, "redis-cli"); n != strings.Count(s.command, "redis-cli -p "+readmePort+" ") {
			t.Fatalf("README session step %d runs redis-cli without -p %s first: %s", i+1, readmePort, s.command)
		}
		if strings.Contains(s.command, "luaq bundle export") && !strings.Contains(s.command, readmeExportDir) {
			t.Fatalf("README session step %d exports elsewhere than %s: %s", i+1, readmeExportDir, s.command)
		}
	}
	sh := needTool(t, "sh")
	needTool(t, "redis-cli")
	srv := redistest.Start(t)
	if srv.External() {
		t.Skip("the README session writes fixed key names; it runs only on a private server")
	}
	_, port, err := net.SplitHostPort(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	exportDir := filepath.Join(tmp, "luaq-bundle")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	luaq := filepath.Join(tmp, "luaq")
	wrapper := fmt.Sprintf("#!/bin/sh\n%s=1 exec '%s' -test.run='^TestReadmeSessionHelper$' -- \"$@\"\n", helperEnv, self)
	if err := os.WriteFile(luaq, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}

	// One shell runs every command (the session keeps SHAs in shell
	// variables); a marker line before each separates their outputs.
	const marker = "@@luaq-readme-step@@"
	var script strings.Builder
	for _, s := range steps {
		cmd := strings.ReplaceAll(s.command, readmeExportDir, exportDir)
		cmd = strings.ReplaceAll(cmd, "-p "+readmePort, "-p "+port)
		if rest, ok := strings.CutPrefix(cmd, "go run ./tools/luaq "); ok {
			cmd = "'" + luaq + "' " + rest
		}
		if rest, ok := strings.CutPrefix(cmd, "redis-cli "); ok {
			cmd = "redis-cli --no-raw " + rest
		}
		fmt.Fprintf(&script, "echo '%s'\n%s 2>&1\n", marker, cmd)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, sh, "-c", script.String())
	c.Dir = filepath.Join("..", "..") // the repository root, as in the README
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	if err := c.Run(); err != nil {
		t.Fatalf("session: %v\n%s", err, out.String())
	}
	parts := strings.Split(out.String(), marker+"\n")
	if len(parts) != len(steps)+1 || parts[0] != "" {
		t.Fatalf("session printed %d step outputs for %d commands:\n%s", len(parts)-1, len(steps), out.String())
	}
	for i, s := range steps {
		got := normalizeSession(strings.ReplaceAll(parts[i+1], exportDir, readmeExportDir))
		want := normalizeSession(s.output)
		if got != want {
			t.Errorf("README session step %d:\n$ %s\ngot:\n%swant (as the README shows):\n%s", i+1, s.command, got, want)
		}
	}

	// Beyond the printed outputs: the task the session enqueued is the one
	// it leased, and it is still leased under token 1.
	rdb := srv.Client(t)
	token, err := rdb.HGet(context.Background(), "luaq:{emails}:tokens", "welcome-1").Result()
	if err != nil || token != "1" {
		t.Errorf("after the session, welcome-1's token is %q (%v), want 1", token, err)
	}
	if n, err := rdb.ZCard(context.Background(), "luaq:{emails}:active").Result(); err != nil || n != 1 {
		t.Errorf("after the session, %d tasks are active (%v), want 1", n, err)
	}
}
