-- luaq script: list-workers
-- Lists up to limit live workers of a queue (heartbeat not passed), soonest
-- heartbeat deadline first. Writes nothing.
--
-- KEYS:
--   meta         queue meta hash
--   workers      zset: worker id -> heartbeat deadline (Unix ms)
--   worker_info  hash: worker id -> the worker's description
-- ARGV:
--   limit      int  most workers to list, 1..1000
-- REPLY: array: per worker: id, heartbeat deadline (Unix ms), description
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(log N + limit)
-- WHEN FULL: reads
-- @include args
-- @include schema

arg_count(1)
local limit = arg_int(ARGV[1], 'limit', 1, 1000)
local stop = precheck()
if stop then
  return stop
end
local live = redis.call('ZRANGEBYSCORE', K.workers, fmt(now_ms()), '+inf', 'WITHSCORES', 'LIMIT', 0, limit)
local reply = {}
for i = 1, #live, 2 do
  local info = redis.call('HGET', K.worker_info, live[i]) or ''
  reply[#reply + 1] = live[i]
  reply[#reply + 1] = live[i + 1] + 0
  reply[#reply + 1] = info
end
return reply
