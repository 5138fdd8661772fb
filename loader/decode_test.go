package loader

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		decode  func(any) (any, error)
		in      any
		want    any
		wantErr string // substring; "" = success
	}{
		{"Int int64", wrap(Int), int64(-42), int64(-42), ""},
		{"Int decimal string", wrap(Int), "1700000000000", int64(1700000000000), ""},
		{"Int float string", wrap(Int), "1.5", nil, `expected an integer, got the string "1.5"`},
		{"Int nil", wrap(Int), nil, nil, "expected an integer, got nil"},
		{"Int array", wrap(Int), []any{int64(1)}, nil, "expected an integer, got an array of 1 elements"},
		{"String", wrap(String), "abc", "abc", ""},
		{"String empty", wrap(String), "", "", ""},
		{"String int", wrap(String), int64(7), nil, "expected a string, got the integer 7"},
		{"String nil", wrap(String), nil, nil, "expected a string, got nil"},
		{"String long int", wrap(String), 1.5, nil, "expected a string, got a float64"},
		{"Slice", wrap(Slice), []any{"a", int64(1)}, []any{"a", int64(1)}, ""},
		{"Slice string", wrap(Slice), strings.Repeat("x", 100), nil, `expected an array, got the string "` + strings.Repeat("x", 64) + `..."`},
		{"Slice nil", wrap(Slice), nil, nil, "expected an array, got nil"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.decode(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if !errors.Is(err, ErrReply) {
				t.Errorf("error %v does not match ErrReply", err)
			}
		})
	}
}

func wrap[T any](f func(any) (T, error)) func(any) (any, error) {
	return func(v any) (any, error) {
		x, err := f(v)
		if err != nil {
			return nil, err
		}
		return x, nil
	}
}
