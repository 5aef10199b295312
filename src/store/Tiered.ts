/**
 * The tiered store: the Redis store, with an in-process tier in front of its reads that Redis itself keeps
 * coherent (server-assisted client-side caching). See `docs/concepts.md`, "The in-process tier".
 *
 * - Every operation but `lookup` is the Redis store's; each write also drops the local copies of the keys it
 *   touches before it resolves (read-your-writes in the writing process).
 * - A lookup is answered from local copies when the entry record and the stamps of all its sets are held locally
 *   and judge a fresh hit; otherwise it is one round trip on the tracking connection (a script that reads the
 *   keys and their remaining lives), and a hit's keys are kept. A batched lookup answers what it can locally and
 *   reads the rest in one such script call (each distinct key once).
 * - The channel: a subscriber connection (RESP2, subscribed to `__redis__:invalidate`) and a reading connection
 *   with `CLIENT TRACKING on REDIRECT <subscriber id>`. A heartbeat, read and written through the reading
 *   connection, comes back on the subscriber connection and proves every message before it arrived; copies are
 *   served only while the last proof is younger than the bound. Either connection closing ends the channel's
 *   session: the tier empties itself and the store reads from Redis until a new session has proven itself.
 *
 * The local rules themselves (what is kept, voided, served) are in `internal/tier.ts`.
 */
import { Deferred, Duration, Effect, type Scope } from "effect"
import type { Cluster, Redis, RedisOptions as IORedisOptions } from "ioredis"
import {
  type CacheStore,
  CacheStoreError,
  type Hit,
  type Lookup,
  type LookupRequest,
  type Mode,
  type Sets
} from "../CacheStore.ts"
import { CachemeConfig, CachemeConfigError } from "../CachemeConfig.ts"
import * as Deadlines from "../internal/deadlines.ts"
import * as LookupBatch from "../internal/lookupBatch.ts"
import * as Protocol from "../internal/protocol.ts"
import { LocalTier, type TierStats } from "../internal/tier.ts"
import { epochOfSet } from "../internal/keys.ts"
import { makeRedisStore, type RedisOptions, verifierOf } from "./Redis.ts"
import * as Scripts from "./scripts.ts"

/**
 * What the in-process tier keeps, and for how long it may trust a silent channel.
 *
 * @category models
 * @since 0.3.0
 */
export interface LocalOptions {
  /** Whether the tier is on (default `true`); off, the store is the Redis store. */
  readonly enabled?: boolean | undefined
  /** Which entry keys (prefix removed) the tier keeps; the others are always read from Redis (default: all). */
  readonly only?: ((key: string) => boolean) | undefined
  /** The most local copies (an entry and each stamp count one; default 10,000). */
  readonly maxEntries?: number | undefined
  /**
   * The most bytes of local copies (default 64 MiB): keys (without the prefix) and stored values counted at 2
   * bytes per character, plus a fixed overhead per copy. A value a hit decoded is kept beside its copy and not
   * counted apart: the stored (encoded) length stands for it.
   */
  readonly maxBytes?: number | undefined
  /** A local copy lives at most this long (default 1 minute), and never longer than its key in Redis. */
  readonly ttl?: Duration.Input | undefined
  /**
   * The staleness bound (default 1 second): local copies are served only while the channel has proven, within
   * this time, that every invalidation Redis sent has arrived. A heartbeat goes every quarter of it.
   */
  readonly bound?: Duration.Input | undefined
}

/**
 * Options of the tiered store: those of the Redis store (a `url`, or a `client` whose options its own two
 * connections copy) and those of its in-process tier.
 *
 * @category models
 * @since 0.3.0
 */
export type TieredOptions = RedisOptions & { readonly local?: LocalOptions | undefined }

/** The tier behind a tiered store, for tests and diagnostics. */
export interface TierHandle {
  readonly stats: TierStats
  /** Whether local copies may be served now. */
  readonly serving: () => boolean
  readonly size: () => number
  readonly byteSize: () => number
  /** Whether the tier holds a copy of a Redis key (the full key, prefix included). */
  readonly has: (redisKey: string) => boolean
  /** How many channel sessions have been established. */
  readonly sessions: () => number
}

