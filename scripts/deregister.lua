-- luaq script: deregister
-- A worker process leaving a queue: removes its registration and gives its
-- in-flight tasks back to the head of pending at once, in the order given,
-- without counting a retry. Each task is given back only if the worker still holds its lease
-- (its token is current); others are skipped. Safe to call twice.
--
-- KEYS:
--   meta         queue meta hash
--   pending      list of ready task ids
--   active       zset: task id -> lease deadline (Unix ms)
--   tokens       hash: task id -> fencing token of its current lease
--   wake         list idle workers block on
--   workers      zset: worker id -> heartbeat deadline (Unix ms)
--   worker_info  hash: worker id -> the worker's description
-- ARGV:
--   worker_id  string  the leaving worker's id
--   ... then one pair per in-flight task (0..1000 pairs):
--   id         string  task id
--   token      int     the worker's fencing token for it
-- REPLY: array: requeued (tasks given back), registered (1 if the worker was registered, else 0)
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(tasks * log N)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include wake
-- @include lease
-- @include workers
-- @include full

local worker = arg_name(ARGV[1], 'worker_id', 128)
local pairs_n = (#ARGV - 1) / 2
if pairs_n ~= math.floor(pairs_n) or pairs_n > 1000 then
  arg_fail('ARGV', 'must be worker_id then 0..1000 (id, token) pairs')
  pairs_n = 0
end
local tasks = {}
for i = 1, pairs_n do
  local id, token = arg_lease(2 * i)
  tasks[i] = {id, token}
end
local stop = precheck()
if stop then
  return stop
end
begin_writes()
-- Walk the pairs backwards: each LPUSH goes in front of the previous one,
-- so the tasks reach the head of pending in the order they were given.
local requeued = 0
for i = #tasks, 1, -1 do
  local t = tasks[i]
  if not lease_error(t[1], t[2]) then
    release_lease(t[1])
    redis.call('LPUSH', K.pending, t[1])
    requeued = requeued + 1
  end
end
if requeued > 0 then
  signal_wake()
end
local registered = redis.call('ZREM', K.workers, worker)
redis.call('HDEL', K.worker_info, worker)
return {requeued, registered}
