/**
 * The store protocol's vocabulary, in one place: how keys are named, what an entry record and a stamp hold, and
 * how a record is judged against the stamps of its sets. Both stores (Redis and in process) and the admin read
 * records through this module; the Lua scripts take their offsets from it.
 *
 * ## The model
 *
 * - A **stamp** is a small string per membership set (a group `g:...` or a tag `t:...`) at `prefix~s:set`. It
 *   names the set's current *incarnation*: a random id, with a soft generation after a dot (`id.3`). A hard
 *   invalidation deletes the stamp; a soft one bumps the generation; a hold replaces it with a hold marker
 *   (`!token,token`) that expires by itself.
 * - An **entry** is a string record at `prefix + key`: a fixed-width header (state, lease, freshness) and, for a
 *   value, the sets it belongs to and the stamps those sets had *before its load started*.
 * - A record is **valid** only while every recorded stamp equals the set's current stamp. A missing stamp never
 *   equals anything, so an invalidation is one command on one key, and nothing (an interleaving, a lost
 *   message, an evicted key) can make an entry outlive an invalidation of any of its sets: entries, stamps and
 *   indexes may each be evicted, and every eviction only turns a hit into a miss.
 * - An **index** (`prefix~m:set`, a sorted set) lists the entries filled under a set, one member per filled
 *   incarnation (`fillToken + key`), scored by the entry's end of life. It is bookkeeping only (counts, the
 *   admin, reclaiming the memory of invalidated entries): correctness never reads it.
 *
 * ## Value groups
 *
 * A node may name groups from its loaded value (`invalidatedByValue`): they are unknown before the load, so no
 * lookup can read their stamps before it starts. Each such group belongs to a **family** (its key's part before
 * the first `:`), and each family has an **epoch**: a pseudo-set `e:family` whose "stamp" every invalidation and
 * hold of any group of the family replaces, in the same step as the group's own stamp (when the epoch exists).
 * The node lists the epochs of the families its value may name among its sets, so:
 *
 * - its lookup reads them in the same round trip as its other stamps, its lease makes them when missing, and its
 *   load records them like any stamp;
 * - the fill refuses the value when one of those epochs moved since (some group of the family changed during
 *   the load), and otherwise reads (or makes) the stamps of the groups the value names and records them after
 *   the others: they are the stamps those groups had when the load started, since none of them changed since;
 * - a read serves such an entry in its one round trip while the epochs it recorded are current (no group of the
 *   family changed since its stamps were recorded); when one moved, it reads the stamps of the value's groups
 *   (a second round trip) and judges the entry on them, and when they are all still current it records the
 *   epochs it read (a rewrite of the record's stamps, after the answer), so that the next read is one round trip
 *   again.
 */
import { randomBytes } from "node:crypto"
import type { EntryInfo, Lookup, Sets, View } from "../CacheStore.ts"
import { isEpochSet, isTagSet } from "./keys.ts"

// ---------------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------------

/** The character that separates protocol keys (stamps, indexes) from entries under the prefix. */
export const setMarker = "~"

/** Where the stamp of a set lives, under the prefix. */
export const stampKey = (prefix: string, set: string): string => `${prefix}${setMarker}s:${set}`

/** Where the index of a set lives, under the prefix. */
export const indexKey = (prefix: string, set: string): string => `${prefix}${setMarker}m:${set}`

/**
 * Where the tiered store's heartbeats live, under the prefix: one short-lived key per heartbeat, named by the
 * process, its channel session and a counter (`prefix~h:process:session:n`). Nothing but its own process reads one.
 */
export const heartbeatPrefix = (prefix: string, process: string, session: number): string =>
  `${prefix}${setMarker}h:${process}:${session}:`

// ---------------------------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------------------------

/** Every token (lease, fill) has this many characters, so a record's header has a fixed width. */
export const tokenLength = 16

const processPart = randomBytes(6).toString("base64url") // 8 characters
let tokenCounter = 0

/** A token unique to this process and call: 8 characters of the process, 8 of a counter. */
export const newToken = (): string => processPart + (tokenCounter++).toString(36).padStart(8, "0").slice(-8)

