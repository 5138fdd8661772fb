-- lib/wake: the per-queue wake-up list that idle workers block on (BLPOP),
-- so no worker polls. Uses K.wake.

local WAKE_TTL_MS = '60000'

-- signal_wake leaves one token in K.wake for an idle worker blocked on it.
-- The list never holds more than one token, and the token expires on its own
-- when no worker is listening.
local function signal_wake()
  if redis.call('LLEN', K.wake) == 0 then
    redis.call('RPUSH', K.wake, '1')
    redis.call('PEXPIRE', K.wake, WAKE_TTL_MS)
  end
end
