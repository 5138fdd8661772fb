-- luaq script: configure
-- Sets a queue's archive bounds and how long its daily stats are kept, read
-- by every script that archives and by the janitor's trims. The archive keeps
-- at most archive_max tasks, none older than archive_age_ms; the oldest
-- beyond either bound are deleted with all their data. The stats hash keeps
-- the per-day counts of the last stats_days days (today included); the
-- janitor deletes older days' fields (the lifetime totals stay).
--
-- KEYS:
--   meta       queue meta hash (fields archive_max, archive_age_ms, stats_days)
-- ARGV:
--   archive_max     int  most archived tasks kept, 0..10000000
--   archive_age_ms  int  longest an archived task is kept, ms, 1..3153600000000
--   stats_days      int  days of per-day stats kept, today included, 1..3650
-- REPLY: integer 1
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(1)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include full

arg_count(3)
local max = arg_int(ARGV[1], 'archive_max', 0, 10000000)
local age = arg_int(ARGV[2], 'archive_age_ms', 1, 3153600000000)
local stats_days = arg_int(ARGV[3], 'stats_days', 1, 3650)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
redis.call('HSETNX', K.meta, 'schema', fmt(SCHEMA_FIRST))
redis.call('HSET', K.meta, 'archive_max', fmt(max), 'archive_age_ms', fmt(age), 'stats_days', fmt(stats_days))
return 1
