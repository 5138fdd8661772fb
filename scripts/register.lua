-- luaq script: register
-- Registers a worker process with a queue, or renews its registration (the
-- heartbeat): its id stays listed until now + ttl_ms unless renewed. A worker
-- whose heartbeat has passed counts as dead; prune-workers removes it, and
-- its leases expire and are reclaimed.
--
-- KEYS:
--   meta         queue meta hash
--   workers      zset: worker id -> heartbeat deadline (Unix ms)
--   worker_info  hash: worker id -> the worker's description (opaque bytes)
-- ARGV:
--   worker_id  string  1..128 printable ASCII bytes, unique per worker process
--   info       bytes   the worker's description, 0..65536 bytes
--   ttl_ms     int     how long the registration lasts without renewal, ms, 1..86400000
-- REPLY: integer: the heartbeat deadline, Unix ms
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(log N) in the number of workers
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include full

arg_count(3)
local worker = arg_name(ARGV[1], 'worker_id', 128)
local info = arg_bytes(ARGV[2], 'info', 0, 65536)
local ttl = arg_int(ARGV[3], 'ttl_ms', 1, 86400000)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
local deadline = now_ms() + ttl
redis.call('ZADD', K.workers, fmt(deadline), worker)
redis.call('HSET', K.worker_info, worker, info)
return deadline
