-- luaq script: requeue
-- Gives a leased task back: it goes to the head of pending, to run next,
-- without counting a retry (a worker shutting down, a handler that cannot run
-- it now). Only the current lease holder may requeue; a stale token gets
-- LQ_LEASE_LOST and nothing changes. Signals the wake list.
--
-- KEYS:
--   meta       queue meta hash
--   pending    list of ready task ids
--   active     zset: task id -> lease deadline (Unix ms)
--   tokens     hash: task id -> fencing token of its current lease
--   wake       list idle workers block on
-- ARGV:
--   id         string  task id
--   token      int     fencing token of the lease
-- REPLY: integer 1
-- ERRORS: LQ_BADARG LQ_LEASE_LOST LQ_SCHEMA
-- COST: O(log N)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include lease
-- @include full

arg_count(2)
local id, token = arg_lease(1)
local stop = precheck() or lease_error(id, token)
if stop then
  return stop
end
begin_writes()
release_lease(id)
redis.call('LPUSH', K.pending, id)
signal_wake()
return 1
