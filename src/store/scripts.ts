/**
 * The Lua scripts of the Redis store, each one typed value: its source, its keys and its reply (decoded in one
 * place, `src/store/Redis.ts`). Record offsets come from `internal/protocol.ts` (Lua counts from 1).
 *
 * Every script but `fill` touches one key, so it runs on Redis Cluster whatever the key's slot; `fill` takes
 * its stamps and indexes as extra keys on a single Redis only (on a Cluster it is sent with the entry alone and
 * the index writes go beside it). A script never reads a key it was not given. Scripts call `GET` through
 * `pcall`, so a key of another type (written by someone else) is repaired instead of failing every call.
 */
import { epochCompactAt, maxHoldMillis, offsets, tokenLength } from "../internal/protocol.ts"

/** A Lua script: its source and how many of its arguments are keys (`undefined`: given with each call). */
export interface Script<Reply> {
  readonly name: string
  readonly lua: string
  readonly numberOfKeys: number | undefined
  /** Only a type: the shape of the raw reply. */
  readonly reply?: Reply
}

const script = <Reply>(name: string, numberOfKeys: number | undefined, lua: string): Script<Reply> => ({
  name,
  lua,
  numberOfKeys
})

const lua = {
  state: offsets.state + 1,
  leaseUntil: offsets.leaseUntil + 1,
  leaseToken: offsets.leaseToken + 1,
  leaseTokenEnd: offsets.freshUntil,
  body: offsets.body + 1
} as const

const now = `local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)`

/** Clears a value record's refresh lease (state byte kept). */
const noLease = `'${"0".repeat(13)}${"-".repeat(tokenLength)}'`

/** `rec`: the record at KEYS[1], or false; a key of another type is deleted (repaired) and reads as false. */
const readRecord = `local rec = redis.pcall('GET', KEYS[1])
if type(rec) == 'table' then
  redis.call('DEL', KEYS[1])
  rec = false
end`

/** `fields(rec)`: fill token, sets JSON and stamps of value record `rec`. */
const fieldsOf = `local function fields(rec)
  local a = string.find(rec, '\\n', ${lua.body}, true)
  if not a then return nil end
  local b = string.find(rec, '\\n', a + 1, true)
  if not b then return nil end
  local c = string.find(rec, '\\n', b + 1, true)
  if not c then return nil end
  return string.sub(rec, ${lua.body}, a - 1), string.sub(rec, a + 1, b - 1), string.sub(rec, b + 1, c - 1)
end`

/**
 * A hold marker (Redis store): `!` then elements joined by `,`: a live hold `<holdMillis>:<token>`, or a tombstone
 * `~<deadline>:<token>` (a released hold that a merge on its way must not bring back, until the deadline, server
 * millis). `markerParts(v, now)` -> live {holdMillis, token, element} list, unexpired tombstones {deadline, token,
 * element}; an element of the older format (a bare token) counts as a live hold of ${30_000} ms.
 * `writeMarker(key, live, dead)` writes them back, expiring after the longest live hold.
 */
const markerLib = `local function markerParts(v, now)
  local live, dead = {}, {}
  for elem in string.gmatch(string.sub(v, 2), '[^,]+') do
    if string.sub(elem, 1, 1) == '~' then
      local colon = string.find(elem, ':', 2, true)
      local deadline = colon and tonumber(string.sub(elem, 2, colon - 1))
      if deadline and deadline > now then table.insert(dead, {deadline, string.sub(elem, colon + 1), elem}) end
    else
      local colon = string.find(elem, ':', 1, true)
      local ms = colon and tonumber(string.sub(elem, 1, colon - 1))
      if ms then table.insert(live, {ms, string.sub(elem, colon + 1), elem}) else table.insert(live, {30000, elem, elem}) end
    end
  end
  return live, dead
end
local function writeMarker(key, live, dead)
  local parts, ttl = {}, 1
  for _, e in ipairs(live) do
    table.insert(parts, e[3])
    if e[1] > ttl then ttl = e[1] end
  end
  for _, e in ipairs(dead) do table.insert(parts, e[3]) end
  redis.call('SET', key, '!' .. table.concat(parts, ','), 'PX', ttl)
end`

