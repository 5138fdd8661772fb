-- luaq script: dequeue
-- Leases up to count tasks to a worker. First promotes up to promote_limit
-- scheduled tasks whose time has come (retries included) to the tail of
-- pending, then pops pending tasks in FIFO order and leases each with a new
-- fencing token and a lease deadline. A task whose deadline has passed is
-- archived instead, and a stale entry (lib/expire) is dropped; it pops on
-- for the places those leave, at most 1000 entries beyond count. When
-- nothing was leased the reply says how long until the next scheduled task
-- is due, so an idle worker sleeps exactly that long (0 when pending still
-- holds entries: call again). Lease deadlines do not count: an idle worker
-- does not wake to reclaim leases; the janitor does (clean), and signals the
-- wake list.
-- Before all that it reclaims up to reclaim_limit tasks whose lease expired
-- (their worker died): each counts as a failed run ('lease expired') and is
-- retried after reclaim_backoff_ms, or archived when out of retries.
--
-- KEYS:
--   meta       queue meta hash
--   tasks      hash: task id -> task record
--   pending    list of ready task ids
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   tokens     hash: task id -> fencing token of its current lease
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   stats      hash: counters (processed, failed, retried, archived, expired): totals and <counter>:<day> fields
--   wake       list idle workers block on
--   expiry     zset: task id -> expire-at (Unix ms), for tasks with an expiry not yet started
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
--   stale      hash: task id -> how many stale entries of it pending holds (lib/expire)
-- ARGV:
--   count          int  most tasks to lease, 1..1000
--   lease_ms       int  lease duration, ms, 1..2147483647
--   promote_limit  int  most scheduled tasks to promote in this call, 0..1000
--   reclaim_limit  int  most expired leases to reclaim in this call, 0..1000
--   reclaim_backoff_ms  int  delay before a reclaimed task runs again, ms, 0..31536000000
-- REPLY: array: leased, next_due_in_ms (only when leased = 0, else -1: ms until the next scheduled task
--     is due, 0 = now or pending still holds entries, -1 = nothing scheduled), paused (0/1),
--     then per leased task: id, token, type, payload, retried, max_retry, timeout_ms, deadline_ms, lease_until_ms
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(count + promote_limit + reclaim_limit), plus at most 1000 more pending entries popped,
--     + O(log N) per scheduled, active or archived task touched
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include lease
-- @include fail
-- @include full

arg_count(5)
local count = arg_int(ARGV[1], 'count', 1, 1000)
local lease_ms = arg_int(ARGV[2], 'lease_ms', 1, 2147483647)
local promote_limit = arg_int(ARGV[3], 'promote_limit', 0, 1000)
local reclaim_limit = arg_int(ARGV[4], 'reclaim_limit', 0, 1000)
local reclaim_backoff = arg_int(ARGV[5], 'reclaim_backoff_ms', 0, 31536000000)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
local now = now_ms()
reclaim_expired(now, reclaim_limit, reclaim_backoff)
return lease_tasks(now, count, lease_ms, promote_limit)
