-- luaq script: complete
-- Marks a leased task done and counts it processed, freeing its unique key.
-- Without retention it deletes every byte of the task in this call; with a
-- retention period R the record and the handler's result stay readable as
-- 'completed' for R, after which the janitor deletes them. Only the current
-- lease holder may complete;
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
--   stats      hash: counters (processed, failed, retried, archived, expired): totals and <counter>:<day> fields
--   wake       list idle workers block on
--   expiry     zset: task id -> expire-at (Unix ms), for tasks with an expiry not yet started
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
--   completed  zset: task id -> when its retention ends (Unix ms)
--   results    hash: task id -> result bytes its handler wrote (retained tasks only)
--   stale      hash: task id -> how many stale entries of it pending holds (lib/expire)
-- ARGV:
--   id             string  task id
--   token          int     fencing token of the lease
--   result         bytes   what the handler wrote, 0..16777216 bytes; kept only with retention
--   next_count     int     tasks to lease after completing, 0..1000; 0 = none
--   lease_ms       int     lease duration for those, ms; 1..2147483647 when next_count > 0, else 0..
--   promote_limit  int     most scheduled tasks to promote, 0..1000
-- REPLY: array shaped like dequeue's reply: leased, next_due_in_ms, paused, then 9 values per
--     leased task; when next_count = 0 it is {0, -1, 0}
-- ERRORS: LQ_BADARG LQ_LEASE_LOST LQ_NOTFOUND LQ_SCHEMA
-- COST: O(log N) + dequeue's cost when next_count > 0
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include record
-- @include unique
-- @include lease
-- @include stats
-- @include full

arg_count(6)
local id, token = arg_lease(1)
local result = arg_bytes(ARGV[3], 'result', 0, 16777216)
local next_count = arg_int(ARGV[4], 'next_count', 0, 1000)
local min_lease = 0
if next_count > 0 then min_lease = 1 end
local lease_ms = arg_int(ARGV[5], 'lease_ms', min_lease, 2147483647)
local promote_limit = arg_int(ARGV[6], 'promote_limit', 0, 1000)
local stop = precheck() or lease_error(id, token)
if stop then
  return stop
end
begin_writes()
local stored = redis.call('HGET', K.tasks, id)
if not stored then
  return err_reply(ERR_NOTFOUND, 'task ' .. id .. ' is leased but has no record')
end

local now = now_ms()
local r = record_decode(stored)
release_lease(id)
if r.retried > 0 then
  redis.call('HDEL', K.errors, id) -- only a task that failed before has one
end
stat_incr('processed', now)
unique_release(id, r.unique)
if r.retention > 0 then
  redis.call('ZADD', K.completed, fmt(now + r.retention), id)
  redis.call('HSET', K.results, id, result)
else
  redis.call('HDEL', K.tasks, id)
end
if next_count == 0 then
  return {0, -1, 0}
end
return lease_tasks(now, next_count, lease_ms, promote_limit)
