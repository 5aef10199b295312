/**
 * The in-process store. Entries sit in one `Map` whose insertion order is the recency order (a read moves the
 * entry to the end), so evicting the least recently used entry is taking the first key. Expiry is checked
 * lazily against Effect's `Clock`; every entry knows its membership sets, so removing an entry (invalidated,
 * expired or evicted) removes it from them and the sets never outgrow the entries. The holds on a set (token ->
 * expiry) sit in a map of their own next to its members, so invalidating the set never touches them.
 */
import { Effect, type Scope } from "effect"
import type { CacheStore, EntryInfo, Fill, Mode, ReadResult } from "../CacheStore.ts"
import { CachemeConfig } from "../CachemeConfig.ts"
import { globToRegExp } from "../internal/glob.ts"

/**
 * Options of the in-process store.
 *
 * @category models
 * @since 0.1.0
 */
export interface MemoryOptions {
  /** The most entries kept; the least recently used go first (default 10,000). */
  readonly maxEntries?: number | undefined
}

interface Entry {
  value: string | undefined
  /** 0: fresh for ever; 1: invalidated; otherwise millis since the epoch. */
  freshUntil: number
  expiresAt: number
  lease: string | undefined
  leaseUntil: number
  sets: Set<string>
}

const FOREVER = 0
const INVALIDATED = 1

const isFresh = (entry: Entry, now: number) =>
  entry.freshUntil === FOREVER || (entry.freshUntil !== INVALIDATED && entry.freshUntil > now)

