-- luaq script: enqueue
-- Adds 1..1000 tasks to one queue, all or nothing. A task is pending (ready
-- now) or scheduled (due later). Every argument of every task is checked
-- before the first write, so a bad task, a duplicate id or a unique key held
-- by a live task rejects the whole call and leaves the keyspace unchanged.
-- Signals the wake list.
--
-- KEYS:
--   meta       queue meta hash: schema, paused, seq (id counter), fence (token counter), config
--   tasks      hash: task id -> task record (lib/record.lua)
--   pending    list of ready task ids, oldest first
--   scheduled  zset: task id -> due time (Unix ms), for scheduled tasks and retries
--   wake       list idle workers block on; holds at most one token
--   expiry     zset: task id -> expire-at (Unix ms), for tasks with an expiry not yet started
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
-- ARGV:
--   count          int     tasks in this call, 1..1000
--   ... then count groups of these 14:
--   id             string  task id: 1..128 bytes of printable ASCII without spaces, not all digits; '' = generate one
--   type           string  task type: 1..128 bytes of printable ASCII without spaces
--   payload        bytes   opaque, 0..16777216 bytes
--   max_retry      int     retries allowed before the task is archived, 0..1000000
--   timeout_ms     int     longest one run may take, ms; 0 = no limit
--   deadline_ms    int     Unix ms by which a run must finish; 0 = none; must be after the task is due
--   process_at_ms  int     Unix ms when the task becomes ready; 0 or a past instant = now
--   process_in_ms  int     delay from now on the server clock, ms; 0 = none; not together with process_at_ms
--   expire_at_ms   int     Unix ms after which the task, if not started, is dropped; 0 = none; after the due time
--   expire_in_ms   int     the same as a duration from now on the server clock, ms; 0 = none; not with expire_at_ms
--   expire_archive flag    '1' = archive an expired task with the error 'expired', '0' = delete it
--   retention_ms   int     how long a completed task stays readable, ms; 0 = deleted on completion
--   unique_key     bytes   '' = none; else 1..1024 bytes: refused while a live task holds the same key
--   unique_ttl_ms  int     longest the key is held, ms: 1.. when unique_key is set, else 0
-- REPLY: array: enqueued_at_ms, then per task in order: id, state ('pending' or 'scheduled'), due_ms
-- ERRORS: LQ_BADARG LQ_CONFLICT LQ_SCHEMA
-- COST: O(count) for pending tasks, O(count * log N) for scheduled ones and those with an expiry or unique key
-- WHEN FULL: refused
-- @include args
-- @include schema
-- @include record
-- @include unique
-- @include wake

local GROUP = 14
local MAX_PAYLOAD = 16777216
local MAX_MS = 253402300799999 -- 9999-12-31, keeps every sum of times below 2^53

local count = arg_int(ARGV[1], 'count', 1, 1000)
if not arg_error then
  arg_count(1 + count * GROUP)
end
if arg_error then
  return err_reply(ERR_BADARG, arg_error)
end

