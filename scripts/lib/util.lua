-- lib/util: clock and number formatting.

-- fmt turns an integer into its decimal string. It is the only way the bundle
-- turns numbers into strings (tostring and '..' on numbers differ by engine).
local function fmt(n)
  return string.format('%d', n)
end

-- now_ms reads the Redis server's clock in Unix milliseconds. Every
-- time-dependent decision uses this clock, never the client's.
local function now_ms()
  local t = redis.call('TIME')
  return (t[1] + 0) * 1000 + math.floor((t[2] + 0) / 1000)
end

-- push_all runs cmd key item... over a list of items in chunks of at most 500
-- (unpack and argument limits differ by engine; 1000 is the portable ceiling).
local function push_all(cmd, key, items)
  local n = #items
  local i = 1
  while i <= n do
    local j = math.min(i + 499, n)
    redis.call(cmd, key, unpack(items, i, j))
    i = j + 1
  end
end

-- due_batch returns up to limit members of zset key whose score is at most
-- max, lowest first, and 1 when more such members remain, else 0. It reads
-- one member past limit rather than guess from a full batch, so a caller
-- that reports "more" only does so when another call has something to do.
local function due_batch(key, max, limit)
  local ids = redis.call('ZRANGEBYSCORE', key, '-inf', fmt(max), 'LIMIT', '0', fmt(limit + 1))
  if #ids > limit then
    local _ = table.remove(ids)
    return ids, 1
  end
  return ids, 0
end
