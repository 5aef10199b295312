/**
 * The in-process store. It keeps the same records, stamps and indexes as the Redis store (see
 * `internal/protocol.ts`), each operation one synchronous step, so both stores keep one protocol and pass one
 * contract suite. Entries sit in one `Map`, evicted by CLOCK (LRU with a second chance: a hit marks its entry,
 * eviction takes the oldest unmarked one and gives marked ones another round), so a hit writes one flag and moves
 * nothing; evicting an entry only turns a hit into a miss. Expiry is checked lazily against Effect's `Clock`.
 *
 * A hit keeps the entry's value decoded in the entry itself (its `ValueCell`, filled by `Memo`), and the record
 * then drops its JSON when the cell gives it back exactly: a hit of the node that filled the cell costs no
 * parsing, and an entry holds its value once, not twice.
 */
import { type Clock, Effect, type Scope } from "effect"
import {
  type CacheStore,
  CacheStoreError,
  type Fill,
  type Hit,
  type Lookup,
  type Leasing,
  type LookupRequest,
  type Mode,
  type Sets,
  type ValueCell,
  type View
} from "../CacheStore.ts"
import { CachemeConfig } from "../CachemeConfig.ts"
import { compileGlob } from "../internal/glob.ts"
import { epochOfSet, isEpochSet } from "../internal/keys.ts"
import * as Notices from "../internal/notices.ts"
import * as Codec from "../internal/codec.ts"
import * as Protocol from "../internal/protocol.ts"
import type { Node } from "../Node.ts"

/**
 * Options of the in-process store.
 *
 * @category models
 * @since 0.1.0
 */
export interface MemoryOptions {
  /** The most entries kept; the least recently used go first (CLOCK, LRU with a second chance; default 10,000). */
  readonly maxEntries?: number | undefined
  /** Overrides `CachemeConfig`'s prefix (shown by the admin; the store keeps its keys to itself). */
  readonly prefix?: string | undefined
}

/** A stamp with its expiry (millis since the epoch; `Infinity`: none). */
interface Slot {
  value: string
  expiresAt: number
}

/** Where the stored value starts in a value record (after its fill token, sets and stamps lines), or -1. */
const valueStart = (record: string): number => {
  const state = record.charCodeAt(Protocol.offsets.state)
  if (record.charCodeAt(Protocol.offsets.format) !== 50 || (state !== 86 && state !== 83)) return -1
  const first = record.indexOf("\n", Protocol.offsets.body)
  const second = first === -1 ? -1 : record.indexOf("\n", first + 1)
  const third = second === -1 ? -1 : record.indexOf("\n", second + 1)
  return third === -1 ? -1 : third + 1
}

/**
 * V8 keeps a string made by concatenation as a tree of its pieces until something flattens it into one copy,
 * which `startsWith` does: a record is stored flat, in less than half the heap. (A slice is a view that keeps the
 * whole string it was cut from: a shorter record is made by concatenation, then flattened.)
 */
const flat = (text: string): string => {
  text.startsWith("2")
  return text
}

/**
 * An entry: its key, its record, its expiry (millis since the epoch; `undefined`: none, which costs no number on
 * the heap), whether it was used since the eviction hand last passed, and the cell where `Memo` keeps its decoded
 * value (see `ValueCell`). A record changes in place only in its header (a lease, a soft invalidation, a renewal)
 * and its stamps line (a verification), never in its value: the cell holds for the entry's life, and a new value
 * is a new entry. Once the cell is filled, the record drops the stored value when the cell gives it back exactly
 * (`Codec.storedOf`): it is made again from the cell when something asks for the string (a read of another node
 * object, a stale read, the admin), and hits of the node take the cell without it. Entries are the members of the
 * indexes too (an index holds the entry itself: the incarnation its fill made, gone from the index when it goes).
 */
class Entry implements ValueCell {
  readonly key: string
  value: string
  expiresAt: number | undefined
  used = false
  decodedBy: unknown = undefined
  decoded: unknown = undefined
  constructor(key: string, value: string, expiresAt: number | undefined) {
    this.key = key
    this.value = flat(value)
    this.expiresAt = expiresAt
  }

  kept(): void {
    const record = this.value
    const at = valueStart(record)
    if (at === -1 || at === record.length) return
    if (Codec.storedOf(this.decodedBy as Node, this.decoded) !== record.slice(at)) return
    // A new record of its own: a slice would keep the whole one alive (joined, it is one flat copy).
    this.value = [record.slice(0, at - 1), "\n"].join("")
  }

