-- luaq script: queue-info
-- Reads the sizes and counters of a queue. Writes nothing. pending counts
-- pending tasks: the length of the pending list minus its stale entries
-- (meta field 'stale', see lib/expire), left behind by tasks the janitor
-- expired in a long backlog.
--
-- KEYS:
--   meta       queue meta hash
--   pending    list of ready task ids
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   archived   zset: task id -> archived at (Unix ms)
--   completed  zset: task id -> when its retention ends (Unix ms)
--   stats      hash: counters (processed, failed, retried, archived, expired): totals and <counter>:<day> fields
-- ARGV:
-- REPLY: array of name, integer pairs: pending, scheduled, active, archived, completed (retained),
--     paused (0/1), processed, failed, retried, archived_total, expired
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(1)
-- WHEN FULL: reads
-- @include args
-- @include schema

arg_count(0)
local stop = precheck()
if stop then
  return stop
end
local counters = redis.call('HMGET', K.stats, 'processed', 'failed', 'retried', 'archived', 'expired')
local function num(v)
  if v then return v + 0 end
  return 0
end
return {
  'pending', math.max(0, redis.call('LLEN', K.pending) - queue_stale), -- queue_stale: read by precheck
  'scheduled', redis.call('ZCARD', K.scheduled),
  'active', redis.call('ZCARD', K.active),
  'archived', redis.call('ZCARD', K.archived),
  'completed', redis.call('ZCARD', K.completed),
  'paused', redis.call('HEXISTS', K.meta, 'paused'),
  'processed', num(counters[1]),
  'failed', num(counters[2]),
  'retried', num(counters[3]),
  'archived_total', num(counters[4]),
  'expired', num(counters[5]),
}