const isOurs = (rec: string) => `(string.sub(${rec}, 1, 1) == '2')`
const stateOf = (rec: string) => `string.sub(${rec}, ${lua.state}, ${lua.state})`
const holderOf = (rec: string) => `string.sub(${rec}, ${lua.leaseToken}, ${lua.leaseTokenEnd})`

/** Reply codes of `lease`. */
export const LeaseReply = { Leased: 1, Busy: 2, Changed: 3 } as const

/**
 * KEYS[1] entry; ARGV token, leaseMillis, seen (fill token of the value the lookup saw, "" none), intent
 * (`keep` | `replace`), lease record -> {1} leased | {1, fill token, sets JSON} leased over a value it replaced
 * (its index members are to go) | {2, holder} busy | {3} changed.
 *
 * A lease is live only while its remaining time is at most `leaseMillis`: a lease with no expiry or a far one
 * (forged, or left by a bug) is taken over.
 */
export const lease = script<[number, string?, string?]>(
  "cachemeLease",
  1,
  `${readRecord}
local lease = tonumber(ARGV[2])
local function take()
  redis.call('SET', KEYS[1], ARGV[5], 'PX', lease)
  return {${LeaseReply.Leased}}
end
if not rec or not ${isOurs("rec")} then return take() end
local state = ${stateOf("rec")}
if state == 'L' then
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl > 0 and pttl <= lease then return {${LeaseReply.Busy}, ${holderOf("rec")}} end
  return take()
end
if state ~= 'V' and state ~= 'S' then return take() end
${fieldsOf}
local fill, sets = fields(rec)
if (fill or '') ~= ARGV[3] then return {${LeaseReply.Changed}} end
${now}
local leaseUntil = tonumber(string.sub(rec, ${lua.leaseUntil}, ${lua.leaseToken - 1})) or 0
if leaseUntil > now and leaseUntil <= now + lease then return {${LeaseReply.Busy}, ${holderOf("rec")}} end
if ARGV[4] == 'replace' then
  take()
  return {${LeaseReply.Leased}, fill, sets}
end
redis.call('SETRANGE', KEYS[1], ${lua.leaseUntil - 1}, string.format('%013d', now + lease) .. ARGV[1])
local pttl = redis.call('PTTL', KEYS[1])
if pttl >= 0 and pttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return {${LeaseReply.Leased}}`
)

/** Reply codes of `fill`. */
export const FillReply = { Lost: 0, Stored: 1, Refused: 2 } as const

/** Gives up the lease of the record `rec` at KEYS[1] (held by the caller) and publishes on channel `ARGV[n]`. */
const giveUp = (channel: string) => `if ${stateOf("rec")} == 'L' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SETRANGE', KEYS[1], ${lua.leaseUntil - 1}, ${noLease})
end
if ${channel} ~= nil and ${channel} ~= '' then redis.call('PUBLISH', ${channel}, '') end`

/**
 * KEYS[1] entry, then (single Redis) the m indexes of its sets, the e epochs it recorded and the k stamps of the
 * groups its value named; ARGV token, record (with k groups: its head, up to the last stamp of its sets),
 * lifeMillis (-1: for ever), m, index score, index member, prune ("1": drop index members whose life ended before
 * ARGV now), now, the key's notice channel ("": none; published on when stored or refused, see
 * `internal/notices.ts`), e, k, the e epochs as recorded, k fresh stamps (for groups that have none), their life
 * (-1: for ever), the record's tail ("\n" and the value) -> {0} lost (the lease is not ours) | {1} stored | {1, fill
 * token, sets JSON} stored over a value (a refresh): the value it replaced is to leave the indexes | {2} refused
 * (an epoch moved since the lease, or a group is held): the lease is given up.
 *
 * The groups' stamps are read (or made) in the same step as the epochs are checked: unchanged epochs mean no group
 * of those families changed since the lease, so these are the stamps the groups had when the load started.
 */
