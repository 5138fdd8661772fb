-- lib/expire: tasks that carry an expiry (expire_at_ms > 0) and were not
-- started in time. K.expiry indexes them (id -> expire_at, Unix ms) from
-- enqueue until they are leased or expire, so the janitor finds them in
-- bounded batches without scanning the queue.
--
-- Stale pending entries. Taking an id out of the pending list is linear in
-- the list (LREM), so the janitor does it only while a per-call scan budget
-- lasts. Past it, it expires the task all the same (counted, its data
-- deleted or archived, its expiry entry and unique key freed) and leaves its
-- list entry behind, stale: K.stale counts the stale entries of each id and
-- the meta field 'stale' counts them all. A lease call that pops a stale
-- entry drops it (drop_stale) and counts nothing. The invariant: an id has
-- as many entries in pending as its count in K.stale, plus one if the task
-- is pending. It holds whatever happens to the id afterwards (archived and
-- run again, deleted, its id reused), since a popped entry is stale while the
-- count says so, and every other removal from pending (delete-task's LREM)
-- takes one entry of a pending task. The number of pending tasks is LLEN
-- pending minus the meta field 'stale' (queue-info).
-- Uses K.meta, K.tasks, K.pending, K.scheduled, K.active, K.errors, K.stats
-- (lib/stats), K.expiry, K.stale and what lib/archive and lib/unique use.
-- @include util
-- @include schema
-- @include stats
-- @include record
-- @include unique
-- @include archive

-- PENDING_SCAN_BUDGET bounds the list elements one sweep may scan to pull
-- expired ids out of pending (LREM is linear in the list). Expired tasks
-- beyond it leave stale entries.
local PENDING_SCAN_BUDGET = 100000

-- SCHEMA_STALE is the data schema that introduced stale entries (lib/schema).
local SCHEMA_STALE = 2

-- expire_task drops a task that expired before it started: counted as
-- expired, its unique key freed, and either deleted or, if it asked for it,
-- archived with the error 'expired'. The caller has already taken its id out
-- of pending or scheduled, or marked its pending entry stale.
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

-- mark_stale counts one more stale entry of id in pending, and raises the
-- queue's schema to SCHEMA_STALE at the first one (lib/schema).
local function mark_stale(id)
  redis.call('HINCRBY', K.stale, id, 1)
  redis.call('HINCRBY', K.meta, 'stale', 1)
  queue_stale = queue_stale + 1
  if queue_schema < SCHEMA_STALE then
    redis.call('HSET', K.meta, 'schema', fmt(SCHEMA_STALE))
    queue_schema = SCHEMA_STALE
  end
end

-- drop_stale takes the ids just popped from the head of pending, in order,
-- and returns those that are not stale entries, in order, after discounting
-- the stale ones from K.stale and the meta field 'stale'. Costs no call
-- when the queue has no stale entries (queue_stale, read by precheck).
local function drop_stale(ids)
  if queue_stale <= 0 then
    return ids
  end
  local counts = redis.call('HMGET', K.stale, unpack(ids))
  local left, touched, live = {}, {}, {}
  for i, id in ipairs(ids) do
    if left[id] == nil then
      left[id] = 0
      if counts[i] then left[id] = counts[i] + 0 end
      if left[id] > 0 then touched[#touched + 1] = id end
    end
    if left[id] > 0 then
      left[id] = left[id] - 1
    else
      live[#live + 1] = id
    end
  end
  local dropped = #ids - #live
  if dropped == 0 then
    return live
  end
  for _, id in ipairs(touched) do
    if left[id] > 0 then
      redis.call('HSET', K.stale, id, fmt(left[id]))
    else
      redis.call('HDEL', K.stale, id)
    end
  end
  queue_stale = queue_stale - dropped
  if queue_stale > 0 then
    redis.call('HSET', K.meta, 'stale', fmt(queue_stale))
  else
    redis.call('HDEL', K.meta, 'stale')
  end
  return live
end

-- sweep_expired expires up to limit tasks whose expiry has passed while they
-- were scheduled or pending. A pending one leaves the list while the scan
-- budget lasts, else its entry stays behind, stale. Returns how many it
-- expired and 1 if the index holds more due entries, else 0.
local function sweep_expired(now, limit)
  local ids, more = due_batch(K.expiry, now, limit)
  local budget = PENDING_SCAN_BUDGET
  local expired = 0
  for _, id in ipairs(ids) do
    local s = redis.call('HGET', K.tasks, id)
    if not s or redis.call('ZSCORE', K.active, id) then
      redis.call('ZREM', K.expiry, id) -- gone, or started in time
    else
      if redis.call('ZREM', K.scheduled, id) == 0 then
        local len = redis.call('LLEN', K.pending)
        if len <= budget then
          budget = budget - len
          redis.call('LREM', K.pending, 1, id)
        else
          mark_stale(id)
        end
      end
      expire_task(id, record_decode(s), now)
      expired = expired + 1
    end
  end
  return expired, more
end
