package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
)

func testBundle(t *testing.T) *scripts.Bundle {
	t.Helper()
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runLuaq runs the luaq command in-process and returns its exit code and
// outputs.
func runLuaq(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestBundleExport(t *testing.T) {
	b := testBundle(t)
	dir := filepath.Join(t.TempDir(), "new", "bundle") // created by export
	code, out, errOut := runLuaq("bundle", "export", dir)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	want := "luaq bundle " + b.Version + ": " + strconv.Itoa(len(b.Scripts())) + " scripts and manifest.json written to " + dir + "\n"
	if out != want {
		t.Errorf("output %q, want %q", out, want)
	}

	wantFiles := []string{scripts.ManifestFile}
	for _, s := range b.Scripts() {
		wantFiles = append(wantFiles, s.Name+".lua")
		got, err := os.ReadFile(filepath.Join(dir, s.Name+".lua"))
		if err != nil {
			t.Errorf("%s: %v", s.Name, err)
			continue
		}
		if string(got) != s.Source {
			t.Errorf("%s.lua differs from the flattened script of the bundle", s.Name)
		}
	}
	manifest, err := b.ManifestJSON()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, scripts.ManifestFile)); err != nil || !bytes.Equal(got, manifest) {
		t.Errorf("exported manifest differs from Bundle.ManifestJSON (read error %v)", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var gotFiles []string
	for _, e := range entries {
		gotFiles = append(gotFiles, e.Name())
	}
	sort.Strings(gotFiles)
	sort.Strings(wantFiles)
	if strings.Join(gotFiles, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("exported files %v, want %v", gotFiles, wantFiles)
	}
}

func TestBundleExportFailure(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runLuaq("bundle", "export", filepath.Join(file, "dir"))
	if code != exitFailure {
		t.Fatalf("export under a regular file: exit %d, want %d", code, exitFailure)
	}
	if !strings.Contains(errOut, "luaq bundle export:") {
		t.Errorf("stderr %q does not report the failure", errOut)
	}
}

func TestBundleFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"bundle"}, exitUsage},
		{[]string{"bundle", "frobnicate"}, exitUsage},
		{[]string{"bundle", "export"}, exitUsage},
		{[]string{"bundle", "export", "a", "b"}, exitUsage},
		{[]string{"bundle", "export", "--bogus", "a"}, exitUsage},
		{[]string{"bundle", "export", "-h"}, exitOK},
		{[]string{"bundle", "load"}, exitUsage},
		{[]string{"bundle", "load", "--redis", "redis://127.0.0.1:1", "--cluster", "127.0.0.1:1"}, exitUsage},
		{[]string{"bundle", "load", "--redis", "http://127.0.0.1:1"}, exitUsage},
		{[]string{"bundle", "load", "--cluster", "nohostport"}, exitUsage},
		{[]string{"bundle", "load", "--cluster", "redis://127.0.0.1:1"}, exitUsage},
		{[]string{"bundle", "load", "--redis", "redis://127.0.0.1:1", "extra"}, exitUsage},
		{[]string{"bundle", "load", "--redis", "redis://127.0.0.1:1", "--timeout", "0s"}, exitUsage},
		{[]string{"bundle", "load", "-h"}, exitOK},
		{[]string{"bundle", "help"}, exitOK},
	} {
		if code, _, _ := runLuaq(tc.args...); code != tc.want {
			t.Errorf("%v: exit %d, want %d", tc.args, code, tc.want)
		}
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestBundleLoadUnreachable(t *testing.T) {
	addr := closedAddr(t)
	code, out, errOut := runLuaq("bundle", "load", "--redis", "redis://"+addr, "--timeout", "5s")
	if code != exitFailure {
		t.Fatalf("exit %d (stdout %q), want %d", code, out, exitFailure)
	}
	if !strings.Contains(errOut, addr) {
		t.Errorf("stderr %q does not name the node", errOut)
	}
	code, _, _ = runLuaq("bundle", "load", "--cluster", addr, "--timeout", "1s")
	if code != exitFailure {
		t.Fatalf("cluster: exit %d, want %d", code, exitFailure)
	}
}

// checkLoadOutput checks that out names every script with its SHA.
func checkLoadOutput(t *testing.T, b *scripts.Bundle, out string, nodes int) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	head := "luaq bundle " + b.Version + ": " + strconv.Itoa(len(b.Scripts())) + " scripts loaded on " + strconv.Itoa(nodes) + " node(s): "
	if !strings.HasPrefix(lines[0], head) {
		t.Errorf("first line %q, want prefix %q", lines[0], head)
	}
	if len(lines) != 1+len(b.Scripts()) {
		t.Fatalf("%d lines, want a header and one per script:\n%s", len(lines), out)
	}
	for i, s := range b.Scripts() {
		if f := strings.Fields(lines[1+i]); len(f) != 2 || f[0] != s.Name || f[1] != s.SHA {
			t.Errorf("line %q, want %s and %s", lines[1+i], s.Name, s.SHA)
		}
	}
}

// checkScriptsExist fails unless the node behind c has every script.
func checkScriptsExist(t *testing.T, c *redis.Client, b *scripts.Bundle) {
	t.Helper()
	var shas []string
	for _, s := range b.Scripts() {
		shas = append(shas, s.SHA)
	}
	got, err := c.ScriptExists(context.Background(), shas...).Result()
	if err != nil {
		t.Fatalf("SCRIPT EXISTS on %s: %v", c.Options().Addr, err)
	}
	for i, ok := range got {
		if !ok {
			t.Errorf("node %s lacks %s (%s)", c.Options().Addr, b.Scripts()[i].Name, shas[i])
		}
	}
}

func TestBundleLoad(t *testing.T) {
	b := testBundle(t)
	srv := redistest.Start(t)
	c := srv.Client(t)
	if !srv.External() {
		// A fresh server has none of the scripts: the command must load them.
		if err := c.ScriptFlush(context.Background()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := runLuaq("bundle", "load", "--redis", srv.URL())
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	checkLoadOutput(t, b, out, 1)
	checkScriptsExist(t, c, b)
}

func TestBundleLoadCluster(t *testing.T) {
	b := testBundle(t)
	cl := redistest.StartCluster(t, 3, 0)
	// One seed is enough: the client discovers the other nodes.
	code, out, errOut := runLuaq("bundle", "load", "--cluster", cl.Addrs()[0])
	if code != exitOK {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	checkLoadOutput(t, b, out, len(cl.Addrs()))
	masters := 0
	for _, n := range cl.Nodes() {
		if n.Role != redistest.RoleMaster {
			continue
		}
		masters++
		c := redis.NewClient(&redis.Options{Addr: n.Addr})
		t.Cleanup(func() { _ = c.Close() })
		checkScriptsExist(t, c, b)
		if !strings.Contains(out, n.Addr) {
			t.Errorf("output does not list master %s:\n%s", n.Addr, out)
		}
	}
	if masters != 3 {
		t.Fatalf("%d masters, want 3", masters)
	}
}