const tiers = new WeakMap<CacheStore["Service"], TierHandle>()

/** The tier of a store made by {@link makeTieredStore} (`undefined` for any other store, or a pass-through one). */
export const tierOf = (store: CacheStore["Service"]): TierHandle | undefined => tiers.get(store)

/** The channel Redis sends invalidation messages on, to the connection named in `CLIENT TRACKING ... REDIRECT`. */
const invalidationChannel = "__redis__:invalidate"

/** Whether a string survives UTF-8 (a lone surrogate does not: Redis would name the key otherwise). */
const wellFormed = (text: string): boolean => (text as any).isWellFormed?.() ?? true

type TrackedRead = (keys: ReadonlyArray<string>) => Promise<Array<string | number | null>>

/**
 * One lookup of a tracked read: the Redis keys it reads (the entry first, then its stamps), the same keys as the
 * tier knows them (without the prefix), and its sets.
 */
interface Tracked {
  /** The entry's key (prefix excluded). */
  readonly key: string
  readonly keys: ReadonlyArray<string>
  readonly local: ReadonlyArray<string>
  readonly sets: Sets
}

const positive = (setting: string, value: number | undefined, fallback: number, integer: boolean) =>
  Effect.suspend(() => {
    const chosen = value ?? fallback
    return (integer ? Number.isInteger(chosen) : Number.isFinite(chosen)) && chosen > 0
      ? Effect.succeed(chosen)
      : Effect.die(
          new CachemeConfigError({
            setting,
            message: `layerTiered: ${setting} must be ${integer ? "a whole number" : "a number"} above 0, got ${chosen}`
          })
        )
  })

const millisOf = (setting: string, input: Duration.Input | undefined, fallback: number) =>
  Effect.suspend(() => {
    if (input === undefined) return Effect.succeed(fallback)
    const duration = Duration.fromInput(input)
    const millis = duration._tag === "Some" ? Duration.toMillis(duration.value) : Number.NaN
    return positive(setting, millis, fallback, false)
  })

