// Package keys is the one place where luaq builds Redis key names.
//
// Every key of a queue has the form "luaq:{<queue>}:<role>". The braces make
// the queue name the Redis Cluster hash tag, so all keys of one queue live in
// one slot and every script call (which only touches one queue) is legal on a
// cluster. Scripts never build keys: the SDK passes them in KEYS, in the order
// the script's header lists their roles.
package keys

import (
	"fmt"
	"strings"
)

// Prefix starts every key luaq writes. An ACL user limited to Prefix+"*" can
// run the whole bundle.
const Prefix = "luaq:"

// MaxQueueNameLen is the longest queue name accepted, in bytes.
const MaxQueueNameLen = 128

// Queue builds the keys of one queue. The zero value is not valid; use ForQueue.
type Queue struct {
	name string
	base string // "luaq:{<name>}:"
}

// ForQueue validates a queue name and returns its key builder.
//
// A queue name is 1..MaxQueueNameLen bytes of printable ASCII (0x21..0x7e)
// without '{' or '}', so a name can never close or open a hash tag and reach
// another queue's keys. Colons are allowed.
func ForQueue(name string) (Queue, error) {
	if err := ValidateQueueName(name); err != nil {
		return Queue{}, err
	}
	return Queue{name: name, base: Prefix + "{" + name + "}:"}, nil
}

// ValidateQueueName reports why name cannot be a queue name, or nil.
func ValidateQueueName(name string) error {
	if name == "" {
		return fmt.Errorf("queue name is empty")
	}
	if len(name) > MaxQueueNameLen {
		return fmt.Errorf("queue name is %d bytes, the limit is %d", len(name), MaxQueueNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x21 || c > 0x7e {
			return fmt.Errorf("queue name %q has byte 0x%02x at %d: only printable ASCII without spaces is allowed", name, c, i)
		}
		if c == '{' || c == '}' {
			return fmt.Errorf("queue name %q contains a brace, which would break its hash tag", name)
		}
	}
	return nil
}

// Name returns the queue's name.
func (q Queue) Name() string { return q.name }

// Key returns the key of one role of the queue, e.g. Key("pending").
func (q Queue) Key(role string) string { return q.base + role }

// Keys returns the keys for a list of roles, in order: the KEYS of a script call.
func (q Queue) Keys(roles []string) []string {
	out := make([]string, len(roles))
	for i, r := range roles {
		out[i] = q.base + r
	}
	return out
}

// Pattern returns a glob (for SCAN MATCH) that matches every key of the queue.
func (q Queue) Pattern() string {
	var b strings.Builder
	b.WriteString(Prefix)
	b.WriteString(`\{`)
	for i := 0; i < len(q.name); i++ {
		switch c := q.name[i]; c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteString(`\}:*`)
	return b.String()
}
