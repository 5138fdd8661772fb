package node_test

// TestNodeConformance replays the shared conformance vectors
// (scripts/testdata/conformance, format in CONFORMANCE.md) with the Node
// runner conformance.js: ioredis and the exported bundle only, by EVALSHA,
// against a private redis-server. The Go runner of the same vectors is
// scripts/conformance_test.go.
//
// It needs node (>= 18) and npm on PATH; without them it skips, unless
// LUAQ_REQUIRE_REDIS=1, which makes that a failure. node_modules is
// installed with `npm ci` when it does not hold what package-lock.json pins,
// under a lock file shared with the other Node tests of this directory.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
)

const (
	conformanceNodeTimeout = 2 * time.Minute
	conformanceNpmTimeout  = 3 * time.Minute
)

func TestNodeConformance(t *testing.T) {
	node, npm := conformanceTools(t)
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if err := conformanceNpmCI(t, npm, dir); err != nil {
		t.Fatal(err)
	}
	vectors, err := filepath.Abs(filepath.Join(dir, "..", "..", "scripts", "testdata", "conformance"))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(vectors, "*.json")); len(m) == 0 {
		t.Fatalf("no conformance vectors in %s", vectors)
	}

	srv := redistest.Start(t)
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	if err := b.Export(bundle); err != nil {
		t.Fatal(err)
	}

	env := append(os.Environ(),
		"LUAQ_BUNDLE_DIR="+bundle,
		"LUAQ_VECTORS_DIR="+vectors,
		"LUAQ_REDIS_ADDR="+srv.Addr(),
	)
	if srv.External() {
		env = append(env, "LUAQ_REDIS_URL="+srv.URL()) // may carry a password
	}
	ctx, cancel := context.WithTimeout(context.Background(), conformanceNodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "conformance.js")
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err = cmd.Run()
	t.Logf("node conformance.js (%s):\n%s", time.Since(start).Round(time.Millisecond), out.Bytes())
	if err != nil {
		t.Fatalf("node conformance.js failed: %v (context: %v); its output is above", err, ctx.Err())
	}
}

// conformanceTools finds node (>= 18) and npm, or skips the test (fails it
// with LUAQ_REQUIRE_REDIS=1).
func conformanceTools(t *testing.T) (node, npm string) {
	t.Helper()
	skip := func(msg string) {
		t.Helper()
		if os.Getenv(redistest.EnvRequire) == "1" {
			t.Fatalf("%s (%s=1 makes this a failure)", msg, redistest.EnvRequire)
		}
		t.Skip(msg)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		skip("node is not on PATH: skipping the Node.js conformance run (install Node.js >= 18)")
	}
	npm, err = exec.LookPath("npm")
	if err != nil {
		skip("npm is not on PATH: skipping the Node.js conformance run (install npm)")
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		t.Fatalf("node --version: %v", err)
	}
	version := strings.TrimSpace(string(v))
	if major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(version, "v"), ".", 2)[0]); major < 18 {
		skip(fmt.Sprintf("node %s is too old: the conformance runner needs >= 18", version))
	}
	return node, npm
}

// conformanceNpmCI runs `npm ci` in dir when node_modules does not hold
// exactly what package-lock.json pins. npm ci deletes node_modules first, so
// an install that is current is never redone, and installs are serialised
// by a lock file in the temp dir (the same one the interop tests take).
func conformanceNpmCI(t *testing.T, npm, dir string) error {
	t.Helper()
	stale, why, err := conformanceModulesStale(dir)
	if err != nil || !stale {
		return err
	}
	unlock, err := conformanceLock(filepath.Join(os.TempDir(), fmt.Sprintf("luaq-node-npm-ci-%x.lock", sha256.Sum256([]byte(dir)))))
	if err != nil {
		return err
	}
	defer unlock()
	if stale, why, err = conformanceModulesStale(dir); err != nil || !stale {
		return err // installed by another process meanwhile
	}
	t.Logf("npm ci in %s: %s", dir, why)
	ctx, cancel := context.WithTimeout(context.Background(), conformanceNpmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci in %s (%s): %v\n%s", dir, why, err, out)
	}
	if stale, why, err := conformanceModulesStale(dir); err != nil || stale {
		return fmt.Errorf("node_modules still stale after npm ci: %s %v", why, err)
	}
	return nil
}

// conformanceModulesStale reports whether node_modules lacks a package of
// package-lock.json or holds another version of it.
func conformanceModulesStale(dir string) (bool, string, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false, "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(raw, &lock); err != nil {
		return false, "", fmt.Errorf("package-lock.json: %w", err)
	}
	for p, want := range lock.Packages {
		if !strings.HasPrefix(p, "node_modules/") {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(p), "package.json"))
		if err != nil {
			return true, p + " is missing", nil
		}
		var got struct {
			Version string `json:"version"`
		}
		if json.Unmarshal(raw, &got) != nil || got.Version != want.Version {
			return true, fmt.Sprintf("%s is %q, package-lock.json pins %q", p, got.Version, want.Version), nil
		}
	}
	return false, "", nil
}

// conformanceLock takes an exclusive lock file, breaking one older than the
// npm timeout (left by a killed process).
func conformanceLock(path string) (func(), error) {
	deadline := time.Now().Add(conformanceNpmTimeout + 30*time.Second)
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			f.Close()
			return func() { os.Remove(path) }, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return nil, err
		}
		if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) > conformanceNpmTimeout {
			os.Remove(path)
			continue
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("timed out waiting for %s", path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
