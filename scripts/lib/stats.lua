-- lib/stats: the counters of a queue, in the hash K.stats.
--
-- Field <counter> holds a lifetime total and field <counter>:<day> the count
-- of one day, where counter is one of processed, failed, retried, archived,
-- expired and day = floor(now / 86400000) (days since the Unix epoch, UTC, by
-- the Redis server's clock), written in decimal by fmt. The janitor (clean)
-- deletes day fields older than the meta field 'stats_days' days (default
-- STATS_DAYS_DEFAULT); the totals are kept for ever.
-- stat_incr uses K.stats; stats_trim uses K.stats and K.meta.
-- @include util

local DAY_MS = 86400000
local STATS_DAYS_DEFAULT = 30
local STATS_COUNTERS = {'processed', 'failed', 'retried', 'archived', 'expired'}

-- stat_day returns the day number of the instant now (Unix ms).
local function stat_day(now)
  return math.floor(now / DAY_MS)
end

-- stat_incr adds 1 to the lifetime total of counter name and to its count
-- for the day of now. Every counter of the bundle is raised through here.
local function stat_incr(name, now)
  redis.call('HINCRBY', K.stats, name, 1)
  redis.call('HINCRBY', K.stats, name .. ':' .. fmt(stat_day(now)), 1)
end

-- stats_trim deletes up to limit day fields of days before the last
-- 'stats_days' days (today included), oldest day first and, within a day, in
-- the order of STATS_COUNTERS, leaving the totals. Returns how many it
-- deleted and 1 when more old fields remain, else 0. It reads every field of
-- K.stats (HGETALL: HKEYS is outside the portable command set) but does not
-- depend on the engine's field order; the hash is small, 5 totals plus 5
-- fields per kept day.
local function stats_trim(now, limit)
  local days = redis.call('HGET', K.meta, 'stats_days')
  if days then
    days = days + 0
  else
    days = STATS_DAYS_DEFAULT
  end
  local first_kept = stat_day(now) - days + 1
  local counter = {}
  for i, name in ipairs(STATS_COUNTERS) do
    counter[name] = i
  end
  -- Each old field as the number day * 8 + counter index, so that a numeric
  -- sort orders them (no string comparisons: they depend on the locale).
  local all = redis.call('HGETALL', K.stats)
  local old = {}
  for i = 1, #all, 2 do
    local _, _, name, digits = string.find(all[i], '^([a-z]+):(%d+)$')
    if name and counter[name] and #digits <= 15 then
      local day = tonumber(digits)
      if day < first_kept and fmt(day) == digits then
        old[#old + 1] = day * 8 + counter[name]
      end
    end
  end
  table.sort(old)
  local n = math.min(#old, limit)
  local fields = {}
  for i = 1, n do
    local day = math.floor(old[i] / 8)
    fields[i] = STATS_COUNTERS[old[i] - day * 8] .. ':' .. fmt(day)
  end
  if n > 0 then
    push_all('HDEL', K.stats, fields)
  end
  if #old > n then
    return n, 1
  end
  return n, 0
end
