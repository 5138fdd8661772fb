package scripts

import (
	"bytes"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite scripts/manifest.json from the script headers")

// TestManifestIsCurrent fails when the checked-in manifest differs from the
// one the headers and flattened scripts produce. Regenerate it with
// go test ./scripts/ -run TestManifestIsCurrent -update
func TestManifestIsCurrent(t *testing.T) {
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	want, err := b.ManifestJSON()
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile(ManifestFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(ManifestFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale; regenerate it: go test ./scripts/ -run TestManifestIsCurrent -update", ManifestFile)
	}
}

// TestExportWritesLoadableFiles checks that an export holds every flattened
// script byte for byte (so its SHA-1 is the manifest's) and the manifest.
func TestExportWritesLoadableFiles(t *testing.T) {
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := b.Export(dir); err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Scripts() {
		got, err := os.ReadFile(dir + "/" + s.Name + ".lua")
		if err != nil || string(got) != s.Source {
			t.Errorf("%s.lua: %v (equal: %v)", s.Name, err, string(got) == s.Source)
		}
	}
	m, _ := b.ManifestJSON()
	if got, err := os.ReadFile(dir + "/" + ManifestFile); err != nil || !bytes.Equal(got, m) {
		t.Errorf("exported manifest differs: %v", err)
	}
}
