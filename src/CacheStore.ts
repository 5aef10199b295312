/**
 * Where entries, leases and membership sets live. A store deals in strings: `Memo` encodes values with the
 * node's Schema before they reach it. Two implementations pass one contract suite:
 *
 * - {@link layerRedis} over `ioredis` (Lua scripts registered once and run by EVALSHA; one round trip per hit;
 *   every script touches a single key, so it runs unchanged on Redis Cluster);
 * - {@link layerMemory}, in process, bounded with LRU eviction, expiry read from Effect's `Clock`.
 *
 * An entry holds the value, its logical freshness (for stale serving), the lease of the caller loading it and
 * the membership sets (groups and tags) it was registered in. Invalidating an entry voids its lease, so a load
 * that started before the invalidation can never be stored after it.
 *
 * A set can also be held (see `hold`) while a database write commits: its members are invalidated at once and,
 * until the hold is released or lapses, no load can register in it, so no value read before the commit is
 * stored.
 *
 * @since 0.1.0
 */
import { Context, type Effect, Layer, Schema, type Scope } from "effect"
import { makeMemoryStore, type MemoryOptions } from "./store/Memory.ts"
import { makeRedisStore, makeRedisStoreFromConfig, type RedisOptions } from "./store/Redis.ts"

export type { MemoryOptions, RedisOptions }

/**
 * A failed store command: the store is unreachable, too slow, or answered something unexpected.
 *
 * @category errors
 * @since 0.1.0
 */
export class CacheStoreError extends Schema.TaggedError<CacheStoreError>()("CacheStoreError", {
  /** The store operation that failed, e.g. `read`, `fill`, `invalidate`. */
  operation: Schema.String,
  reason: Schema.Literals(["Unavailable", "Timeout", "Protocol"]),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The outcome of reading a key while asking for its lease.
 *
 * - `Hit`: a fresh value.
 * - `Stale`: a value past its freshness (or softly invalidated); `lease` is set when the caller now holds the lease.
 * - `Miss`: no value; the caller holds the lease and should load.
 * - `Busy`: no value, and another caller holds the lease.
 *
 * @category models
 * @since 0.1.0
 */
export type ReadResult =
  | { readonly _tag: "Hit"; readonly value: string }
  | { readonly _tag: "Stale"; readonly value: string; readonly lease: boolean }
  | { readonly _tag: "Miss" }
  | { readonly _tag: "Busy" }

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
  /** The membership sets the entry belongs to (the ones passed to `track`). */
  readonly sets: ReadonlyArray<string>
}

/**
 * How an invalidation treats values: `hard` removes them, `soft` keeps them as stale values (served by nodes
 * with stale on while one caller refreshes). Both void leases.
 *
 * @category models
 * @since 0.1.0
 */
export type Mode = "hard" | "soft"

/**
 * One entry as the admin page sees it.
 *
 * @category models
 * @since 0.1.0
 */
export interface EntryInfo {
  readonly key: string
  readonly value: string | undefined
  /** Millis since the epoch until which the value is fresh; `undefined`: for ever, 1: invalidated (stale). */
  readonly freshUntil: number | undefined
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
 * The store service.
 *
 * @category services
 * @since 0.1.0
 */
export class CacheStore extends Context.Service<
  CacheStore,
  {
    /** `memory` or `redis`. */
    readonly kind: string
    /** The prefix in front of every key this store writes. */
    readonly prefix: string
    /** The scope of the store's layer: background refreshes are forked into it and end with it. */
    readonly scope: Scope.Scope
    /**
     * Reads `key`; when it holds no fresh value and nobody holds its lease, takes the lease for `token`
     * (for `leaseMillis`), atomically with the read.
     */
    readonly read: (key: string, token: string, leaseMillis: number) => Effect.Effect<ReadResult, CacheStoreError>
    /**
     * Registers `key` in membership sets until `lifeMillis` from now (`undefined`: for ever), pruning members
     * whose life is over. Called after the lease is taken and before the load starts. Returns `false` when one
     * of the sets is held (see `hold`): the load may read rows a write is committing, so it must not be
     * stored, and the key may be left out of every set.
     */
    readonly track: (
      key: string,
      sets: ReadonlyArray<string>,
      lifeMillis: number | undefined
    ) => Effect.Effect<boolean, CacheStoreError>
    /** Stores a loaded value if `token` still holds the lease; returns whether it was stored. */
    readonly fill: (key: string, token: string, fill: Fill) => Effect.Effect<boolean, CacheStoreError>
    /** Gives the lease up (after a failed load) if `token` still holds it. */
    readonly release: (key: string, token: string) => Effect.Effect<void, CacheStoreError>
    /** Invalidates keys and voids their leases; returns how many held a value. */
    readonly invalidate: (keys: ReadonlyArray<string>, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /**
     * Invalidates every member of a set (a group or a tag); returns how many held a value. Holds on the set
     * stay in place.
     */
    readonly invalidateSet: (set: string, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /**
     * Holds each set for `token` until `holdMillis` from now (by the store's clock), then invalidates its
     * members hard, atomically per set; returns, per set in order, how many members held a value. While a set
     * is held, `track` refuses it, so a load that may have read rows before a write committed is never stored.
     * Several tokens may hold one set (concurrent writes): it stays held while any of their holds is live.
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
    /** Invalidates the keys that match a glob pattern under the prefix (SCAN, never KEYS). */
    readonly invalidatePattern: (pattern: string, mode: Mode) => Effect.Effect<number, CacheStoreError>
    /** One page of the entry keys (prefix removed) that match a glob pattern; `count` is a hint. */
    readonly scan: (options: {
      readonly pattern?: string | undefined
      readonly cursor?: string | undefined
      readonly count?: number | undefined
    }) => Effect.Effect<ScanPage, CacheStoreError>
    /** The entry at `key`, raw. */
    readonly inspect: (key: string) => Effect.Effect<EntryInfo | undefined, CacheStoreError>
    /** How many keys a membership set lists, holds excluded (entries already gone may still count until pruned). */
    readonly setSize: (set: string) => Effect.Effect<number, CacheStoreError>
    /** A round trip to the store, in millis. */
    readonly ping: Effect.Effect<number, CacheStoreError>
  }
>()("effect-cacheme/CacheStore") {}

/**
 * An in-process store: bounded (LRU eviction), expiry read from Effect's `Clock` (so `TestClock` moves it).
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
