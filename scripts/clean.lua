-- luaq script: clean
-- One bounded janitor pass over a queue, allowed only to the holder of the
-- janitor lock (see janitor-lock). In order: reclaims expired leases as
-- failed runs ('lease expired'), expires tasks not started before their
-- expiry, trims the archive by age and count, deletes completed tasks whose
-- retention has ended, frees unique keys whose TTL has passed, and deletes the
-- per-day stats fields of days older than the queue's 'stats_days' (meta,
-- default 30; see configure), keeping the lifetime totals. Each step handles
-- at most limit items; the reply says more only when another call has
-- something to do (a step left due items behind), and the janitor calls
-- again until nothing does.
--
-- A reclaimed lease becomes a retry and signals the wake list: idle workers
-- do not wait for lease deadlines, so this is how one learns of it.
--
-- An expired pending task is taken out of the pending list while a scan
-- budget of 100000 list elements per call lasts (a list removal is linear in
-- the list). Past it, in a longer backlog, the task is expired all the same
-- (counted once, its data deleted or archived, its expiry entry and unique
-- key freed) and its list entry is left behind, stale: counted in the stale
-- hash and the meta field 'stale', dropped uncounted by the lease call that
-- pops it, and not counted as pending by queue-info (see lib/expire). The
-- first stale entry raises the queue's data schema to 2.
--
-- KEYS:
--   meta       queue meta hash
--   tasks      hash: task id -> task record
--   pending    list of ready task ids
--   scheduled  zset: task id -> due time (Unix ms)
--   active     zset: task id -> lease deadline (Unix ms)
--   tokens     hash: task id -> fencing token of its current lease
--   archived   zset: task id -> archived at (Unix ms)
--   errors     hash: task id -> last error message
--   stats      hash: counters: totals and <counter>:<day> fields (old day fields are trimmed)
--   wake       list idle workers block on
--   expiry     zset: task id -> expire-at (Unix ms)
--   unique     hash: unique key -> id of the task holding it
--   unique_ttl zset: unique key -> end of the hold (Unix ms)
--   completed  zset: task id -> when its retention ends (Unix ms)
--   results    hash: task id -> result bytes
--   lock       string: the janitor lock's owner token
--   stale      hash: task id -> how many stale entries of it pending holds (lib/expire)
-- ARGV:
--   owner               string  the caller's owner token; must hold the lock
--   limit               int     most items per step, 1..1000
--   reclaim_backoff_ms  int     delay before a reclaimed task runs again, ms, 0..31536000000
-- REPLY: array: reclaimed, expired, retention_deleted, unique_freed, stats_trimmed (day fields deleted),
--     more (1 = call again, 0 = done)
-- ERRORS: LQ_BADARG LQ_NOT_OWNER LQ_SCHEMA
-- COST: O(limit * log N) per step, plus at most 100000 list elements scanned to pull expired ids out of pending,
--     plus O(S) to read the stats hash (S = its fields: 5 totals + 5 per kept day); never O(pending)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include fail
-- @include expire
-- @include unique
-- @include stats
-- @include full

arg_count(3)
local owner = arg_name(ARGV[1], 'owner', 128)
local limit = arg_int(ARGV[2], 'limit', 1, 1000)
local backoff = arg_int(ARGV[3], 'reclaim_backoff_ms', 0, 31536000000)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
if redis.call('GET', K.lock) ~= owner then
  return err_reply(ERR_NOT_OWNER, 'the janitor lock is not held by ' .. owner)
end

-- sweep_retained deletes up to limit completed tasks whose retention ended.
-- Returns how many and 1 when more remain, else 0.
local function sweep_retained(now)
  local ids, more = due_batch(K.completed, now, limit)
  if #ids > 0 then
    redis.call('ZREM', K.completed, unpack(ids))
    redis.call('HDEL', K.tasks, unpack(ids))
    redis.call('HDEL', K.results, unpack(ids))
  end
  return #ids, more
end

local now = now_ms()
local reclaimed, more_reclaim = reclaim_expired(now, limit, backoff)
local expired, more_expired = sweep_expired(now, limit)
local more_archive = trim_archive(now)
local retained, more_retained = sweep_retained(now)
local freed, more_unique = unique_sweep(now, limit)
local trimmed, more_stats = stats_trim(now, limit)
local more = math.max(more_reclaim, more_expired, more_archive, more_retained, more_unique, more_stats)
return {reclaimed, expired, retained, freed, trimmed, more}
