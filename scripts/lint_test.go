package scripts_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/luaq/luaq/scripts"
	"github.com/luaq/luaq/scripttest"
)

// TestLint runs the portable-subset lint over every flattened script and
// every helper file, and, when luac5.1 is on PATH, compiles every flattened
// script with the real Lua 5.1 parser (which rejects syntax gopher-lua takes).
func TestLint(t *testing.T) {
	b := testBundle(t)
	for _, s := range b.Scripts() {
		t.Run("flattened/"+s.Name, func(t *testing.T) {
			for _, hit := range scripttest.Lint(s.Source) {
				t.Error(hit)
			}
		})
	}
	libs, err := scripts.LibFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(libs) == 0 {
		t.Fatal("no lib files")
	}
	for _, name := range libs {
		t.Run(name, func(t *testing.T) {
			src, err := scripts.ReadSource(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, hit := range scripttest.Lint(src) {
				t.Error(hit)
			}
		})
	}
	for _, s := range b.Scripts() {
		t.Run("raw/"+s.Name, func(t *testing.T) {
			src, err := scripts.ReadSource(s.Name + ".lua")
			if err != nil {
				t.Fatal(err)
			}
			for _, hit := range scripttest.Lint(src) {
				t.Error(hit)
			}
		})
	}

	t.Run("luac5.1", func(t *testing.T) {
		luac, err := exec.LookPath("luac5.1")
		if err != nil {
			t.Skip("luac5.1 not on PATH (apt-get install lua5.1); skipping the Lua 5.1 parse check of the flattened scripts")
		}
		for _, s := range b.Scripts() {
			t.Run(s.Name, func(t *testing.T) {
				cmd := exec.Command(luac, "-p", "-")
				cmd.Stdin = strings.NewReader(s.Source)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					t.Errorf("luac5.1 -p rejects %s: %v\n%s", s.Name, err, out.String())
				}
			})
		}
	})
}