export const fill = script<[number, string?, string?]>(
  "cachemeFill",
  undefined,
  `local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or not ${isOurs("rec")} or ${holderOf("rec")} ~= ARGV[1] then return {${FillReply.Lost}} end
local record = ARGV[2]
local k = tonumber(ARGV[11] or '0')
if k > 0 then
  local m = tonumber(ARGV[4])
  local e = tonumber(ARGV[10])
  local refused = false
  for i = 1, e do
    if redis.pcall('GET', KEYS[1 + m + i]) ~= ARGV[11 + i] then refused = true end
  end
  local named = {}
  for j = 1, k do
    local s = redis.pcall('GET', KEYS[1 + m + e + j])
    if type(s) ~= 'string' then s = false end
    if s and string.sub(s, 1, 1) == '!' then refused = true end
    named[j] = s
  end
  if refused then
${giveUp("ARGV[9]")}
    return {${FillReply.Refused}}
  end
  local stampLife = tonumber(ARGV[12 + e + k])
  for j = 1, k do
    if not named[j] then
      named[j] = ARGV[11 + e + j]
      if stampLife >= 0 then
        redis.call('SET', KEYS[1 + m + e + j], named[j], 'PX', stampLife)
      else
        redis.call('SET', KEYS[1 + m + e + j], named[j])
      end
    end
  end
  record = record .. ',' .. table.concat(named, ',') .. ARGV[13 + e + k]
end
local life = tonumber(ARGV[3])
if life >= 0 then redis.call('SET', KEYS[1], record, 'PX', life) else redis.call('SET', KEYS[1], record) end
for i = 2, 1 + tonumber(ARGV[4]) do
  if ARGV[7] == '1' then redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', '(' .. ARGV[8]) end
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[6])
end
if ARGV[9] ~= nil and ARGV[9] ~= '' then redis.call('PUBLISH', ARGV[9], '') end
local state = ${stateOf("rec")}
if state == 'V' or state == 'S' then
${fieldsOf}
  local replaced, sets = fields(rec)
  if replaced then return {${FillReply.Stored}, replaced, sets} end
end
return {${FillReply.Stored}}`
)

/**
 * KEYS[1] entry; ARGV token, leaseMillis, the lease's new end by the holder's clock (13 digits) -> 1 renewed | 0 the
 * lease is not `token`'s.
 */
export const renew = script<number>(
  "cachemeRenew",
  1,
  `local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or not ${isOurs("rec")} or ${holderOf("rec")} ~= ARGV[1] then return 0 end
local lease = tonumber(ARGV[2])
if ${stateOf("rec")} == 'L' then
  redis.call('SETRANGE', KEYS[1], ${lua.leaseUntil - 1}, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], lease)
  return 1
end
${now}
redis.call('SETRANGE', KEYS[1], ${lua.leaseUntil - 1}, string.format('%013d', now + lease))
local pttl = redis.call('PTTL', KEYS[1])
if pttl >= 0 and pttl < lease then redis.call('PEXPIRE', KEYS[1], lease) end
return 1`
)

/** KEYS[1] entry; ARGV token, the key's notice channel ("": none) -> 1 released | 0 the lease is not `token`'s. */
export const release = script<number>(
  "cachemeRelease",
  1,
  `local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or not ${isOurs("rec")} or ${holderOf("rec")} ~= ARGV[1] then return 0 end
if ${stateOf("rec")} == 'L' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SETRANGE', KEYS[1], ${lua.leaseUntil - 1}, ${noLease})
end
if ARGV[2] ~= nil and ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], '') end
return 1`
)

/** KEYS[1] stamp; ARGV value -> 1 dropped | 0 the stamp is another (a lease's created stamp, after a failed load). */
export const dropStamp = script<number>(
  "cachemeDropStamp",
  1,
  `if redis.pcall('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`
)

/**
 * KEYS[1] entry; ARGV mode -> {held} | {1, fill token, sets JSON} (a value removed hard: its index members go).
 * A key that is not a record of ours (another type, another format) is removed and counts.
 */
export const invalidateKey = script<[number, string?, string?]>(
  "cachemeInvalidateKey",
  1,
  `local rec = redis.pcall('GET', KEYS[1])
if rec == false then return {0} end
if type(rec) ~= 'string' or not ${isOurs("rec")} then
  redis.call('DEL', KEYS[1])
  return {1}
end
local state = ${stateOf("rec")}
if state ~= 'V' and state ~= 'S' then
  redis.call('DEL', KEYS[1])
  return {0}
end
if ARGV[1] == 'soft' then
  redis.call('SETRANGE', KEYS[1], ${lua.state - 1}, 'S' .. ${noLease})
  return {1}
end
${fieldsOf}
local fill, sets = fields(rec)
redis.call('DEL', KEYS[1])
if not fill then return {1} end
return {1, fill, sets}`
)