/** A caller's token in its fixed-width form (tokens from {@link newToken} are already; shorter ones are padded). */
export const fixedToken = (token: string): string => {
  if (token.length > tokenLength) throw new Error(`a lease token has at most ${tokenLength} characters: ${token}`)
  return token.length === tokenLength ? token : token.padEnd(tokenLength, "-")
}

/** A fresh stamp incarnation (11 characters of base64url: never a `.`, `,`, `!` or a newline). */
export const newStamp = (): string => randomBytes(8).toString("base64url")

// ---------------------------------------------------------------------------------------------------------------
// Stamps
// ---------------------------------------------------------------------------------------------------------------

/**
 * How long a stamp made by a load lives (`undefined`: for ever) when its entry lives `lifeMillis`. A group's: twice
 * that, so that entries
 * filled later under the same stamp mostly live out their own life (one that outlives it becomes a miss). Stamps
 * of tags, and of entries without expiry, live for ever (tags are few; a failed load drops the stamps it made).
 */
export const stampLifeMillis = (set: string, lifeMillis: number | undefined): number | undefined =>
  isTagSet(set) || isEpochSet(set) || lifeMillis === undefined ? undefined : 2 * lifeMillis

/**
 * Whether a release (a failed or unstorable load) drops a stamp its lease created. A tag's never goes: tags are
 * few, and another lease may have recorded the stamp meanwhile, whose fill dropping it would kill (a node's
 * first batch lost every fill after one key that was not stored). A group's does, so that failed loads of per-row
 * groups leave nothing behind; the same race then costs another entry of that group one reload, never a stale
 * value.
 */
export const dropsOnRelease = (set: string): boolean => !isTagSet(set) && !isEpochSet(set)

/** The first character of a hold marker. */
export const holdMark = "!"

/**
 * One hold in a Redis hold marker: `<holdMillis>:<token>` (the marker is `!` then holds joined by `,`; see
 * `store/scripts.ts`). A marker is written back, when other holds are merged in or one is released, expiring after
 * its longest hold.
 */
export const holdElement = (token: string, holdMillis: number): string => `${holdMillis}:${token}`

/**
 * Whether a stamp is a hold marker, or an epoch that lists a hold (see {@link epochHolds}): a write is committing,
 * nothing loaded now may be stored. Stamps never hold a `;`.
 */
export const isHold = (stamp: string): boolean =>
  stamp.startsWith(holdMark) || (stamp.indexOf(";") !== -1 && epochHolds(stamp).holds.size > 0)

// ---------------------------------------------------------------------------------------------------------------
// Epochs
// ---------------------------------------------------------------------------------------------------------------

/**
 * A family's epoch is a log that every change of its groups appends to (Redis `APPEND`: one plain command, atomic,
 * and it makes the epoch when it is missing): a base (a random) then elements, each after a `;`:
 * - `+<millis>@<token>`: a hold of one of its groups, its deadline not yet counted (the next compaction counts it
 *   from its own clock: later than the true one, never earlier);
 * - `<deadline>@<token>`: a hold with its deadline (the store's clock, millis);
 * - `-@<token>`: that hold released;
 * - `*<random>`: another change (an invalidation of one of its groups).
 * Any append makes another value, so a load that recorded the epoch before it sees it moved. An epoch that lists a
 * hold not released reads as **held** ({@link isHold}): a load whose lookup or lease saw it is returned and not
 * stored, and nobody joins it. That is what keeps a hold that lapses (its writer committed, then crashed: no release
 * ever comes) from letting a load that read the row before the COMMIT be stored under a value-named group: the
 * lapse changes nothing in the store, but the epoch the load recorded said a hold was live (invariant 8 in
 * docs/concepts.md). A {@link compactEpoch} (a lease that finds the epoch held, or an epoch grown past
 * {@link epochCompactAt} characters) drops released and lapsed holds and the other elements, and counts deadlines.
 * Its Lua twin is `compactEpoch` in `store/scripts.ts`.
 */
export const epochCompactAt = 256

/** Holds last at most this long in the store (a longer one is cut to it: the writer then invalidates again). */
export const maxHoldMillis = 60 * 60 * 1000

/**
 * Why a hold's token cannot be used (`undefined`: it can): the markers and the epoch's log separate their parts
 * with these characters, so a token holding one could read as another hold, or as its own release.
 */
