package scripts

import (
	"fmt"
	"regexp"
	"strings"
)

// A lib file is a sequence of top-level blocks: comment lines, constants
// ("local NAME = <one line>") and functions ("local function NAME(" up to a
// line that is exactly "end"). pruneLibs keeps only the blocks the script's
// own code needs, directly or through other kept blocks, so Redis does not
// build dozens of unused closures on every call.

var (
	funcStart  = regexp.MustCompile(`^local function ([A-Za-z_][A-Za-z0-9_]*)\(`)
	constStart = regexp.MustCompile(`^local ([A-Za-z_][A-Za-z0-9_]*) = `)
	identifier = regexp.MustCompile(`[A-Za-z_][A-Za-z0-9_]*`)
)

// libBlock is one top-level definition of a lib file, with the comment lines
// right above it.
type libBlock struct {
	name string
	text string
}

// splitLib cuts a lib file into its blocks. Lines outside any block (file
// comments, blank lines) are dropped: they are documentation only.
func splitLib(file, text string) ([]libBlock, error) {
	var blocks []libBlock
	var comment []string
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		switch {
		case strings.HasPrefix(line, "--"):
			comment = append(comment, line)
			continue
		case strings.TrimSpace(line) == "":
			comment = nil
			continue
		}
		var b libBlock
		if m := funcStart.FindStringSubmatch(line); m != nil {
			j := i
			for j < len(lines) && lines[j] != "end" {
				j++
			}
			if j == len(lines) {
				return nil, fmt.Errorf("%s: function %s has no closing \"end\" line", file, m[1])
			}
			b = libBlock{name: m[1], text: strings.Join(lines[i:j+1], "\n")}
			i = j
		} else if m := constStart.FindStringSubmatch(line); m != nil && !strings.Contains(line, "redis.") {
			b = libBlock{name: m[1], text: line}
		} else {
			return nil, fmt.Errorf("%s: top-level line %q is neither a constant nor a function", file, line)
		}
		if len(comment) > 0 {
			b.text = strings.Join(comment, "\n") + "\n" + b.text
		}
		comment = nil
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// pruneLibs returns the blocks of libs (in order) that body needs.
func pruneLibs(blocks []libBlock, body string) string {
	byName := map[string]int{}
	for i, b := range blocks {
		byName[b.name] = i
	}
	keep := make([]bool, len(blocks))
	var visit func(text string)
	visit = func(text string) {
		for _, id := range identifier.FindAllString(stripComments(text), -1) {
			if i, ok := byName[id]; ok && !keep[i] {
				keep[i] = true
				visit(blocks[i].text)
			}
		}
	}
	visit(body)
	var out strings.Builder
	for i, b := range blocks {
		if keep[i] {
			out.WriteString(b.text)
			out.WriteString("\n")
		}
	}
	return out.String()
}

// stripComments removes "--" comments so that names in prose do not count
// as uses. Strings containing "--" do not occur in the bundle's code.
func stripComments(text string) string {
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		if j := strings.Index(l, "--"); j >= 0 {
			lines[i] = l[:j]
		}
	}
	return strings.Join(lines, "\n")
}
