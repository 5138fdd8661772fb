package keys

import (
	"strings"
	"testing"
)

func TestValidateQueueName(t *testing.T) {
	tests := []struct {
		name    string
		queue   string
		wantErr string
	}{
		{"plain", "default", ""},
		{"colon allowed", "emails:high", ""},
		{"max length", strings.Repeat("q", MaxQueueNameLen), ""},
		{"empty", "", "empty"},
		{"too long", strings.Repeat("q", MaxQueueNameLen+1), "limit"},
		{"open brace", "a{b", "brace"},
		{"close brace", "a}b", "brace"},
		{"space", "a b", "printable"},
		{"nul", "a\x00b", "printable"},
		{"non-ascii", "caf\xc3\xa9", "printable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateQueueName(tc.queue)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateQueueName(%q) = %v, want nil", tc.queue, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidateQueueName(%q) = %v, want error containing %q", tc.queue, err, tc.wantErr)
			}
		})
	}
}

func TestKeysShareOneHashTag(t *testing.T) {
	q, err := ForQueue("emails:high")
	if err != nil {
		t.Fatal(err)
	}
	got := q.Keys([]string{"meta", "pending"})
	want := []string{"luaq:{emails:high}:meta", "luaq:{emails:high}:pending"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("key %d = %q, want %q", i, got[i], want[i])
		}
	}
	if p := q.Pattern(); p != `luaq:\{emails:high\}:*` {
		t.Errorf("Pattern() = %q", p)
	}
}
