-- luaq script: set-paused
-- Pauses or resumes a queue. A paused queue keeps accepting tasks, but
-- dequeue leases nothing from it (running tasks go on). Resuming signals the
-- wake list so idle workers start at once.
--
-- KEYS:
--   meta       queue meta hash (field 'paused' present = paused)
--   wake       list idle workers block on
-- ARGV:
--   paused     flag    '1' = pause, '0' = resume
-- REPLY: integer: 1 if the state changed, 0 if the queue already was so
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(1)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include wake
-- @include full

arg_count(1)
local paused = arg_flag(ARGV[1], 'paused')
local stop = precheck()
if stop then
  return stop
end
begin_writes()
if paused then
  return redis.call('HSETNX', K.meta, 'paused', '1')
end
local changed = redis.call('HDEL', K.meta, 'paused')
if changed == 1 then
  signal_wake()
end
return changed
