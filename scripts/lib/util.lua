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
