// Package scripts holds luaq's Lua bundle: one <operation>.lua per operation,
// shared helpers in lib/, and the Go code that reads the script headers and
// flattens each script into the exact text that is loaded into Redis.
//
// Flattening inlines every "-- @include <lib>" line (each lib once, in
// dependency order), then prefixes two lines: a comment that stamps the bundle
// version (so every release has new SHAs) and the table K that names the
// script's KEYS by the roles its header declares, in order. A script therefore
// cannot disagree with its header about the order of its keys.
package scripts

import (
	"crypto/sha1"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// Version is the bundle's semantic version. It is stamped into every
// flattened script, so changing it changes every SHA.
const Version = "0.2.0"

//go:embed *.lua lib/*.lua manifest.json
var sources embed.FS

// Key is one entry of a script's KEYS, named by its role in the queue.
type Key struct {
	Role string `json:"role"`
	Doc  string `json:"doc"`
}

// Arg is one entry of a script's ARGV.
type Arg struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Doc  string `json:"doc"`
	// Repeated marks arguments of the group that repeats once per item
	// (e.g. once per task of a batch), after the fixed arguments.
	Repeated bool `json:"repeated,omitempty"`
}

// Script is one operation of the bundle, with its parsed header and its
// flattened source.
type Script struct {
	Name    string   `json:"name"`
	Summary string   `json:"summary"`
	Keys    []Key    `json:"keys"`
	Args    []Arg    `json:"argv"`
	Reply   string   `json:"reply"`
	Errors  []string `json:"errors"`
	Cost    string   `json:"cost"`
	// Source is the flattened text, ready for SCRIPT LOAD.
	Source string `json:"-"`
	// SHA is the SHA-1 of Source in lower-case hex, the name EVALSHA uses.
	SHA string `json:"sha1"`
}

// Roles returns the roles of the script's KEYS in order.
func (s *Script) Roles() []string {
	out := make([]string, len(s.Keys))
	for i, k := range s.Keys {
		out[i] = k.Role
	}
	return out
}

// Bundle is the parsed, flattened set of scripts of one bundle version.
type Bundle struct {
	Version string
	byName  map[string]*Script
	names   []string
}

// Load parses and flattens the embedded bundle.
func Load() (*Bundle, error) {
	return LoadFS(sources)
}

// LoadFS parses and flattens a bundle from fsys, which must hold the scripts
// at its root and the helpers under lib/. It is exported for tests that check
// how bad bundles are reported.
func LoadFS(fsys fs.FS) (*Bundle, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("scripts: reading bundle: %w", err)
	}
	b := &Bundle{Version: Version, byName: map[string]*Script{}}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".lua") {
			continue
		}
		s, err := loadScript(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		if _, dup := b.byName[s.Name]; dup {
			return nil, fmt.Errorf("scripts: two scripts are named %q", s.Name)
		}
		b.byName[s.Name] = s
		b.names = append(b.names, s.Name)
	}
	sort.Strings(b.names)
	if len(b.names) == 0 {
		return nil, fmt.Errorf("scripts: bundle has no scripts")
	}
	return b, nil
}

// Script returns the script called name.
func (b *Bundle) Script(name string) (*Script, error) {
	s, ok := b.byName[name]
	if !ok {
		return nil, fmt.Errorf("scripts: no script named %q in bundle %s", name, b.Version)
	}
	return s, nil
}

// Scripts returns every script, sorted by name.
func (b *Bundle) Scripts() []*Script {
	out := make([]*Script, len(b.names))
	for i, n := range b.names {
		out[i] = b.byName[n]
	}
	return out
}

// ReadSource returns the raw (unflattened) text of a bundle file, e.g.
// "enqueue.lua" or "lib/errors.lua".
func ReadSource(name string) (string, error) {
	data, err := fs.ReadFile(sources, name)
	if err != nil {
		return "", fmt.Errorf("scripts: %w", err)
	}
	return string(data), nil
}