export const badHoldToken = (token: string): string | undefined =>
  token.length === 0
    ? "a hold's token cannot be empty"
    : /[;@,:!~\s]/.test(token)
      ? `a hold's token cannot hold ';', '@', ',', ':', '!', '~' or white space: ${JSON.stringify(token.slice(0, 64))}`
      : undefined

/** The element of an epoch that a hold appends. */
export const epochHoldElement = (token: string, holdMillis: number): string =>
  `;+${Math.min(holdMillis, maxHoldMillis)}@${token}`

/** The element of an epoch that a hold appends where the store's clock is at hand (its deadline counted). */
export const epochHoldElementUntil = (token: string, deadline: number): string => `;${deadline}@${token}`

/** The element of an epoch that a release appends. */
export const epochReleaseElement = (token: string): string => `;-@${token}`

/** The element of an epoch that another change appends. */
export const epochBumpElement = (fresh: string): string => `;*${fresh}`

/**
 * The holds an epoch lists and that were not released: token -> deadline, the uncounted ones counted from `now`
 * (without `now`, 0: for parsing only); `relative` says whether there were uncounted ones. Pure parsing: a hold whose
 * deadline passed is still listed until a compaction drops it.
 */
export const epochHolds = (
  epoch: string,
  now = 0
): { readonly holds: Map<string, number>; readonly relative: boolean } => {
  const holds = new Map<string, number>()
  let relative = false
  let at = epoch.indexOf(";")
  while (at !== -1) {
    const next = epoch.indexOf(";", at + 1)
    const element = epoch.slice(at + 1, next === -1 ? undefined : next)
    at = next
    const sep = element.indexOf("@")
    if (sep === -1) continue
    const token = element.slice(sep + 1)
    const head = element.slice(0, sep)
    // In order: a release ends the holds of its token before it, not a hold made again after it.
    if (head === "-") {
      holds.delete(token)
      continue
    }
    if (head.startsWith("+")) relative = true
    const written = head.startsWith("+") ? Number(head.slice(1)) : Number(head)
    const deadline = head.startsWith("+") ? now + Math.min(written, maxHoldMillis) : written
    // What is no number was not written by a store (forged, broken): no hold. One too far away is dropped at
    // compaction (a clock that went back).
    if (!Number.isFinite(written)) continue
    holds.set(token, Math.max(holds.get(token) ?? Number.NEGATIVE_INFINITY, deadline))
  }
  return { holds, relative }
}

/**
 * An epoch compacted at `now` (the store's clock): a fresh base and the holds still live, each with its deadline
 * (uncounted ones counted from `now`; one further than {@link maxHoldMillis} away is dropped). With
 * `onlyIfLapsed`, an epoch where no hold needed dropping or counting is returned as it is.
 */
export const compactEpoch = (epoch: string, now: number, fresh: string, onlyIfLapsed = false): string => {
  const { holds, relative } = epochHolds(epoch, now)
  let changed = relative
  let value = fresh
  for (const [token, deadline] of holds) {
    // A deadline further than the longest hold from now was written by no store (forged, or a clock that went
    // back that far): no hold, like one that lapsed.
    if (deadline <= now || deadline > now + maxHoldMillis) {
      changed = true
      continue
    }
    value += `;${deadline}@${token}`
  }
  return onlyIfLapsed && !changed ? epoch : value
}

/** The incarnation of a stamp, without its soft generation. */
export const incarnation = (stamp: string): string => {
  const dot = stamp.indexOf(".")
  return dot === -1 ? stamp : stamp.slice(0, dot)
}

// ---------------------------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------------------------

/** The version of the record format: a record of another format is foreign (a miss, then overwritten). */
export const format = "2"

/**
 * A record's state: `L` a lease only (a load under way, no value), `V` a value, `S` a value invalidated softly
 * (served as stale by nodes that allow it).
 */
export type RecordState = "L" | "V" | "S"

