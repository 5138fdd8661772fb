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
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/luaq/luaq/internal/redistest"
	"github.com/luaq/luaq/scripts"
)

const (
	conformanceNodeTimeout = 2 * time.Minute
)

func TestNodeConformance(t *testing.T) {
	node := interopNode(t) // finds node and npm and makes node_modules current, once
	dir, err := os.Getwd()
	if err != nil {
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
