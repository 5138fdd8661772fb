package loader

import (
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Sentinels for the codes of the bundle's error table (scripts/lib/errors.lua).
// A *ScriptError matches the sentinel of its code with errors.Is.
var (
	// ErrBadArg (LQ_BADARG): an argument is missing, malformed or out of range.
	ErrBadArg = errors.New("bad argument")
	// ErrConflict (LQ_CONFLICT): a task with that id already exists.
	ErrConflict = errors.New("conflict")
	// ErrNotFound (LQ_NOTFOUND): no task with that id in the expected state.
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost (LQ_LEASE_LOST): the fencing token is not the task's
	// current lease.
	ErrLeaseLost = errors.New("lease lost")
	// ErrSchema (LQ_SCHEMA): the queue holds data of a newer schema than the
	// bundle understands.
	ErrSchema = errors.New("queue schema is newer than the bundle")
	// ErrNotOwner (LQ_NOT_OWNER): the janitor lock is not held under the
	// caller's owner token.
	ErrNotOwner = errors.New("janitor lock not held by this owner")
)

// ErrInternal is matched (errors.Is) by errors that a script raised without
// a code of the error table: a raw Lua error, a failing redis.call, or an
// LQ_ code the table does not know. Such an error is a bug in the bundle or
// a server problem, never a verdict on the caller's input. The error also
// wraps the original Redis error.
var ErrInternal = errors.New("internal script fault (not a code of the bundle's error table)")

// ErrServerFull is matched (errors.Is) by a call that Redis refused because
// it is full: used memory is over maxmemory and the policy is noeviction.
// Only scripts that grow the data are refused (see the WHEN FULL line of each
// script's header), at their first write, so nothing was written.
var ErrServerFull = errors.New("the Redis server is full (used memory over maxmemory, policy noeviction) and refuses what would grow the data; nothing was written: free memory or raise maxmemory, and let workers drain the queues")

// errorCode is one row of the error table.
type errorCode struct {
	code string
	err  error
}

// errorTable is the one table that maps the codes of scripts/lib/errors.lua
// to sentinels. A test checks it against the Lua file.
func errorTable() []errorCode {
	return []errorCode{
		{"LQ_BADARG", ErrBadArg},
		{"LQ_CONFLICT", ErrConflict},
		{"LQ_NOTFOUND", ErrNotFound},
		{"LQ_LEASE_LOST", ErrLeaseLost},
		{"LQ_SCHEMA", ErrSchema},
		{"LQ_NOT_OWNER", ErrNotOwner},
	}
}

// Codes returns the error codes the loader knows, in table order.
func Codes() []string {
	t := errorTable()
	out := make([]string, len(t))
	for i, e := range t {
		out[i] = e.code
	}
	return out
}

// sentinel returns the sentinel of code, or nil for an unknown code.
func sentinel(code string) error {
	for _, e := range errorTable() {
		if e.code == code {
			return e.err
		}
	}
	return nil
}

// ScriptError is an error a script returned on purpose:
// redis.error_reply('<Code> <Message>') with Code from the error table.
type ScriptError struct {
	// Script is the name of the script that returned the error.
	Script string
	// Code is the error code, e.g. "LQ_LEASE_LOST".
	Code string
	// Message is the rest of the reply, for humans.
	Message string
}

// Error implements error.
func (e *ScriptError) Error() string {
	return fmt.Sprintf("script %s: %s %s", e.Script, e.Code, e.Message)
}

// Is reports whether target is the sentinel of e's code, so that
// errors.Is(err, loader.ErrLeaseLost) works.
func (e *ScriptError) Is(target error) bool {
	s := sentinel(e.Code)
	return s != nil && s == target
}

// mapError decodes an error from an EVALSHA of script. Error replies with a
// known code become *ScriptError; replies with an unknown LQ_ code or errors
// raised inside the script wrap ErrInternal; anything else (connection
// errors, BUSY, READONLY, ...) is returned wrapped with the script's name.
func mapError(script string, err error) error {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return fmt.Errorf("script %s: %w", script, err)
	}
	msg := rerr.Error()
	code, rest, _ := strings.Cut(msg, " ")
	if code == "OOM" {
		return fmt.Errorf("script %s: %w (%s)", script, ErrServerFull, firstSentence(msg))
	}
	if code == "ERR" && strings.HasPrefix(rest, "LQ_") {
		// Redis 7 and miniredis turn a one-word error_reply into "ERR <word>".
		code, rest, _ = strings.Cut(rest, " ")
	}
	if strings.HasPrefix(code, "LQ_") {
		if sentinel(code) == nil {
			return fmt.Errorf("script %s: unknown error code %s: %w: %w", script, code, ErrInternal, err)
		}
		return &ScriptError{Script: script, Code: code, Message: strings.TrimSpace(rest)}
	}
	if raisedInScript(msg) {
		return fmt.Errorf("script %s: %w: %w", script, ErrInternal, err)
	}
	return fmt.Errorf("script %s: %w", script, err)
}

// raisedInScript reports whether an error reply was raised while a script
// ran (a Lua error or a failing redis.call), as opposed to a reply about the
// command or the server. Redis 7 and Valkey append "script: <sha>, on
// @user_script:<line>."; Redis 6.2 and KeyDB say "Error running script";
// miniredis says "Error compiling script".
func raisedInScript(msg string) bool {
	return strings.Contains(msg, "user_script") ||
		strings.Contains(msg, "Error running script") ||
		strings.Contains(msg, "Error compiling script")
}

// firstSentence returns msg up to its first ". " (Redis appends the script's
// SHA and line after it), or all of msg.
func firstSentence(msg string) string {
	if i := strings.Index(msg, ". "); i >= 0 {
		return msg[:i+1]
	}
	return msg
}