  /**
   * Whether a value read from the record (`value`, its part after the stamps line) was dropped for the cell: a
   * stored value is never empty (it starts with its node's stamp), so an empty one with a filled cell was dropped.
   */
  dropped(value: string): boolean {
    return value.length === 0 && this.decodedBy !== undefined
  }

  /** The stored value, from the record or made again from the cell. */
  stored(): string {
    const record = this.value
    const at = valueStart(record)
    if (at !== record.length || this.decodedBy === undefined) return at === -1 ? "" : record.slice(at)
    return Codec.storedOf(this.decodedBy as Node, this.decoded) ?? ""
  }
}

/** A hit of an entry whose record dropped its stored value: the string is made again only if asked for. */
class KeptHit implements Hit {
  readonly _tag = "Hit"
  readonly cell: Entry
  constructor(cell: Entry) {
    this.cell = cell
  }
  get value(): string {
    return this.cell.stored()
  }
}

/** The fresh-until field of a value fresh until invalidated. */
const forever = "0".repeat(13)

/** The one stamp of a single set's hit, compared at once (never kept: a hit at once builds no view). */
const oneStamp: Array<string | null> = [null]

const isOver = (entry: Entry, now: number) => entry.expiresAt !== undefined && entry.expiresAt <= now

const noLease = `${"0".repeat(13)}${"-".repeat(Protocol.tokenLength)}`

