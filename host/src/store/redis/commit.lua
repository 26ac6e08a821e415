-- The commit of one or more batches, atomically. It decodes what commit.rs (beside it)
-- encodes; the KEYS, ARGV and reply format is described there, once.
local n = tonumber(ARGV[1])
local HEAD = 9
-- Where each batch's keys are: offsets, clock, event timers, processing timers, outbox
-- sequence and stream (nil when not declared).
local keys = {}
local k = 2
for c = 1, n do
  local at = 2 + HEAD * (c - 1)
  local b = {offsets = KEYS[k]}
  k = k + 1
  if ARGV[at + 3] ~= '' then b.clock = KEYS[k]; k = k + 1 end
  b.timers = {}
  for d = 1, 2 do
    if tonumber(ARGV[at + 2 + 2 * d]) + tonumber(ARGV[at + 3 + 2 * d]) > 0 then
      b.timers[d] = KEYS[k]
      k = k + 1
    end
  end
  if ARGV[at + 8] ~= '' then b.seq = KEYS[k]; b.outbox = KEYS[k + 1]; k = k + 2 end
  keys[c] = b
end
for c = 1, n do
  local at = 2 + HEAD * (c - 1)
  local stored = redis.call('HGET', keys[c].offsets, ARGV[at])
  local expected = ARGV[at + 1]
  if (expected == '' and stored) or (expected ~= '' and stored ~= expected) then
    return {0, c, stored or false}
  end
end
local at = 2 + HEAD * n
local nset, ndel, nincr = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
local sets_at = at + 3
local dels_at = sets_at + 2 * nset
local incr_at = dels_at + ndel
local timers_at = incr_at + 2 * nincr

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

-- `cmd key` over `count` groups of `width` arguments starting at list[from].
local function chunked(cmd, key, list, from, count, width)
  local i = 0
  while i < count do
    local args = {}
    for k = i, math.min(count, i + CHUNK) - 1 do
      for w = 0, width - 1 do args[#args + 1] = list[from + width * k + w] end
    end
    redis.call(cmd, key, unpack(args))
    i = i + CHUNK
  end
end

-- The outbox first: XADD is the one write that can fail (an id at or below the stream's
-- last, when its counter was deleted by hand). Then the entries already added are taken
-- out again and nothing else is written (a counter that moved on leaves a gap, harmless).
local seqs = {}
for c = 1, n do
  local at = 2 + HEAD * (c - 1)
  seqs[c] = 0
  if keys[c].outbox then
    local seq = redis.call('HINCRBY', keys[c].seq, ARGV[at], 1)
    local added = redis.pcall('XADD', keys[c].outbox, seq .. '-0', 'r', ARGV[at + 8])
    if type(added) == 'table' and added.err then
      for b = 1, c - 1 do
        if seqs[b] > 0 then redis.call('XDEL', keys[b].outbox, seqs[b] .. '-0') end
      end
      return {4, keys[c].outbox, added.err}
    end
    seqs[c] = seq
  end
end
chunked('HSET', KEYS[1], ARGV, sets_at, nset, 2)
chunked('HDEL', KEYS[1], ARGV, dels_at, ndel, 1)
chunked('HSET', KEYS[1], computed, 1, #computed / 2, 2)
for k = 1, #exact, 2 do redis.call('HINCRBY', KEYS[1], exact[k], exact[k + 1]) end
local t = timers_at
for c = 1, n do
  local at = 2 + HEAD * (c - 1)
  for d = 1, 2 do
    local nadd, nrem = tonumber(ARGV[at + 2 + 2 * d]), tonumber(ARGV[at + 3 + 2 * d])
    if nadd > 0 then chunked('ZADD', keys[c].timers[d], ARGV, t, nadd, 2) end
    t = t + 2 * nadd
    if nrem > 0 then chunked('ZREM', keys[c].timers[d], ARGV, t, nrem, 1) end
    t = t + nrem
  end
end
for c = 1, n do
  local at = 2 + HEAD * (c - 1)
  redis.call('HSET', keys[c].offsets, ARGV[at], ARGV[at + 2])
  if keys[c].clock then redis.call('HSET', keys[c].clock, ARGV[at], ARGV[at + 3]) end
end
return {1, unpack(seqs)}
