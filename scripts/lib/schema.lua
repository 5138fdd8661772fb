-- lib/schema: the data schema version of a queue.
--
-- The meta hash of a queue holds field 'schema', the version of the data
-- layout that wrote it. A script refuses to touch a queue written by a newer
-- schema rather than corrupt data it does not understand.
-- @include errors
-- @include util
-- @include args

local SCHEMA = 1

-- schema_present tells, after schema_error ran, whether the queue's meta
-- already holds a schema field (so a writer need not set it again).
local schema_present = false

-- queue_paused tells, after schema_error ran, whether the queue is paused
-- (meta field 'paused'); read together with the schema to save a call.
local queue_paused = false

-- schema_error returns an error reply when the queue's schema is newer than
-- SCHEMA, else false. It reads K.meta.
local function schema_error()
  local m = redis.call('HMGET', K.meta, 'schema', 'paused')
  local s = m[1]
  schema_present = s ~= false
  queue_paused = m[2] ~= false
  if s and (s + 0) > SCHEMA then
    return err_reply(ERR_SCHEMA, 'queue has data schema ' .. s .. ' but this bundle understands ' .. fmt(SCHEMA) .. '; upgrade luaq')
  end
  return false
end

-- precheck returns the reply that must end a script before its first write:
-- the first argument error, else a schema refusal; false when all is well.
local function precheck()
  if arg_error then
    return err_reply(ERR_BADARG, arg_error)
  end
  return schema_error()
end
