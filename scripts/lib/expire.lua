-- lib/expire: tasks that carry an expiry (expire_at_ms > 0) and were not
-- started in time. K.expiry indexes them (id -> expire_at, Unix ms) from
-- enqueue until they are leased or expire, so the janitor finds them in
-- bounded batches without scanning the queue.
-- Uses K.tasks, K.pending, K.scheduled, K.active, K.errors, K.stats (lib/stats),
-- K.expiry and what lib/archive and lib/unique use.
-- @include util
-- @include stats
-- @include record
-- @include unique
-- @include archive

-- PENDING_SCAN_BUDGET bounds the list elements one sweep may scan to pull
-- expired ids out of pending (LREM is linear in the list). Expired tasks in a
-- longer backlog are left to dequeue, which discards them when it pops them.
local PENDING_SCAN_BUDGET = 100000

-- expire_task drops a task that expired before it started: counted as
-- expired, its unique key freed, and either deleted or, if it asked for it,
-- archived with the error 'expired'. The caller has already taken its id out
-- of pending or scheduled.
local function expire_task(id, r, now)
  redis.call('ZREM', K.expiry, id)
  stat_incr('expired', now)
  unique_release(id, r.unique)
  if r.on_expiry == 1 then
    archive_task(id, r, now, 'expired')
  else
    redis.call('HDEL', K.tasks, id)
    redis.call('HDEL', K.errors, id)
  end
end

-- sweep_expired expires up to limit tasks whose expiry has passed while they
-- were scheduled or pending. Returns how many it expired and 1 if the index
-- may hold more due entries, else 0.
local function sweep_expired(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K.expiry, '-inf', fmt(now), 'LIMIT', 0, limit)
  local budget = PENDING_SCAN_BUDGET
  local expired = 0
  for _, id in ipairs(ids) do
    local s = redis.call('HGET', K.tasks, id)
    if not s or redis.call('ZSCORE', K.active, id) then
      redis.call('ZREM', K.expiry, id) -- gone, or started in time
    elseif redis.call('ZREM', K.scheduled, id) == 1 then
      expire_task(id, record_decode(s), now)
      expired = expired + 1
    else
      local len = redis.call('LLEN', K.pending)
      if len <= budget then
        budget = budget - len
        redis.call('LREM', K.pending, 1, id)
        expire_task(id, record_decode(s), now)
        expired = expired + 1
      end
    end
  end
  if #ids == limit then
    return expired, 1
  end
  return expired, 0
end
