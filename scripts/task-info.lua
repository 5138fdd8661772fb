-- luaq script: task-info
-- Reads one task: its state, its record, its last error and, for a
-- completed task kept with retention, its result. Writes nothing.
--
-- KEYS:
--   meta       queue meta hash
--   tasks      hash: task id -> task record
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   completed  zset: task id -> when its retention ends (Unix ms)
--   results    hash: task id -> result bytes
-- ARGV:
--   id         string  task id
-- REPLY: array: state ('pending', 'scheduled', 'retry', 'active', 'archived' or 'completed'),
--     state_at_ms (due time for scheduled/retry, lease deadline for active, archive time for
--     archived, completion time for completed, 0 for pending), type, payload, retried, max_retry,
--     timeout_ms, deadline_ms, expire_at_ms, retention_ms, enqueued_ms, last_error ('' = none),
--     result ('' = none)
-- ERRORS: LQ_BADARG LQ_NOTFOUND LQ_SCHEMA
-- COST: O(log N)
-- WHEN FULL: reads
-- @include args
-- @include schema
-- @include record
-- @include state

arg_count(1)
local id = arg_name(ARGV[1], 'id', 128)
local stop = precheck()
if stop then
  return stop
end
local stored = redis.call('HGET', K.tasks, id)
if not stored then
  return err_reply(ERR_NOTFOUND, 'no task ' .. id)
end
local r = record_decode(stored)
local state, score = task_state(id)
local at = 0
if state == 'scheduled' and r.retried > 0 then
  state = 'retry'
end
if score then
  at = score + 0
  if state == 'completed' then at = at - r.retention end
end
return {state, at, r.type, r.payload, r.retried, r.max_retry, r.timeout, r.deadline,
  r.expire_at, r.retention, r.enqueued,
  redis.call('HGET', K.errors, id) or '', redis.call('HGET', K.results, id) or ''}
