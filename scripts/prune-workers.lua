-- luaq script: prune-workers
-- Removes up to limit workers whose heartbeat deadline has passed (the
-- process died without deregistering). Their leases expire on their own and
-- are reclaimed by dequeue or clean. Called by the janitor.
--
-- KEYS:
--   meta         queue meta hash
--   workers      zset: worker id -> heartbeat deadline (Unix ms)
--   worker_info  hash: worker id -> the worker's description
-- ARGV:
--   limit      int  most workers to remove, 1..1000
-- REPLY: array: the ids of the removed workers
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(limit * log N)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include workers
-- @include full

arg_count(1)
local limit = arg_int(ARGV[1], 'limit', 1, 1000)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
local dead = redis.call('ZRANGEBYSCORE', K.workers, '-inf', fmt(now_ms() - 1), 'LIMIT', 0, limit)
worker_forget(dead)
return dead
