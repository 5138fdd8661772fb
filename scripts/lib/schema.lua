-- lib/schema: the data schema version of a queue.
--
-- The meta hash of a queue holds field 'schema', the version of the data
-- layout that wrote it. A script refuses to touch a queue written by a newer
-- schema rather than corrupt data it does not understand.
--
-- Schema 2 adds stale pending entries (lib/expire: the stale hash and the
-- meta field 'stale'). A queue starts at schema 1 (SCHEMA_FIRST), the layout
-- without them, so bundles of schema 1 keep working on it; the janitor raises
-- it to 2 when it leaves the first stale entry, and from then on a schema 1
-- bundle refuses the queue rather than lease what it cannot tell is stale.
-- @include errors
-- @include util
-- @include args

-- SCHEMA is the newest schema this bundle understands; SCHEMA_FIRST the one
-- it writes on a queue's first write.
local SCHEMA = 2
local SCHEMA_FIRST = 1

-- schema_present tells, after schema_error ran, whether the queue's meta
-- already holds a schema field (so a writer need not set it again).
local schema_present = false

-- queue_schema is the queue's schema after schema_error ran (0 = none yet).
local queue_schema = 0

-- queue_paused tells, after schema_error ran, whether the queue is paused
-- (meta field 'paused'); read together with the schema to save a call.
local queue_paused = false

-- queue_stale is, after schema_error ran, the number of stale entries in
-- the queue's pending list (meta field 'stale', see lib/expire); read
-- together with the schema to save a call.
local queue_stale = 0

-- schema_error returns an error reply when the queue's schema is newer than
-- SCHEMA, else false. It reads K.meta.
local function schema_error()
  local m = redis.call('HMGET', K.meta, 'schema', 'paused', 'stale')
  local s = m[1]
  schema_present = s ~= false
  queue_paused = m[2] ~= false
  if s then queue_schema = s + 0 end
  if m[3] then queue_stale = m[3] + 0 end
  if queue_schema > SCHEMA then
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
