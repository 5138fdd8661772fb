-- lib/full: scripts that must run while the server is full.
--
-- With maxmemory reached and the noeviction policy, Redis (2.6 to 7.x, and
-- Valkey) refuses a script's command that can grow memory (HSET, ZADD, ...)
-- only while the script has written nothing yet; once it has written, every
-- later command is let through, so a script never stops halfway. A script
-- whose header says "WHEN FULL: runs" (lease, renew, complete, fail, give
-- back, register, janitor, ...) therefore opens its writes with
-- begin_writes(): a write that cannot grow memory and changes nothing. A
-- script that grows the data (enqueue) does not, and a full server refuses
-- it at its first write, before anything changed.

-- begin_writes marks the script as writing, with an HDEL of a meta field no
-- queue ever has: it deletes nothing, so nothing is replicated or notified.
-- Call it after validation, before the first write. It reads K.meta.
local function begin_writes()
  redis.call('HDEL', K.meta, 'luaq-no-such-field')
end
