-- luaq script: complete
-- Marks a leased task done: deletes every byte of it (record, lease, last
-- error) and counts it processed. Only the current lease holder may complete;
-- a stale token gets LQ_LEASE_LOST and nothing changes. With next_count > 0 it
-- then leases up to next_count more tasks in the same call, exactly as
-- dequeue does, saving the worker a round trip.
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
--   stats      hash: counters (processed, failed, retried, archived)
--   wake       list idle workers block on
-- ARGV:
--   id             string  task id
--   token          int     fencing token of the lease
--   next_count     int     tasks to lease after completing, 0..1000; 0 = none
--   lease_ms       int     lease duration for those, ms; 1..2147483647 when next_count > 0, else 0..
--   promote_limit  int     most scheduled tasks to promote, 0..1000
-- REPLY: array shaped like dequeue's reply: leased, next_due_in_ms, paused, then 9 values per
--     leased task; when next_count = 0 it is {0, -1, 0}
-- ERRORS: LQ_BADARG LQ_LEASE_LOST LQ_SCHEMA
-- COST: O(log N) + dequeue's cost when next_count > 0
-- @include args
-- @include schema
-- @include lease

arg_count(5)
local id, token = arg_lease(1)
local next_count = arg_int(ARGV[3], 'next_count', 0, 1000)
local min_lease = 0
if next_count > 0 then min_lease = 1 end
local lease_ms = arg_int(ARGV[4], 'lease_ms', min_lease, 2147483647)
local promote_limit = arg_int(ARGV[5], 'promote_limit', 0, 1000)
local stop = precheck() or lease_error(id, token)
if stop then
  return stop
end

release_lease(id)
redis.call('HDEL', K.tasks, id)
redis.call('HDEL', K.errors, id)
redis.call('HINCRBY', K.stats, 'processed', 1)
if next_count == 0 then
  return {0, -1, 0}
end
return lease_tasks(now_ms(), next_count, lease_ms, promote_limit)
