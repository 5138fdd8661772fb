-- lib/record: the task record, the value of field <id> in the tasks hash.
--
-- Format 1 is eight decimal integers, each followed by ':', then the type
-- bytes, then the payload bytes (everything up to the end):
--   retried:max_retry:timeout_ms:deadline_ms:expire_at_ms:retention_ms:enqueued_ms:type_len:<type><payload>
-- retried      runs that failed and were retried so far
-- max_retry    retries allowed before the task is archived
-- timeout_ms   longest one run may take (0 = none)
-- deadline_ms  Unix ms by which a run must finish (0 = none)
-- expire_at_ms Unix ms after which a task not yet started is dropped (0 = none)
-- retention_ms how long a completed task stays readable (0 = delete at once)
-- enqueued_ms  Unix ms of the enqueue (server clock)
-- type_len     length in bytes of the type that follows
-- Where the task is (pending, scheduled, active, archived) is not stored in the
-- record: it is told by which structure holds the id.
-- @include util

local RECORD_NUMBERS = {'retried', 'max_retry', 'timeout', 'deadline', 'expire_at', 'retention', 'enqueued'}

-- record_encode turns a record table into its stored string.
local function record_encode(r)
  return string.format('%d:%d:%d:%d:%d:%d:%d:%d:', r.retried, r.max_retry, r.timeout,
    r.deadline, r.expire_at, r.retention, r.enqueued, #r.type) .. r.type .. r.payload
end

-- record_decode parses a stored record string into a table with the fields
-- named in RECORD_NUMBERS plus type and payload.
local function record_decode(s)
  local r = {}
  local pos = 1
  for i = 1, 7 do
    local c = string.find(s, ':', pos, true)
    r[RECORD_NUMBERS[i]] = tonumber(string.sub(s, pos, c - 1))
    pos = c + 1
  end
  local c = string.find(s, ':', pos, true)
  local tlen = tonumber(string.sub(s, pos, c - 1))
  r.type = string.sub(s, c + 1, c + tlen)
  r.payload = string.sub(s, c + tlen + 1)
  return r
end
