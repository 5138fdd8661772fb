package scripttest

import (
	"sort"
	"testing"
)

// TestEveryAllowedCommandIsClassified keeps the write table complete: a
// command added to the allow-list must be listed as a read here or in
// writeCommands, or FirstWrite would miss it.
func TestEveryAllowedCommandIsClassified(t *testing.T) {
	reads := map[string]bool{
		"GET": true, "EXISTS": true, "PTTL": true, "TTL": true,
		"HGET": true, "HMGET": true, "HEXISTS": true, "HLEN": true, "HGETALL": true,
		"LRANGE": true, "LLEN": true, "LINDEX": true, "LPOS": true,
		"ZSCORE": true, "ZCARD": true, "ZRANGEBYSCORE": true, "ZRANGE": true, "ZRANK": true, "ZCOUNT": true,
		"SISMEMBER": true, "SCARD": true, "TIME": true, "PUBLISH": true,
	}
	var missing []string
	for cmd := range allowed {
		_, isWrite := writeCommands[cmd]
		if isWrite == reads[cmd] {
			missing = append(missing, cmd)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("commands neither read nor write (or both): %v", missing)
	}
}

func TestFirstWrite(t *testing.T) {
	tests := []struct {
		calls     []Call
		cmd       string
		grows, ok bool
	}{
		{nil, "", false, false},
		{[]Call{{Cmd: "TIME"}, {Cmd: "HGET"}}, "", false, false},
		{[]Call{{Cmd: "HGET"}, {Cmd: "HDEL"}, {Cmd: "HSET"}}, "HDEL", false, true},
		{[]Call{{Cmd: "HMGET"}, {Cmd: "ZADD"}, {Cmd: "ZREM"}}, "ZADD", true, true},
	}
	for _, tt := range tests {
		cmd, grows, ok := FirstWrite(tt.calls)
		if cmd != tt.cmd || grows != tt.grows || ok != tt.ok {
			t.Errorf("FirstWrite(%v) = %q, %v, %v; want %q, %v, %v", tt.calls, cmd, grows, ok, tt.cmd, tt.grows, tt.ok)
		}
	}
}
