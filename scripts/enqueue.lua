-- luaq script: enqueue
-- Adds 1..1000 tasks to one queue, all or nothing. A task is pending (ready
-- now) or scheduled (due later). Every argument of every task is checked
-- before the first write, so a bad task or a duplicate id rejects the whole
-- call and leaves the keyspace unchanged. Signals the wake list.
--
-- KEYS:
--   meta       queue meta hash: schema, paused, seq (id counter), fence (token counter), config
--   tasks      hash: task id -> task record (lib/record.lua)
--   pending    list of ready task ids, oldest first
--   scheduled  zset: task id -> due time (Unix ms), for scheduled tasks and retries
--   wake       list idle workers block on; holds at most one token
-- ARGV:
--   count          int     tasks in this call, 1..1000
--   ... then count groups of these 8:
--   id             string  task id: 1..128 bytes of printable ASCII without spaces, not all digits; '' = generate one
--   type           string  task type: 1..128 bytes of printable ASCII without spaces
--   payload        bytes   opaque, 0..16777216 bytes
--   max_retry      int     retries allowed before the task is archived, 0..1000000
--   timeout_ms     int     longest one run may take, ms; 0 = no limit
--   deadline_ms    int     Unix ms by which a run must finish; 0 = none; must be after the task is due
--   process_at_ms  int     Unix ms when the task becomes ready; 0 or a past instant = now
--   process_in_ms  int     delay from now on the server clock, ms; 0 = none; not together with process_at_ms
-- REPLY: array: enqueued_at_ms, then per task in order: id, state ('pending' or 'scheduled'), due_ms
-- ERRORS: LQ_BADARG LQ_CONFLICT LQ_SCHEMA
-- COST: O(count) for pending tasks, O(count * log N) for scheduled ones
-- @include args
-- @include schema
-- @include record
-- @include lease

local GROUP = 8
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
  if t.id ~= '' then
    if seen[t.id] then
      arg_fail(where .. 'id', 'repeats an earlier id of this call')
    end
    seen[t.id] = true
  end
  tasks[i] = t
end
local stop = precheck()
if stop then
  return stop
end
for i = 1, count do
  local id = tasks[i].id
  if id ~= '' and redis.call('HEXISTS', K.tasks, id) == 1 then
    return err_reply(ERR_CONFLICT, 'task id ' .. id .. ' already exists')
  end
end

-- Validation is over; from here on only writes.
redis.call('HSETNX', K.meta, 'schema', fmt(SCHEMA))
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

local records, pending, scheduled = {}, {}, {}
local reply = {now}
for i = 1, count do
  local t = tasks[i]
  t.retried = 0
  t.expire_at = 0
  t.retention = 0
  t.enqueued = now
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
signal_wake()
return reply