// LibFiles returns the names of the embedded helper files, e.g. "lib/args.lua".
func LibFiles() ([]string, error) {
	matches, err := fs.Glob(sources, "lib/*.lua")
	if err != nil {
		return nil, fmt.Errorf("scripts: %w", err)
	}
	return matches, nil
}

func loadScript(fsys fs.FS, file string) (*Script, error) {
	data, err := fs.ReadFile(fsys, file)
	if err != nil {
		return nil, fmt.Errorf("scripts: %w", err)
	}
	text := string(data)
	s, err := parseHeader(text)
	if err != nil {
		return nil, fmt.Errorf("scripts: %s: %w", file, err)
	}
	if want := strings.TrimSuffix(file, ".lua"); s.Name != want {
		return nil, fmt.Errorf("scripts: %s: header names the script %q, want %q", file, s.Name, want)
	}
	body, err := flatten(fsys, file, text)
	if err != nil {
		return nil, fmt.Errorf("scripts: %s: %w", file, err)
	}
	var pre strings.Builder
	fmt.Fprintf(&pre, "-- luaq bundle %s: %s\n", Version, s.Name)
	pre.WriteString("local K = {")
	for i, k := range s.Keys {
		if i > 0 {
			pre.WriteString(", ")
		}
		fmt.Fprintf(&pre, "%s = KEYS[%d]", k.Role, i+1)
	}
	pre.WriteString("}\n")
	s.Source = pre.String() + body
	sum := sha1.Sum([]byte(s.Source))
	s.SHA = hex.EncodeToString(sum[:])
	return s, nil
}

const includePrefix = "-- @include "

// flatten returns the script text with its include lines replaced, at the
// first of them, by the blocks of the included helpers (in dependency order)
// that the script needs (see pruneLibs).
func flatten(fsys fs.FS, file, text string) (string, error) {
	var order []string
	if err := collectLibs(fsys, file, text, map[string]bool{}, nil, &order); err != nil {
		return "", err
	}
	var blocks []libBlock
	for _, lib := range order {
		data, err := fs.ReadFile(fsys, lib)
		if err != nil {
			return "", err
		}
		bs, err := splitLib(lib, string(data))
		if err != nil {
			return "", err
		}
		blocks = append(blocks, bs...)
	}
	var body strings.Builder
	placed := false
	const marker = "\x00LIBS\x00"
	for _, line := range strings.SplitAfter(text, "\n") {
		if strings.HasPrefix(strings.TrimRight(line, "\r\n"), includePrefix) {
			if !placed {
				body.WriteString(marker)
				placed = true
			}
			continue
		}
		body.WriteString(line)
	}
	out := body.String()
	if !placed {
		return out, nil
	}
	return strings.Replace(out, marker, pruneLibs(blocks, strings.Replace(out, marker, "", 1)), 1), nil
}

// collectLibs appends to order, depth first, every helper that file
// includes, each once, after the helpers it includes itself. stack holds the
// chain of files being expanded, to report include cycles.
func collectLibs(fsys fs.FS, file, text string, done map[string]bool, stack []string, order *[]string) error {
	for _, f := range stack {
		if f == file {
			return fmt.Errorf("include cycle: %s -> %s", strings.Join(stack, " -> "), file)
		}
	}
	stack = append(stack, file)
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimRight(line, "\r")
		if !strings.HasPrefix(trimmed, includePrefix) {
			continue
		}
		name := strings.TrimSpace(strings.TrimPrefix(trimmed, includePrefix))
		lib := path.Join("lib", name+".lua")
		if done[lib] {
			continue
		}
		data, err := fs.ReadFile(fsys, lib)
		if err != nil {
			return fmt.Errorf("%s includes %q: %w", file, name, err)
		}
		if err := collectLibs(fsys, lib, string(data), done, stack, order); err != nil {
			return err
		}
		done[lib] = true
		*order = append(*order, lib)
	}
	return nil
}
