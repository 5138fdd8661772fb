package scripttest

import (
	"fmt"
	"strings"
)

// Lint scans a script's source for constructs the portable bundle must not
// use (lua-compat §5.3 item 8 and §5.1): a `#!` first line, `goto`, `//`,
// redis.setresp / redis.set_repl, cmsgpack, struct., bit., os., math.random,
// loadstring and tostring. Comments and string literals are skipped, and a
// name used as a field (t.os, x.bit) is not mistaken for the global library.
// It returns one message per hit ("lint: line N: ..."), or nil when the
// source is clean. Eval runs Lint on every script and reports the hits as
// Violations.
func Lint(src string) []string {
	var out []string
	hit := func(line int, format string, args ...any) {
		out = append(out, fmt.Sprintf("lint: line %d: ", line)+fmt.Sprintf(format, args...))
	}
	if strings.HasPrefix(src, "#!") {
		hit(1, "`#!` shebang first line is a syntax error on Redis 6.2, KeyDB, Dragonfly and miniredis (lua-compat §1.7)")
	}

	line := 1
	// prev is the last significant (non-space) code byte before the
	// current token, used to tell a field name (after '.' or ':') from a global.
	var prev byte
	i := 0
	n := len(src)
	// nextSig returns the index of the next non-space byte at or after j.
	nextSig := func(j int) int {
		for j < n && isSpace(src[j]) {
			j++
		}
		return j
	}
	for i < n {
		c := src[i]
		switch {
		case c == '\n':
			line++
			i++
		case isSpace(c):
			i++
		case c == '-' && i+1 < n && src[i+1] == '-':
			i += 2
			if lvl, ok := longBracket(src, i); ok {
				i = skipLong(src, i, lvl, &line)
			} else {
				for i < n && src[i] != '\n' {
					i++
				}
			}
		case c == '\'' || c == '"':
			i++
			for i < n && src[i] != c {
				if src[i] == '\\' && i+1 < n {
					if src[i+1] == '\n' {
						line++
					}
					i++
				} else if src[i] == '\n' {
					break // unfinished string; the parser will complain
				}
				i++
			}
			i++
			prev = c
		case c == '[':
			if lvl, ok := longBracket(src, i); ok {
				i = skipLong(src, i, lvl, &line)
				prev = ']'
			} else {
				prev = c
				i++
			}
		case c == '.' && i+1 < n && src[i+1] == '.':
			// ".." or "...": an operator, not a field access.
			for i < n && src[i] == '.' {
				i++
			}
			prev = '~'
		case c == '/' && i+1 < n && src[i+1] == '/':
			hit(line, "`//` (floor division is Lua 5.3+; a syntax error on Redis)")
			i += 2
			prev = '/'
		case isIdentStart(c):
			j := i
			for j < n && isIdentChar(src[j]) {
				j++
			}
			name := src[i:j]
			field := prev == '.' || prev == ':'
			k := nextSig(j)
			var next byte
			if k < n {
				next = src[k]
			}
			switch name {
			case "goto":
				hit(line, "`goto` (accepted by gopher-lua, a syntax error on Redis's Lua 5.1)")
			case "setresp", "set_repl":
				hit(line, "redis.%s (changes reply conversion or replication; forbidden, lua-compat §1.2)", name)
			case "cmsgpack":
				if !field {
					hit(line, "cmsgpack (missing on miniredis, lua-compat §5.1 rule 9)")
				}
			case "struct", "bit", "os":
				if !field && next == '.' {
					hit(line, "`%s.` (library missing or different on some engines, lua-compat §5.1 rule 9)", name)
				}
			case "math":
				if !field && next == '.' {
					m := nextSig(k + 1)
					e := m
					for e < n && isIdentChar(src[e]) {
						e++
					}
					if strings.HasPrefix(src[m:e], "random") {
						hit(line, "math.%s (engines use different generators; make ids with INCR, lua-compat §1.8)", src[m:e])
					}
				}
			case "loadstring":
				if !field {
					hit(line, "loadstring (forbidden, lua-compat §5.1 rule 9)")
				}
			case "tostring":
				if !field {
					hit(line, "tostring (formats numbers differently on each engine; use string.format('%%d'), lua-compat §1.5)")
				}
			}
			prev = 'a'
			i = j
		default:
			prev = c
			i++
		}
	}
	return out
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v'
}

func isIdentStart(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// longBracket reports whether src[i:] opens a long bracket "[[" or "[==[",
// and its level (the number of '=').
func longBracket(src string, i int) (int, bool) {
	if i >= len(src) || src[i] != '[' {
		return 0, false
	}
	j := i + 1
	for j < len(src) && src[j] == '=' {
		j++
	}
	if j < len(src) && src[j] == '[' {
		return j - i - 1, true
	}
	return 0, false
}

// skipLong skips a long bracket of the given level opening at src[i] and
// returns the index after its closing bracket, counting newlines.
func skipLong(src string, i, level int, line *int) int {
	closing := "]" + strings.Repeat("=", level) + "]"
	i += level + 2
	end := strings.Index(src[i:], closing)
	if end < 0 {
		*line += strings.Count(src[i:], "\n")
		return len(src)
	}
	*line += strings.Count(src[i:i+end], "\n")
	return i + end + len(closing)
}
