-- lib/archive: moving a task to the archive, and keeping the archive bounded.
--
-- The archive is the zset K.archived (task id -> archived-at, Unix ms). Its
-- bounds come from the meta hash fields 'archive_max' (count) and
-- 'archive_age_ms' (age), with the defaults below. Trimming removes a task's
-- id and every field of it (record, last error) in the same call.
-- Uses K.meta, K.tasks, K.archived, K.errors, K.stats (lib/stats), K.expiry and what
-- lib/unique uses.
-- @include util
-- @include unique
-- @include stats

local ARCHIVE_MAX_DEFAULT = 10000
local ARCHIVE_AGE_MS_DEFAULT = 2592000000 -- 30 days
local ARCHIVE_TRIM_BATCH = 100          -- most tasks one trim pass deletes

-- delete_archived removes archived tasks and all their data.
local function delete_archived(ids)
  if #ids == 0 then
    return
  end
  redis.call('ZREM', K.archived, unpack(ids))
  redis.call('HDEL', K.tasks, unpack(ids))
  redis.call('HDEL', K.errors, unpack(ids))
end

-- trim_archive deletes up to ARCHIVE_TRIM_BATCH tasks that are older than the
-- age bound, then up to ARCHIVE_TRIM_BATCH of the oldest beyond the count
-- bound. Returns 1 when more remain to trim, else 0.
local function trim_archive(now)
  local cfg = redis.call('HMGET', K.meta, 'archive_max', 'archive_age_ms')
  local max = ARCHIVE_MAX_DEFAULT
  local age = ARCHIVE_AGE_MS_DEFAULT
  if cfg[1] then max = cfg[1] + 0 end
  if cfg[2] then age = cfg[2] + 0 end
  local old, more = due_batch(K.archived, now - age, ARCHIVE_TRIM_BATCH)
  delete_archived(old)
  local excess = redis.call('ZCARD', K.archived) - max
  if excess > 0 then
    delete_archived(redis.call('ZRANGE', K.archived, 0, math.min(excess, ARCHIVE_TRIM_BATCH) - 1))
  end
  if more == 1 or excess > ARCHIVE_TRIM_BATCH then
    return 1
  end
  return 0
end

-- archive_task moves a task (already out of pending/scheduled/active) into the
-- archive with its last error message, counts it, frees its unique key and
-- expiry entry (archived is a terminal state), and trims the archive.
local function archive_task(id, r, now, message)
  unique_release(id, r.unique)
  if r.expire_at > 0 then
    redis.call('ZREM', K.expiry, id)
  end
  redis.call('ZADD', K.archived, fmt(now), id)
  redis.call('HSET', K.errors, id, message)
  stat_incr('archived', now)
  trim_archive(now)
end
