-- luaq script: retry-or-archive
-- Records a failed run of a leased task. The task is scheduled to run again
-- after backoff_ms, or archived when its retries are used up, when the handler
-- asked to skip retries, or when the retry could not start before its deadline.
-- Only the current lease holder may do this; a stale token gets LQ_LEASE_LOST
-- and nothing changes. Archiving trims the archive by count and age.
--
-- KEYS:
--   meta       queue meta hash (archive bounds: archive_max, archive_age_ms)
--   tasks      hash: task id -> task record
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   tokens     hash: task id -> fencing token of its current lease
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   stats      hash: counters (processed, failed, retried, archived, expired): totals and <counter>:<day> fields
--   wake       list idle workers block on
--   expiry     zset: task id -> expire-at (Unix ms), for tasks with an expiry not yet started
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
-- ARGV:
--   id          string  task id
--   token       int     fencing token of the lease
--   message     bytes   the error, 0..8192 bytes
--   backoff_ms  int     delay before the retry, ms, 0..31536000000
--   skip_retry  flag    '1' = archive now whatever the retry count, '0' = retry if allowed
-- REPLY: array: outcome ('retry' or 'archived'), then the retry's due time or the archive time (Unix ms)
-- ERRORS: LQ_BADARG LQ_LEASE_LOST LQ_NOTFOUND LQ_SCHEMA
-- COST: O(log N) + an archive trim of at most 200 tasks
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include record
-- @include fail
-- @include full

arg_count(5)
local id, token = arg_lease(1)
local message = arg_bytes(ARGV[3], 'message', 0, 8192)
local backoff = arg_int(ARGV[4], 'backoff_ms', 0, 31536000000)
local skip = arg_flag(ARGV[5], 'skip_retry')
local stop = precheck() or lease_error(id, token)
if stop then
  return stop
end
begin_writes()
local stored = redis.call('HGET', K.tasks, id)
if not stored then
  return err_reply(ERR_NOTFOUND, 'task ' .. id .. ' is leased but has no record')
end

local outcome, at = fail_task(id, record_decode(stored), now_ms(), message, backoff, skip)
return {outcome, at}
