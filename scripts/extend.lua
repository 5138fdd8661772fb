-- luaq script: extend
-- Renews the lease of a running task: its lease deadline becomes now +
-- lease_ms on the server clock. Only the current lease holder (the current
-- fencing token) may extend; anyone else gets LQ_LEASE_LOST and nothing changes.
--
-- KEYS:
--   meta       queue meta hash
--   active     zset: task id -> lease deadline (Unix ms)
--   tokens     hash: task id -> fencing token of its current lease
-- ARGV:
--   id         string  task id
--   token      int     fencing token the worker got with the lease
--   lease_ms   int     new lease duration from now, ms, 1..2147483647
-- REPLY: integer: the new lease deadline, Unix ms
-- ERRORS: LQ_BADARG LQ_LEASE_LOST LQ_SCHEMA
-- COST: O(log N)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include lease
-- @include full

arg_count(3)
local id, token = arg_lease(1)
local lease_ms = arg_int(ARGV[3], 'lease_ms', 1, 2147483647)
local stop = precheck() or lease_error(id, token)
if stop then
  return stop
end
begin_writes()
local lease_until = now_ms() + lease_ms
redis.call('ZADD', K.active, fmt(lease_until), id)
return lease_until
