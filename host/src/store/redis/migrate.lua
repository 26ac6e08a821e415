-- Moves a job from layout 1 (no hash tags) to layout 2, once and atomically (see migrate.rs).
-- KEYS[1] meta, KEYS[2] topics set, KEYS[3] old state, KEYS[4] new state, then pairs of
-- (old offsets hash, new offsets hash), one per topic.
-- ARGV[1] now in ms, ARGV[2] the tombstone's text, ARGV[3..] the pairs' topic names.
-- Returns {0, scope} when the job already has a layout, {2, key} when a new key already
-- exists (nothing moved), else {1, number of hashes moved}.
local scope = redis.call('HGET', KEYS[1], 'scope')
if scope then return {0, scope} end
local function is_hash(key) return redis.call('TYPE', key)['ok'] == 'hash' end
for i = 3, #KEYS, 2 do
  if is_hash(KEYS[i]) and redis.call('EXISTS', KEYS[i + 1]) == 1 then return {2, KEYS[i + 1]} end
end
local moved = 0
for i = 3, #KEYS, 2 do
  if is_hash(KEYS[i]) then
    redis.call('RENAME', KEYS[i], KEYS[i + 1])
    -- A string where the hash was: an old host's next read or commit fails with WRONGTYPE
    -- instead of writing beside the migrated data.
    redis.call('SET', KEYS[i], ARGV[2] .. KEYS[i + 1])
    if i > 3 then redis.call('SADD', KEYS[2], ARGV[3 + (i - 5) / 2]) end
    moved = moved + 1
  end
end
redis.call('HSET', KEYS[1], 'layout', '2', 'scope', 'job', 'migrated_at_ms', ARGV[1])
return {1, moved}
