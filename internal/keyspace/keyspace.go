// Package keyspace takes comparable snapshots of a Redis keyspace.
//
// A Snapshot records, for every key matching a pattern, its type, its value
// in a canonical Go form and whether it carries a TTL. Snapshots taken from
// miniredis and from a real redis-server after the same sequence of
// operations are meant to be compared with go-cmp (cmp.Diff), which is how
// the scripttest harness and the differential tests check that gopher-lua
// and real Redis did not drift apart.
package keyspace

import (
	"context"
	"fmt"
	"sort"

	"github.com/redis/go-redis/v9"
)

// Redis type names as reported by the TYPE command.
const (
	TypeString = "string"
	TypeHash   = "hash"
	TypeList   = "list"
	TypeSet    = "set"
	TypeZSet   = "zset"
)

// Member is one sorted-set element.
type Member struct {
	Member string
	Score  float64
}

// Value is the recorded state of one key. Exactly one of the value fields is
// set, the one that matches Type; the others stay at their zero value (nil),
// so two Values compare equal with cmp.Diff exactly when type, content and
// TTL presence agree.
type Value struct {
	// Type is the TYPE reply: "string", "hash", "list", "set" or "zset".
	// Other types (for example "stream") are recorded with their type only.
	Type string
	// String is the value of a string key.
	String string
	// Hash holds the fields of a hash key.
	Hash map[string]string
	// List holds the elements of a list key, head first.
	List []string
	// Set holds the members of a set key, sorted bytewise.
	Set []string
	// ZSet holds the members of a sorted-set key in rank order (by score,
	// then member), as ZRANGE 0 -1 WITHSCORES returns them.
	ZSet []Member
	// TTL is true when the key has an expiry (PTTL > 0). The exact
	// remaining time is deliberately not recorded, so snapshots taken at
	// slightly different moments still compare equal.
	TTL bool
}

// Snapshot maps key names to their recorded Value.
type Snapshot map[string]Value

// Keys returns the snapshot's key names, sorted.
func (s Snapshot) Keys() []string {
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// scanCount is the COUNT hint passed to SCAN.
const scanCount = 1000

// Dump SCANs every key matching match (a glob such as "luaq:*"; "" or "*"
// means all keys) and records its type, value and TTL presence.
//
// It works with go-redis clients speaking RESP2 or RESP3 (the v9 default),
// against miniredis and real Redis. Keys that vanish between SCAN and the
// read (expiry, concurrent deletes) are left out. On a ClusterClient, SCAN
// only reaches one node; dump each master separately instead.
func Dump(ctx context.Context, c redis.Cmdable, match string) (Snapshot, error) {
	if match == "" {
		match = "*"
	}
	seen := make(map[string]struct{})
	var keys []string
	var cursor uint64
	for {
		batch, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("keyspace: SCAN %q: %w", match, err)
		}
		for _, k := range batch {
			// SCAN may return a key more than once.
			if _, dup := seen[k]; !dup {
				seen[k] = struct{}{}
				keys = append(keys, k)
			}
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	sort.Strings(keys)

	snap := make(Snapshot, len(keys))
	for _, k := range keys {
		v, ok, err := readKey(ctx, c, k)
		if err != nil {
			return nil, err
		}
		if ok {
			snap[k] = v
		}
	}
	return snap, nil
}

// readKey records one key; ok is false when the key no longer exists.
func readKey(ctx context.Context, c redis.Cmdable, key string) (v Value, ok bool, err error) {
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		return Value{}, false, fmt.Errorf("keyspace: TYPE %q: %w", key, err)
	}
	if typ == "none" {
		return Value{}, false, nil
	}
	v.Type = typ
	switch typ {
	case TypeString:
		s, err := c.Get(ctx, key).Result()
		if err == redis.Nil {
			return Value{}, false, nil
		}
		if err != nil {
			return Value{}, false, fmt.Errorf("keyspace: GET %q: %w", key, err)
		}
		v.String = s
	case TypeHash:
		h, err := c.HGetAll(ctx, key).Result()
		if err != nil {
			return Value{}, false, fmt.Errorf("keyspace: HGETALL %q: %w", key, err)
		}
		if len(h) == 0 {
			return Value{}, false, nil
		}
		v.Hash = h
	case TypeList:
		l, err := c.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			return Value{}, false, fmt.Errorf("keyspace: LRANGE %q: %w", key, err)
		}
		if len(l) == 0 {
			return Value{}, false, nil
		}
		v.List = l
	case TypeSet:
		m, err := c.SMembers(ctx, key).Result()
		if err != nil {
			return Value{}, false, fmt.Errorf("keyspace: SMEMBERS %q: %w", key, err)
		}
		if len(m) == 0 {
			return Value{}, false, nil
		}
		sort.Strings(m)
		v.Set = m
	case TypeZSet:
		// go-redis reads the score with strconv.ParseFloat under RESP2
		// (so miniredis's "1e+10" parses) and as a native double under
		// RESP3, where the reply is an array of [member, score] pairs.
		zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			return Value{}, false, fmt.Errorf("keyspace: ZRANGE %q WITHSCORES: %w", key, err)
		}
		if len(zs) == 0 {
			return Value{}, false, nil
		}
		v.ZSet = make([]Member, len(zs))
		for i, z := range zs {
			m, ok := z.Member.(string)
			if !ok {
				m = fmt.Sprint(z.Member)
			}
			v.ZSet[i] = Member{Member: m, Score: z.Score}
		}
	}
	pttl, err := c.PTTL(ctx, key).Result()
	if err != nil {
		return Value{}, false, fmt.Errorf("keyspace: PTTL %q: %w", key, err)
	}
	// -1: no expiry; -2: gone meanwhile (we keep what we read).
	v.TTL = pttl > 0
	return v, true, nil
}