/** Offsets (0-based) of the header's fields; the Lua scripts use them 1-based. */
export const offsets = {
  format: 0,
  state: 1,
  /** Lease expiry in server millis (13 digits, zeros: none); leases inside value records only. */
  leaseUntil: 2,
  leaseToken: 15,
  /** Fresh until, in millis since the epoch (13 digits, zeros: for ever). */
  freshUntil: 15 + tokenLength,
  body: 15 + tokenLength + 13
} as const

const zeros13 = "0000000000000"
const noToken = "-".repeat(tokenLength)
const digits13 = (n: number) => (n <= 0 ? zeros13 : String(Math.floor(n)).padStart(13, "0"))

/** The record of a lease without a value, held until `leaseUntil` (millis since the epoch, by the holder's clock). */
export const leaseRecord = (token: string, leaseUntil: number): string =>
  `${format}L${digits13(leaseUntil)}${token}${zeros13}`

/** The lease-expiry field of a header, as written by a renewal. */
export const leaseUntilField = (leaseUntil: number): string => digits13(leaseUntil)

/**
 * How far apart two machines' clocks may be for a lookup to trust a lease's expiry: a lease that seems to end
 * sooner than this ago, or later than `leaseMillis` plus this from now, is not reported as held (the lease script,
 * on the server's clock and the key's own expiry, then decides).
 */
const clockSkewMillis = 1000

const leaseIsLive = (leaseUntil: number, now: number, leaseMillis: number) =>
  leaseUntil + clockSkewMillis > now && leaseUntil <= now + leaseMillis + clockSkewMillis

/** What a value record holds besides its header. */
export interface Body {
  /** The token of the lease that filled it: with the key, it names this incarnation of the entry. */
  readonly fillToken: string
  /** The sets, as JSON (compared as a string on the hit path). */
  readonly setsJson: string
  /** The stamps recorded for the sets, in order, joined by `,`. */
  readonly stamps: string
  readonly value: string
}

/** The record of a value. */
export const valueRecord = (freshUntil: number | undefined, body: Body): string =>
  `${valueRecordHead(freshUntil, body)}\n${body.value}`

/** A value record up to its last stamp (a fill that adds the stamps of its value's groups ends it). */
export const valueRecordHead = (freshUntil: number | undefined, body: Omit<Body, "value">): string =>
  `${format}V${zeros13}${noToken}${freshUntil === undefined ? zeros13 : digits13(Math.max(1, freshUntil))}${body.fillToken}\n${body.setsJson}\n${body.stamps}`

/** A record as read back. */
export type Parsed =
  | { readonly _tag: "Foreign" }
  | { readonly _tag: "Lease"; readonly holder: string; readonly leaseUntil: number }
  | {
      readonly _tag: "Value"
      readonly soft: boolean
      /** The holder of a refresh lease on this value, if the header names one (its expiry is the script's to judge). */
      readonly holder: string | undefined
      readonly leaseUntil: number
      /** `undefined`: fresh for ever. */
      readonly freshUntil: number | undefined
      readonly body: Body
    }

export const parse = (record: string): Parsed => {
  if (record.charCodeAt(0) !== 50 /* "2" */ || record.length < offsets.body) return { _tag: "Foreign" }
  const state = record[offsets.state]
  if (state === "L") {
    return {
      _tag: "Lease",
      holder: record.slice(offsets.leaseToken, offsets.freshUntil),
      leaseUntil: Number(record.slice(offsets.leaseUntil, offsets.leaseToken)) || 0
    }
  }
  if (state !== "V" && state !== "S") return { _tag: "Foreign" }
  const first = record.indexOf("\n", offsets.body)
  const second = first === -1 ? -1 : record.indexOf("\n", first + 1)
  const third = second === -1 ? -1 : record.indexOf("\n", second + 1)
  if (third === -1) return { _tag: "Foreign" }
  const leaseUntil = Number(record.slice(offsets.leaseUntil, offsets.leaseToken))
  const freshUntil = Number(record.slice(offsets.freshUntil, offsets.body))
  return {
    _tag: "Value",
    soft: state === "S",
    holder: leaseUntil === 0 ? undefined : record.slice(offsets.leaseToken, offsets.freshUntil),
    leaseUntil,
    freshUntil: freshUntil === 0 ? undefined : freshUntil,
    body: {
      fillToken: record.slice(offsets.body, first),
      setsJson: record.slice(first + 1, second),
      stamps: record.slice(second + 1, third),
      value: record.slice(third + 1)
    }
  }
}

