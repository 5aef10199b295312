/**
 * Where entries, leases and the stamps of groups and tags live. A store deals in strings: `Memo` encodes values
 * with the node's Schema before they reach it. Two implementations keep one protocol (`internal/protocol.ts`) and
 * pass one contract suite:
 *
 * - {@link layerRedis} over `ioredis` (a hit is one `MGET`; Lua scripts registered once and run by EVALSHA, each on
 *   one key except the fill, whose index writes go beside it on Redis Cluster);
 * - {@link layerMemory}, in process, bounded (CLOCK eviction, LRU with a second chance), expiry read from Effect's
 *   `Clock`, values kept decoded;
 * - {@link layerTiered}, the Redis store with an in-process tier in front of its reads, kept coherent by Redis's
 *   client tracking within a staleness bound (see `docs/concepts.md`, "The in-process tier").
 *
 * An entry records the stamps its groups and tags had before its load started, and is served only while they are
 * all current: invalidating a group or tag changes its stamp, invalidating a key deletes its record (and the lease
 * of a load under way), so a value loaded before an invalidation is never served after it.
 *
 * A set can also be held (see `hold`) while a database write commits: its stamp becomes a hold marker, so its
 * entries are invalidated at once and nothing loaded until the hold is released or lapses is stored.
 *
 * @since 0.1.0
 */
import { type Clock, Context, Effect, Layer, Schema, type Scope } from "effect"
import { CachemeConfigError, type Settings } from "./CachemeConfig.ts"
import { isEpochSet } from "./internal/keys.ts"
import type { Watch } from "./internal/notices.ts"
import type { Freshness } from "./internal/protocol.ts"
import { makeMemoryStore, type MemoryOptions } from "./store/Memory.ts"
import { makeRedisStore, makeRedisStoreFromConfig, type RedisOptions } from "./store/Redis.ts"
import { type LocalOptions, makeTieredStore, type TieredOptions } from "./store/Tiered.ts"

export type { LocalOptions, MemoryOptions, RedisOptions, TieredOptions }

/**
 * A failed store command: the store is unreachable, too slow, or answered something unexpected.
 *
 * @category errors
 * @since 0.1.0
 */
