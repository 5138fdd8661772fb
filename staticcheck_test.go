package luaq_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// staticcheckPkg is the staticcheck command, pinned: CI runs only the
// README's `go test` command, so the lint runs from this test, fetched
// through the module proxy rather than required by go.mod (the SDK's module
// dependencies stay go-redis and the standard library).
const staticcheckPkg = "honnef.co/go/tools/cmd/staticcheck@v0.8.2"

// TestStaticcheck runs staticcheck on the root module and on every nested
// module (tools/bench has its own go.mod) and fails with its report if it
// finds anything. It skips only when the staticcheck module cannot be
// downloaded and LUAQ_REQUIRE_REDIS is unset; in CI it fails instead.
func TestStaticcheck(t *testing.T) {
	bin := installStaticcheck(t)
	for _, dir := range goModuleDirs(t) {
		t.Run(dir, func(t *testing.T) {
			cmd := exec.Command(bin, "./...")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("staticcheck ./... in %s: %v\n%s", dir, err, out)
			}
		})
	}
}

// installStaticcheck builds the pinned staticcheck into a temp dir and
// returns its path, skipping the test when the module proxy is out of reach
// and a real run is not required.
func installStaticcheck(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first on PATH
	if err != nil {
		t.Fatalf("finding the go command: %v", err)
	}
	gobin := t.TempDir()
	cmd := exec.Command(goBin, "install", staticcheckPkg)
	cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return filepath.Join(gobin, "staticcheck")
	}
	if os.Getenv("LUAQ_REQUIRE_REDIS") == "" && proxyUnreachable(string(out)) {
		t.Skipf("staticcheck not run: the module proxy is unreachable (set LUAQ_REQUIRE_REDIS=1 to fail instead): %v\n%s", err, out)
	}
	t.Fatalf("go install %s: %v\n%s", staticcheckPkg, err, out)
	return ""
}

// proxyUnreachable reports whether the go command's output says that a
// module could not be fetched because the network or the proxy was out of
// reach (as opposed to a build failure).
func proxyUnreachable(out string) bool {
	for _, sign := range []string{
		"dial tcp", "no such host", "connection refused", "network is unreachable",
		"i/o timeout", "TLS handshake timeout", "GOPROXY=off", "module lookup disabled",
		"server misbehaving", "temporary failure in name resolution",
	} {
		if strings.Contains(strings.ToLower(out), strings.ToLower(sign)) {
			return true
		}
	}
	return false
}

func TestProxyUnreachable(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want bool
	}{
		{"go: honnef.co/go/tools/cmd/staticcheck@v0.8.2: Get \"https://example.invalid/x\": dial tcp: lookup example.invalid: no such host", true},
		{"go: honnef.co/go/tools@v0.8.2: module lookup disabled by GOPROXY=off", true},
		{"go: downloading x\nread: connection refused", true},
		{"# honnef.co/go/tools/lintcmd\nlintcmd/cmd.go:1:1: undefined: foo", false},
		{"", false},
	} {
		if got := proxyUnreachable(tc.out); got != tc.want {
			t.Errorf("proxyUnreachable(%q) = %v, want %v", tc.out, got, tc.want)
		}
	}
}

// goModuleDirs lists the directories, relative to the repository root, that
// hold a go.mod: "." and the nested modules (node_modules and testdata are
// not walked).
func goModuleDirs(t *testing.T) []string {
	t.Helper()
	var dirs []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == "go.mod" {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("finding the go modules: %v", err)
	}
	if len(dirs) < 2 || dirs[0] != "." {
		t.Fatalf("go modules %q: want the root module first and tools/bench", dirs)
	}
	return dirs
}