/** Sets as a record writes them (JSON), parsed; an unreadable list is no sets. */
export const parseSets = (json: string): ReadonlyArray<string> => {
  try {
    const sets = JSON.parse(json)
    return Array.isArray(sets) ? sets.filter((set): set is string => typeof set === "string") : []
  } catch {
    return []
  }
}

/** The sets of a record. */
export const setsOf = (body: Body): ReadonlyArray<string> => parseSets(body.setsJson)

/** The stamp a record recorded for `set`, if it lists the set. */
export const recordedStamp = (body: Body, set: string): string | undefined => {
  const index = setsOf(body).indexOf(set)
  return index === -1 ? undefined : body.stamps.split(",")[index]
}

/** The member of a set's index that stands for one filled incarnation of an entry. */
export const indexMember = (fillToken: string, key: string): string => fillToken + key

/** The fill token and the entry key an index member names; `undefined` for a string that is no member of ours. */
export const memberParts = (member: string): { readonly fillToken: string; readonly key: string } | undefined =>
  member.length > tokenLength ? { fillToken: member.slice(0, tokenLength), key: member.slice(tokenLength) } : undefined

/**
 * How many leading characters of a record name its incarnation: the header, then the fill token of a value
 * (`GETRANGE key 0 incarnationLength - 1` reads them without the value).
 */
export const incarnationLength = offsets.body + tokenLength

/**
 * Whether `head` (the first {@link incarnationLength} characters of the record at an entry's key, `""` for none)
 * is the value, live or softly invalidated, that `fillToken` filled. Once false for a fill token it stays false:
 * fill tokens are never used twice, a refresh or a refill writes another token, and a lease record holds none.
 */
export const holdsIncarnation = (head: string, fillToken: string): boolean =>
  head.length === incarnationLength &&
  head.charCodeAt(offsets.format) === 50 /* "2" */ &&
  (head[offsets.state] === "V" || head[offsets.state] === "S") &&
  head.endsWith(fillToken)

// ---------------------------------------------------------------------------------------------------------------
// Judging a record
// ---------------------------------------------------------------------------------------------------------------

/**
 * How the stamps a record recorded compare with the sets' current stamps:
 * - `Current`: all equal;
 * - `Soft`: same incarnations, some generation moved (a soft invalidation): usable as a stale value;
 * - `Dead`: some set was invalidated hard, held, evicted, or the record lists other sets;
 * - `Verify`: the record lists groups named by its value, and the epoch of one of their families moved since they
 *   were recorded: only their own stamps can tell (see {@link verified}).
 */
export type StampCheck = "Current" | "Soft" | "Dead" | "Verify"

/**
 * Compares recorded stamps with current ones, position by position. With the sets' `names`, the positions of
 * epochs are not judged (an epoch is no stamp of the entry: it only tells whether the value's groups must be
 * read); whether one of them moved is reported as `moved`.
 */
const compare = (
  recorded: ReadonlyArray<string>,
  current: ReadonlyArray<string | null>,
  names: ReadonlyArray<string> | undefined
): { readonly check: "Current" | "Soft" | "Dead"; readonly moved: boolean } => {
  let soft = false
  let moved = false
  for (let i = 0; i < current.length; i++) {
    const now = current[i]
    const then = recorded[i]!
    if (names !== undefined && i < names.length && isEpochSet(names[i]!)) {
      if (now !== then) moved = true
      continue
    }
    if (now === null || now === undefined || isHold(now)) return { check: "Dead", moved }
    if (now === then) continue
    if (incarnation(now) !== incarnation(then)) return { check: "Dead", moved }
    soft = true
  }
  return { check: soft ? "Soft" : "Current", moved }
}

/**
 * Whether a record's sets (`recordJson`) are the lookup's sets followed by groups its value named: the lookup's
 * JSON without its closing `]`, then `,`.
 */
const extendsSets = (recordJson: string, json: string): boolean =>
  recordJson.length > json.length &&
  recordJson.charCodeAt(json.length - 1) === 44 /* , */ &&
  recordJson.startsWith(json.slice(0, -1))

