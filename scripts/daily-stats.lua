-- luaq script: daily-stats
-- Reads a queue's per-day counters for the last days days, ending today by
-- the Redis server's clock (UTC days since the Unix epoch), oldest first. A
-- day without a count reads 0 (also one the janitor has trimmed already).
-- Writes nothing.
--
-- KEYS:
--   meta       queue meta hash
--   stats      hash: counters: totals and <counter>:<day> fields
-- ARGV:
--   days       int  how many days to read, today included, 1..3650
-- REPLY: flat array of 6 integers per day, oldest first: day (days since 1970-01-01 UTC),
--     processed, failed, retried, archived, expired
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(days)
-- WHEN FULL: reads
-- @include args
-- @include schema
-- @include stats

arg_count(1)
local days = arg_int(ARGV[1], 'days', 1, 3650)
local stop = precheck()
if stop then
  return stop
end
local today = stat_day(now_ms())
local reply = {}
for day = today - days + 1, today do
  local suffix = ':' .. fmt(day)
  local fields = {}
  for i, name in ipairs(STATS_COUNTERS) do
    fields[i] = name .. suffix
  end
  local counts = redis.call('HMGET', K.stats, unpack(fields))
  reply[#reply + 1] = day
  for i = 1, #STATS_COUNTERS do
    local v = counts[i]
    if v then
      reply[#reply + 1] = v + 0
    else
      reply[#reply + 1] = 0
    end
  end
end
return reply
