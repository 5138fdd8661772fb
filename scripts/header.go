package scripts

import (
	"fmt"
	"regexp"
	"strings"
)

// The header grammar (the comment block every script starts with):
//
//	-- luaq script: <name>
//	-- <summary, any number of lines>
//	--
//	-- KEYS:
//	--   <role>  <doc>
//	-- ARGV:
//	--   <name>  <type>  <doc>
//	--   ... then count groups of these 8:     (what follows repeats per item)
//	-- REPLY: <doc>
//	--     <doc continued, indented 5+ spaces>
//	-- ERRORS: <CODE> <CODE> ...
//	-- COST: <big-O>
//	-- WHEN FULL: runs | refused | reads
//
// Item lines are indented three spaces; deeper-indented lines continue the
// previous item or section.
var (
	nameLine = regexp.MustCompile(`^-- luaq script: ([a-z][a-z0-9-]*)$`)
	itemLine = regexp.MustCompile(`^--   (\S+)\s+(.*)$`)
	roleName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	argTypes = map[string]bool{"int": true, "string": true, "bytes": true, "flag": true}
	// whenFull are the values of the WHEN FULL line (see Script.WhenFull).
	whenFull = map[string]bool{WhenFullRuns: true, WhenFullRefused: true, WhenFullReads: true}
)

func parseHeader(text string) (*Script, error) {
	lines := strings.Split(text, "\n")
	if len(lines) == 0 {
		return nil, fmt.Errorf("empty script")
	}
	m := nameLine.FindStringSubmatch(strings.TrimRight(lines[0], "\r"))
	if m == nil {
		return nil, fmt.Errorf("first line must be %q", "-- luaq script: <name>")
	}
	s := &Script{Name: m[1], Args: []Arg{}}
	section := "summary"
	var summary []string
	repeated := false
	seen := map[string]bool{}
	for _, raw := range lines[1:] {
		line := strings.TrimRight(raw, "\r")
		if !strings.HasPrefix(line, "--") || strings.HasPrefix(line, includePrefix) {
			break
		}
		switch {
		case line == "--":
			continue
		case strings.HasPrefix(line, "-- KEYS:"), strings.HasPrefix(line, "-- ARGV:"):
			section = strings.TrimSuffix(strings.Fields(line)[1], ":")
			if seen[section] {
				return nil, fmt.Errorf("section %s appears twice", section)
			}
			seen[section] = true
			continue
		case strings.HasPrefix(line, "-- REPLY:"):
			section = "REPLY"
			s.Reply = strings.TrimSpace(strings.TrimPrefix(line, "-- REPLY:"))
			seen[section] = true
			continue
		case strings.HasPrefix(line, "-- ERRORS:"):
			section = "ERRORS"
			s.Errors = strings.Fields(strings.TrimPrefix(line, "-- ERRORS:"))
			seen[section] = true
			continue
		case strings.HasPrefix(line, "-- WHEN FULL:"):
			section = "WHEN FULL"
			s.WhenFull = strings.TrimSpace(strings.TrimPrefix(line, "-- WHEN FULL:"))
			if !whenFull[s.WhenFull] {
				return nil, fmt.Errorf("WHEN FULL is %q, want runs, refused or reads", s.WhenFull)
			}
			seen[section] = true
			continue
		case strings.HasPrefix(line, "-- COST:"):
			section = "COST"
			s.Cost = strings.TrimSpace(strings.TrimPrefix(line, "-- COST:"))
			seen[section] = true
			continue
		}
		cont := strings.HasPrefix(line, "--     ")
		switch section {
		case "summary":
			summary = append(summary, strings.TrimSpace(strings.TrimPrefix(line, "--")))
		case "KEYS":
			if cont && len(s.Keys) > 0 {
				s.Keys[len(s.Keys)-1].Doc += " " + strings.TrimSpace(strings.TrimPrefix(line, "--"))
				continue
			}
			im := itemLine.FindStringSubmatch(line)
			if im == nil || !roleName.MatchString(im[1]) {
				return nil, fmt.Errorf("bad KEYS line %q", line)
			}
			for _, k := range s.Keys {
				if k.Role == im[1] {
					return nil, fmt.Errorf("key role %q is listed twice", im[1])
				}
			}
			s.Keys = append(s.Keys, Key{Role: im[1], Doc: strings.TrimSpace(im[2])})
		case "ARGV":
			if strings.HasPrefix(line, "--   ...") {
				repeated = true
				continue
			}
			if cont && len(s.Args) > 0 {
				s.Args[len(s.Args)-1].Doc += " " + strings.TrimSpace(strings.TrimPrefix(line, "--"))
				continue
			}
			im := itemLine.FindStringSubmatch(line)
			if im == nil {
				return nil, fmt.Errorf("bad ARGV line %q", line)
			}
			typ, doc, _ := strings.Cut(strings.TrimSpace(im[2]), " ")
			if !argTypes[typ] {
				return nil, fmt.Errorf("ARGV %s has type %q, want one of int, string, bytes, flag", im[1], typ)
			}
			s.Args = append(s.Args, Arg{Name: im[1], Type: typ, Doc: strings.TrimSpace(doc), Repeated: repeated})
		case "REPLY":
			s.Reply += " " + strings.TrimSpace(strings.TrimPrefix(line, "--"))
		case "COST":
			s.Cost += " " + strings.TrimSpace(strings.TrimPrefix(line, "--"))
		default:
			return nil, fmt.Errorf("unexpected header line %q in section %s", line, section)
		}
	}
	s.Summary = strings.Join(summary, " ")
	for _, want := range []string{"KEYS", "ARGV", "REPLY", "ERRORS", "COST", "WHEN FULL"} {
		if !seen[want] {
			return nil, fmt.Errorf("header has no %s section", want)
		}
	}
	if len(s.Keys) == 0 {
		return nil, fmt.Errorf("header declares no KEYS")
	}
	if s.Summary == "" {
		return nil, fmt.Errorf("header has no summary")
	}
	return s, nil
}