export const checkStamps = (
  body: Body,
  sets: Sets,
  current: ReadonlyArray<string | null>,
  joined: string | undefined
): StampCheck => {
  if (body.setsJson !== sets.json) {
    if (!sets.open || !extendsSets(body.setsJson, sets.json)) return "Dead"
    // Groups named by the value follow the lookup's sets: judged here on the lookup's stamps, and read only when
    // an epoch moved.
    const recorded = body.stamps.split(",")
    if (recorded.length !== parseSets(body.setsJson).length) return "Dead"
    const { check, moved } = compare(recorded, current, sets.names)
    return check === "Dead" ? "Dead" : moved ? "Verify" : check
  }
  if (joined !== undefined && body.stamps === joined) return "Current"
  const recorded = current.length === 0 ? [] : body.stamps.split(",")
  if (recorded.length !== current.length) return "Dead"
  // Without groups named by the value, an epoch says nothing about this entry.
  return compare(recorded, current, sets.open ? sets.names : undefined).check
}

/** The stamps as they are joined in a record, or `undefined` if one is missing or held (nothing can match). */
export const joinStamps = (stamps: ReadonlyArray<string | null>): string | undefined => {
  let joined = ""
  for (let i = 0; i < stamps.length; i++) {
    const stamp = stamps[i]
    if (stamp === null || stamp === undefined || isHold(stamp)) return undefined
    joined = i === 0 ? stamp : `${joined},${stamp}`
  }
  return joined
}

// ---------------------------------------------------------------------------------------------------------------
// What the admin sees
// ---------------------------------------------------------------------------------------------------------------

/**
 * How fresh a stored value is.
 *
 * - `Forever`: fresh until invalidated;
 * - `Until`: fresh until a time (millis since the epoch), stale after it;
 * - `Invalidated`: invalidated softly (the key, or one of its sets): stale, served only by nodes that allow it;
 * - `Dead`: one of its sets was invalidated hard (or held, or lost): never served, reclaimed or overwritten.
 */
export type Freshness =
  | { readonly _tag: "Forever" }
  | { readonly _tag: "Until"; readonly until: number }
  | { readonly _tag: "Invalidated" }
  | { readonly _tag: "Dead" }

/**
 * The hit path: the value of `record` if it is a fresh value whose recorded sets and stamps are exactly `setsJson`
 * and `stamps`, compared in place (no parsing, no allocation but the value); `undefined` for anything else,
 * which {@link judge} then looks at in full.
 */
export const freshValue = (
  record: string | null,
  setsJson: string,
  stamps: ReadonlyArray<string | null>,
  now: number,
  /** The sets are open (`Sets.open`): the record may list groups named by its value after them. */
  open = false
): string | undefined => {
  if (record === null || record.charCodeAt(offsets.format) !== 50 || record.charCodeAt(offsets.state) !== 86) {
    return undefined
  }
  if (!record.startsWith(zeros13, offsets.freshUntil)) {
    const freshUntil = Number(record.slice(offsets.freshUntil, offsets.body))
    if (!(freshUntil > now)) return undefined
  }
  const fillEnd = record.indexOf("\n", offsets.body)
  if (fillEnd === -1) return undefined
  if (open) return freshOpen(record, fillEnd, setsJson, stamps)
  if (!record.startsWith(setsJson, fillEnd + 1)) return undefined
  let at = fillEnd + 1 + setsJson.length
  if (record.charCodeAt(at) !== 10) return undefined
  at++
  for (let i = 0; i < stamps.length; i++) {
    const stamp = stamps[i]
    // A hold marker is no stamp: a value recorded under one (filled during the hold) is never fresh.
    if (stamp === null || stamp === undefined || stamp.charCodeAt(0) === 33 || !record.startsWith(stamp, at))
      return undefined
    at += stamp.length
    if (record.charCodeAt(at) !== (i === stamps.length - 1 ? 10 : 44)) return undefined
    at++
  }
  if (stamps.length === 0) {
    if (record.charCodeAt(at) !== 10) return undefined
    at++
  }
  return record.slice(at)
}

/**
 * {@link freshValue} for open sets: the record's sets may go on after the lookup's with groups named by the
 * value, whose stamps follow the lookup's; those are current when every stamp the lookup read (its epochs
 * included) is the one recorded.
 */
