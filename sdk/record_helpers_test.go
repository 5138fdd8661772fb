package sdk

import (
	"fmt"
	"strconv"
	"strings"
)

// storedRecord is a task record as stored in the tasks hash, decoded the way
// scripts/lib/record.lua reads it: eight integers each followed by ':', then
// the type and the unique key, each as <len>:<bytes>, then the payload.
type storedRecord struct {
	Retried, MaxRetry, Timeout, Deadline, ExpireAt, Retention, Enqueued, OnExpiry int64

	Type, Unique, Payload string
}

// decodeRecord parses a stored task record. It reports malformed input
// instead of failing the test, so goroutines may call it.
func decodeRecord(s string) (storedRecord, error) {
	var r storedRecord
	nums := []*int64{&r.Retried, &r.MaxRetry, &r.Timeout, &r.Deadline, &r.ExpireAt, &r.Retention, &r.Enqueued, &r.OnExpiry}
	rest := s
	for i, p := range nums {
		field, after, ok := strings.Cut(rest, ":")
		if !ok {
			return r, fmt.Errorf("record %q: number %d has no ':'", s, i+1)
		}
		n, err := strconv.ParseInt(field, 10, 64)
		if err != nil {
			return r, fmt.Errorf("record %q: number %d: %w", s, i+1, err)
		}
		*p, rest = n, after
	}
	for _, p := range []*string{&r.Type, &r.Unique} {
		field, after, ok := strings.Cut(rest, ":")
		if !ok {
			return r, fmt.Errorf("record %q: string without a length prefix", s)
		}
		n, err := strconv.Atoi(field)
		if err != nil || n < 0 || n > len(after) {
			return r, fmt.Errorf("record %q: bad string length %q", s, field)
		}
		*p, rest = after[:n], after[n:]
	}
	r.Payload = rest
	return r, nil
}
