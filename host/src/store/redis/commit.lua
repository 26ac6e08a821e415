-- The commit of one or more batches, atomically (see mod.rs, which runs it, for the
-- protocol). Several batches commit together only when they share the state hash; their
-- writes arrive merged, one per key.
-- KEYS[1] state hash, KEYS[2..n+1] the offsets hash of each batch
-- ARGV[1] n; then per batch: partition, expected stored offset ('' = none stored yet),
-- until; then the number of sets, deletes, increments, then the (key, value) pairs of the
-- sets, the keys of the deletes, the (key, delta) pairs of the increments.
-- Returns {1} committed, {0, batch, stored} fenced, {2, key, value} not an integer,
-- {3, key, value} would overflow; in the last three cases nothing was written.
local n = tonumber(ARGV[1])
for c = 1, n do
  local at = 2 + 3 * (c - 1)
  local stored = redis.call('HGET', KEYS[1 + c], ARGV[at])
  local expected = ARGV[at + 1]
  if (expected == '' and stored) or (expected ~= '' and stored ~= expected) then
    return {0, c, stored or false}
  end
end
local at = 2 + 3 * n
local nset, ndel, nincr = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
local sets_at = at + 3
local dels_at = sets_at + 2 * nset
local incr_at = dels_at + ndel

-- Commands take their arguments from the Lua stack, which holds ~8000 values: go in chunks.
local CHUNK = 1000

-- Increments: read the current values in bulk and check them all before the first write
-- (a script error would not roll back earlier writes). Sums that a double holds exactly
-- are written back in bulk; the rest go through HINCRBY, which is exact.
local computed, exact = {}, {}
local j = 0
while j < nincr do
  local fields = {}
  local last = math.min(nincr, j + CHUNK)
  for k = j, last - 1 do fields[#fields + 1] = ARGV[incr_at + 2 * k] end
  local values = redis.call('HMGET', KEYS[1], unpack(fields))
  for k = 1, #fields do
    local value = values[k]
    if value and not string.match(value, '^%-?%d+$') then return {2, fields[k], value} end
    local delta = tonumber(ARGV[incr_at + 2 * (j + k - 1) + 1])
    local current = tonumber(value or '0')
    -- HINCRBY fails on 64-bit overflow after earlier writes landed: refuse near the limit.
    if math.abs(current) + math.abs(delta) >= 9.2e18 then return {3, fields[k], value or '0'} end
    if math.abs(current) < 2^52 and math.abs(delta) < 2^52 then
      computed[#computed + 1] = fields[k]
      computed[#computed + 1] = string.format('%d', current + delta)
    else
      exact[#exact + 1] = fields[k]
      exact[#exact + 1] = ARGV[incr_at + 2 * (j + k - 1) + 1]
    end
  end
  j = last
end

local function hset_pairs(list, from, count)
  local i = 0
  while i < count do
    local args = {}
    for k = i, math.min(count, i + CHUNK) - 1 do
      args[#args + 1] = list[from + 2 * k]
      args[#args + 1] = list[from + 2 * k + 1]
    end
    redis.call('HSET', KEYS[1], unpack(args))
    i = i + CHUNK
  end
end

hset_pairs(ARGV, sets_at, nset)
local d = 0
while d < ndel do
  local args = {}
  for k = d, math.min(ndel, d + CHUNK) - 1 do args[#args + 1] = ARGV[dels_at + k] end
  redis.call('HDEL', KEYS[1], unpack(args))
  d = d + CHUNK
end
hset_pairs(computed, 1, #computed / 2)
for k = 1, #exact, 2 do redis.call('HINCRBY', KEYS[1], exact[k], exact[k + 1]) end
for c = 1, n do
  local at = 2 + 3 * (c - 1)
  redis.call('HSET', KEYS[1 + c], ARGV[at], ARGV[at + 2])
end
return {1}