const freshOpen = (
  record: string,
  fillEnd: number,
  setsJson: string,
  stamps: ReadonlyArray<string | null>
): string | undefined => {
  const head = setsJson.length - 1
  if (!record.startsWith(setsJson.slice(0, head), fillEnd + 1)) return undefined
  let at = fillEnd + 1 + head
  const more = record.charCodeAt(at) === 44
  if (more) {
    at = record.indexOf("\n", at)
    if (at === -1) return undefined
  } else if (record.charCodeAt(at) !== 93 /* ] */ || record.charCodeAt(at + 1) !== 10) return undefined
  else at++
  at++
  for (let i = 0; i < stamps.length; i++) {
    const stamp = stamps[i]
    if (stamp === null || stamp === undefined || stamp.charCodeAt(0) === 33 || !record.startsWith(stamp, at))
      return undefined
    at += stamp.length
    if (record.charCodeAt(at) !== (i === stamps.length - 1 && !more ? 10 : 44)) return undefined
    at++
  }
  if (more) {
    at = record.indexOf("\n", at)
    if (at === -1) return undefined
    at++
  }
  return record.slice(at)
}

/**
 * Judges what a lookup read: the record at the key and the current stamps of the entry's sets. Shared by both
 * stores (the in-process one stores the same records).
 */
export const judge = (
  record: string | null,
  sets: Sets,
  stamps: ReadonlyArray<string | null>,
  now: number,
  leaseMillis = Number.POSITIVE_INFINITY
): Judged => {
  const fresh = freshValue(record, sets.json, stamps, now, sets.open === true)
  if (fresh !== undefined) return { _tag: "Hit", value: fresh }
  const held = stamps.some((stamp) => stamp !== null && isHold(stamp))
  if (record === null) return { _tag: "Miss", view: { stamps, seen: "", present: false, holder: undefined, held } }
  const parsed = parse(record)
  switch (parsed._tag) {
    case "Foreign":
      return { _tag: "Miss", view: { stamps, seen: "", present: true, holder: undefined, held } }
    case "Lease": {
      const holder = leaseIsLive(parsed.leaseUntil, now, leaseMillis) ? parsed.holder : undefined
      return { _tag: "Miss", view: { stamps, seen: "", present: true, holder, held } }
    }
    case "Value": {
      const check = checkStamps(parsed.body, sets, stamps, joinStamps(stamps))
      if (check === "Verify") {
        const groups = parseSets(parsed.body.setsJson).slice(sets.names.length)
        return { _tag: "Verify", record: parsed, sets, stamps, groups, leaseMillis }
      }
      return valueLookup(parsed, check, stamps, held, now, leaseMillis)
    }
  }
}

/** What a value record comes to, once its stamps are judged. */
const valueLookup = (
  parsed: Extract<Parsed, { readonly _tag: "Value" }>,
  check: "Current" | "Soft" | "Dead",
  stamps: ReadonlyArray<string | null>,
  held: boolean,
  now: number,
  leaseMillis: number
): Lookup => {
  const fresh = parsed.freshUntil === undefined || parsed.freshUntil > now
  if (check === "Current" && !parsed.soft && fresh) return { _tag: "Hit", value: parsed.body.value }
  const view: View = {
    stamps,
    seen: parsed.body.fillToken,
    present: true,
    holder: parsed.holder !== undefined && leaseIsLive(parsed.leaseUntil, now, leaseMillis) ? parsed.holder : undefined,
    held
  }
  if (check === "Dead") return { _tag: "Miss", view }
  const staleFor = parsed.freshUntil === undefined ? 0 : Math.max(0, now - parsed.freshUntil)
  return { _tag: "Stale", value: parsed.body.value, view, staleFor }
}

/**
 * A lookup that cannot judge its record alone: the record lists groups named by its value, and an epoch of their
 * families moved since they were recorded. The store reads the current stamps of `groups` (the record's sets
 * beyond the lookup's, in order) and hands them to {@link verified}.
 */
