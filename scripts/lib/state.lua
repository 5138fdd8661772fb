-- lib/state: where a task that has a record is. The state is not stored: it
-- is told by which structure holds the id (see lib/record). Uses K.active,
-- K.scheduled, K.archived, K.completed.

-- task_state returns the state of task id ('active', 'scheduled',
-- 'archived', 'completed' or 'pending') and the id's score in that state's
-- zset (false for pending).
local function task_state(id)
  local score = redis.call('ZSCORE', K.active, id)
  if score then
    return 'active', score
  end
  score = redis.call('ZSCORE', K.scheduled, id)
  if score then
    return 'scheduled', score
  end
  score = redis.call('ZSCORE', K.archived, id)
  if score then
    return 'archived', score
  end
  score = redis.call('ZSCORE', K.completed, id)
  if score then
    return 'completed', score
  end
  return 'pending', false
end