export class CacheStoreError extends Schema.TaggedError<CacheStoreError>()("CacheStoreError", {
  /** The store operation that failed, e.g. `read`, `fill`, `invalidate`. */
  operation: Schema.String,
  /** `InvalidInput`: the request itself cannot be served (a malformed pattern); nothing was changed. */
  reason: Schema.Literals(["Unavailable", "Timeout", "Protocol", "InvalidInput"]),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The membership sets of an entry (its groups and tags), in a fixed order, with their JSON (compared as a string
 * on the hit path). Make one with {@link sets}.
 *
 * @category models
 * @since 0.2.0
 */
export interface Sets {
  readonly names: ReadonlyArray<string>
  readonly json: string
  /**
   * Whether a record may list more sets after these: groups named by its value (a node's `invalidatedByValue`),
   * guarded by the epochs of their families, which are among `names` (`e:family`). True when `names` holds one
   * ({@link sets} decides it); absent: false.
   */
  readonly open?: boolean | undefined
}

/**
 * Builds a {@link Sets} value.
 *
 * @category constructors
 * @since 0.2.0
 */
export const sets = (names: ReadonlyArray<string>): Sets => ({
  names,
  json: JSON.stringify(names),
  open: names.some(isEpochSet)
})

/**
 * What a lookup saw besides a usable value: the current stamps of the entry's sets (`null`: the set has none
 * yet), the value record it found (its fill token; `""` when there was none), who holds the key's lease, and
 * whether a committing write holds one of the sets.
 *
 * @category models
 * @since 0.2.0
 */
export interface View {
  readonly stamps: ReadonlyArray<string | null>
  /** The fill token of the value record seen (`""`: none). A lease must find the same record to replace it. */
  readonly seen: string
  /** Whether the key held anything at all (a record, a lease, a foreign key). */
  readonly present: boolean
  /** The token of the live lease on the key, if any. */
  readonly holder: string | undefined
  /** A set of the entry is held by a committing write: nothing loaded now may be stored. */
  readonly held: boolean
}

/**
 * Where a store that keeps values in process (the in-process store, the tiered store's local copies) lets `Memo`
 * keep the decoded form of one stored copy: the first hit of the copy decodes it and leaves the result here,
 * later hits of the same copy take it without `JSON.parse` nor the Schema decode (see `internal/codec.ts` for
 * what is kept, per node). A store hands a lookup the cell of the copy it read, and makes a new copy, with an
 * empty cell, whenever the stored value changes; it never reads the cell itself.
 *
 * @category models
 * @since 0.4.0
 */
export interface ValueCell {
  /** The node that filled the cell (`undefined`: empty). */
  decodedBy: unknown
  /** What that node keeps: its decoded value, or the parsed JSON. */
  decoded: unknown
  /**
   * Called once `Memo` has filled the cell: a store may then drop what the cell makes redundant (the in-process
   * store drops the stored JSON from its record when the cell gives it back exactly, see `Codec.storedOf`).
   */
  kept?(): void
}

/**
 * A fresh hit found without I/O (see the store's `hitNow`).
 *
 * @category models
 * @since 0.4.0
 */
export interface Hit {
  readonly _tag: "Hit"
  readonly value: string
  readonly cell?: ValueCell | undefined
}

/**
 * The outcome of a lookup (one round trip: the entry and the stamps of its sets).
 *
 * - `Hit`: a fresh, valid value (with the cell of the copy it came from, for a store that keeps values in
 *   process).
 * - `Stale`: a value past its freshness, or invalidated softly: usable by nodes that serve stale values.
 * - `Miss`: no usable value.
 *
 * @category models
 * @since 0.2.0
 */
export type Lookup =
  | Hit
  | {
      readonly _tag: "Stale"
      readonly value: string
      readonly cell?: ValueCell | undefined
      readonly view: View
      /** Millis since the value stopped being fresh (0 for a value invalidated softly while still fresh). */
      readonly staleFor: number
    }
  | { readonly _tag: "Miss"; readonly view: View }

/**
 * One entry of a batched lookup (the store's `lookupMany`): its key and its sets.
 *
 * @category models
 * @since 0.3.0
 */
export interface LookupRequest {
  readonly key: string
  readonly sets: Sets
}

/**
 * The outcome of asking for a key's lease.
 *
 * - `Leased`: the caller holds the lease; `stamps` are the stamps to record with the value (the lookup's, and
 *   the ones this lease created for sets that had none), `created` the ones it created.
 * - `Busy`: another caller holds it.
 * - `Changed`: the key changed since the lookup (a value was filled meanwhile): look up again.
 *
 * @category models
 * @since 0.2.0
 */
export type Leasing =
  | {
      readonly _tag: "Leased"
      readonly stamps: ReadonlyArray<string>
      readonly created: ReadonlyArray<boolean>
      /** A set is held by a committing write: load, but store nothing (release instead). */
      readonly held: boolean
    }
  | { readonly _tag: "Busy"; readonly holder: string }
  | { readonly _tag: "Changed" }

/**
 * What a lease holder stores.
 *
 * @category models
 * @since 0.1.0
 */
export interface Fill {
  readonly value: string
  /** How long the value is fresh, in millis; `undefined` is for ever. */
  readonly freshMillis: number | undefined
  /** How long the entry lives (fresh + stale window), in millis; `undefined` is for ever. */
  readonly lifeMillis: number | undefined
  /**
   * Groups named by the value (`g:...` sets, none of them among the entry's `sets`), each of a family whose epoch
   * is among the entry's sets. The fill is refused (the lease given up, nothing stored) when one of those epochs
   * is no longer the one the lease recorded, or one of these groups is held; otherwise their stamps are read (or
   * made) and recorded after the others.
   */
  readonly groups?: ReadonlyArray<string> | undefined
}

/**
 * How an invalidation treats values: `hard` removes them, `soft` keeps them as stale values (served by nodes
 * with stale on while one caller refreshes). Both void leases.
 *
 * @category models
 * @since 0.1.0
 */
export type Mode = "hard" | "soft"

export type { Freshness, Watch }

/**
 * One entry as the admin page sees it.
 *
 * @category models
 * @since 0.1.0
 */
export interface EntryInfo {
  readonly key: string
  /** The stored value; `undefined` for a lease without a value or a key that is not an entry. */
  readonly value: string | undefined
  readonly freshness: Freshness | undefined
  /** Remaining life in millis; `undefined`: no expiry. */
  readonly ttlMillis: number | undefined
  readonly leased: boolean
  readonly sets: ReadonlyArray<string>
}

/**
 * A page of keys.
 *
 * @category models
 * @since 0.1.0
 */
export interface ScanPage {
  readonly keys: ReadonlyArray<string>
  /** Pass it back for the next page; `"0"` when the scan is complete. */
  readonly cursor: string
}

/**
 * The store service. Memo drives a read as `lookup` (one round trip), then on a miss `lease`, the load, and
 * `fill` (or `release`); `Memo.cachedMany` looks a batch up with `lookupMany`, then leases, loads and fills each
 * miss the same way. See `docs/concepts.md` for the invariants each operation keeps.
 *
 * @category services
 * @since 0.1.0
 */
export class CacheStore extends Context.Service<
  CacheStore,
  {
    /** `memory`, `redis` or `tiered`. */
    readonly kind: string
    /** The prefix in front of every key this store writes. */
    readonly prefix: string
    /**
     * Where the prefix came from: the `CachemeConfig` the layer was built with, or the layer's own option. A
     * prefix taken from the settings must still be the prefix of the settings in effect where the store is used
     * (see {@link checkPrefix}).
     */
    readonly prefixSource: "settings" | "option"
    /** The scope of the store's layer: background refreshes are forked into it and end with it. */
    readonly scope: Scope.Scope
    /**
     * Reads `key` and the stamps of its sets, and judges the value: one round trip, no write. A refresh lease
     * further away than `leaseMillis` (forged, or left by a bug) is not reported as held. `local` chooses, for a
     * store with an in-process tier, whether this read may be answered from it (`undefined`: the store's
     * default); other stores ignore it.
     */
    readonly lookup: (
      key: string,
      sets: Sets,
      leaseMillis?: number | undefined,
      local?: boolean | undefined
    ) => Effect.Effect<Lookup, CacheStoreError>
    /**
     * A fresh hit of `key` if the store can tell without I/O, or `undefined` (then `lookup` decides): the
     * in-process store answers every lookup this way (`clock` is the caller's, for expiry), a tiered store from
     * its local copies. Same arguments and same judgement as `lookup`, whose `Hit` it is; optional (the Redis
     * store has none). `Memo` answers such a hit in one step, without the read path's effects.
     */
    readonly hitNow?:
      | ((
          key: string,
          sets: Sets,
          leaseMillis: number | undefined,
          local: boolean | undefined,
          clock: Clock.Clock
        ) => Hit | undefined)
      | undefined
    /**
     * Looks several entries up at once: for each request, in order, what `lookup` would answer, from one
     * round trip (on Redis one `MGET` of every entry and every distinct stamp; on a Cluster the same `GET`s sent
     * together). No write. Requests may repeat a key (each gets its answer). `local` is `lookup`'s hint, for every
     * request of the batch.
     */
    readonly lookupMany: (
      requests: ReadonlyArray<LookupRequest>,
      leaseMillis?: number | undefined,
      local?: boolean | undefined
    ) => Effect.Effect<ReadonlyArray<Lookup>, CacheStoreError>
    /**
     * Asks for the lease of `key` for `token` (for `leaseMillis`), given what the lookup saw: `keep` leaves a
     * stale value in place for others to serve while the lease holder refreshes it; `replace` drops whatever
     * unusable value was seen. Creates stamps for sets that had none, to live as long as an entry of
     * `lifeMillis` could need them (`undefined`: for ever); a release drops them again.
     */
    readonly lease: (
      key: string,
      token: string,
      sets: Sets,
      view: View,
      intent: "keep" | "replace",
      leaseMillis: number,
      lifeMillis?: number | undefined
    ) => Effect.Effect<Leasing, CacheStoreError>
    /**
     * Stores a loaded value if `token` still holds the lease; returns whether it was stored. The value is
     * served only while the stamps it recorded are current: one filled after an invalidation of its sets is dead
     * on arrival (never served, replaced by the next lease). With `fill.groups` (groups named by the value), the
     * fill is refused and the lease given up when an epoch of their families moved since `stamps` were read, or
     * one of them is held.
     */
    readonly fill: (
      key: string,
      token: string,
      sets: Sets,
      stamps: ReadonlyArray<string>,
      fill: Fill
    ) => Effect.Effect<boolean, CacheStoreError>
    /** Extends `token`'s lease by `leaseMillis` from now; false when the lease is no longer its own. */
    readonly renew: (key: string, token: string, leaseMillis: number) => Effect.Effect<boolean, CacheStoreError>
    /**
     * Gives the lease up (a failed or unstorable load) if `token` still holds it, and drops the stamps this
     * lease created (so a failed load leaves nothing behind).
     */
    readonly release: (
      key: string,
      token: string,
      sets: Sets,
      stamps: ReadonlyArray<string>,
      created: ReadonlyArray<boolean>
    ) => Effect.Effect<void, CacheStoreError>
    /** Invalidates keys and voids their leases; returns how many held a value. */
    readonly invalidate: (keys: ReadonlyArray<string>, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /**
     * Invalidates every entry of a set (a group or a tag); returns how many held a value. Holds on the set stay
     * in place.
     */
    readonly invalidateSet: (set: string, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /**
     * Holds each set for `token` until `holdMillis` from now, invalidating its entries hard; returns, per set in
     * order, how many held a value. While a set is held, nothing loaded may be stored under it. Several tokens
     * may hold one set (concurrent writes): it stays held while any of them does, or until the last hold lapses.
     */
    readonly hold: (
      sets: ReadonlyArray<string>,
      token: string,
      holdMillis: number
    ) => Effect.Effect<ReadonlyArray<number>, CacheStoreError>
    /**
     * Removes `token`'s hold from each set, once its write has committed (or rolled back). A set whose hold had
     * already lapsed (or is missing) is invalidated hard again: a load may have been stored after the lapse.
     */
    readonly releaseHold: (sets: ReadonlyArray<string>, token: string) => Effect.Effect<void, CacheStoreError>
    /**
     * Removes the keys under the prefix that match a glob pattern, entries or not (SCAN, never KEYS; protocol
     * keys excepted); returns how many held a value or were not entries.
     */
    readonly invalidatePattern: (pattern: string, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /** One page of the entry keys (prefix removed) that match a glob pattern; `count` is a hint. */
    readonly scan: (options: {
      readonly pattern?: string | undefined
      readonly cursor?: string | undefined
      readonly count?: number | undefined
    }) => Effect.Effect<ScanPage, CacheStoreError>
    /** The entry at `key`, raw. */
    readonly inspect: (key: string) => Effect.Effect<EntryInfo | undefined, CacheStoreError>
    /** How many entries a set's index lists (entries already gone may count until they are reclaimed). */
    readonly setSize: (set: string) => Effect.Effect<number, CacheStoreError>
    /** A round trip to the store, in millis. */
    readonly ping: Effect.Effect<number, CacheStoreError>
    /**
     * Watches `key` for the end of a load under way (its holder's fill or release), so that herd waiters wake
     * at once instead of at their next poll. Optional (a Redis Cluster has none), and a hint only: a notice may
     * be missed, and waiters keep polling.
     */
    readonly watch?: ((key: string) => Watch) | undefined
  }
>()("effect-cacheme/CacheStore") {}

/**
 * Dies with a `CachemeConfigError` when a store that took its prefix from `CachemeConfig` is used where other
 * settings are in effect: the layers were composed so that the store never saw the settings meant for it (e.g.
 * `Layer.mergeAll(CacheStore.layerRedis(...), CachemeConfig.layer({ prefix: "APP:" }))` instead of
 * `Layer.provideMerge`), and it would write under another application's prefix.
 *
 * @category guards
 * @since 0.2.0
 */
export const checkPrefix = (store: CacheStore["Service"], settings: Settings): Effect.Effect<void> =>
  store.prefixSource === "settings" && store.prefix !== settings.prefix
    ? Effect.die(
        new CachemeConfigError({
          setting: "prefix",
          message: `the store was built with the prefix ${JSON.stringify(store.prefix)} but the settings in effect say ${JSON.stringify(settings.prefix)}: provide CachemeConfig to the store's layer (Layer.provideMerge), or give the store its prefix`
        })
      )
    : Effect.void

/**
 * An in-process store: bounded (CLOCK eviction, LRU with a second chance), expiry read from Effect's `Clock` (so
 * `TestClock` moves it); a hit's value is decoded once and kept with its entry (see `ValueCell`).
 * Fine for one process, tests and the demo; leases and single-flight then hold within the process only.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory = (options: MemoryOptions = {}): Layer.Layer<CacheStore> =>
  Layer.effect(CacheStore, makeMemoryStore(options))

/**
 * A Redis store over `ioredis`: pass a `client` (a `Redis` or `Cluster` you own) or a `url` (the layer then
 * opens the connection, with auto-pipelining so that the commands of one turn of the event loop share one socket
 * write, and closes it with its scope; a client you pass in is used as it is configured). The key prefix comes from `CachemeConfig` unless given.
 *
 * **Example**
 *
 * ```ts
 * import { CacheStore } from "effect-cacheme"
 *
 * const Store = CacheStore.layerRedis({ url: "redis://127.0.0.1:6379" })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerRedis = (options: RedisOptions): Layer.Layer<CacheStore> =>
  Layer.effect(CacheStore, makeRedisStore(options))

/**
 * A Redis store at `CachemeConfig`'s `redisUrl` (`CACHEME_REDIS_URL`).
 *
 * @category layers
 * @since 0.1.0
 */
export const layerRedisConfig: Layer.Layer<CacheStore> = Layer.effect(CacheStore, makeRedisStoreFromConfig)

/**
 * A Redis store with an in-process tier in front of its reads: hot entries are answered from process memory,
 * kept coherent by Redis itself (client tracking: every change to a key this process holds a copy of, by any
 * client, an expiry or an eviction, drops the copy), within a staleness bound that holds even when the
 * invalidation channel stalls (`local.bound`, 1 second by default: past it the tier empties itself and reads go
 * to Redis until the channel is back). Writes through this process drop their keys' copies before they resolve.
 * Needs Redis 7 or later; on a Redis Cluster client the tier is off (every read goes to Redis). See
 * `docs/concepts.md`, "The in-process tier".
 *
 * **Example**
 *
 * ```ts
 * import { CacheStore } from "effect-cacheme"
 *
 * const Store = CacheStore.layerTiered({
 *   url: "redis://127.0.0.1:6379",
 *   local: { maxEntries: 50_000, ttl: "5 minutes", bound: "500 millis", only: (key) => key.startsWith("user:") }
 * })
 * ```
 *
 * @category layers
 * @since 0.3.0
 */
export const layerTiered = (options: TieredOptions): Layer.Layer<CacheStore> =>
  Layer.effect(CacheStore, makeTieredStore(options))