export const makeTieredStore = (options: TieredOptions): Effect.Effect<CacheStore["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const local = options.local ?? {}
    const maxEntries = yield* positive("local.maxEntries", local.maxEntries, 10_000, true)
    const maxBytes = yield* positive("local.maxBytes", local.maxBytes, 64 * 1024 * 1024, true)
    const ttlMillis = yield* millisOf("local.ttl", local.ttl, 60_000)
    const boundMillis = yield* millisOf("local.bound", local.bound, 1000)
    const base = yield* makeRedisStore(options)
    if (local.enabled === false) return base
    if (options.client !== undefined && (options.client as Cluster).isCluster === true) {
      yield* Effect.logWarning(
        "effect-cacheme: layerTiered over a Redis Cluster has no in-process tier (client tracking cannot follow keys across masters): every read goes to Redis"
      )
      return base
    }
    if (options.client !== undefined && ((options.client as Redis).options?.keyPrefix ?? "") !== "") {
      yield* Effect.logWarning(
        "effect-cacheme: layerTiered over a client with a keyPrefix has no in-process tier (invalidation messages name keys with the client's prefix): every read goes to Redis; use the store's prefix option instead"
      )
      return base
    }
    const settings = yield* CachemeConfig
    const timeoutMillis = Duration.toMillis(
      options.commandTimeout === undefined ? settings.commandTimeout : Duration.fromInputUnsafe(options.commandTimeout)
    )
    const scope = yield* Effect.scope
    const prefix = base.prefix
    const only = local.only
    const tier = new LocalTier({ maxEntries, maxBytes, ttlMillis, boundMillis })
    const processId = Protocol.newStamp()
    let sessions = 0
    /** The reading connection's tracked read while a channel session is established. */
    let current: TrackedRead | undefined

    // -------------------------------------------------------------------------------------------------------------
    // The channel
    // -------------------------------------------------------------------------------------------------------------

    const { Redis: RedisClient } = yield* Effect.promise(() => import("ioredis"))

    /** A connection of the channel: it never reconnects by itself (a new session replaces it) nor queues. */
    const open = (role: "read" | "subscribe") =>
      Effect.acquireRelease(
        Effect.sync(() => {
          const own: IORedisOptions = {
            lazyConnect: true,
            enableOfflineQueue: false,
            maxRetriesPerRequest: 0,
            autoResendUnfulfilledCommands: false,
            autoResubscribe: false,
            retryStrategy: () => null,
            connectTimeout: Math.max(1000, timeoutMillis),
            connectionName: `cacheme-tier-${role}`,
            enableAutoPipelining: role === "read",
            // RESP3 would deliver invalidations as `invalidate` push frames, which ioredis drops: the subscriber
            // speaks RESP2 and receives them as pub/sub messages.
            ...(role === "subscribe" ? { protocol: 2 as const } : {})
          }
          const client =
            options.client !== undefined ? (options.client as Redis).duplicate(own) : new RedisClient(options.url!, own)
          client.on("error", () => {})
          return client
        }),
        (client) => Effect.sync(() => client.disconnect())
      )

    const setupTimeout = Math.max(2000, 2 * timeoutMillis)
    const step = <A>(what: string, f: () => Promise<A>) =>
      Effect.tryPromise({ try: f, catch: (cause) => new Error(`${what}: ${String(cause)}`) }).pipe(
        Effect.timeoutOrElse({
          duration: setupTimeout,
          orElse: () => Effect.fail(new Error(`${what}: no answer within ${setupTimeout} ms`))
        })
      )

    /**
     * One session of the channel: both connections, tracking redirected to the subscriber, heartbeats until
     * either connection closes. Whatever ends it, the tier is emptied and stops serving at once.
     */
    const session = Effect.gen(function* () {
      const number = ++sessions
      const ended = yield* Deferred.make<void>()
      let active = false
      const end = () => {
        if (active) {
          active = false
          current = undefined
          tier.channelDown()
        }
        Deferred.doneUnsafe(ended, Effect.void)
      }
      yield* Effect.addFinalizer(() => Effect.sync(end))
      const subscriber = yield* open("subscribe")
      const reader = yield* open("read")
      for (const client of [subscriber, reader]) {
        client.on("close", end)
        client.on("end", end)
      }
      yield* step("connect", () => Promise.all([subscriber.connect(), reader.connect()]))
      const id = yield* step("CLIENT ID", () => subscriber.client("ID") as Promise<number>)

      const beatPrefix = Protocol.heartbeatPrefix(prefix, processId, number)
      /** Heartbeats sent and not yet back, by key, with when they were sent (oldest first). */
      const beats = new Map<string, number>()
      subscriber.on("messageBuffer", (_channel: Buffer, payload: unknown) => {
        if (!active) return
        if (!Array.isArray(payload)) {
          // A null message: Redis dropped every key (FLUSHALL, FLUSHDB), or a form we do not know.
          tier.flush()
          return
        }
        // Keys first, then the heartbeats among them: a proof counts only once what came with it is handled.
        let proof = Number.NEGATIVE_INFINITY
        for (const item of payload) {
          const key = String(item)
          const sentAt = key.startsWith(beatPrefix) ? beats.get(key) : undefined
          // The tier knows keys without the prefix; only keys under it are ever read (and so tracked).
          if (sentAt === undefined) {
            if (key.startsWith(prefix)) tier.invalidate(key.slice(prefix.length))
          } else {
            beats.delete(key)
            proof = Math.max(proof, sentAt)
          }
        }
        if (proof > Number.NEGATIVE_INFINITY) tier.heartbeat(proof, performance.now())
      })
      yield* step("SUBSCRIBE", () => subscriber.subscribe(invalidationChannel))
      yield* step("CLIENT TRACKING", () => reader.client("TRACKING", "on", "REDIRECT", String(id)))
      reader.defineCommand(Scripts.trackedRead.name, { lua: Scripts.trackedRead.lua })
      const commands = reader as unknown as Record<string, (...args: Array<string | number>) => Promise<unknown>>
      const read: TrackedRead = (keys) =>
        commands[Scripts.trackedRead.name]!(keys.length, ...keys) as Promise<Array<string | number | null>>
      // A connection that closed during the setup ended the session already.
      if (yield* Deferred.isDone(ended)) return
      active = true
      tier.channelUp()
      current = read

      const beatEvery = Math.max(1, Math.floor(boundMillis / 4))
      const beatLife = Math.max(10_000, 4 * boundMillis)
      let counter = 0
      const beat = Effect.sync(() => {
        const key = beatPrefix + counter++
        const sentAt = performance.now()
        // A heartbeat older than the bound can no longer prove anything.
        for (const [old, at] of beats) {
          if (sentAt - at < boundMillis) break
          beats.delete(old)
        }
        beats.set(key, sentAt)
        // Read (so that Redis tracks the key for this connection), then written: Redis then sends its
        // invalidation on the subscriber connection, behind every message it sent before.
        read([key]).catch(() => undefined)
        reader.set(key, "1", "PX", beatLife).catch(() => undefined)
      })
      const silent = Effect.sleep(Math.max(5000, 10 * boundMillis)).pipe(
        Effect.andThen(
          Effect.suspend(() =>
            tier.stats.heartbeats === 0
              ? Effect.logWarning(
                  "effect-cacheme: the in-process tier is not serving: its heartbeat does not come back through Redis's invalidation channel (Redis 7 or later is needed: it tracks keys read by scripts)"
                )
              : Effect.void
          )
        )
      )
      yield* Effect.forkScoped(silent)
      yield* Effect.raceFirst(Deferred.await(ended), Effect.forever(Effect.andThen(beat, Effect.sleep(beatEvery))))
    }).pipe(Effect.scoped)

    // Sessions, one after the other, for as long as the store's scope is open: a failed or ended one is
    // replaced after a pause that grows while sessions keep failing.
    yield* Effect.forkIn(
      Effect.gen(function* () {
        let failures = 0
        while (true) {
          const started = performance.now()
          const exit = yield* Effect.exit(session)
          if (exit._tag === "Failure") {
            failures++
            if (failures === 1 || failures % 20 === 0) {
              yield* Effect.logWarning(
                "effect-cacheme: the in-process tier's channel could not start; reading from Redis"
              ).pipe(Effect.annotateLogs({ cause: String(exit.cause) }))
            }
          } else if (performance.now() - started > 10_000) failures = 0
          yield* Effect.sleep(Math.min(50 * 2 ** Math.min(failures, 7), 5000))
        }
      }),
      scope
    )

    // -------------------------------------------------------------------------------------------------------------
    // Reads
    // -------------------------------------------------------------------------------------------------------------

    // The tier keeps copies under their keys without the prefix (an entry's own key, `~s:set` for a stamp): a hit
    // then looks its entry up by the key it was given, with no key to build.
    const entryKey = (key: string) => prefix + key
    const localStampKey = (set: string) => Protocol.stampKey("", set)
    const prefixOk = wellFormed(prefix)
    interface StampKeys {
      /** In Redis. */
      readonly keys: ReadonlyArray<string>
      /** In the tier. */
      readonly local: ReadonlyArray<string>
      readonly ok: boolean
    }
    const stampKeysBySets = new WeakMap<Sets, StampKeys>()
    const stampKeysOf = (sets: Sets): StampKeys => {
      let found = stampKeysBySets.get(sets)
      if (found === undefined) {
        const keys = sets.names.map((set) => Protocol.stampKey(prefix, set))
        found = { keys, local: sets.names.map(localStampKey), ok: keys.every(wellFormed) }
        stampKeysBySets.set(sets, found)
      }
      return found
    }
    const trackedOf = (key: string, sets: Sets): Tracked => {
      const stampKeys = stampKeysOf(sets)
      return stampKeys.keys.length === 0
        ? { key, keys: [entryKey(key)], local: [key], sets }
        : { key, keys: [entryKey(key), ...stampKeys.keys], local: [key, ...stampKeys.local], sets }
    }

    const deadlines = Deadlines.makeDeadlines(timeoutMillis)
    const lookupFailed = (cause: unknown) =>
      new CacheStoreError({
        operation: "lookup",
        reason: "Unavailable",
        message: `Redis lookup failed: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })
    const lookupTimedOut = () =>
      new CacheStoreError({
        operation: "lookup",
        reason: "Timeout",
        message: `Redis lookup took longer than ${timeoutMillis} ms`
      })

    /**
     * Reads through the tracking connection, in one script call: the distinct keys of every request (a stamp
     * several requests share is read once), each request judged and, when it is a hit, its keys kept under its
     * own ticket (so one request's miss never keeps another's copies, and an invalidation of a key voids only
     * the requests that read it). A reply that comes after the deadline still ends its tickets (and keeps its
     * hits' copies); a failure ends them without copies. Records whose value named groups, one of whose families'
     * epochs moved, are then settled by the Redis store (one more read, see `verifierOf`); only open sets can need it.
     */
    const readTracked = (
      read: TrackedRead,
      requests: ReadonlyArray<Tracked>,
      leaseMillis: (request: number) => number | undefined
    ): Promise<ReadonlyArray<Lookup>> =>
      new Promise((resolve, reject) => {
        const sentAt = performance.now()
        const tickets = requests.map((request) => tier.beginRead(request.local, sentAt))
        const { keys, positions: layout } = LookupBatch.layoutOf(requests, (request) => request.keys)
        let verify = false
        const judged = (flat: Array<string | number | null>): ReadonlyArray<Protocol.Judged> => {
          const values: Array<string | null> = []
          const lives: Array<number> = []
          for (let i = 0; i < flat.length; i += 2) {
            values.push(flat[i] === null || flat[i] === undefined ? null : String(flat[i]))
            lives.push(Number(flat[i + 1]))
          }
          const now = Date.now()
          const ended = performance.now()
          return requests.map((request, r) => {
            const own = layout[r]!.map((position) => values[position] ?? null)
            const lookup = Protocol.judge(own[0] ?? null, request.sets, own.slice(1), now, leaseMillis(r))
            if (lookup._tag === "Verify") verify = true
            // Only a hit's keys are kept: nothing else is ever answered from the tier.
            const kept = tier.endRead(
              tickets[r]!,
              ended,
              lookup._tag === "Hit"
                ? { values: own as Array<string>, lives: layout[r]!.map((position) => lives[position]!) }
                : undefined
            )
            // The copy just kept hands its cell to this hit: the value is decoded once, as it enters the tier.
            const cell = kept && lookup._tag === "Hit" ? tier.cellOf(request.key) : undefined
            return cell === undefined ? lookup : { ...(lookup as Hit), cell }
          })
        }
        const endAll = () => {
          const now = performance.now()
          for (const ticket of tickets) tier.endRead(ticket, now)
        }
        Deadlines.deadlined(
          deadlines,
          () => {
            try {
              return read(keys).catch((cause) => {
                endAll()
                throw cause
              })
            } catch (cause) {
              endAll()
              throw cause
            }
          },
          (outcome) => {
            if (!outcome.ok) return reject(outcome.error)
            const lookups = judged(outcome.value)
            if (!verify) return resolve(lookups as ReadonlyArray<Lookup>)
            settle(
              requests.map((request) => request.key),
              lookups
            ).then(resolve, reject)
          },
          lookupTimedOut,
          lookupFailed,
          judged
        )
      })

    /** A batch asked for at once, as an Effect. */
    const trackedLookups = (
      read: TrackedRead,
      requests: ReadonlyArray<Tracked>,
      leaseMillis: number | undefined
    ): Effect.Effect<ReadonlyArray<Lookup>, CacheStoreError> =>
      Effect.callback((resume) => {
        readTracked(read, requests, () => leaseMillis).then(
          (lookups) => resume(Effect.succeed(lookups)),
          (error: CacheStoreError) => resume(Effect.fail(error))
        )
      })

    /** Single tracked lookups of one turn, one tracked read per reading connection (see `LookupBatch`). */
    const batches = new WeakMap<TrackedRead, LookupBatch.LookupBatch>()
    const batchOf = (read: TrackedRead) => {
      let batch = batches.get(read)
      if (batch === undefined) {
        batch = LookupBatch.make((queries) =>
          readTracked(
            read,
            queries.map(({ key, sets }) => trackedOf(key, sets)),
            (r) => queries[r]!.leaseMillis
          )
        )
        batches.set(read, batch)
      }
      return batch
    }

    /**
     * A fresh hit answered from local copies alone (the entry and every stamp held, and current), with the cell of
     * the entry's copy.
     */
    const localHit = (key: string, stampKeys: ReadonlyArray<string>, sets: Sets, now: number): Hit | undefined => {
      const record = tier.copy(key, now)
      if (record === undefined) return undefined
      const copies: Array<string> = new Array(stampKeys.length)
      for (let i = 0; i < stampKeys.length; i++) {
        const stamp = tier.get(stampKeys[i]!, now)
        if (stamp === undefined) return undefined
        copies[i] = stamp
      }
      const value = Protocol.freshValue(record.value, sets.json, copies, Date.now(), sets.open === true)
      if (value === undefined) return undefined
      tier.stats.localHits++
      return { _tag: "Hit", value, cell: record }
    }

    // A record whose value named groups, one of whose families' epochs moved, is verified by the Redis store (a
    // read of those groups' stamps); its keys are not kept (the verification rewrites the record, and the next
    // tracked read keeps it).
    const settle = verifierOf(base)!

    /**
     * Whether a read of an entry may use the tier (and keep its copies): the caller's hint (`false`: never, `true`:
     * even where `only` would not), else `only`; and every key survives UTF-8.
     */
    const trackable = (key: string, stampKeys: { readonly ok: boolean }, local: boolean | undefined) =>
      local !== false &&
      (local === true || only === undefined || only(key)) &&
      stampKeys.ok &&
      prefixOk &&
      wellFormed(key)

    const lookup = (
      key: string,
      sets: Sets,
      leaseMillis?: number | undefined,
      local?: boolean | undefined
    ): Effect.Effect<Lookup, CacheStoreError> => {
      const read = current
      if (read === undefined) return base.lookup(key, sets, leaseMillis)
      const now = performance.now()
      if (!tier.serving(now)) return base.lookup(key, sets, leaseMillis)
      const stamps = stampKeysOf(sets)
      if (!trackable(key, stamps, local)) return base.lookup(key, sets, leaseMillis)
      const hit = localHit(key, stamps.local, sets, now)
      if (hit !== undefined) return Effect.succeed(hit)
      return batchOf(read)({ key, sets, leaseMillis })
    }

    /** A fresh hit from local copies, at once (`hitNow`); `undefined` when `lookup` must read Redis. */
    const hitNow = (
      key: string,
      sets: Sets,
      _leaseMillis: number | undefined,
      local: boolean | undefined
    ): Hit | undefined => {
      if (current === undefined) return undefined
      const now = performance.now()
      if (!tier.serving(now)) return undefined
      const stamps = stampKeysOf(sets)
      return trackable(key, stamps, local) ? localHit(key, stamps.local, sets, now) : undefined
    }

    /**
     * A batch: what local copies answer (fresh hits) is answered at once; the rest is one tracked read of their
     * distinct keys, beside one plain read (the Redis store's) of the entries the tier does not keep.
     */
    const lookupMany = (
      requests: ReadonlyArray<LookupRequest>,
      leaseMillis?: number | undefined,
      local?: boolean | undefined
    ): Effect.Effect<ReadonlyArray<Lookup>, CacheStoreError> => {
      const read = current
      if (read === undefined || local === false || requests.length === 0) return base.lookupMany(requests, leaseMillis)
      const now = performance.now()
      if (!tier.serving(now)) return base.lookupMany(requests, leaseMillis)
      const answers: Array<Lookup> = new Array(requests.length)
      const tracked: Array<Tracked> = []
      const trackedAt: Array<number> = []
      const untracked: Array<LookupRequest> = []
      const untrackedAt: Array<number> = []
      requests.forEach((request, i) => {
        const stamps = stampKeysOf(request.sets)
        if (!trackable(request.key, stamps, local)) {
          untracked.push(request)
          untrackedAt.push(i)
          return
        }
        const hit = localHit(request.key, stamps.local, request.sets, now)
        if (hit !== undefined) {
          answers[i] = hit
          return
        }
        tracked.push(trackedOf(request.key, request.sets))
        trackedAt.push(i)
      })
      if (tracked.length === 0 && untracked.length === 0) return Effect.succeed(answers)
      return Effect.map(
        Effect.all(
          [
            tracked.length === 0 ? Effect.succeed([]) : trackedLookups(read, tracked, leaseMillis),
            untracked.length === 0 ? Effect.succeed([]) : base.lookupMany(untracked, leaseMillis)
          ],
          { concurrency: 2 }
        ),
        ([fromTier, fromRedis]) => {
          fromTier.forEach((lookup, j) => {
            answers[trackedAt[j]!] = lookup
          })
          fromRedis.forEach((lookup, j) => {
            answers[untrackedAt[j]!] = lookup
          })
          return answers
        }
      )
    }

    // -------------------------------------------------------------------------------------------------------------
    // Writes: the Redis store's, each dropping the copies of the keys it touches before it resolves
    // -------------------------------------------------------------------------------------------------------------

    const dropping = <A>(
      effect: Effect.Effect<A, CacheStoreError>,
      keys: () => ReadonlyArray<string>
    ): Effect.Effect<A, CacheStoreError> =>
      Effect.ensuring(
        effect,
        Effect.sync(() => {
          for (const key of keys()) tier.invalidate(key)
        })
      )

    /** The tier's keys of the stamps of `sets`. */
    const setKeys = (sets: ReadonlyArray<string>) => sets.map(localStampKey)
    /** The stamps a change of `sets` touches: theirs, and their families' epochs. */
    const changedKeys = (sets: ReadonlyArray<string>) => [
      ...setKeys(sets),
      ...setKeys(sets.flatMap((set) => epochOfSet(set) ?? []))
    ]

    const store: CacheStore["Service"] = {
      ...base,
      kind: "tiered",
      lookup,
      hitNow,
      lookupMany,
      lease: (key, token, sets, view, intent, leaseMillis, lifeMillis) =>
        dropping(base.lease(key, token, sets, view, intent, leaseMillis, lifeMillis), () => [
          key,
          ...stampKeysOf(sets).local
        ]),
      fill: (key, token, sets, stamps, fill) =>
        dropping(base.fill(key, token, sets, stamps, fill), () => [key, ...setKeys(fill.groups ?? [])]),
      renew: (key, token, leaseMillis) => dropping(base.renew(key, token, leaseMillis), () => [key]),
      release: (key, token, sets, stamps, created) =>
        dropping(base.release(key, token, sets, stamps, created), () => [key, ...stampKeysOf(sets).local]),
      invalidate: (keys, mode: Mode) => dropping(base.invalidate(keys, mode), () => keys),
      invalidateSet: (set, mode: Mode) => dropping(base.invalidateSet(set, mode), () => changedKeys([set])),
      hold: (sets, token, holdMillis) => dropping(base.hold(sets, token, holdMillis), () => changedKeys(sets)),
      releaseHold: (sets, token) => dropping(base.releaseHold(sets, token), () => changedKeys(sets)),
      // The keys a pattern reaches are only known to the scan: the whole tier goes.
      invalidatePattern: (pattern, mode: Mode) =>
        Effect.ensuring(
          base.invalidatePattern(pattern, mode),
          Effect.sync(() => tier.flush())
        )
    }
    tiers.set(store, {
      stats: tier.stats,
      serving: () => current !== undefined && tier.serving(performance.now()),
      size: () => tier.size,
      byteSize: () => tier.byteSize,
      has: (redisKey) => redisKey.startsWith(prefix) && tier.has(redisKey.slice(prefix.length)),
      sessions: () => sessions
    })
    return store
  })
