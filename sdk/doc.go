// Package sdk is luaq's Go SDK: a Client that enqueues tasks and inspects
// queues, and a Worker that leases tasks and runs handlers.
//
// The SDK never decides queue state itself. Every state change is one call of
// a script of the bundle (package scripts), made through package loader; the
// SDK only picks keys, passes arguments, runs handlers, and keeps leases alive.
//
// # Errors
//
// Every error the SDK returns starts with "luaq: " once, then names the
// operation and the queue. Test it with errors.Is against these sentinels:
//
//   - ErrBadArg: bad input, whether the SDK checked it (an empty or invalid
//     queue name, an empty ID option, a batch too large, a bad config) or a
//     script refused it; nothing was written.
//   - ErrConflict: the task id or unique key is taken, or the task is running.
//   - ErrNotFound: no task with that id in the expected state.
//   - ErrLeaseLost: the fencing token is no longer the task's lease.
//   - ErrSchema: the queue was written by a newer luaq.
//   - ErrNotOwner: the janitor lock is held by another owner.
//   - ErrServerFull: Redis is at maxmemory with the noeviction policy and
//     refused what would grow the data (enqueueing); nothing was written,
//     and workers keep draining the queues.
//   - ErrEvictionPolicy: a server may evict keys and noeviction was required.
//   - ErrInternal: a script failed in a way that is not a verdict on the
//     input (a bug in the bundle, or a server problem).
//
// Connection errors, timeouts and context errors come from go-redis and the
// context package unchanged (wrapped), so errors.Is works for them too.
//
// # Limits
//
// The bundle enforces these limits (scripts/SPEC.md section 2 is the
// reference; a test keeps this list in step with it):
//
//   - queue name: 1..128 bytes of printable ASCII without space (0x21..0x7e),
//     no brace; checked by the SDK.
//   - task id: 1..128 bytes of printable ASCII without space; an id of your
//     own (the ID option) must not be all digits, which generated ids are.
//   - task type: 1..128 bytes of printable ASCII without space.
//   - payload: 0..16,777,216 bytes (16 MiB), any bytes.
//   - unique key: 1..1024 bytes, any bytes.
//   - error message: 0..8192 bytes; a longer handler error is cut to 8192.
//   - result: 0..16,777,216 bytes; a larger result fails the run and
//     archives the task.
//   - tasks per EnqueueBatch call: 1..1000 (MaxBatch).
//   - absolute times (ProcessAt, ExpireAt, Deadline): Unix ms
//     0..253,402,300,799,999 (the end of year 9999).
//   - worker id: 1..128 bytes; worker description: 0..65,536 bytes.
//   - janitor owner token: 1..128 bytes.
package sdk
