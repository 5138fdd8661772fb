package scripts

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	keyUse   = regexp.MustCompile(`\bK\.([a-z_]+)`)
	keyIndex = regexp.MustCompile(`\bK\[`)
	argvUse  = regexp.MustCompile(`ARGV\[(\d+)\]`)
	argCount = regexp.MustCompile(`arg_count\((\d+)\)`)
)

// TestHeadersMatchWhatScriptsRead checks each header against its script:
// every role the script's own code names is declared, every declared role is
// used by the flattened script, and the ARGV the code reads and counts agree
// with the header.
func TestHeadersMatchWhatScriptsRead(t *testing.T) {
	b, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range b.Scripts() {
		t.Run(s.Name, func(t *testing.T) {
			raw, err := ReadSource(s.Name + ".lua")
			if err != nil {
				t.Fatal(err)
			}
			declared := map[string]bool{}
			for _, r := range s.Roles() {
				declared[r] = true
			}
			for _, m := range keyUse.FindAllStringSubmatch(raw, -1) {
				if !declared[m[1]] {
					t.Errorf("the script uses K.%s, which its header does not declare", m[1])
				}
			}
			body := s.Source[strings.Index(s.Source, "}\n")+2:] // past the generated K table
			for role := range declared {
				if !strings.Contains(body, "K."+role) && !keyIndex.MatchString(raw) {
					t.Errorf("the header declares key %q but nothing in the script uses it", role)
				}
			}
			fixed, repeated := 0, 0
			for _, a := range s.Args {
				if a.Repeated {
					repeated++
				} else {
					fixed++
				}
			}
			if repeated > 0 {
				return // indexed by computed positions; the loader checks counts
			}
			for _, m := range argvUse.FindAllStringSubmatch(raw, -1) {
				if n, _ := strconv.Atoi(m[1]); n > fixed {
					t.Errorf("the script reads ARGV[%d] but its header declares %d arguments", n, fixed)
				}
			}
			if m := argCount.FindStringSubmatch(raw); m != nil {
				if n, _ := strconv.Atoi(m[1]); n != fixed {
					t.Errorf("arg_count(%d) but the header declares %d arguments", n, fixed)
				}
			} else {
				t.Errorf("a script without a repeated group must check its ARGV count with arg_count")
			}
		})
	}
}