/**
 * Appends `element` (a Lua expression) to the epoch at KEYS[2] (a group's family's, given on a single Redis; made
 * when missing), with `ARGV[2]` a fresh random for a compaction: every change of a group's stamp appends to it in
 * the same step (one `APPEND`; see `Protocol.epochHolds`). On a Cluster the epoch lives on another slot and
 * {@link epoch} runs before and after the change instead; the plain hold (`SET stamp !<element> PX holdMillis GET`,
 * see `Redis.ts`) is followed on the same connection by a plain `APPEND <epoch> ;+<holdMillis>@<token>`.
 */
const bumpEpoch = (element: string, onlyIfExists: boolean) =>
  `${epochLib}
if KEYS[2] then appendEpoch(KEYS[2], ${element}, ARGV[2], ${onlyIfExists}) end`

/**
 * The Lua twins of `Protocol.epochHolds` / `Protocol.compactEpoch` (read their docs for the log an epoch is):
 * `compactEpoch(key, fresh, onlyIfLapsed)` rewrites the epoch at `key` (false when missing) to `fresh` and its live
 * holds with their deadlines (`TIME` is asked only when it lists some) and returns it; `appendEpoch(key, element,
 * fresh, onlyIfExists)` appends (making the epoch when missing, unless `onlyIfExists`; repairing a key of another
 * type) and compacts past `Protocol.epochCompactAt` characters. A hold and a release make the epoch (a hold that
 * found none must still be listed: a lease may make the epoch while the hold stands); another change only moves an
 * epoch that exists (nothing recorded a missing one).
 */
const epochLib = `local function compactEpoch(key, fresh, onlyIfLapsed)
  local old = redis.pcall('GET', key)
  if type(old) ~= 'string' then return false end
  local holds, relative, any = {}, false, false
  local clock = nil
  local function nowMs()
    if not clock then
      local t = redis.call('TIME')
      clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    return clock
  end
  local longest = ${maxHoldMillis}
  for e in string.gmatch(old, ';([^;]*)') do
    local sep = string.find(e, '@', 1, true)
    if sep then
      local head, token = string.sub(e, 1, sep - 1), string.sub(e, sep + 1)
      if head == '-' then
        -- In order: a release ends the holds of its token before it, not a hold made again after it.
        holds[token] = nil
      else
        local d
        if string.sub(head, 1, 1) == '+' then
          relative = true
          local ms = tonumber(string.sub(head, 2))
          if ms ~= nil and ms == ms and ms ~= math.huge and ms ~= -math.huge then d = nowMs() + math.min(ms, longest) end
        else
          d = tonumber(head)
          if d ~= nil and (d ~= d or d == math.huge or d == -math.huge) then d = nil end
        end
        -- What is no number was not written by a store (forged, broken): no hold; too far is cut below.
        if d ~= nil then
          if holds[token] == nil or holds[token] < d then holds[token] = d end
          any = true
        else
          relative = true
        end
      end
    end
  end
  local changed = relative
  local value = fresh
  if any then
    local now = nowMs()
    for token, d in pairs(holds) do
      -- Further than the longest hold from now: written by no store (forged, a clock gone back): no hold.
      if d <= now or d > now + longest then
        changed = true
      else
        value = value .. ';' .. string.format('%d', d) .. '@' .. token
      end
    end
  end
  if onlyIfLapsed and not changed then return old end
  redis.call('SET', key, value)
  return value
end
local function appendEpoch(key, element, fresh, onlyIfExists)
  if onlyIfExists and redis.call('EXISTS', key) == 0 then return end
  local n = redis.pcall('APPEND', key, element)
  if type(n) ~= 'number' then
    redis.call('DEL', key)
    n = redis.call('APPEND', key, element)
  end
  if n > ${epochCompactAt} then compactEpoch(key, fresh, false) end
end`

