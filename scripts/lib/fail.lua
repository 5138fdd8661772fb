-- lib/fail: what happens to a task whose run failed (the handler returned an
-- error, or its lease expired): retry later or archive. Shared by
-- retry-or-archive and by dequeue's reclaiming of expired leases.
-- Uses K.tasks, K.scheduled, K.errors, K.stats (lib/stats), K.wake and what lib/archive
-- and lib/lease use.
-- @include util
-- @include stats
-- @include record
-- @include archive
-- @include wake
-- @include lease

-- fail_task ends the current lease of task id and records a failed run. The
-- task is archived when skip is true, when its retries are used up, or when a
-- retry after backoff_ms could not start before its deadline; otherwise it is
-- scheduled again at now + backoff_ms with its retry count raised.
-- Returns 'retry' or 'archived', and the due time or archive time (Unix ms).
local function fail_task(id, r, now, message, backoff_ms, skip)
  release_lease(id)
  stat_incr('failed', now)
  local due = now + backoff_ms
  if skip or r.retried >= r.max_retry or (r.deadline > 0 and due >= r.deadline) then
    archive_task(id, r, now, message)
    return 'archived', now
  end
  r.retried = r.retried + 1
  redis.call('HSET', K.tasks, id, record_encode(r))
  redis.call('HSET', K.errors, id, message)
  redis.call('ZADD', K.scheduled, fmt(due), id)
  stat_incr('retried', now)
  signal_wake()
  return 'retry', due
end

-- reclaim_expired fails up to limit tasks whose lease deadline has passed
-- (their worker died or lost contact) with the message 'lease expired',
-- retrying them after backoff_ms; each retry signals the wake list, so an
-- idle worker (which does not wait for lease deadlines) picks it up. Returns
-- how many it reclaimed and 1 when more expired leases remain, else 0.
local function reclaim_expired(now, limit, backoff_ms)
  if limit <= 0 then
    return 0, 0
  end
  local ids, more = due_batch(K.active, now - 1, limit)
  for _, id in ipairs(ids) do
    local s = redis.call('HGET', K.tasks, id)
    if s then
      fail_task(id, record_decode(s), now, 'lease expired', backoff_ms, false)
    else
      release_lease(id)
    end
  end
  return #ids, more
end
