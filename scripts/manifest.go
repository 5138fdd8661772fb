package scripts

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// ManifestFile is the name of the checked-in manifest, beside the scripts.
const ManifestFile = "manifest.json"

// KeyPattern tells clients of other languages how to build a key from a
// queue name and a KEYS role.
const KeyPattern = "luaq:{<queue>}:<role>"

// Manifest describes the bundle for clients in any language: every script's
// SHA-1, KEYS (by role, in order), ARGV, reply and error codes.
type Manifest struct {
	Bundle     string          `json:"bundle"`
	Version    string          `json:"version"`
	KeyPattern string          `json:"key_pattern"`
	Errors     []ManifestError `json:"errors"`
	Scripts    []ManifestEntry `json:"scripts"`
}

// ManifestError is one code of the error table.
type ManifestError struct {
	Code    string `json:"code"`
	Meaning string `json:"meaning"`
}

// ManifestEntry is one script of the manifest.
type ManifestEntry struct {
	*Script
	// File is the name of the flattened script in an exported bundle.
	File string `json:"file"`
}

var errorLine = regexp.MustCompile(`^local ERR_[A-Z_]+ = '(LQ_[A-Z_]+)'\s*--\s*(.+)$`)

// ErrorTable reads the bundle's error codes and their meanings from
// lib/errors.lua.
func ErrorTable() ([]ManifestError, error) {
	src, err := ReadSource("lib/errors.lua")
	if err != nil {
		return nil, err
	}
	var out []ManifestError
	for _, line := range strings.Split(src, "\n") {
		if m := errorLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			out = append(out, ManifestError{Code: m[1], Meaning: strings.TrimSpace(m[2])})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("scripts: no error codes found in lib/errors.lua")
	}
	return out, nil
}

// Manifest builds the bundle's manifest.
func (b *Bundle) Manifest() (*Manifest, error) {
	errs, err := ErrorTable()
	if err != nil {
		return nil, err
	}
	m := &Manifest{Bundle: "luaq", Version: b.Version, KeyPattern: KeyPattern, Errors: errs}
	for _, s := range b.Scripts() {
		m.Scripts = append(m.Scripts, ManifestEntry{Script: s, File: s.Name + ".lua"})
	}
	return m, nil
}

// ManifestJSON renders the manifest as indented JSON with a final newline,
// exactly as it is checked in.
func (b *Bundle) ManifestJSON() ([]byte, error) {
	m, err := b.Manifest()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("scripts: encoding the manifest: %w", err)
	}
	return buf.Bytes(), nil
}

// Export writes every flattened script as <name>.lua, ready for SCRIPT LOAD,
// and the manifest as manifest.json into dir, creating dir if needed. A
// client in any language needs nothing else.
func (b *Bundle) Export(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("scripts: export: %w", err)
	}
	for _, s := range b.Scripts() {
		if err := os.WriteFile(filepath.Join(dir, s.Name+".lua"), []byte(s.Source), 0o644); err != nil {
			return fmt.Errorf("scripts: export %s: %w", s.Name, err)
		}
	}
	m, err := b.ManifestJSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), m, 0o644); err != nil {
		return fmt.Errorf("scripts: export manifest: %w", err)
	}
	return nil
}