/**
 * KEYS[1] stamp, [KEYS[2] its family's epoch]; ARGV mode, a fresh random -> the stamp before ("" none). Hard deletes
 * it (`GETDEL`: one command when it is a stamp); soft moves its generation on; a hold marker stays (the set is
 * already unusable, and the hold's writer still needs it: a hard invalidation writes it back, expiring after its
 * longest hold from now). With KEYS[2], one more command appends to the epoch.
 */
export const invalidateStamp = script<string>(
  "cachemeInvalidateStamp",
  undefined,
  `${bumpEpoch("';*' .. ARGV[2]", true)}
if ARGV[1] == 'hard' then
  local v = redis.pcall('GETDEL', KEYS[1])
  if type(v) == 'table' then
    redis.call('DEL', KEYS[1])
    return ''
  end
  if not v then return '' end
  if string.sub(v, 1, 1) == '!' then
    ${now}
    ${markerLib}
    local live, dead = markerParts(v, now)
    if #live > 0 then writeMarker(KEYS[1], live, dead) end
  end
  return v
end
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then
  redis.call('DEL', KEYS[1])
  return ''
end
if not v then return '' end
if string.sub(v, 1, 1) == '!' then return v end
local dot = string.find(v, '.', 1, true)
local inc, gen = v, 0
if dot then
  inc = string.sub(v, 1, dot - 1)
  gen = tonumber(string.sub(v, dot + 1)) or 0
end
redis.call('SET', KEYS[1], inc .. '.' .. (gen + 1), 'KEEPTTL')
return v`
)

/** Reply codes of `reclaim`. */
export const ReclaimReply = { Gone: 0, Counted: 1, Kept: 2, Dead: 3 } as const

/**
 * KEYS[1] entry; ARGV fill token (of the index member), set, invalidated incarnation, current stamp ("" none),
 * mode -> {0} gone (the member outlived its entry) | {1, sets JSON} counted (hard: removed) | {2} kept (a value
 * filled under the set's current stamp) | {3, sets JSON} dead (an older incarnation: removed, not counted).
 */
export const reclaim = script<[number, string?]>(
  "cachemeReclaim",
  1,
  `local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or not ${isOurs("rec")} then return {${ReclaimReply.Gone}} end
local state = ${stateOf("rec")}
if state ~= 'V' and state ~= 'S' then return {${ReclaimReply.Gone}} end
${fieldsOf}
local fill, setsJson, stamps = fields(rec)
if fill ~= ARGV[1] then return {${ReclaimReply.Gone}} end
local ok, sets = pcall(cjson.decode, setsJson)
if not ok or type(sets) ~= 'table' then return {${ReclaimReply.Gone}} end
local position = nil
for i, set in ipairs(sets) do
  if set == ARGV[2] then position = i end
end
if not position then return {${ReclaimReply.Gone}} end
local recorded = nil
local i = 0
for stamp in string.gmatch(stamps, '[^,]+') do
  i = i + 1
  if i == position then recorded = stamp end
end
if not recorded then return {${ReclaimReply.Gone}} end
local dot = string.find(recorded, '.', 1, true)
local inc = recorded
if dot then inc = string.sub(recorded, 1, dot - 1) end
if inc == ARGV[3] then
  if ARGV[5] == 'hard' then redis.call('DEL', KEYS[1]) end
  return {${ReclaimReply.Counted}, setsJson}
end
if recorded == ARGV[4] or ARGV[5] == 'soft' then return {${ReclaimReply.Kept}} end
redis.call('DEL', KEYS[1])
return {${ReclaimReply.Dead}, setsJson}`
)

/**
 * KEYS[1] stamp; ARGV hold element (`<holdMillis>:<token>`; "": the hold was released before this step, so only
 * the others come back), previous (the marker that the hold's own `SET ... GET`
 * replaced, or "" when that `SET` failed on a key of another type) -> 1. The second step of a hold that found
 * another writer's hold: the first step, one plain `SET stamp !<element> PX holdMillis GET` (see `Redis.ts`), put
 * its own marker in place of theirs; this merges the holds it replaced back in, except those released since
 * (their release left a tombstone), and expires after the longest of them. A hold that found a stamp, or nothing,
 * needs no second step.
 */
