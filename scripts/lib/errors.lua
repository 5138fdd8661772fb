-- lib/errors: the bundle's error table.
--
-- Every error a luaq script returns on purpose is
--   redis.error_reply('<CODE> <message>')
-- with CODE from this table, so a client of any language maps the first word
-- of the error reply and nothing else. The Go loader keeps the same table
-- (a test compares them).
local ERR_BADARG = 'LQ_BADARG'          -- an argument is missing, malformed or out of range
local ERR_CONFLICT = 'LQ_CONFLICT'      -- the task id or unique key is taken by a live task, or the task is running
local ERR_NOTFOUND = 'LQ_NOTFOUND'      -- no task with that id in the expected state
local ERR_LEASE_LOST = 'LQ_LEASE_LOST'  -- the fencing token is not the task's current lease
local ERR_SCHEMA = 'LQ_SCHEMA'          -- the queue holds data of a newer schema than this bundle
local ERR_NOT_OWNER = 'LQ_NOT_OWNER'    -- the janitor lock is not held under that owner token

-- err_reply builds the error reply for code and a human-readable message.
local function err_reply(code, msg)
  return redis.error_reply(code .. ' ' .. msg)
end
