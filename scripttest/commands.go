package scripttest

import "strings"

// keyFunc returns the key arguments of a command, given its arguments
// after the command name.
type keyFunc func(args []string) []string

func firstKey(args []string) []string {
	if len(args) == 0 {
		return nil
	}
	return args[:1]
}

func firstTwoKeys(args []string) []string {
	if len(args) < 2 {
		return args
	}
	return args[:2]
}

func allKeys(args []string) []string { return args }

func noKeys([]string) []string { return nil }

// allowed is the command allow-list of lua-compat §5.2 (plus a few read and
// trim commands of the same vintage) with each command's key positions.
var allowed = map[string]keyFunc{
	// strings and keys
	"GET": firstKey, "SET": firstKey, "DEL": allKeys, "EXISTS": allKeys,
	"EXPIRE": firstKey, "PEXPIRE": firstKey, "PEXPIREAT": firstKey,
	"PTTL": firstKey, "TTL": firstKey, "PERSIST": firstKey,
	"INCR": firstKey, "INCRBY": firstKey, "DECR": firstKey,
	// hashes
	"HSET": firstKey, "HSETNX": firstKey, "HGET": firstKey, "HMGET": firstKey,
	"HDEL": firstKey, "HEXISTS": firstKey, "HLEN": firstKey, "HINCRBY": firstKey,
	"HGETALL": firstKey,
	// lists
	"LPUSH": firstKey, "RPUSH": firstKey, "LPOP": firstKey, "RPOP": firstKey,
	"LRANGE": firstKey, "LLEN": firstKey, "LREM": firstKey, "LMOVE": firstTwoKeys,
	"LTRIM": firstKey, "LINDEX": firstKey, "LPOS": firstKey,
	// sorted sets
	"ZADD": firstKey, "ZREM": firstKey, "ZSCORE": firstKey, "ZCARD": firstKey,
	"ZINCRBY": firstKey, "ZPOPMIN": firstKey, "ZRANGEBYSCORE": firstKey,
	"ZRANGE": firstKey, "ZREMRANGEBYRANK": firstKey, "ZREMRANGEBYSCORE": firstKey,
	"ZRANK": firstKey, "ZCOUNT": firstKey,
	// sets
	"SADD": firstKey, "SREM": firstKey, "SISMEMBER": firstKey, "SCARD": firstKey,
	// no keys
	"TIME": noKeys, "PUBLISH": noKeys,
}

// notForwarded lists commands the harness never sends to miniredis, even
// though a Violation has already been recorded for them: Redis refuses them
// inside scripts, or they would block the harness or change the state of
// its connection (protocol, database, subscriptions, transactions).
var notForwarded = map[string]bool{
	"MULTI": true, "EXEC": true, "DISCARD": true, "WATCH": true, "UNWATCH": true,
	"EVAL": true, "EVALSHA": true, "EVAL_RO": true, "EVALSHA_RO": true,
	"FCALL": true, "FCALL_RO": true, "SCRIPT": true, "FUNCTION": true,
	"SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"UNSUBSCRIBE": true, "PUNSUBSCRIBE": true, "SUNSUBSCRIBE": true,
	"MONITOR": true, "HELLO": true, "QUIT": true, "RESET": true, "AUTH": true,
	"SELECT": true, "CLIENT": true, "CONFIG": true, "SHUTDOWN": true,
	"DEBUG": true, "WAIT": true, "WAITAOF": true,
	"BLPOP": true, "BRPOP": true, "BLMOVE": true, "BRPOPLPUSH": true,
	"BLMPOP": true, "BZPOPMIN": true, "BZPOPMAX": true, "BZMPOP": true,
	"XREAD": true, "XREADGROUP": true, // may carry BLOCK
}

// notAllowedFromScript is the error a script gets for a notForwarded command.
const notAllowedFromScript = "ERR This Redis command is not allowed from script"

// expireOptions are the EXPIRE/PEXPIRE flags added in Redis 7.0 (lua-compat §5.2).
var expireOptions = map[string]bool{"NX": true, "XX": true, "GT": true, "LT": true}

// checkCommandOptions returns a reason when an allowed command uses an option
// outside the portable baseline, or "".
func checkCommandOptions(cmd string, args []string) string {
	switch cmd {
	case "EXPIRE", "PEXPIRE", "PEXPIREAT":
		for _, a := range args[min(2, len(args)):] {
			if expireOptions[strings.ToUpper(a)] {
				return cmd + " " + strings.ToUpper(a) + " needs Redis 7.0 (lua-compat §5.2)"
			}
		}
	}
	return ""
}

// writeCommands maps each write command of the allow-list to whether Redis
// flags it "denyoom": a command that can grow memory, which a server at
// maxmemory with the noeviction policy refuses as a script's first write.
var writeCommands = map[string]bool{
	"SET": true, "INCR": true, "INCRBY": true, "DECR": true,
	"HSET": true, "HSETNX": true, "HINCRBY": true,
	"LPUSH": true, "RPUSH": true, "LMOVE": true,
	"ZADD": true, "ZINCRBY": true, "SADD": true,
	"DEL": false, "EXPIRE": false, "PEXPIRE": false, "PEXPIREAT": false, "PERSIST": false,
	"HDEL": false, "LPOP": false, "RPOP": false, "LREM": false, "LTRIM": false,
	"ZREM": false, "ZPOPMIN": false, "ZREMRANGEBYRANK": false, "ZREMRANGEBYSCORE": false,
	"SREM": false,
}

// FirstWrite returns the first write command among calls and whether a full
// server (maxmemory, noeviction) would refuse it there, because it can grow
// memory. ok is false when the calls wrote nothing.
func FirstWrite(calls []Call) (cmd string, growsMemory, ok bool) {
	for _, c := range calls {
		if grows, isWrite := writeCommands[c.Cmd]; isWrite {
			return c.Cmd, grows, true
		}
	}
	return "", false, false
}