export const mergeHold = script<number>(
  "cachemeMergeHold",
  1,
  `${now}
${markerLib}
local live, dead = {}, {}
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'string' and string.sub(v, 1, 1) == '!' then live, dead = markerParts(v, now) end
if ARGV[2] ~= '' then
  local before, released = markerParts(ARGV[2], now)
  for _, e in ipairs(before) do table.insert(live, e) end
  for _, e in ipairs(released) do table.insert(dead, e) end
end
if ARGV[1] ~= '' then
  local colon = string.find(ARGV[1], ':', 1, true)
  table.insert(live, {tonumber(string.sub(ARGV[1], 1, colon - 1)), string.sub(ARGV[1], colon + 1), ARGV[1]})
end
local gone, seen, holds, tombstones = {}, {}, {}, {}
for _, e in ipairs(dead) do
  if not gone[e[2]] then
    gone[e[2]] = true
    table.insert(tombstones, e)
  end
end
for _, e in ipairs(live) do
  if not gone[e[2]] and not seen[e[2]] then
    seen[e[2]] = true
    table.insert(holds, e)
  end
end
writeMarker(KEYS[1], holds, tombstones)
return 1`
)

/**
 * KEYS[1] stamp, [KEYS[2] its family's epoch]; ARGV token, a fresh random -> {1} the hold was live (removed; the
 * stamp goes with the last hold) | {0, stamp} it had lapsed: the stamp that stands was made after the lapse and is
 * deleted (a load may have been stored under it), and returned ("" none) so that its entries are reclaimed. A
 * lapsed hold whose set another writer holds now leaves that hold alone, and a tombstone of its own (a hold whose
 * first step replaced it and whose merge is on its way must not bring it back). One `GETDEL` when the hold was the
 * only one; the other holds are written back, expiring after the longest of them from now. With KEYS[2], one more
 * command bumps the epoch (a release changes the stamp a fill would find: see invariant 8).
 */
export const releaseHold = script<[number, string?]>(
  "cachemeReleaseHold",
  undefined,
  `${bumpEpoch("';-@' .. ARGV[1]", false)}
local v = redis.pcall('GETDEL', KEYS[1])
if type(v) == 'table' then
  redis.call('DEL', KEYS[1])
  return {0, ''}
end
if not v then return {0, ''} end
if string.sub(v, 1, 1) ~= '!' then return {0, v} end
if not string.find(v, ',', 2, true) then
  local colon = string.find(v, ':', 2, true)
  if colon and string.sub(v, colon + 1) == ARGV[1] and tonumber(string.sub(v, 2, colon - 1)) then return {1} end
  if string.sub(v, 2) == ARGV[1] then return {1} end
end
${now}
${markerLib}
local live, dead = markerParts(v, now)
local rest, found, longest = {}, false, 1
for _, e in ipairs(live) do
  if e[2] == ARGV[1] and not found then found = true else table.insert(rest, e) end
end
if #rest == 0 then
  if found then return {1} end
  return {0, ''}
end
if not found then
  for _, e in ipairs(rest) do
    if e[1] > longest then longest = e[1] end
  end
  local deadline = now + longest
  table.insert(dead, {deadline, ARGV[1], '~' .. string.format('%d', deadline) .. ':' .. ARGV[1]})
end
writeMarker(KEYS[1], rest, dead)
if found then return {1} end
return {0, ''}`
)

/**
 * KEYS[1] a stamp (or an epoch); ARGV a fresh stamp, its life in millis ("": for ever) -> the stamp that stood
 * (nil: this one was made). The lease's `SET ... NX GET` when that failed on a key of another type: the key is
 * replaced, never an error for ever (invariant 7).
 */
export const makeStamp = script<string | null>(
  "cachemeMakeStamp",
  1,
  `local kind = redis.call('TYPE', KEYS[1]).ok
if kind ~= 'string' and kind ~= 'none' then redis.call('DEL', KEYS[1]) end
if ARGV[2] ~= '' then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2], 'NX', 'GET') end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET')`
)

/** What {@link epoch} does to an epoch. */
export type EpochOp = "bump" | "hold" | "release" | "clean" | "compact"

