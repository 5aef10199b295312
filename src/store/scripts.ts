/**
 * The Lua scripts of the Redis store. Each touches exactly one key (an entry hash or a membership set), so
 * each runs on Redis Cluster whatever the key's slot. Time is read with `TIME` inside the script, so leases
 * and freshness never depend on the clocks of the client machines.
 *
 * An entry is a hash: `v` the encoded value, `x` fresh-until in millis (0: for ever, 1: invalidated),
 * `l` / `lx` the lease token and its expiry, `g` the membership sets (newline separated). A lease-only entry
 * (a load under way, no value yet) expires with its lease.
 *
 * A membership set is a sorted set. A member is an entry key scored with the end of its life in millis (`+inf`:
 * for ever), so members score 0 or more. A hold is the member `holdMember(token)` scored with minus its expiry:
 * live holds score below `-now`, lapsed ones in `[-now, 0)`, so one score range picks either and holds live in
 * the set's own key (one key per script, as Cluster needs).
 */

/** The member that stands for `token`'s hold in a membership set. */
export const holdMember = (token: string): string => `\u0000hold:${token}`

const now = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`

/** KEYS[1] entry; ARGV token, leaseMillis -> {1, v} hit | {2, v, leased} stale | {3} miss (leased) | {4} busy */
export const read = `${now}
local e = redis.call('HMGET', KEYS[1], 'v', 'x', 'l', 'lx')
local v = e[1]
if v then
  local x = tonumber(e[2]) or 0
  if x == 0 or x > now then return {1, v} end
end
local lease = tonumber(ARGV[2])
local free = (not e[3]) or (tonumber(e[4]) or 0) <= now
if free then
  redis.call('HSET', KEYS[1], 'l', ARGV[1], 'lx', now + lease)
  local pttl = redis.call('PTTL', KEYS[1])
  if (not v) or (pttl >= 0 and pttl < lease) then redis.call('PEXPIRE', KEYS[1], lease) end
end
if v then
  if free then return {2, v, 1} end
  return {2, v, 0}
end
if free then return {3} end
return {4}`

/**
 * KEYS[1] set; ARGV member, lifeMillis (-1: for ever) -> 1 registered | 0 held (nothing registered). Prunes
 * members whose life is over and lapsed holds.
 */
export const track = `${now}
redis.call('ZREMRANGEBYSCORE', KEYS[1], -now, now)
if #redis.call('ZRANGE', KEYS[1], '-inf', '(' .. -now, 'BYSCORE', 'LIMIT', 0, 1) > 0 then return 0 end
local before = redis.call('PTTL', KEYS[1])
local life = tonumber(ARGV[2])
if life < 0 then
  redis.call('ZADD', KEYS[1], 'GT', '+inf', ARGV[1])
  if before >= 0 then redis.call('PERSIST', KEYS[1]) end
else
  redis.call('ZADD', KEYS[1], 'GT', now + life, ARGV[1])
  if before == -2 or (before >= 0 and before < life) then redis.call('PEXPIRE', KEYS[1], life) end
end
return 1`

/**
 * Takes up to `count` members (holds excluded) out of KEYS[1], soonest to expire first, into the table `m`.
 * ZREM goes in slices: `unpack` is bounded by Lua's stack.
 */
const popMembers = `local m = redis.call('ZRANGE', KEYS[1], 0, '+inf', 'BYSCORE', 'LIMIT', 0, count)
for i = 1, #m, 1000 do redis.call('ZREM', KEYS[1], unpack(m, i, math.min(i + 999, #m))) end`

/**
 * When KEYS[1] lists holds only, it lives as long as the last of them (the members that were keeping it, maybe
 * for ever, are gone), so a hold whose writer died never outlives itself; without a live hold it goes at once.
 */
const holdsOnlyExpire = `if redis.call('ZCOUNT', KEYS[1], 0, '+inf') == 0 then
  local last = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if last[2] then redis.call('PEXPIRE', KEYS[1], math.max(1, -tonumber(last[2]) - now)) end
end`

/** KEYS[1] set; ARGV count -> the members taken out (up to count), holds left in place */
export const pop = `${now}
local count = tonumber(ARGV[1])
${popMembers}
if #m > 0 then
${holdsOnlyExpire}
end
return m`

/**
 * KEYS[1] set; ARGV hold member, holdMillis, count -> the members taken out (up to count). Adds the hold (and
 * drops lapsed ones), then takes the first members out, so no member registered before the hold is left.
 */
export const hold = `${now}
local hold = tonumber(ARGV[2])
local count = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], -now, '(0')
redis.call('ZADD', KEYS[1], -(now + hold), ARGV[1])
${popMembers}
local pttl = redis.call('PTTL', KEYS[1])
if pttl >= 0 and pttl < hold then redis.call('PEXPIRE', KEYS[1], hold) end
${holdsOnlyExpire}
return m`

/** KEYS[1] set; ARGV hold member -> 1 the hold was live | 0 it had lapsed or was missing (removed either way) */
export const releaseHold = `${now}
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if score and tonumber(score) < -now then return 1 end
return 0`

/** KEYS[1] entry; ARGV token, value, freshMillis (-1: for ever), lifeMillis (-1: for ever), sets -> 1 stored | 0 */
export const fill = `if redis.call('HGET', KEYS[1], 'l') ~= ARGV[1] then return 0 end
${now}
local fresh = tonumber(ARGV[3])
local x = 0
if fresh >= 0 then x = now + fresh end
redis.call('HSET', KEYS[1], 'v', ARGV[2], 'x', x, 'g', ARGV[5])
redis.call('HDEL', KEYS[1], 'l', 'lx')
local life = tonumber(ARGV[4])
if life >= 0 then redis.call('PEXPIRE', KEYS[1], life) else redis.call('PERSIST', KEYS[1]) end
return 1`

/** KEYS[1] entry; ARGV token -> 1 released | 0 */
export const release = `if redis.call('HGET', KEYS[1], 'l') ~= ARGV[1] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'v') == 1 then redis.call('HDEL', KEYS[1], 'l', 'lx') else redis.call('DEL', KEYS[1]) end
return 1`

/** KEYS[1] entry; ARGV mode -> {held, sets to leave (hard only)} */
export const invalidate = `local e = redis.call('HMGET', KEYS[1], 'v', 'g')
if not e[1] then
  redis.call('DEL', KEYS[1])
  return {0, ''}
end
if ARGV[1] == 'soft' then
  redis.call('HSET', KEYS[1], 'x', 1)
  redis.call('HDEL', KEYS[1], 'l', 'lx')
  return {1, ''}
end
redis.call('DEL', KEYS[1])
return {1, e[2] or ''}`

/** KEYS[1] entry -> {v, x, leased, g, pttl} or false */
export const inspect = `${now}
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local e = redis.call('HMGET', KEYS[1], 'v', 'x', 'l', 'lx', 'g')
local leased = 0
if e[3] and (tonumber(e[4]) or 0) > now then leased = 1 end
return {e[1] or false, e[2] or '0', leased, e[5] or '', redis.call('PTTL', KEYS[1])}`
