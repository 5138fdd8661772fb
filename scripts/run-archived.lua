-- luaq script: run-archived
-- Runs an archived task again: it leaves the archive for the tail of pending
-- with its retry count reset to 0, its last error and its expiry cleared (it
-- is a deliberate new run). Its unique key, freed when it was archived, is
-- not taken again. Its deadline is kept: it is the user's absolute limit, so
-- a task archived because its deadline passed goes straight back to the
-- archive at its next dequeue.
--
-- KEYS:
--   meta       queue meta hash
--   tasks      hash: task id -> task record
--   pending    list of ready task ids
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   wake       list idle workers block on
-- ARGV:
--   id         string  task id
-- REPLY: integer 1
-- ERRORS: LQ_BADARG LQ_NOTFOUND LQ_SCHEMA
-- COST: O(log N)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include record
-- @include wake
-- @include full

arg_count(1)
local id = arg_name(ARGV[1], 'id', 128)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
local stored = redis.call('HGET', K.tasks, id)
if not stored or not redis.call('ZSCORE', K.archived, id) then
  return err_reply(ERR_NOTFOUND, 'no archived task ' .. id)
end
local r = record_decode(stored)
r.retried = 0
r.expire_at = 0
r.unique = ''
redis.call('ZREM', K.archived, id)
redis.call('HDEL', K.errors, id)
redis.call('HSET', K.tasks, id, record_encode(r))
redis.call('RPUSH', K.pending, id)
signal_wake()
return 1
