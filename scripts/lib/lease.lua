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

-- next_due_in returns the ms until the queue next needs a dequeue although
-- nothing is pending: the earliest of the next scheduled task's due time and
-- the first lease deadline plus 1 ms (when that lease may be reclaimed). 0
-- means something is due already; -1 means nothing is scheduled or leased.
local function next_due_in(now)
  local wait = -1
  local first = redis.call('ZRANGE', K.scheduled, 0, 0, 'WITHSCORES')
  if first[1] then
    wait = math.max(0, (first[2] + 0) - now)
  end
  local lease = redis.call('ZRANGE', K.active, 0, 0, 'WITHSCORES')
  if lease[1] then
    local expiry = math.max(0, (lease[2] + 0) + 1 - now)
    if wait < 0 or expiry < wait then
      wait = expiry
    end
  end
  return wait
end

-- lease_tasks promotes due tasks, pops up to count pending ids in FIFO order
-- and leases each for lease_ms, and returns the dequeue reply:
--   {leased, next_due_in_ms, paused, then per leased task:
--    id, token, type, payload, retried, max_retry, timeout_ms, deadline_ms, lease_until_ms}
-- A task whose expiry has passed is expired (lib/expire) and one whose
-- deadline has passed is archived, instead of being leased. When
-- pending tasks remain, it signals the wake list so another idle worker runs.
local function lease_tasks(now, count, lease_ms, promote_limit)
  if queue_paused then -- read by precheck (lib/schema), which every caller runs first
    return {0, -1, 1}
  end
  promote_due(now, promote_limit)
  local reply = {0, -1, 0}
  local ids = redis.call('LPOP', K.pending, fmt(count))
  if not ids then
    reply[2] = next_due_in(now)
    return reply
  end
  local records = redis.call('HMGET', K.tasks, unpack(ids))
  local top = redis.call('HINCRBY', K.meta, 'fence', #ids)
  local lease_until = now + lease_ms
  local active, tokens = {}, {}
  local leased = 0
  for i, id in ipairs(ids) do
    local s = records[i]
    if s then
      local r = record_decode(s)
      if r.expire_at > 0 and r.expire_at <= now then
        expire_task(id, r, now)
      elseif r.deadline > 0 and r.deadline <= now then
        stat_incr('failed', now)
        archive_task(id, r, now, 'deadline exceeded before the task started')
      else
        if r.expire_at > 0 then
          -- Started in time: the expiry no longer applies, also if the task
          -- comes back through a retry, a requeue or a reclaimed lease.
          redis.call('ZREM', K.expiry, id)
          r.expire_at = 0
          redis.call('HSET', K.tasks, id, record_encode(r))
        end
        local token = top - #ids + i
        leased = leased + 1
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
      end
    end
  end
  if leased > 0 then
    push_all('ZADD', K.active, active)
    push_all('HSET', K.tokens, tokens)
  end
  reply[1] = leased
  -- A pop shorter than asked emptied pending; otherwise wake another idle
  -- worker if tasks remain.
  if #ids == count and redis.call('LLEN', K.pending) > 0 then
    signal_wake()
  end
  if leased == 0 then
    reply[2] = next_due_in(now)
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
