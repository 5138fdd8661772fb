-- luaq script: janitor-lock
-- Takes, renews or releases a queue's janitor lock. The lock holds its
-- owner's token; only that owner can renew or release it (compare-and-set,
-- compare-and-delete), so a janitor that lost the lock can never free a lock
-- another janitor holds. The janitor releases the lock as soon as its passes
-- are done: its TTL is only a safety net for a janitor that crashed, and the
-- janitor's interval, not the TTL, decides how often cleaning runs.
--
-- KEYS:
--   meta       queue meta hash
--   lock       string: the owner token of the janitor holding the lock
-- ARGV:
--   op         string  'acquire', 'renew' or 'release'
--   owner      string  owner token, 1..128 printable ASCII bytes, unique per janitor
--   ttl_ms     int     lock lifetime for acquire and renew, ms, 1..86400000; ignored by release (pass 0)
-- REPLY: integer: 1 if the operation took effect, 0 if the lock is held by another owner (acquire)
--     or not held by this owner (renew, release)
-- ERRORS: LQ_BADARG LQ_SCHEMA
-- COST: O(1)
-- WHEN FULL: runs
-- @include args
-- @include schema
-- @include full

arg_count(3)
local op = ARGV[1]
if op ~= 'acquire' and op ~= 'renew' and op ~= 'release' then
  arg_fail('op', "must be 'acquire', 'renew' or 'release'")
end
local owner = arg_name(ARGV[2], 'owner', 128)
local min_ttl = 1
if op == 'release' then min_ttl = 0 end
local ttl = arg_int(ARGV[3], 'ttl_ms', min_ttl, 86400000)
local stop = precheck()
if stop then
  return stop
end
begin_writes()
if op == 'acquire' then
  if redis.call('SET', K.lock, owner, 'NX', 'PX', fmt(ttl)) then
    return 1
  end
  return 0
end
if redis.call('GET', K.lock) ~= owner then
  return 0
end
if op == 'renew' then
  redis.call('PEXPIRE', K.lock, fmt(ttl))
else
  redis.call('DEL', K.lock)
end
return 1