export const makeMemoryStore = (options: MemoryOptions): Effect.Effect<CacheStore["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const maxEntries = options.maxEntries ?? 10_000
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      return yield* Effect.die(new Error(`layerMemory: maxEntries must be a whole number above 0, got ${maxEntries}`))
    }
    const prefix = options.prefix ?? (yield* CachemeConfig).prefix
    const scope = yield* Effect.scope
    const entries = new Map<string, Entry>()
    const stamps = new Map<string, Slot>()
    const indexes = new Map<string, Set<Entry>>()
    /** The size at which each index is next pruned of members whose life is over. */
    const pruneAt = new Map<string, number>()
    const minimumPrune = 64

    const withClock = <A>(f: (now: number) => A): Effect.Effect<A> =>
      Effect.clockWith((clock) => Effect.sync(() => f(clock.currentTimeMillisUnsafe())))

    const liveEntry = (key: string, now: number): Entry | undefined => {
      const entry = entries.get(key)
      if (entry !== undefined && isOver(entry, now)) {
        entries.delete(key)
        return undefined
      }
      return entry
    }

    const record = (key: string, now: number) => liveEntry(key, now)?.value
    const stamp = (set: string, now: number) => {
      const slot = stamps.get(set)
      if (slot === undefined) return null
      if (slot.expiresAt <= now) {
        stamps.delete(set)
        return null
      }
      return slot.value
    }

    const setEntry = (key: string, value: string, expiresAt: number | undefined) => {
      // The map keeps the key string it was first given: the entry keeps that one too (not a second copy).
      const entry = new Entry(entries.get(key)?.key ?? key, value, expiresAt)
      // A key written again keeps its place in the eviction order (a delete and a set would leave a hole in the
      // map's table each time: a lease then a fill doubled the table).
      entries.set(key, entry)
      while (entries.size > maxEntries) {
        // CLOCK: the oldest entry not used since the hand last passed goes, and with it its members in the
        // indexes; a used one gets a second chance at the back, unmarked. A hit only marks its entry (no move).
        const oldest = entries.values().next().value as Entry
        entries.delete(oldest.key)
        if (oldest.used) {
          oldest.used = false
          entries.set(oldest.key, oldest)
          continue
        }
        const parsed = Protocol.parse(oldest.value)
        if (parsed._tag === "Value") leaveIndexes(oldest, parsed.body)
      }
      return entry
    }

    /** Rewrites part of a record's header in place, like SETRANGE, keeping its expiry (and its value). */
    const setRange = (key: string, offset: number, text: string) => {
      const entry = entries.get(key)!
      entry.value = flat(entry.value.slice(0, offset) + text + entry.value.slice(offset + text.length))
    }

    /** A hit or stale read of `entry`, with its cell (and its stored value made again if the record dropped it). */
    const withCell = (entry: Entry, lookup: Exclude<Lookup, { readonly _tag: "Miss" }>): Lookup =>
      !entry.dropped(lookup.value)
        ? { ...lookup, cell: entry }
        : lookup._tag === "Hit"
          ? new KeptHit(entry)
          : { ...lookup, value: entry.stored(), cell: entry }

    /** The stamps of `sets` now, in order. */
    const stampsOf = (sets: Sets, now: number) => {
      const names = sets.names
      const found: Array<string | null> = new Array(names.length)
      for (let i = 0; i < names.length; i++) found[i] = stamp(names[i]!, now)
      return found
    }

    const lookupAt = (key: string, sets: Sets, now: number, leaseMillis: number | undefined): Lookup => {
      const slot = liveEntry(key, now)
      if (slot !== undefined) slot.used = true
      const judged = Protocol.judge(slot?.value ?? null, sets, stampsOf(sets, now), now, leaseMillis)
      if (judged._tag !== "Verify") {
        // The value of a hit or a stale read is the entry's: its cell goes with it.
        return slot === undefined || judged._tag === "Miss" ? judged : withCell(slot, judged)
      }
      // An epoch moved: the value's groups' own stamps decide, and when they are current the record takes the
      // epochs read (the same step here, so the next read needs no verification).
      const { lookup, reepoch } = Protocol.verified(
        judged,
        judged.groups.map((set) => stamp(set, now)),
        now
      )
      if (reepoch !== undefined && slot !== undefined) {
        const rewritten = Protocol.reepochRecord(slot.value, reepoch)
        if (rewritten !== undefined) slot.value = flat(rewritten)
      }
      return slot === undefined || lookup._tag === "Miss" ? lookup : withCell(slot, lookup)
    }

    /**
     * A fresh hit at once (`hitNow`): the entry's record compared in place with the current stamps of its sets
     * (`Protocol.freshValue`), else the full judgement; `undefined` for anything but a hit.
     */
    const hitNow = (
      key: string,
      sets: Sets,
      leaseMillis: number | undefined,
      _local: boolean | undefined,
      clock: Clock.Clock
    ): Hit | undefined => {
      const entry = entries.get(key)
      if (entry === undefined) return undefined
      // The clock is read only when something here can expire or go stale (reading it is a good share of a hit).
      let now = Number.NaN
      const time = () => {
        if (Number.isNaN(now)) now = clock.currentTimeMillisUnsafe()
        return now
      }
      if (entry.expiresAt !== undefined && entry.expiresAt <= time()) return undefined
      const names = sets.names
      const current: Array<string | null> = names.length === 1 ? oneStamp : new Array(names.length)
      for (let i = 0; i < names.length; i++) {
        const slot = stamps.get(names[i]!)
        current[i] =
          slot === undefined || (slot.expiresAt !== Number.POSITIVE_INFINITY && slot.expiresAt <= time())
            ? null
            : slot.value
      }
      const record = entry.value
      const fresh = record.startsWith(forever, Protocol.offsets.freshUntil) ? 0 : time()
      const value = Protocol.freshValue(record, sets.json, current, fresh, sets.open === true)
      if (value !== undefined) {
        entry.used = true
        return entry.dropped(value) ? new KeptHit(entry) : { _tag: "Hit", value, cell: entry }
      }
      // Not a plain fresh hit: the full judgement (it drops what expired, and verifies epochs).
      const lookup = lookupAt(key, sets, clock.currentTimeMillisUnsafe(), leaseMillis)
      return lookup._tag === "Hit" ? lookup : undefined
    }

    const lookup = (key: string, sets: Sets, leaseMillis?: number | undefined) =>
      withClock((now) => lookupAt(key, sets, now, leaseMillis))

    // One synchronous step: every request sees the same state.
    const lookupMany = (requests: ReadonlyArray<LookupRequest>, leaseMillis?: number | undefined) =>
      withClock((now) => requests.map(({ key, sets }) => lookupAt(key, sets, now, leaseMillis)))

    const lease = (
      key: string,
      token: string,
      sets: Sets,
      view: View,
      intent: "keep" | "replace",
      leaseMillis: number,
      lifeMillis?: number | undefined
    ) =>
      withClock((now): Leasing => {
        // The stamps the load records: the lookup's, and for sets that had none (or were held), the current one
        // or one made now.
        const leased = (): Leasing => {
          const created: Array<boolean> = []
          const recorded = sets.names.map((set, i) => {
            const looked = view.stamps[i] ?? null
            // A held epoch drops the holds that lapsed since: when none is left, this load may be stored.
            const seen =
              looked === null || Protocol.isHold(looked)
                ? isEpochSet(set)
                  ? cleanEpoch(set, now)
                  : stamp(set, now)
                : looked
            created.push(seen === null)
            if (seen !== null) return seen
            const fresh = Protocol.newStamp()
            const life = Protocol.stampLifeMillis(set, lifeMillis)
            stamps.set(set, { value: fresh, expiresAt: life === undefined ? Number.POSITIVE_INFINITY : now + life })
            return fresh
          })
          return { _tag: "Leased", stamps: recorded, created, held: recorded.some(Protocol.isHold) }
        }
        const take = (): Leasing => {
          setEntry(key, Protocol.leaseRecord(token, now + leaseMillis), now + leaseMillis)
          return leased()
        }
        const slot = liveEntry(key, now)
        if (slot === undefined) return take()
        const parsed = Protocol.parse(slot.value)
        switch (parsed._tag) {
          case "Foreign":
            return take()
          case "Lease": {
            const remaining = (slot.expiresAt ?? Number.POSITIVE_INFINITY) - now
            return remaining > 0 && remaining <= leaseMillis ? { _tag: "Busy", holder: parsed.holder } : take()
          }
          case "Value": {
            if (parsed.body.fillToken !== view.seen) return { _tag: "Changed" }
            if (parsed.leaseUntil > now && parsed.leaseUntil <= now + leaseMillis) {
              return { _tag: "Busy", holder: parsed.holder! }
            }
            if (intent === "replace") {
              // A dead value is replaced: its members leave the indexes.
              leaveIndexes(slot, parsed.body)
              return take()
            }
            setRange(key, Protocol.offsets.leaseUntil, Protocol.leaseUntilField(now + leaseMillis) + token)
            if (slot.expiresAt !== undefined) slot.expiresAt = Math.max(slot.expiresAt, now + leaseMillis)
            return leased()
          }
        }
      })

    /** Whether `value` is a record of ours whose lease `token` holds. */
    const leasedTo = (value: string | undefined, token: string): value is string =>
      value !== undefined &&
      Protocol.parse(value)._tag !== "Foreign" &&
      value.slice(Protocol.offsets.leaseToken, Protocol.offsets.freshUntil) === token

    /** Drops `token`'s lease at `key` if it holds it; true when it did. */
    const dropLease = (key: string, token: string, now: number): boolean => {
      const value = record(key, now)
      if (!leasedTo(value, token)) return false
      if (value[Protocol.offsets.state] === "L") entries.delete(key)
      else setRange(key, Protocol.offsets.leaseUntil, noLease)
      return true
    }

    const notices = Notices.makeNotices()

    /**
     * The stamps of the groups a value named, read (or made) now, if the fill may record them: `undefined` when
     * an epoch of the entry moved since the lease recorded it, or a group is held.
     */
    const groupStamps = (
      sets: Sets,
      recorded: ReadonlyArray<string>,
      groups: ReadonlyArray<string>,
      lifeMillis: number | undefined,
      now: number
    ): ReadonlyArray<string> | undefined => {
      for (let i = 0; i < sets.names.length; i++)
        if (isEpochSet(sets.names[i]!) && stamp(sets.names[i]!, now) !== recorded[i]) return undefined
      const found = groups.map((set) => stamp(set, now))
      if (found.some((current) => current !== null && Protocol.isHold(current))) return undefined
      return found.map((current, i) => {
        if (current !== null) return current
        const fresh = Protocol.newStamp()
        const life = Protocol.stampLifeMillis(groups[i]!, lifeMillis)
        stamps.set(groups[i]!, { value: fresh, expiresAt: life === undefined ? Number.POSITIVE_INFINITY : now + life })
        return fresh
      })
    }

    const fill = (key: string, token: string, sets: Sets, recorded: ReadonlyArray<string>, value: Fill) =>
      withClock((now) => {
        const current = record(key, now)
        if (!leasedTo(current, token)) return false
        const groups = value.groups ?? []
        const named = groups.length === 0 ? [] : groupStamps(sets, recorded, groups, value.lifeMillis, now)
        if (named === undefined) {
          // A group of the value changed (or is held) since the load started: refused, and the lease given up.
          dropLease(key, token, now)
          notices.notify(key)
          return false
        }
        // A refresh replaces a value: its members leave the indexes.
        const replaced = Protocol.parse(current)
        if (replaced._tag === "Value") leaveIndexes(entries.get(key)!, replaced.body)
        const expiresAt = value.lifeMillis === undefined ? undefined : now + value.lifeMillis
        const names = groups.length === 0 ? sets.names : [...sets.names, ...groups]
        const entry = setEntry(
          key,
          Protocol.valueRecord(value.freshMillis === undefined ? undefined : now + value.freshMillis, {
            fillToken: token,
            setsJson: groups.length === 0 ? sets.json : JSON.stringify(names),
            stamps: (groups.length === 0 ? recorded : [...recorded, ...named]).join(","),
            value: value.value
          }),
          expiresAt
        )
        names.forEach((set) => {
          if (isEpochSet(set)) return
          let index = indexes.get(set)
          if (index === undefined) {
            index = new Set()
            indexes.set(set, index)
          }
          // Members whose life is over go when the index has doubled since it was last pruned: amortized
          // constant work per fill (walking it on every fill made fills slower as an index grew).
          if (index.size >= (pruneAt.get(set) ?? minimumPrune)) {
            for (const other of index) if (isOver(other, now)) index.delete(other)
            pruneAt.set(set, Math.max(minimumPrune, 2 * index.size))
          }
          index.add(entry)
        })
        notices.notify(key)
        return true
      })

    const renew = (key: string, token: string, leaseMillis: number) =>
      withClock((now) => {
        const slot = liveEntry(key, now)
        if (slot === undefined || !leasedTo(slot.value, token)) return false
        setRange(key, Protocol.offsets.leaseUntil, Protocol.leaseUntilField(now + leaseMillis))
        slot.expiresAt =
          slot.value[Protocol.offsets.state] === "L"
            ? now + leaseMillis
            : slot.expiresAt === undefined
              ? undefined
              : Math.max(slot.expiresAt, now + leaseMillis)
        return true
      })

    const release = (
      key: string,
      token: string,
      sets: Sets,
      recorded: ReadonlyArray<string>,
      created: ReadonlyArray<boolean>
    ) =>
      withClock((now) => {
        if (dropLease(key, token, now)) notices.notify(key)
        sets.names.forEach((set, i) => {
          if (created[i] && Protocol.dropsOnRelease(set) && stamp(set, now) === recorded[i]) stamps.delete(set)
        })
      })

    const leaveIndexes = (member: Entry, body: Protocol.Body, except?: string) => {
      for (const set of Protocol.setsOf(body)) {
        if (set === except || isEpochSet(set)) continue
        const index = indexes.get(set)
        index?.delete(member)
        if (index?.size === 0) {
          indexes.delete(set)
          pruneAt.delete(set)
        }
      }
    }

    const invalidateKey = (key: string, mode: Mode, now: number): number => {
      const value = record(key, now)
      if (value === undefined) return 0
      const parsed = Protocol.parse(value)
      if (parsed._tag === "Foreign") {
        entries.delete(key)
        return 1
      }
      if (parsed._tag === "Lease") {
        entries.delete(key)
        return 0
      }
      if (mode === "soft") {
        setRange(key, Protocol.offsets.state, `S${noLease}`)
        return 1
      }
      leaveIndexes(entries.get(key)!, parsed.body)
      entries.delete(key)
      return 1
    }

    const invalidate = (keys: ReadonlyArray<string>, mode: Mode) =>
      withClock((now) => keys.reduce((count, key) => count + invalidateKey(key, mode, now), 0))

    /** Counts (and, hard, removes) the entries of `set` that recorded the incarnation of `old`. */
    const reclaim = (set: string, old: string | null, mode: Mode, now: number): number => {
      if (old === null || Protocol.isHold(old)) return 0
      const index = indexes.get(set)
      if (index === undefined) return 0
      const inc = Protocol.incarnation(old)
      const current = stamp(set, now)
      let count = 0
      for (const member of [...index]) {
        // A member is the entry its fill made: gone, replaced or expired, it leaves the index.
        const key = member.key
        const parsed = liveEntry(key, now) === member ? Protocol.parse(member.value) : undefined
        if (parsed?._tag !== "Value") {
          index.delete(member)
          continue
        }
        const recorded = Protocol.recordedStamp(parsed.body, set)
        if (recorded === undefined) {
          index.delete(member)
          continue
        }
        if (Protocol.incarnation(recorded) === inc) {
          count++
          if (mode === "soft") continue
        } else if (recorded === current || mode === "soft") continue
        entries.delete(key)
        index.delete(member)
        leaveIndexes(member, parsed.body, set)
      }
      if (index.size === 0) {
        indexes.delete(set)
        pruneAt.delete(set)
      }
      return count
    }

    /**
     * Appends to the epoch of `set`'s family with every change of a group's stamp (or a hold on
     * it, or its release), so that entries that recorded the epoch read their value's groups again and loads that
     * saw a hold are not stored (see `Protocol.epochHolds`); compacted once it grew past `Protocol.epochCompactAt`.
     */
    const bump = (set: string, now: number, element?: string) => {
      const epoch = epochOfSet(set)
      if (epoch === undefined) return
      const slot = stamps.get(epoch)
      const exists = slot !== undefined && slot.expiresAt > now
      // A hold and a release make the epoch (a hold must be listed even if a lease makes the epoch later); another
      // change only moves one that exists.
      if (element === undefined && !exists) return
      const current = exists ? slot.value : ""
      element ??= Protocol.epochBumpElement(Protocol.newStamp())
      const appended = current + element
      const value =
        appended.length > Protocol.epochCompactAt ? Protocol.compactEpoch(appended, now, Protocol.newStamp()) : appended
      stamps.set(epoch, { value, expiresAt: Number.POSITIVE_INFINITY })
    }

    /** A held epoch without its lapsed holds (the same value when none lapsed); `null`: none. */
    const cleanEpoch = (epoch: string, now: number): string | null => {
      const current = stamp(epoch, now)
      if (current === null) return null
      const value = Protocol.compactEpoch(current, now, Protocol.newStamp(), true)
      if (value !== current) stamps.get(epoch)!.value = value
      return value
    }

    const invalidateStamp = (set: string, mode: Mode, now: number): string | null => {
      bump(set, now)
      const old = stamp(set, now)
      if (old === null || Protocol.isHold(old)) return old
      if (mode === "hard") stamps.delete(set)
      else {
        const dot = old.indexOf(".")
        const generation = dot === -1 ? 0 : Number(old.slice(dot + 1)) || 0
        stamps.get(set)!.value = `${Protocol.incarnation(old)}.${generation + 1}`
      }
      return old
    }

    const invalidateSet = (set: string, mode: Mode) =>
      withClock((now) => reclaim(set, invalidateStamp(set, mode, now), mode, now))

    const hold = (setIds: ReadonlyArray<string>, token: string, asked: number) =>
      Protocol.badHoldToken(token) !== undefined
        ? Effect.fail(
            new CacheStoreError({ operation: "hold", reason: "InvalidInput", message: Protocol.badHoldToken(token)! })
          )
        : withClock((now) =>
            setIds.map((set) => {
              const holdMillis = Math.min(asked, Protocol.maxHoldMillis)
              bump(set, now, Protocol.epochHoldElementUntil(token, now + holdMillis))
              const old = stamp(set, now)
              const slot = stamps.get(set)
              if (old !== null && Protocol.isHold(old)) {
                slot!.value = `${old},${token}`
                slot!.expiresAt = Math.max(slot!.expiresAt, now + holdMillis)
                return 0
              }
              stamps.set(set, { value: `${Protocol.holdMark}${token}`, expiresAt: now + holdMillis })
              return reclaim(set, old, "hard", now)
            })
          )

    const releaseHold = (setIds: ReadonlyArray<string>, token: string) =>
      withClock((now) => {
        for (const set of setIds) {
          bump(set, now, Protocol.epochReleaseElement(token))
          const current = stamp(set, now)
          if (current !== null && Protocol.isHold(current)) {
            const tokens = current.slice(1).split(",")
            const at = tokens.indexOf(token)
            if (at === -1) continue
            tokens.splice(at, 1)
            if (tokens.length === 0) stamps.delete(set)
            else stamps.get(set)!.value = `${Protocol.holdMark}${tokens.join(",")}`
            continue
          }
          // The hold lapsed: a load may have been stored since, under a stamp made after the lapse.
          stamps.delete(set)
          reclaim(set, current, "hard", now)
        }
      })

    /** A glob's matcher, or the typed error of a malformed pattern. */
    const matcher = (operation: string, pattern: string | undefined) => {
      if (pattern === undefined || pattern === "*") return Effect.succeed((_: string) => true)
      const glob = compileGlob(pattern)
      return glob._tag === "Glob"
        ? Effect.succeed(glob.test)
        : Effect.fail(new CacheStoreError({ operation, reason: "InvalidInput", message: glob.reason }))
    }

    const invalidatePattern = (pattern: string, mode: Mode) =>
      Effect.flatMap(matcher("invalidatePattern", pattern), (matches) =>
        withClock((now) => {
          let count = 0
          for (const key of [...entries.keys()]) if (matches(key)) count += invalidateKey(key, mode, now)
          return count
        })
      )

    /** A cursor this store handed out, or `0`: anything else is refused rather than read as the start. */
    const checkCursor = (cursor: string | undefined) =>
      cursor === undefined || cursor === "0" || /^k[A-Za-z0-9_-]+$/.test(cursor)
        ? Effect.void
        : Effect.fail(
            new CacheStoreError({
              operation: "scan",
              reason: "InvalidInput",
              message: `not a cursor of this store: ${JSON.stringify(cursor.slice(0, 64))}`
            })
          )

    const scan = (options: { pattern?: string | undefined; cursor?: string | undefined; count?: number | undefined }) =>
      Effect.flatMap(Effect.andThen(checkCursor(options.cursor), matcher("scan", options.pattern)), (matches) =>
        withClock((now) => {
          const after =
            options.cursor === undefined || options.cursor === "0" ? undefined : decodeCursor(options.cursor)
          const count = Math.max(1, Math.min(options.count ?? 100, 1000))
          const keys = [...entries.keys()]
            .filter((key) => (after === undefined || key > after) && matches(key) && record(key, now) !== undefined)
            .sort()
          const page = keys.slice(0, count)
          return {
            keys: page,
            cursor: keys.length > count ? encodeCursor(page[page.length - 1]!) : "0"
          }
        })
      )

    const inspect = (key: string) =>
      withClock((now) => {
        const slot = liveEntry(key, now)
        if (slot === undefined) return undefined
        const ttlMillis = slot.expiresAt === undefined ? undefined : slot.expiresAt - now
        const parsed = Protocol.parse(slot.value)
        if (parsed._tag !== "Value") {
          return { key, value: undefined, freshness: undefined, ttlMillis, leased: parsed._tag === "Lease", sets: [] }
        }
        const sets = Protocol.setsOf(parsed.body)
        return Protocol.describe(
          key,
          slot.dropped(parsed.body.value) ? { ...parsed, body: { ...parsed.body, value: slot.stored() } } : parsed,
          sets,
          sets.map((set) => stamp(set, now)),
          ttlMillis,
          now
        )
      })

    const setSize = (set: string) =>
      withClock((now) => {
        const index = indexes.get(set)
        if (index === undefined) return 0
        for (const member of index) if (isOver(member, now)) index.delete(member)
        return index.size
      })

    return {
      kind: "memory",
      prefix,
      prefixSource: options.prefix === undefined ? "settings" : "option",
      scope,
      lookup,
      hitNow,
      lookupMany,
      // Tokens have a fixed width in records: callers' own (shorter) tokens are padded once, here.
      lease: (key, token, ...rest) => lease(key, Protocol.fixedToken(token), ...rest),
      fill: (key, token, ...rest) => fill(key, Protocol.fixedToken(token), ...rest),
      renew: (key, token, leaseMillis) => renew(key, Protocol.fixedToken(token), leaseMillis),
      release: (key, token, ...rest) => release(key, Protocol.fixedToken(token), ...rest),
      invalidate,
      invalidateSet,
      hold,
      releaseHold,
      invalidatePattern,
      scan,
      inspect,
      setSize,
      ping: Effect.succeed(0),
      watch: notices.watch
    }
  })

const encodeCursor = (key: string) => `k${Buffer.from(key).toString("base64url")}`
const decodeCursor = (cursor: string) =>
  cursor.startsWith("k") ? Buffer.from(cursor.slice(1), "base64url").toString() : undefined