/**
 * KEYS[1] a family's epoch; ARGV a fresh random, op ({@link EpochOp}), token (`hold`, `release`), holdMillis
 * (`hold`) -> the epoch now | nil none. `bump`, `hold` and `release` append their element (a hold and a release
 * make the epoch when missing; see `Protocol.epochHolds`); `clean` drops lapsed holds (left alone when none lapsed, nil when missing);
 * `compact` rewrites it to its live holds (after a plain `APPEND` grew it past `Protocol.epochCompactAt`).
 * On a Cluster, run before and after a change of a group's stamp (which lives on another slot): the change then
 * falls between two appends, so a fill that read the epoch before the first refuses, and a read after the second
 * verifies; a hold is listed from the first on, a release leaves it at the second.
 */
export const epoch = script<string | null>(
  "cachemeEpoch",
  1,
  `${epochLib}
local op = ARGV[2]
if op == 'clean' then return compactEpoch(KEYS[1], ARGV[1], true) end
if op == 'compact' then return compactEpoch(KEYS[1], ARGV[1], false) end
local element = ';*' .. ARGV[1]
if op == 'hold' then
  local t = redis.call('TIME')
  local ms = math.min(tonumber(ARGV[4]) or ${maxHoldMillis}, ${maxHoldMillis})
  element = ';' .. string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + ms) .. '@' .. ARGV[3]
elseif op == 'release' then element = ';-@' .. ARGV[3] end
appendEpoch(KEYS[1], element, ARGV[1], op == 'bump')
return redis.pcall('GET', KEYS[1])`
)

/**
 * KEYS[1] entry; ARGV fill token, stamps line as read, stamps line to write -> 1 rewritten | 0 the record changed
 * (another fill, an invalidation): left alone. After a read verified the stamps of a value's groups, the record
 * takes the epochs that read saw (see `Protocol.verified`).
 */
export const reepoch = script<number>(
  "cachemeReepoch",
  1,
  `local rec = redis.pcall('GET', KEYS[1])
if type(rec) ~= 'string' or not ${isOurs("rec")} then return 0 end
local state = ${stateOf("rec")}
if state ~= 'V' and state ~= 'S' then return 0 end
local a = string.find(rec, '\\n', ${lua.body}, true)
if not a then return 0 end
local b = string.find(rec, '\\n', a + 1, true)
if not b then return 0 end
if string.sub(rec, ${lua.body}, a - 1) ~= ARGV[1] or string.sub(rec, b + 1, b + #ARGV[2]) ~= ARGV[2] then return 0 end
local after = string.sub(rec, b + #ARGV[2] + 1, b + #ARGV[2] + 1)
if after ~= '\\n' then return 0 end
if #ARGV[2] == #ARGV[3] then
  redis.call('SETRANGE', KEYS[1], b, ARGV[3])
else
  redis.call('SET', KEYS[1], string.sub(rec, 1, b) .. ARGV[3] .. string.sub(rec, b + #ARGV[2] + 1), 'KEEPTTL')
end
return 1`
)

/** KEYS[1] entry -> {record or false, pttl} (a key of another type: {false, pttl, type}). */
export const inspect = script<[string | null, number, string?]>(
  "cachemeInspect",
  1,
  `local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return false end
local pttl = redis.call('PTTL', KEYS[1])
if kind ~= 'string' then return {false, pttl, kind} end
return {redis.call('GET', KEYS[1]), pttl}`
)

/**
 * KEYS the keys to read -> {value or false, pttl} per key, flattened (a key of another type reads as false). Run by
 * the tiered store on its tracking connection only: Redis tracks the keys a script reads for the connection that
 * runs it (Redis 7), and the remaining life lets a local copy expire with its key. Not in {@link all}.
 */
export const trackedRead = script<Array<string | number | null>>(
  "cachemeTrackedRead",
  undefined,
  `local out = {}
for i = 1, #KEYS do
  local v = redis.pcall('GET', KEYS[i])
  if type(v) ~= 'string' then v = false end
  out[2 * i - 1] = v
  out[2 * i] = redis.call('PTTL', KEYS[i])
end
return out`
)

export const all: ReadonlyArray<Script<unknown>> = [
  lease,
  fill,
  renew,
  release,
  dropStamp,
  invalidateKey,
  invalidateStamp,
  reclaim,
  mergeHold,
  releaseHold,
  makeStamp,
  epoch,
  reepoch,
  inspect
]