local now = now_ms()
local tasks = {}
local seen = {}
local seen_unique = {}
for i = 1, count do
  local base = 1 + (i - 1) * GROUP
  local t = {}
  local where = 'task ' .. fmt(i) .. ' '
  t.id = ARGV[base + 1]
  if t.id ~= '' then
    t.id = arg_name(t.id, where .. 'id', 128)
    if string.find(t.id, '^%d+$') then
      arg_fail(where .. 'id', 'must not be all digits (reserved for generated ids)')
    end
  end
  t.type = arg_name(ARGV[base + 2], where .. 'type', 128)
  t.payload = arg_bytes(ARGV[base + 3], where .. 'payload', 0, MAX_PAYLOAD)
  t.max_retry = arg_int(ARGV[base + 4], where .. 'max_retry', 0, 1000000)
  t.timeout = arg_int(ARGV[base + 5], where .. 'timeout_ms', 0, MAX_MS)
  t.deadline = arg_int(ARGV[base + 6], where .. 'deadline_ms', 0, MAX_MS)
  local at = arg_int(ARGV[base + 7], where .. 'process_at_ms', 0, MAX_MS)
  local delay = arg_int(ARGV[base + 8], where .. 'process_in_ms', 0, MAX_MS)
  if at > 0 and delay > 0 then
    arg_fail(where .. 'process_at_ms', 'and process_in_ms cannot both be set')
  end
  t.due = now
  if at > 0 then t.due = math.max(now, at) end
  if delay > 0 then t.due = now + delay end
  if t.deadline > 0 and t.deadline <= t.due then
    arg_fail(where .. 'deadline_ms', 'is not after the time the task becomes ready')
  end
  local expire_at = arg_int(ARGV[base + 9], where .. 'expire_at_ms', 0, MAX_MS)
  local expire_in = arg_int(ARGV[base + 10], where .. 'expire_in_ms', 0, MAX_MS)
  t.on_expiry = 0
  if arg_flag(ARGV[base + 11], where .. 'expire_archive') then t.on_expiry = 1 end
  t.retention = arg_int(ARGV[base + 12], where .. 'retention_ms', 0, MAX_MS)
  t.unique = ARGV[base + 13]
  if t.unique ~= '' then
    t.unique = arg_bytes(t.unique, where .. 'unique_key', 1, 1024)
  end
  t.unique_ttl = arg_int(ARGV[base + 14], where .. 'unique_ttl_ms', 0, MAX_MS)
  if expire_at > 0 and expire_in > 0 then
    arg_fail(where .. 'expire_at_ms', 'and expire_in_ms cannot both be set')
  end
  t.expire_at = expire_at
  if expire_in > 0 then t.expire_at = now + expire_in end
  if t.expire_at > 0 and t.expire_at <= t.due then
    arg_fail(where .. 'expire_at_ms', 'is not after the time the task becomes ready')
  end
  if (t.unique ~= '') ~= (t.unique_ttl > 0) then
    arg_fail(where .. 'unique_ttl_ms', 'must be set exactly when unique_key is')
  end
  if t.id ~= '' then
    if seen[t.id] then
      arg_fail(where .. 'id', 'repeats an earlier id of this call')
    end
    seen[t.id] = true
  end
  if t.unique ~= '' then
    if seen_unique[t.unique] then
      arg_fail(where .. 'unique_key', 'repeats an earlier unique key of this call')
    end
    seen_unique[t.unique] = true
  end
  tasks[i] = t
end
local stop = precheck()
if stop then
  return stop
end
for i = 1, count do
  local t = tasks[i]
  if t.id ~= '' and redis.call('HEXISTS', K.tasks, t.id) == 1 then
    return err_reply(ERR_CONFLICT, 'task id ' .. t.id .. ' already exists')
  end
  if t.unique ~= '' then
    local holder = unique_holder(t.unique, now)
    if holder then
      return err_reply(ERR_CONFLICT, 'task ' .. fmt(i) .. ' unique key is held by task ' .. holder)
    end
  end
end

-- Validation is over; from here on only writes.
if not schema_present then
  redis.call('HSET', K.meta, 'schema', fmt(SCHEMA_FIRST))
end
local generate = 0
for i = 1, count do
  if tasks[i].id == '' then generate = generate + 1 end
end
if generate > 0 then
  local next_id = redis.call('HINCRBY', K.meta, 'seq', generate) - generate
  for i = 1, count do
    if tasks[i].id == '' then
      next_id = next_id + 1
      tasks[i].id = fmt(next_id)
    end
  end
end

local records, pending, scheduled, expiry = {}, {}, {}, {}
local reply = {now}
for i = 1, count do
  local t = tasks[i]
  t.retried = 0
  t.enqueued = now
  if t.expire_at > 0 then
    expiry[#expiry + 1] = fmt(t.expire_at)
    expiry[#expiry + 1] = t.id
  end
  if t.unique ~= '' then
    redis.call('HSET', K.unique, t.unique, t.id)
    redis.call('ZADD', K.unique_ttl, fmt(now + t.unique_ttl), t.unique)
  end
  records[#records + 1] = t.id
  records[#records + 1] = record_encode(t)
  local state = 'pending'
  if t.due > now then
    state = 'scheduled'
    scheduled[#scheduled + 1] = fmt(t.due)
    scheduled[#scheduled + 1] = t.id
  else
    pending[#pending + 1] = t.id
  end
  reply[#reply + 1] = t.id
  reply[#reply + 1] = state
  reply[#reply + 1] = t.due
end
push_all('HSET', K.tasks, records)
if #pending > 0 then push_all('RPUSH', K.pending, pending) end
if #scheduled > 0 then push_all('ZADD', K.scheduled, scheduled) end
if #expiry > 0 then push_all('ZADD', K.expiry, expiry) end
signal_wake()
return reply
