-- lib/args: ARGV parsing and validation.
--
-- Each parser checks one value and returns it converted. On the first bad
-- value it records a message in arg_error and returns a harmless default, so a
-- script parses every argument first and then, before any write, does
--   if arg_error then return err_reply(ERR_BADARG, arg_error) end
-- Messages never echo the value itself (it may be binary).
-- @include errors
-- @include util

local arg_error = false

-- MAX_SAFE_INT is 2^53: every integer below it survives Lua's doubles exactly.
local MAX_SAFE_INT = 9007199254740992

local function arg_fail(name, msg)
  if not arg_error then
    arg_error = name .. ' ' .. msg
  end
end

-- arg_int parses a decimal integer (no sign, exponent or spaces) in [lo, hi].
local function arg_int(v, name, lo, hi)
  if type(v) ~= 'string' or #v == 0 or #v > 16 or not string.find(v, '^%-?%d+$') then
    arg_fail(name, 'must be an integer in ' .. fmt(lo) .. '..' .. fmt(hi))
    return lo
  end
  local n = tonumber(v)
  if n < lo or n > hi then
    arg_fail(name, 'must be an integer in ' .. fmt(lo) .. '..' .. fmt(hi))
    return lo
  end
  return n
end

-- arg_flag parses '0' or '1' into false or true.
local function arg_flag(v, name)
  if v == '1' then
    return true
  end
  if v ~= '0' then
    arg_fail(name, 'must be 0 or 1')
  end
  return false
end

-- arg_bytes accepts any string of minlen..maxlen bytes (payloads, messages).
local function arg_bytes(v, name, minlen, maxlen)
  if type(v) ~= 'string' then
    arg_fail(name, 'is missing')
    return ''
  end
  if #v < minlen or #v > maxlen then
    arg_fail(name, 'must be ' .. fmt(minlen) .. '..' .. fmt(maxlen) .. ' bytes')
    return ''
  end
  return v
end

-- arg_name accepts 1..maxlen bytes of printable ASCII without spaces
-- (0x21..0x7e): task ids and task types.
local function arg_name(v, name, maxlen)
  local s = arg_bytes(v, name, 1, maxlen)
  if s ~= '' and string.find(s, '[^\33-\126]') then
    arg_fail(name, 'must be printable ASCII without spaces')
    return ''
  end
  return s
end

-- arg_count checks that ARGV has exactly want values.
local function arg_count(want)
  if #ARGV ~= want then
    arg_fail('ARGV', 'has ' .. fmt(#ARGV) .. ' values, want ' .. fmt(want))
  end
end

-- arg_lease parses the task id and fencing token that every call of a lease
-- holder passes as ARGV[i] and ARGV[i + 1]. The token stays a string: it is
-- compared with the stored one as is.
local function arg_lease(i)
  local id = arg_name(ARGV[i], 'id', 128)
  local token = ARGV[i + 1]
  arg_int(token, 'token', 1, MAX_SAFE_INT)
  return id, token
end