export const makeMemoryStore = (options: MemoryOptions): Effect.Effect<CacheStore["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const maxEntries = options.maxEntries ?? 10_000
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      return yield* Effect.die(new Error(`layerMemory: maxEntries must be a whole number above 0, got ${maxEntries}`))
    }
    const { prefix } = yield* CachemeConfig
    const scope = yield* Effect.scope
    const entries = new Map<string, Entry>()
    const sets = new Map<string, Map<string, number>>()
    const holds = new Map<string, Map<string, number>>()

    const remove = (key: string, entry: Entry, except?: string) => {
      entries.delete(key)
      for (const set of entry.sets) {
        if (set === except) continue
        const members = sets.get(set)
        if (members === undefined) continue
        members.delete(key)
        if (members.size === 0) sets.delete(set)
      }
    }

    /** The live entry at `key`, dropping it when its life is over. */
    const live = (key: string, now: number): Entry | undefined => {
      const entry = entries.get(key)
      if (entry !== undefined && entry.expiresAt <= now) {
        remove(key, entry)
        return undefined
      }
      return entry
    }

    const touch = (key: string, entry: Entry) => {
      entries.delete(key)
      entries.set(key, entry)
    }

    const evict = () => {
      while (entries.size > maxEntries) {
        const oldest = entries.keys().next().value as string
        remove(oldest, entries.get(oldest)!)
      }
    }

    const withClock = <A>(f: (now: number) => A): Effect.Effect<A> =>
      Effect.clockWith((clock) => Effect.sync(() => f(clock.currentTimeMillisUnsafe())))

    const invalidateKey = (key: string, mode: Mode, now: number, except?: string): number => {
      const entry = live(key, now)
      if (entry === undefined) return 0
      const held = entry.value === undefined ? 0 : 1
      if (mode === "soft" && held === 1) {
        entry.freshUntil = INVALIDATED
        entry.lease = undefined
      } else {
        remove(key, entry, except)
      }
      return held
    }

    const read = (key: string, token: string, leaseMillis: number): Effect.Effect<ReadResult> =>
      withClock((now): ReadResult => {
        const entry = live(key, now)
        if (entry !== undefined && entry.value !== undefined) {
          touch(key, entry)
          if (isFresh(entry, now)) return { _tag: "Hit", value: entry.value }
        }
        const leaseFree = entry === undefined || entry.lease === undefined || entry.leaseUntil <= now
        if (entry !== undefined && entry.value !== undefined) {
          if (leaseFree) {
            entry.lease = token
            entry.leaseUntil = now + leaseMillis
          }
          return { _tag: "Stale", value: entry.value, lease: leaseFree }
        }
        if (!leaseFree) return { _tag: "Busy" }
        if (entry === undefined) {
          entries.set(key, {
            value: undefined,
            freshUntil: FOREVER,
            expiresAt: now + leaseMillis,
            lease: token,
            leaseUntil: now + leaseMillis,
            sets: new Set()
          })
          evict()
        } else {
          entry.lease = token
          entry.leaseUntil = now + leaseMillis
          entry.expiresAt = Math.max(entry.expiresAt, now + leaseMillis)
        }
        return { _tag: "Miss" }
      })

    /** The live holds on `set` (token -> expiry), dropping the ones that have lapsed; `undefined` if none. */
    const liveHolds = (set: string, now: number): Map<string, number> | undefined => {
      const tokens = holds.get(set)
      if (tokens === undefined) return undefined
      for (const [token, until] of tokens) if (until <= now) tokens.delete(token)
      if (tokens.size > 0) return tokens
      holds.delete(set)
      return undefined
    }

    /** Invalidates every member of `set`; its holds stay. */
    const invalidateMembers = (set: string, mode: Mode, now: number): number => {
      const members = sets.get(set)
      if (members === undefined) return 0
      if (mode === "hard") sets.delete(set)
      let count = 0
      for (const key of [...members.keys()]) count += invalidateKey(key, mode, now, set)
      return count
    }

    const track = (key: string, setIds: ReadonlyArray<string>, lifeMillis: number | undefined) =>
      withClock((now) => {
        // Checked for every set before registering in any, so a refused key is left out of them all.
        if (setIds.some((set) => liveHolds(set, now) !== undefined)) return false
        const entry = live(key, now)
        if (entry === undefined) return true
        const until = lifeMillis === undefined ? Number.POSITIVE_INFINITY : now + lifeMillis
        for (const set of setIds) {
          let members = sets.get(set)
          if (members === undefined) {
            members = new Map()
            sets.set(set, members)
          }
          members.set(key, Math.max(members.get(key) ?? 0, until))
          entry.sets.add(set)
        }
        return true
      })

    const fill = (key: string, token: string, value: Fill) =>
      withClock((now) => {
        const entry = live(key, now)
        if (entry === undefined || entry.lease !== token) return false
        entry.value = value.value
        entry.freshUntil = value.freshMillis === undefined ? FOREVER : now + value.freshMillis
        entry.expiresAt = value.lifeMillis === undefined ? Number.POSITIVE_INFINITY : now + value.lifeMillis
        entry.lease = undefined
        touch(key, entry)
        return true
      })

    const release = (key: string, token: string) =>
      withClock((now) => {
        const entry = live(key, now)
        if (entry === undefined || entry.lease !== token) return
        if (entry.value === undefined) remove(key, entry)
        else entry.lease = undefined
      })

    const invalidate = (keys: ReadonlyArray<string>, mode: Mode) =>
      withClock((now) => keys.reduce((count, key) => count + invalidateKey(key, mode, now), 0))

    const invalidateSet = (set: string, mode: Mode) => withClock((now) => invalidateMembers(set, mode, now))

    const hold = (setIds: ReadonlyArray<string>, token: string, holdMillis: number) =>
      withClock((now) =>
        setIds.map((set) => {
          const tokens = liveHolds(set, now) ?? new Map<string, number>()
          tokens.set(token, now + holdMillis)
          holds.set(set, tokens)
          return invalidateMembers(set, "hard", now)
        })
      )

    const releaseHold = (setIds: ReadonlyArray<string>, token: string) =>
      withClock((now) => {
        for (const set of setIds) {
          const tokens = holds.get(set)
          const until = tokens?.get(token)
          if (tokens !== undefined) {
            tokens.delete(token)
            if (tokens.size === 0) holds.delete(set)
          }
          // A load may have been stored after the hold lapsed.
          if (until === undefined || until <= now) invalidateMembers(set, "hard", now)
        }
      })

    const matcher = (pattern: string | undefined) => {
      if (pattern === undefined || pattern === "*") return () => true
      const regexp = globToRegExp(pattern)
      return (key: string) => regexp.test(key)
    }

    const invalidatePattern = (pattern: string, mode: Mode) =>
      withClock((now) => {
        const matches = matcher(pattern)
        let count = 0
        for (const key of [...entries.keys()]) if (matches(key)) count += invalidateKey(key, mode, now)
        return count
      })

    const scan = (options: { pattern?: string | undefined; cursor?: string | undefined; count?: number | undefined }) =>
      withClock((now) => {
        const matches = matcher(options.pattern)
        const after = options.cursor === undefined || options.cursor === "0" ? undefined : decodeCursor(options.cursor)
        const count = Math.max(1, Math.min(options.count ?? 100, 1000))
        const keys = [...entries.keys()]
          .filter((key) => (after === undefined || key > after) && matches(key) && live(key, now) !== undefined)
          .sort()
        const page = keys.slice(0, count)
        return {
          keys: page,
          cursor: keys.length > count ? encodeCursor(page[page.length - 1]!) : "0"
        }
      })

    const inspect = (key: string) =>
      withClock((now): EntryInfo | undefined => {
        const entry = live(key, now)
        if (entry === undefined) return undefined
        return {
          key,
          value: entry.value,
          freshUntil: entry.freshUntil === FOREVER ? undefined : entry.freshUntil,
          ttlMillis: Number.isFinite(entry.expiresAt) ? entry.expiresAt - now : undefined,
          leased: entry.lease !== undefined && entry.leaseUntil > now,
          sets: [...entry.sets]
        }
      })

    const setSize = (set: string) =>
      withClock((now) => {
        const members = sets.get(set)
        if (members === undefined) return 0
        for (const [key, until] of members) if (until <= now) members.delete(key)
        return members.size
      })

    return {
      kind: "memory",
      prefix,
      scope,
      read,
      track,
      fill,
      release,
      invalidate,
      invalidateSet,
      hold,
      releaseHold,
      invalidatePattern,
      scan,
      inspect,
      setSize,
      ping: Effect.succeed(0)
    }
  })

const encodeCursor = (key: string) => `k${Buffer.from(key).toString("base64url")}`
const decodeCursor = (cursor: string) =>
  cursor.startsWith("k") ? Buffer.from(cursor.slice(1), "base64url").toString() : undefined
