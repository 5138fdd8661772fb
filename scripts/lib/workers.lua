-- lib/workers: the registry of live worker processes of a queue.
-- K.workers maps worker id -> heartbeat deadline (Unix ms); K.worker_info maps
-- worker id -> the description the worker last sent (opaque bytes, written by
-- the SDK: host, pid, queues, concurrency, start time, in-flight tasks).

-- worker_forget removes workers from the registry.
local function worker_forget(ids)
  if #ids > 0 then
    redis.call('ZREM', K.workers, unpack(ids))
    redis.call('HDEL', K.worker_info, unpack(ids))
  end
end
