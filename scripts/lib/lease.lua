-- lib/lease: leasing pending tasks to a worker, shared by dequeue and by
-- complete's lease-next, plus the fencing-token check of every lease holder.
--
-- A lease is the pair (K.active: id -> lease deadline in Unix ms,
-- K.tokens: id -> fencing token). Tokens come from the meta field 'fence',
-- which only grows, so a token once replaced never becomes valid again.
-- Uses K.meta, K.tasks, K.pending, K.scheduled, K.active, K.tokens, K.wake,
-- K.stats (lib/stats: a deadline passed before the start counts a failure)
-- and what lib/archive and lib/expire use.
-- @include errors
-- @include schema
-- @include util
-- @include stats
-- @include record
-- @include archive
-- @include wake
-- @include expire

-- promote_due moves up to limit scheduled tasks whose due time has come to
-- the tail of pending, earliest first. Returns how many moved.
local function promote_due(now, limit)
  if limit <= 0 then
    return 0
  end
  local due = redis.call('ZRANGEBYSCORE', K.scheduled, '-inf', fmt(now), 'LIMIT', 0, limit)
  if #due > 0 then
    redis.call('RPUSH', K.pending, unpack(due))
    redis.call('ZREM', K.scheduled, unpack(due))
  end
  return #due
end

-- LEASE_POP_EXTRA is how many pending entries one lease call may pop
-- beyond count: entries it cannot lease (stale entries, tasks that expired
-- or whose deadline passed, ids without a record) are popped and dealt with
-- until count tasks are leased, pending is empty or this many more entries
-- have been popped.
local LEASE_POP_EXTRA = 1000

-- next_due_in returns the ms until the next scheduled task (or retry) is
-- due, 0 if one is due already, -1 if nothing is scheduled. Lease deadlines
-- do not count: an idle worker does not wake to reclaim expired leases; the
-- janitor reclaims them (clean) and signals the wake list for the retry.
local function next_due_in(now)
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if first[1] then
    return math.max(0, (first[2] + 0) - now)
  end
  return -1
end

-- lease_one leases task id (record string s, or false when the id has no
-- record) with token unless it cannot run: a task whose expiry has passed
-- is expired (lib/expire) and one whose deadline has passed is archived,
-- and an id without a record is dropped. A leased task's reply fields are
-- appended to reply, its lease to active and tokens. Returns 1 when it
-- leased the task, else 0.
local function lease_one(id, s, now, token, lease_until, reply, active, tokens)
  if not s then
    return 0
  end
  local r = record_decode(s)
  if r.expire_at > 0 and r.expire_at <= now then
    expire_task(id, r, now)
    return 0
  end
  if r.deadline > 0 and r.deadline <= now then
    stat_incr('failed', now)
    archive_task(id, r, now, 'deadline exceeded before the task started')
    return 0
  end
  if r.expire_at > 0 then
    -- Started in time: the expiry no longer applies, also if the task
    -- comes back through a retry, a requeue or a reclaimed lease.
    redis.call('ZREM', K.expiry, id)
    r.expire_at = 0
    redis.call('HSET', K.tasks, id, record_encode(r))
  end
  active[#active + 1] = fmt(lease_until)
  active[#active + 1] = id
  tokens[#tokens + 1] = id
  tokens[#tokens + 1] = fmt(token)
  local n = #reply
  reply[n + 1] = id
  reply[n + 2] = token
  reply[n + 3] = r.type
  reply[n + 4] = r.payload
  reply[n + 5] = r.retried
  reply[n + 6] = r.max_retry
  reply[n + 7] = r.timeout
  reply[n + 8] = r.deadline
  reply[n + 9] = lease_until
  return 1
end

-- lease_tasks promotes due tasks, pops pending ids in FIFO order and leases
-- up to count of them for lease_ms, and returns the dequeue reply:
--   {leased, next_due_in_ms, paused, then per leased task:
--    id, token, type, payload, retried, max_retry, timeout_ms, deadline_ms, lease_until_ms}
-- Stale entries are dropped (lib/expire) and tasks that cannot run are dealt
-- with (lease_one); it pops again for the places they leave, at most
-- LEASE_POP_EXTRA entries beyond count. When pending tasks remain, it
-- signals the wake list so another idle worker runs, and a reply that leased
-- nothing has next_due_in_ms 0 (call again now).
local function lease_tasks(now, count, lease_ms, promote_limit)
  if queue_paused then -- read by precheck (lib/schema), which every caller runs first
    return {0, -1, 1}
  end
  promote_due(now, promote_limit)
  local reply = {0, -1, 0}
  local lease_until = now + lease_ms
  local active, tokens = {}, {}
  local leased, popped, budget = 0, 0, count + LEASE_POP_EXTRA
  local drained = false
  while leased < count and popped < budget and not drained do
    local want = math.min(count - leased, budget - popped)
    local ids = redis.call('LPOP', K.pending, fmt(want))
    if not ids then
      ids = {}
    end
    popped = popped + #ids
    drained = #ids < want -- a pop shorter than asked emptied pending
    ids = drop_stale(ids)
    if #ids > 0 then
      local records = redis.call('HMGET', K.tasks, unpack(ids))
      local top = redis.call('HINCRBY', K.meta, 'fence', #ids)
      for i, id in ipairs(ids) do
        leased = leased + lease_one(id, records[i], now, top - #ids + i, lease_until, reply, active, tokens)
      end
    end
  end
  if leased > 0 then
    push_all('ZADD', K.active, active)
    push_all('HSET', K.tokens, tokens)
  end
  reply[1] = leased
  local more = not drained and redis.call('LLEN', K.pending) > 0
  if more then
    signal_wake()
  end
  if leased == 0 then
    if more then
      reply[2] = 0
    else
      reply[2] = next_due_in(now)
    end
  end
  return reply
end

-- lease_error returns a LQ_LEASE_LOST error reply unless token is the
-- current fencing token of task id, else false.
local function lease_error(id, token)
  local current = redis.call('HGET', K.tokens, id)
  if current ~= token then
    return err_reply(ERR_LEASE_LOST, 'task ' .. id .. ' is not leased under token ' .. token)
  end
  return false
end

-- release_lease ends a lease: the id leaves K.active and K.tokens.
local function release_lease(id)
  redis.call('ZREM', K.active, id)
  redis.call('HDEL', K.tokens, id)
end
