-- lib/record: the task record, the value of field <id> in the tasks hash.
--
-- Format: eight decimal integers, each followed by ':', then two
-- length-prefixed strings (the type and the unique key), then the payload
-- (every byte up to the end):
--   retried:max_retry:timeout_ms:deadline_ms:expire_at_ms:retention_ms:enqueued_ms:on_expiry:
--   <type_len>:<type><unique_len>:<unique><payload>
-- retried      runs that failed and were retried so far
-- max_retry    retries allowed before the task is archived
-- timeout_ms   longest one run may take (0 = none)
-- deadline_ms  Unix ms by which a run must finish (0 = none)
-- expire_at_ms Unix ms after which a task not yet started is dropped (0 = none)
-- retention_ms how long a completed task stays readable (0 = delete at once)
-- enqueued_ms  Unix ms of the enqueue (server clock)
-- on_expiry    0 = an expired task is deleted, 1 = it is archived ("expired")
-- type         the task type; unique: the unique key it holds ('' = none)
-- Where the task is (pending, scheduled, active, archived, completed) is not
-- stored in the record: it is told by which structure holds the id.
-- @include util

local RECORD_NUMBERS = {'retried', 'max_retry', 'timeout', 'deadline', 'expire_at', 'retention', 'enqueued', 'on_expiry'}

-- record_encode turns a record table into its stored string.
local function record_encode(r)
  return string.format('%d:%d:%d:%d:%d:%d:%d:%d:%d:', r.retried, r.max_retry, r.timeout,
    r.deadline, r.expire_at, r.retention, r.enqueued, r.on_expiry, #r.type) .. r.type
    .. string.format('%d:', #r.unique) .. r.unique .. r.payload
end

-- record_string reads one length-prefixed string at pos; returns it and the
-- position after it.
local function record_string(s, pos)
  local c = string.find(s, ':', pos, true)
  local len = tonumber(string.sub(s, pos, c - 1))
  return string.sub(s, c + 1, c + len), c + len + 1
end

-- record_decode parses a stored record string into a table with the fields
-- named in RECORD_NUMBERS plus type, unique and payload.
local function record_decode(s)
  local r = {}
  local pos = 1
  for i = 1, 8 do
    local c = string.find(s, ':', pos, true)
    r[RECORD_NUMBERS[i]] = tonumber(string.sub(s, pos, c - 1))
    pos = c + 1
  end
  r.type, pos = record_string(s, pos)
  r.unique, pos = record_string(s, pos)
  r.payload = string.sub(s, pos)
  return r
end