export interface Verify {
  readonly _tag: "Verify"
  readonly record: Extract<Parsed, { readonly _tag: "Value" }>
  readonly sets: Sets
  /** The stamps the lookup read (of `sets`). */
  readonly stamps: ReadonlyArray<string | null>
  readonly groups: ReadonlyArray<string>
  /** The lease horizon the lookup was judged with. */
  readonly leaseMillis: number
}

/** What {@link judge} makes of a lookup's reads. */
export type Judged = Lookup | Verify

/** A rewrite of a record's stamps after a verification: the epochs it recorded become the ones read. */
export interface Reepoch {
  readonly fillToken: string
  /** The stamps line the record holds now (the rewrite applies only to that record, unchanged). */
  readonly from: string
  readonly to: string
}

/**
 * Judges a record that needed its value's groups read ({@link Verify}), given their current stamps (`null`:
 * none). The lookup's epochs are not judged (they only said the groups must be read); every other stamp is, the
 * groups' included. When every stamp is current and every epoch the lookup read exists, `reepoch` rewrites the
 * record's epochs to those, so that the next read is one round trip: safe because the lookup read the epochs
 * before the groups' stamps were read, so any change of those stamps after that read moves an epoch again.
 */
export const verified = (
  verify: Verify,
  groupStamps: ReadonlyArray<string | null>,
  now: number
): { readonly lookup: Lookup; readonly reepoch: Reepoch | undefined } => {
  const { record, sets, stamps, leaseMillis } = verify
  const recorded = record.body.stamps.split(",")
  const { check } = compare(recorded, [...stamps, ...groupStamps], sets.names)
  const held = stamps.some((stamp) => stamp !== null && isHold(stamp))
  const lookup = valueLookup(record, check, stamps, held, now, leaseMillis)
  if (check !== "Current") return { lookup, reepoch: undefined }
  const to = recorded.slice()
  for (let i = 0; i < sets.names.length; i++) {
    if (!isEpochSet(sets.names[i]!)) continue
    const epoch = stamps[i]
    // A held epoch is never recorded (it says a load now may not be stored; a read judges the groups' stamps).
    if (epoch === null || epoch === undefined || isHold(epoch)) return { lookup, reepoch: undefined }
    to[i] = epoch
  }
  const line = to.join(",")
  return {
    lookup,
    reepoch:
      line === record.body.stamps ? undefined : { fillToken: record.body.fillToken, from: record.body.stamps, to: line }
  }
}

/**
 * A record with its stamps line replaced, if it is still the record a {@link Reepoch} was made from (same fill,
 * same stamps); `undefined` otherwise.
 */
export const reepochRecord = (record: string, reepoch: Reepoch): string | undefined => {
  const parsed = parse(record)
  if (parsed._tag !== "Value" || parsed.body.fillToken !== reepoch.fillToken || parsed.body.stamps !== reepoch.from)
    return undefined
  const first = record.indexOf("\n", offsets.body)
  const second = record.indexOf("\n", first + 1)
  return `${record.slice(0, second + 1)}${reepoch.to}${record.slice(second + 1 + reepoch.from.length)}`
}

/** What the admin sees of a value record, given the current stamps of its sets. */
export const describe = (
  key: string,
  parsed: Extract<Parsed, { readonly _tag: "Value" }>,
  sets: ReadonlyArray<string>,
  stamps: ReadonlyArray<string | null>,
  ttlMillis: number | undefined,
  now: number
): EntryInfo => {
  // Every stamp is at hand, the value's groups' included: epochs are not judged.
  const recorded = sets.length === 0 ? [] : parsed.body.stamps.split(",")
  const check =
    parsed.body.setsJson !== JSON.stringify(sets) || recorded.length !== stamps.length
      ? "Dead"
      : compare(recorded, stamps, sets).check
  const freshness: Freshness =
    check === "Dead"
      ? { _tag: "Dead" }
      : check === "Soft" || parsed.soft
        ? { _tag: "Invalidated" }
        : parsed.freshUntil === undefined
          ? { _tag: "Forever" }
          : { _tag: "Until", until: parsed.freshUntil }
  return {
    key,
    value: parsed.body.value,
    freshness,
    ttlMillis,
    leased: parsed.holder !== undefined && parsed.leaseUntil > now,
    sets: sets.filter((set) => !isEpochSet(set))
  }
}
