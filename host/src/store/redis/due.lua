-- What of one partition's timers (or expiries) of one domain is due (see mod.rs, `due`):
-- one call whatever the number pending.
-- KEYS[1]: the domain's sorted set. ARGV[1]: due up to this score ('' = nothing due);
-- ARGV[2]: at most this many.
-- Returns the due (member, score) pairs, flat, earliest first; then the earliest entry
-- after them as a (member, score) pair, or an empty list. A full page returns its own
-- last entry there: more may be due.
local limit = tonumber(ARGV[2])
local upto = ARGV[1]
local found = {}
if upto ~= '' then
  found = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', upto, 'WITHSCORES', 'LIMIT', 0, limit)
end
local after
if #found >= 2 * limit then
  after = {found[#found - 1], found[#found]}
elseif upto ~= '' then
  after = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. upto, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
else
  after = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
end
return {found, after}
