-- luaq script: delete-task
-- Deletes a task that is not running, in any other state, with every byte
-- of it: its id leaves every structure, its fields every hash, and its
-- unique key is freed. A running (leased) task cannot be deleted: LQ_CONFLICT.
-- Taking an id out of pending is linear in the list, so it is refused when
-- the list holds more than 100000 ids (LQ_BADARG); pause the queue's producers
-- or let it drain first.
--
-- KEYS:
--   meta       queue meta hash
--   tasks      hash: task id -> task record
--   pending    list of ready task ids
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   expiry     zset: task id -> expire-at (Unix ms)
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
--   completed  zset: task id -> when its retention ends (Unix ms)
--   results    hash: task id -> result bytes
-- ARGV:
--   id         string  task id
-- REPLY: string: the state the task was in ('pending', 'scheduled', 'archived' or 'completed')
-- ERRORS: LQ_BADARG LQ_CONFLICT LQ_NOTFOUND LQ_SCHEMA
-- COST: O(log N), plus O(position) in pending for a pending task
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include record
-- @include state
-- @include unique
-- @include full

local PENDING_DELETE_MAX = 100000

arg_count(1)
local id = arg_name(ARGV[1], 'id', 128)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
local stored = redis.call('HGET', K.tasks, id)
if not stored then
  return err_reply(ERR_NOTFOUND, 'no task ' .. id)
end
local state = task_state(id)
if state == 'active' then
  return err_reply(ERR_CONFLICT, 'task ' .. id .. ' is running')
end
if state == 'pending' and redis.call('LLEN', K.pending) > PENDING_DELETE_MAX then
  return err_reply(ERR_BADARG, 'pending holds more than 100000 tasks; deleting from it would block the server')
end

-- Validation is over; from here on only writes.
if state == 'pending' then
  redis.call('LREM', K.pending, 1, id)
else
  redis.call('ZREM', K[state], id)
end
local r = record_decode(stored)
unique_release(id, r.unique)
redis.call('ZREM', K.expiry, id)
redis.call('HDEL', K.tasks, id)
redis.call('HDEL', K.errors, id)
redis.call('HDEL', K.results, id)
return state
