package luaq_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/luaq/luaq/scripts"
)

// TestReadmeMatchesCIAndBundle keeps the README honest: CI runs exactly the
// test command the README gives, and the README lists every script.
func TestReadmeMatchesCIAndBundle(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	ci, err := os.ReadFile(".ci/run")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```sh\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) < 2 {
		t.Fatalf("README has %d sh blocks, want the demo and the test command", len(blocks))
	}
	demo, test := strings.TrimSpace(blocks[0][1]), strings.TrimSpace(blocks[1][1])
	if demo != "go run ./tools/luaq demo" {
		t.Errorf("README demo command is %q", demo)
	}
	var ciLast string
	for _, line := range strings.Split(strings.TrimSpace(string(ci)), "\n") {
		ciLast = strings.TrimSpace(line)
	}
	if ciLast != test {
		t.Errorf(".ci/run ends with %q but the README's test command is %q", ciLast, test)
	}
	b, err := scripts.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Scripts() {
		if !strings.Contains(string(readme), "| `"+s.Name+"` |") {
			t.Errorf("README's script table does not list %q", s.Name)
		}
	}
}
