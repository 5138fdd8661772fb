package loader

import (
	"errors"
	"fmt"
	"strconv"
)

// ErrReply is matched (errors.Is) by the errors of Int, String and Slice: a
// script reply did not have the expected shape.
var ErrReply = errors.New("unexpected reply")

// Int decodes an integer reply element. It accepts an int64 (how go-redis
// decodes integer replies under RESP2 and RESP3) and a string holding a
// base-10 integer (a value a script passed through from a hash or a zset).
func Int(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: expected an integer, got the string %q", ErrReply, truncate(x))
		}
		return n, nil
	default:
		return 0, fmt.Errorf("%w: expected an integer, got %s", ErrReply, describe(v))
	}
}

// String decodes a string (bulk or status) reply element.
func String(v any) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: expected a string, got %s", ErrReply, describe(v))
	}
	return s, nil
}

// Slice decodes an array reply.
func Slice(v any) ([]any, error) {
	s, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: expected an array, got %s", ErrReply, describe(v))
	}
	return s, nil
}

// describe names the type of a reply value for an error message.
func describe(v any) string {
	switch x := v.(type) {
	case nil:
		return "nil"
	case int64:
		return fmt.Sprintf("the integer %d", x)
	case string:
		return fmt.Sprintf("the string %q", truncate(x))
	case []any:
		return fmt.Sprintf("an array of %d elements", len(x))
	default:
		return fmt.Sprintf("a %T", v)
	}
}

// truncate keeps error messages short when a reply is large.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
