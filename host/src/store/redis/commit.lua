-- The commit of one batch, atomically (see redis.rs, which runs it, for the protocol).
-- KEYS[1] offsets hash, KEYS[2] state hash
-- ARGV[1] partition, ARGV[2] expected stored offset ('' = none stored yet), ARGV[3] until,
-- ARGV[4..6] number of sets, deletes, increments, then the (key, value) pairs of the
-- sets, the keys of the deletes, the (key, delta) pairs of the increments.
-- Returns {1} committed, {0, stored} fenced, {2, key, value} not an integer, {3, key, value}
-- would overflow; in the last three cases nothing was written.
local stored = redis.call('HGET', KEYS[1], ARGV[1])
local expected = ARGV[2]
if (expected == '' and stored) or (expected ~= '' and stored ~= expected) then
  if stored then return {0, stored} end
  return {0}
end
local nset, ndel, nincr = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local incr_at = 7 + 2 * nset + ndel
for j = 0, nincr - 1 do
  local key = ARGV[incr_at + 2 * j]
  local value = redis.call('HGET', KEYS[2], key)
  if value and not string.match(value, '^%-?%d+$') then return {2, key, value} end
  -- HINCRBY fails on 64-bit overflow after earlier writes landed: refuse near the limit.
  local delta = tonumber(ARGV[incr_at + 2 * j + 1])
  if math.abs(tonumber(value or '0')) + math.abs(delta) >= 9.2e18 then return {3, key, value or '0'} end
end
local i = 7
for j = 1, nset do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
for j = 1, ndel do redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1 end
for j = 1, nincr do redis.call('HINCRBY', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return {1}
