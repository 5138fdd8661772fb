-- lib/unique: unique keys. A task enqueued with a unique key and a TTL holds
-- that key until it reaches a terminal state (completed, archived, expired,
-- deleted) or the TTL passes, whichever comes first; while it holds it, an
-- enqueue with the same key is refused. K.unique maps key -> owner task id,
-- K.unique_ttl maps key -> hold deadline (Unix ms) so expired holds can be
-- swept in bounded batches.
-- @include util

-- unique_holder returns the id of the live task holding key, or false.
local function unique_holder(key, now)
  local owner = redis.call('HGET', K.unique, key)
  if not owner then
    return false
  end
  local until_ms = redis.call('ZSCORE', K.unique_ttl, key)
  if until_ms and (until_ms + 0) > now then
    return owner
  end
  return false
end

-- unique_release frees the key of task id, if id still holds it.
local function unique_release(id, key)
  if key ~= '' and redis.call('HGET', K.unique, key) == id then
    redis.call('HDEL', K.unique, key)
    redis.call('ZREM', K.unique_ttl, key)
  end
end

-- unique_sweep frees up to limit keys whose hold has passed its TTL.
-- Returns how many it freed and 1 when more such keys remain, else 0.
local function unique_sweep(now, limit)
  local keys, more = due_batch(K.unique_ttl, now, limit)
  if #keys > 0 then
    redis.call('HDEL', K.unique, unpack(keys))
    redis.call('ZREM', K.unique_ttl, unpack(keys))
  end
  return #keys, more
end
