/**
 * The Redis store over `ioredis`, speaking the protocol of `internal/protocol.ts`:
 *
 * - a lookup is one `MGET` of the entry and its sets' stamps (on a Cluster, the same `GET`s sent together); a
 *   batched lookup one `MGET` of every entry and every distinct stamp;
 * - a miss then takes the lease (a plain `SET NX` when the key is empty, a script otherwise) and creates the
 *   stamps its sets lack, in one round trip; the fill is one script;
 * - an invalidation changes one stamp (one key); reclaiming the memory of the entries it killed follows, in
 *   bounded batches that each have their own command timeout.
 *
 * `ioredis` is loaded only when the layer opens its own connection from a URL, so it stays an optional peer.
 */
import { Duration, Effect, type Scope } from "effect"
import type { Cluster, Redis } from "ioredis"
import {
  CacheStoreError,
  type CacheStore,
  type Fill,
  type Leasing,
  type Lookup,
  type LookupRequest,
  type Mode,
  type Sets,
  type View
} from "../CacheStore.ts"
import { CachemeConfig } from "../CachemeConfig.ts"
import { compileGlob, escapeGlob } from "../internal/glob.ts"
import * as Deadlines from "../internal/deadlines.ts"
import * as LookupBatch from "../internal/lookupBatch.ts"
import { epochOfSet, isEpochSet } from "../internal/keys.ts"
import * as Notices from "../internal/notices.ts"
import * as Protocol from "../internal/protocol.ts"
import * as Scripts from "./scripts.ts"
import { runSweeps, type Sweeper, makeSweeper } from "./sweep.ts"

/**
 * Options of the Redis store: a `client` you own, or a `url` for a connection the layer owns.
 *
 * @category models
 * @since 0.1.0
 */
export type RedisOptions = (
  | { readonly client: Redis | Cluster; readonly url?: undefined }
  | { readonly url: string; readonly client?: undefined }
) & {
  /** Overrides `CachemeConfig`'s prefix. */
  readonly prefix?: string | undefined
  /** Overrides `CachemeConfig`'s command timeout. */
  readonly commandTimeout?: Duration.Input | undefined
  /** Entries reclaimed per round trip after a set is invalidated (default 500). */
  readonly batchSize?: number | undefined
  /** Overrides `CachemeConfig`'s `sweepInterval` (`null`: no sweep). */
  readonly sweepInterval?: Duration.Input | null | undefined
  /** Index members the sweep checks per step (default 500). */
  readonly sweepBatchSize?: number | undefined
}

type ScriptFn = (...args: Array<string | number>) => Promise<unknown>
type FillReply = [number, string?, string?]
const defineCommands = (client: Redis | Cluster): Record<string, ScriptFn> => {
  for (const { name, lua, numberOfKeys } of Scripts.all) {
    if (typeof (client as any)[name] !== "function") {
      client.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua })
    }
  }
  return client as unknown as Record<string, ScriptFn>
}

/** Resumes on the next turn of the event loop (after I/O callbacks and the promise jobs of the current one). */
const nextTurn: Effect.Effect<void> = Effect.callback<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const openClient = (url: string, timeoutMillis: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const { Redis } = await import("ioredis")
      const client = new Redis(url, {
        lazyConnect: true,
        // Fail commands at once while disconnected: the cache fails open instead of queueing callers.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
        // A command the server ran but whose reply was lost with the connection must not run a second time: a
        // stamp creation resent after an invalidation deleted that stamp would bring the stamp (and the values
        // recorded under it) back.
        autoResendUnfulfilledCommands: false,
        // Commands issued in one turn of the event loop share one socket write: a write's hold and another's
        // release, concurrent callers' reads. On a busy host the socket write is most of a command's cost.
        enableAutoPipelining: true,
        connectTimeout: Math.max(1000, timeoutMillis),
        retryStrategy: (times) => Math.min(50 * times, 1000)
      })
      // Failures reach callers as CacheStoreError; the event only keeps Node from printing each retry.
      client.on("error", () => {})
      await client.connect().catch(() => undefined)
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )

/**
 * Where a Redis store keeps its client, for the admin (which counts login attempts in the same Redis). Not part
 * of the `CacheStore` interface: a store that is not this one has none.
 */
const clientSymbol: unique symbol = Symbol.for("effect-cacheme/store/Redis/client")

/** The ioredis client of a Redis store; `undefined` for any other store. */
export const clientOf = (store: CacheStore["Service"]): Redis | Cluster | undefined =>
  (store as { readonly [clientSymbol]?: Redis | Cluster })[clientSymbol]

/** Where a Redis store keeps its index sweep, for tests and tools (see {@link sweeperOf}). */
const sweeperSymbol: unique symbol = Symbol.for("effect-cacheme/store/Redis/sweeper")

/** The index sweep of a Redis store (or of the tiered store over it); `undefined` for any other store. */
export const sweeperOf = (store: CacheStore["Service"]): Sweeper | undefined =>
  (store as { readonly [sweeperSymbol]?: Sweeper })[sweeperSymbol]

/** Where a Redis store keeps its verification of records whose value named groups, for the tiered store. */
const verifySymbol: unique symbol = Symbol.for("effect-cacheme/store/Redis/verify")

/**
 * Settles what lookups of `keys` judged: the records to verify (`Protocol.Verify`) read their value's groups'
 * stamps, all in one more read; the others are answered as judged.
 */
export type Settle = (
  keys: ReadonlyArray<string>,
  judged: ReadonlyArray<Protocol.Judged>
) => Promise<ReadonlyArray<Lookup>>

/** The verification of a Redis store (see {@link Settle}); `undefined` for any other store. */
export const verifierOf = (store: CacheStore["Service"]): Settle | undefined =>
  (store as { readonly [verifySymbol]?: Settle })[verifySymbol]

/** How often (in fills per process) a fill also drops the index members whose life is over. */
const pruneEvery = 16

export const makeRedisStore = (options: RedisOptions): Effect.Effect<CacheStore["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const settings = yield* CachemeConfig
    const prefix = options.prefix ?? settings.prefix
    const timeout =
      options.commandTimeout === undefined ? settings.commandTimeout : Duration.fromInputUnsafe(options.commandTimeout)
    const timeoutMillis = Duration.toMillis(timeout)
    const batchSize = options.batchSize ?? 500
    const scope = yield* Effect.scope
    // A `Redis` or a `Cluster`, typed as `Redis`: both take the same commands.
    const client = (options.client ?? (yield* openClient(options.url!, timeoutMillis))) as Redis
    const scripts = defineCommands(client)
    const isCluster = (client as unknown as Cluster).isCluster === true
    const entryKey = (key: string) => prefix + key
    const stampKey = (set: string) => Protocol.stampKey(prefix, set)
    const indexKey = (set: string) => Protocol.indexKey(prefix, set)
    const protocolPrefix = prefix + Protocol.setMarker
    let fills = 0

    // Completion notices (single Redis only: a Cluster's waiters poll). The subscriber connection opens with the
    // first herd wait and resubscribes by itself after a reconnect; a notice missed meanwhile only costs a poll.
    let subscriber: Redis | undefined
    const noticeChannel = (key: string) => (isCluster ? "" : Notices.channel(prefix, key))
    const noticePrefix = Notices.channel(prefix, "")
    const subscriberOf = (): Redis => {
      if (subscriber === undefined) {
        const opened = client.duplicate({
          lazyConnect: false,
          enableOfflineQueue: true,
          enableAutoPipelining: false,
          // Not ioredis's own resubscription: it restores channels whose UNSUBSCRIBE was lost with the connection.
          // After a reconnect, the keys still watched are subscribed again (`ready` below).
          autoResubscribe: false,
          maxRetriesPerRequest: null,
          connectionName: "cacheme-notices",
          // Pub/sub messages as RESP2 messages (RESP3 push frames are not all delivered by ioredis).
          protocol: 2
        })
        opened.on("error", () => {})
        let connected = false
        opened.on("ready", () => {
          if (connected) {
            const channels = notices.keys().map((key) => Notices.channel(prefix, key))
            if (channels.length > 0) opened.subscribe(...channels).catch(() => undefined)
          }
          connected = true
        })
        opened.on("message", (channel: string) => {
          if (channel.startsWith(noticePrefix)) notices.notify(channel.slice(noticePrefix.length))
        })
        subscriber = opened
      }
      return subscriber
    }
    const notices = Notices.makeNotices({
      subscribe: (key) =>
        void subscriberOf()
          .subscribe(Notices.channel(prefix, key))
          .catch(() => undefined),
      unsubscribe: (key) => void subscriber?.unsubscribe(Notices.channel(prefix, key)).catch(() => undefined)
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => subscriber?.disconnect()))

    const deadlines = Deadlines.makeDeadlines(timeoutMillis)
    const timedOut = (operation: string) =>
      new CacheStoreError({
        operation,
        reason: "Timeout",
        message: `Redis ${operation} took longer than ${timeoutMillis} ms`
      })

    const failure = (operation: string, cause: unknown) =>
      new CacheStoreError({
        operation,
        reason: "Unavailable",
        message: `Redis ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
        cause
      })

    /**
     * Calls `f` under the store's command deadline (see `Deadlines.deadlined`): `f` calls `step()` before each
     * round trip after its first, which starts the deadline again.
     */
    const deadlined = <A>(
      operation: string,
      f: (step: () => void) => Promise<A>,
      settle: (outcome: Deadlines.Outcome<A, CacheStoreError>) => void,
      late?: (value: A) => void
    ) =>
      Deadlines.deadlined(
        deadlines,
        f,
        settle,
        () => timedOut(operation),
        (cause) => failure(operation, cause),
        late
      )

    // Racing the promise against an Effect sleep would start and interrupt fibers on every command.
    const run = <A>(
      operation: string,
      f: (step: () => void) => Promise<A>,
      late?: (value: A) => void
    ): Effect.Effect<A, CacheStoreError> =>
      Effect.callback<A, CacheStoreError>((resume) => {
        const abandon = deadlined(
          operation,
          f,
          (exit) => resume(exit.ok ? Effect.succeed(exit.value) : Effect.fail(exit.error)),
          late
        )
        return Effect.sync(abandon)
      })

    const getMany = (keys: ReadonlyArray<string>): Promise<Array<string | null>> =>
      isCluster ? Promise.all(keys.map((key) => client.get(key))) : client.mget(...keys)

    // The stamp keys of a set list, made once per list (Memo keeps one list per node instance).
    const stampKeysBySets = new WeakMap<Sets, ReadonlyArray<string>>()
    const stampKeysOf = (sets: Sets) => {
      let keys = stampKeysBySets.get(sets)
      if (keys === undefined) {
        keys = sets.names.map(stampKey)
        stampKeysBySets.set(sets, keys)
      }
      return keys
    }

    /**
     * Settles judged lookups of `keys`: records whose value named groups, one of whose families' epochs moved
     * (`Verify`), are judged on those groups' stamps, all read in one more `MGET`; when they are all current, the
     * record takes the epochs its lookup read (a rewrite sent after the answer, which nobody waits for: a read
     * that still finds the old epochs verifies again).
     */
    const settle = async (
      keys: ReadonlyArray<string>,
      judged: ReadonlyArray<Protocol.Judged>
    ): Promise<ReadonlyArray<Lookup>> => {
      const pending: Array<number> = []
      const stampKeys: Array<string> = []
      judged.forEach((one, i) => {
        if (one._tag !== "Verify") return
        pending.push(i)
        for (const group of one.groups) stampKeys.push(stampKey(group))
      })
      if (pending.length === 0) return judged as ReadonlyArray<Lookup>
      const stamps = await getMany(stampKeys)
      const now = Date.now()
      const answers = judged.slice()
      let at = 0
      for (const i of pending) {
        const one = judged[i] as Protocol.Verify
        const { lookup, reepoch } = Protocol.verified(one, stamps.slice(at, at + one.groups.length), now)
        at += one.groups.length
        answers[i] = lookup
        if (reepoch !== undefined)
          scripts.cachemeReepoch!(entryKey(keys[i]!), reepoch.fillToken, reepoch.from, reepoch.to).catch(
            () => undefined
          )
      }
      return answers as ReadonlyArray<Lookup>
    }

    /**
     * {@link settle} under the store's command deadline, for every read path (this store's batches and the tiered
     * store's tracked reads): judged lookups without a `Verify` are answered at once, with no further step.
     */
    const settleWith: Settle = (keys, judged) => {
      if (!judged.some((one) => one._tag === "Verify")) return Promise.resolve(judged as ReadonlyArray<Lookup>)
      return new Promise((resolve, reject) => {
        deadlined(
          "lookup",
          () => settle(keys, judged),
          (outcome) => (outcome.ok ? resolve(outcome.value) : reject(outcome.error))
        )
      })
    }

    const keysOfQuery = (query: LookupBatch.Query) => {
      const stamps = stampKeysOf(query.sets)
      return stamps.length === 0 ? [entryKey(query.key)] : [entryKey(query.key), ...stamps]
    }

    /**
     * One `MGET` of the distinct keys of a batch of lookups (a `GET` each on a Cluster), each then judged; records
     * whose value named groups, one of whose families' epochs moved, are then settled with one more read (see
     * {@link settle}), which only open sets (a node whose value names groups) can need.
     */
    const readLookups = (queries: ReadonlyArray<LookupBatch.Query>): Promise<ReadonlyArray<Lookup>> =>
      new Promise((resolve, reject) => {
        const { keys, positions } = LookupBatch.layoutOf(queries, keysOfQuery)
        deadlined(
          "lookup",
          () => (keys.length === 1 ? client.get(keys[0]!).then((record) => [record]) : getMany(keys)),
          (outcome) => {
            if (!outcome.ok) return reject(outcome.error)
            const now = Date.now()
            let verify = false
            const judged = queries.map((query, i) => {
              const one = LookupBatch.judgeAt(query, positions[i]!, outcome.value, now)
              if (one._tag === "Verify") verify = true
              return one
            })
            if (!verify) return resolve(judged as ReadonlyArray<Lookup>)
            settleWith(
              queries.map((query) => query.key),
              judged
            ).then(resolve, reject)
          }
        )
      })

    /**
     * Single lookups of one turn of the event loop go out as one `MGET` (see `LookupBatch`): the same key asked
     * twice before the command is sent is read once, for both.
     */
    const lookups = LookupBatch.make(readLookups)

    const lookup = (
      key: string,
      sets: Sets,
      leaseMillis?: number | undefined
    ): Effect.Effect<Lookup, CacheStoreError> => lookups({ key, sets, leaseMillis })

    /**
     * A batch asked for at once (`Memo.cachedMany`): one `MGET` of every entry and every distinct stamp, each
     * request then judged as `lookup` judges it.
     */
    const lookupMany = (
      requests: ReadonlyArray<LookupRequest>,
      leaseMillis?: number | undefined
    ): Effect.Effect<ReadonlyArray<Lookup>, CacheStoreError> =>
      requests.length === 0
        ? Effect.succeed([])
        : Effect.callback((resume) => {
            readLookups(requests.map(({ key, sets }) => ({ key, sets, leaseMillis }))).then(
              (lookups) => resume(Effect.succeed(lookups)),
              (error: CacheStoreError) => resume(Effect.fail(error))
            )
          })

    /** Gives a lease up and drops the stamps it made (a failed load, or a caller that gave up on the lease). */
    const releaseLease = (
      key: string,
      token: string,
      sets: Sets,
      stamps: ReadonlyArray<string>,
      created: ReadonlyArray<boolean>
    ) =>
      Promise.all([
        scripts.cachemeRelease!(entryKey(key), token, noticeChannel(key)),
        ...sets.names.flatMap((set, i) =>
          created[i] && Protocol.dropsOnRelease(set) ? [scripts.cachemeDropStamp!(stampKey(set), stamps[i]!)] : []
        )
      ])

    // A lease whose caller gave up: released as after a failed load.
    const releaseLate = (key: string, token: string, sets: Sets) => (leasing: Leasing) => {
      if (leasing._tag === "Leased")
        releaseLease(key, token, sets, leasing.stamps, leasing.created).catch(() => undefined)
    }

    /**
     * Makes the stamp of a set that had none (`SET NX GET`, living `life` millis, `undefined` for ever), unless
     * another caller made it first: resolves to the stamp that stands and whether this call made it.
     */
    const makeStamp = (
      set: string,
      life: number | undefined
    ): Promise<{ readonly stamp: string; readonly created: boolean }> => {
      const fresh = Protocol.newStamp()
      const write = (
        life === undefined
          ? client.call("SET", stampKey(set), fresh, "NX", "GET")
          : client.call("SET", stampKey(set), fresh, "PX", life, "NX", "GET")
      ).catch((cause) => {
        // A key of another type there: replaced (one more round trip), never an error for ever.
        if (!String((cause as Error)?.message ?? cause).startsWith("WRONGTYPE")) throw cause
        return scripts.cachemeMakeStamp!(stampKey(set), fresh, life ?? "")
      })
      return write.then((before) =>
        before === null ? { stamp: fresh, created: true } : { stamp: String(before), created: false }
      )
    }

    const lease = (
      key: string,
      token: string,
      sets: Sets,
      view: View,
      intent: "keep" | "replace",
      leaseMillis: number,
      lifeMillis?: number | undefined
    ) =>
      run(
        "lease",
        async (step): Promise<Leasing> => {
          // Sets without a stamp get one, made here unless another caller's lease made it first. A set the
          // lookup found held is read again the same way: its hold may have been released since.
          const stampWrites = view.stamps.map((stamp, i) => {
            if (stamp !== null && !Protocol.isHold(stamp)) return { stamp, created: false }
            const set = sets.names[i]!
            // A held epoch drops the holds that lapsed since (one more round trip, only then): when none is left,
            // this load may be stored.
            if (stamp !== null && isEpochSet(set))
              return editEpoch(stampKey(set), "clean").then((now) =>
                now === null
                  ? makeStamp(set, Protocol.stampLifeMillis(set, lifeMillis))
                  : { stamp: now, created: false }
              )
            return makeStamp(set, Protocol.stampLifeMillis(set, lifeMillis))
          })
          const record = Protocol.leaseRecord(token, Date.now() + leaseMillis)
          const viaScript = () =>
            scripts.cachemeLease!(entryKey(key), token, leaseMillis, view.seen, intent, record) as Promise<
              [number, string?, string?]
            >
          const entry: Promise<[number, string?, string?]> = view.present
            ? viaScript()
            : client.call("SET", entryKey(key), record, "PX", leaseMillis, "NX", "GET").then(
                (before) => {
                  if (before === null) return [Scripts.LeaseReply.Leased]
                  const parsed = Protocol.parse(String(before))
                  return parsed._tag === "Lease"
                    ? [Scripts.LeaseReply.Busy, parsed.holder]
                    : [Scripts.LeaseReply.Changed]
                },
                // A key of another type: the script repairs it (one more round trip).
                () => {
                  step()
                  return viaScript()
                }
              )
          const [reply, made] = await Promise.all([entry, Promise.all(stampWrites)])
          switch (reply[0]) {
            case Scripts.LeaseReply.Leased: {
              // A dead value was replaced: its members leave the indexes (a live one is never replaced).
              if (reply[1] !== undefined && reply[2] !== undefined) {
                step()
                await Promise.all(leaveIndexes(key, reply[1], reply[2]))
              }
              const stamps = made.map((write) => write.stamp)
              return {
                _tag: "Leased",
                stamps,
                created: made.map((write) => write.created),
                held: stamps.some(Protocol.isHold)
              }
            }
            case Scripts.LeaseReply.Busy:
              return { _tag: "Busy", holder: reply[1] ?? "" }
            default:
              return { _tag: "Changed" }
          }
        },
        releaseLate(key, token, sets)
      )

    // The sets that have an index (an epoch has none), made once per set list.
    const indexedBySets = new WeakMap<Sets, ReadonlyArray<string>>()
    const indexedOf = (sets: Sets) => {
      let names = indexedBySets.get(sets)
      if (names === undefined) {
        names = sets.open ? sets.names.filter((set) => !isEpochSet(set)) : sets.names
        indexedBySets.set(sets, names)
      }
      return names
    }

    const fill = (key: string, token: string, sets: Sets, stamps: ReadonlyArray<string>, value: Fill) =>
      run("fill", async (step) => {
        const now = Date.now()
        const freshUntil = value.freshMillis === undefined ? undefined : now + value.freshMillis
        const groups = value.groups ?? []
        const life = value.lifeMillis ?? -1
        const score = value.lifeMillis === undefined ? "+inf" : String(now + value.lifeMillis)
        const member = Protocol.indexMember(token, key)
        const prune = fills++ % pruneEvery === 0 ? "1" : "0"
        const indexed = groups.length === 0 ? indexedOf(sets) : [...indexedOf(sets), ...groups]
        const body = {
          fillToken: token,
          setsJson: groups.length === 0 ? sets.json : JSON.stringify([...sets.names, ...groups]),
          stamps: stamps.join(",")
        }
        // The epochs the lease recorded, which the fill checks, and the life of a group stamp it makes.
        const epochs = groups.length === 0 ? [] : sets.names.flatMap((set, i) => (isEpochSet(set) ? [i] : []))
        const stampLife = groups.length === 0 ? undefined : Protocol.stampLifeMillis(groups[0]!, value.lifeMillis)
        if (!isCluster) {
          const indexes = indexed.map(indexKey)
          const channel = noticeChannel(key)
          const reply = (
            groups.length === 0
              ? await scripts.cachemeFill!(
                  1 + indexes.length,
                  entryKey(key),
                  ...indexes,
                  token,
                  `${Protocol.valueRecordHead(freshUntil, body)}\n${value.value}`,
                  life,
                  indexes.length,
                  score,
                  member,
                  prune,
                  now,
                  channel
                )
              : await scripts.cachemeFill!(
                  1 + indexes.length + epochs.length + groups.length,
                  entryKey(key),
                  ...indexes,
                  ...epochs.map((i) => stampKey(sets.names[i]!)),
                  ...groups.map(stampKey),
                  token,
                  Protocol.valueRecordHead(freshUntil, body),
                  life,
                  indexes.length,
                  score,
                  member,
                  prune,
                  now,
                  channel,
                  epochs.length,
                  groups.length,
                  ...epochs.map((i) => stamps[i]!),
                  ...groups.map(() => Protocol.newStamp()),
                  stampLife ?? -1,
                  `\n${value.value}`
                )
          ) as FillReply
          return leftIndexes(key, reply, step)
        }
        // A Cluster spreads the keys over slots: the fill goes alone, the index writes beside it. The stamps of
        // the value's groups are read (or made) first, then the epochs checked, then the record written: a group
        // changed after its stamp was read moves an epoch after that read (see `bump`).
        let named: ReadonlyArray<string> = []
        if (groups.length > 0) {
          named = await Promise.all(groups.map((set) => makeStamp(set, stampLife).then((made) => made.stamp)))
          const current = await getMany(epochs.map((i) => stampKey(sets.names[i]!)))
          if (named.some(Protocol.isHold) || current.some((epoch, j) => epoch !== stamps[epochs[j]!])) {
            await scripts.cachemeRelease!(entryKey(key), token, noticeChannel(key))
            return false
          }
        }
        const record = `${Protocol.valueRecordHead(freshUntil, named.length === 0 ? body : { ...body, stamps: [...stamps, ...named].join(",") })}\n${value.value}`
        const reply = (await scripts.cachemeFill!(
          1,
          entryKey(key),
          token,
          record,
          life,
          0,
          score,
          member,
          prune,
          now
        )) as FillReply
        if (!(await leftIndexes(key, reply, step))) return false
        step()
        await Promise.all(
          indexed.flatMap((set) => [
            ...(prune === "1" ? [client.zremrangebyscore(indexKey(set), "-inf", `(${now}`)] : []),
            client.zadd(indexKey(set), score, member)
          ])
        )
        return true
      })

    /** Whether a fill stored its value; a value it replaced (a refresh) takes its members out of the indexes. */
    const leftIndexes = async (
      key: string,
      [status, fillToken, setsJson]: FillReply,
      step: () => void
    ): Promise<boolean> => {
      if (status !== Scripts.FillReply.Stored) return false
      if (fillToken !== undefined && setsJson !== undefined) {
        step()
        await Promise.all(leaveIndexes(key, fillToken, setsJson))
      }
      return true
    }

    const renew = (key: string, token: string, leaseMillis: number) =>
      run("renew", () =>
        scripts.cachemeRenew!(entryKey(key), token, leaseMillis, Protocol.leaseUntilField(Date.now() + leaseMillis))
      ).pipe(Effect.map((renewed) => renewed === 1))

    const release = (
      key: string,
      token: string,
      sets: Sets,
      stamps: ReadonlyArray<string>,
      created: ReadonlyArray<boolean>
    ) => run("release", () => releaseLease(key, token, sets, stamps, created)).pipe(Effect.asVoid)

    /** Takes the members of a removed entry out of the indexes of its sets (exact members: no later fill is hit). */
    const leaveIndexes = (
      key: string,
      fillToken: string,
      setsJson: string,
      except?: string
    ): Array<Promise<unknown>> => {
      const member = Protocol.indexMember(fillToken, key)
      return Protocol.parseSets(setsJson)
        .filter((set) => set !== except && !isEpochSet(set))
        .map((set) => client.zrem(indexKey(set), member))
    }

    /** Invalidates entry keys (prefix excluded); returns how many held a value. */
    const invalidateKeys = async (keys: ReadonlyArray<string>, mode: Mode, step: () => void): Promise<number> => {
      const replies = (await Promise.all(
        keys.map((key) => scripts.cachemeInvalidateKey!(entryKey(key), mode))
      )) as Array<[number, string?, string?]>
      const cleanup: Array<Promise<unknown>> = []
      let count = 0
      replies.forEach(([held, fillToken, setsJson], i) => {
        count += held
        if (fillToken !== undefined && setsJson !== undefined)
          cleanup.push(...leaveIndexes(keys[i]!, fillToken, setsJson))
      })
      if (cleanup.length > 0) {
        step()
        await Promise.all(cleanup)
      }
      return count
    }

    const invalidate = (keys: ReadonlyArray<string>, mode: Mode) =>
      run("invalidate", (step) => invalidateKeys(keys, mode, step))

    /**
     * Reclaims the entries of `set` that recorded the incarnation of `old` (the stamp an invalidation replaced):
     * counts them, and removes them when `mode` is hard. Goes through the set's index in batches, each its own
     * command (and timeout); stops after as many batches as the index had at the start, so a set refilled as fast
     * as it drains cannot hold the caller. Each batch reads a page of the index (`ZRANGE`) and, beside it, the
     * set's current stamp (entries filled under it are kept), unless the caller knows it (`current`: a hold's
     * marker); a `ZCARD` bounds the batches only when the first page is full.
     */
    const reclaim = (
      set: string,
      old: string,
      mode: Mode,
      current?: string | undefined
    ): Effect.Effect<number, CacheStoreError> => {
      if (old === "" || Protocol.isHold(old)) return Effect.succeed(0)
      const inc = Protocol.incarnation(old)
      const index = indexKey(set)
      const batch = (offset: number) =>
        run("reclaim", async (step) => {
          // The set's current stamp is read beside the page (one round trip), unless the caller knows it.
          const [members, stamp] = await Promise.all([
            client.zrange(index, offset, String(offset + batchSize - 1)),
            current ?? client.get(stampKey(set)).then((found) => found ?? "")
          ])
          if (members.length === 0) return { counted: 0, seen: 0, kept: 0, gone: 0 }
          step()
          const replies = (await Promise.all(
            members.map((member) =>
              scripts.cachemeReclaim!(
                entryKey(member.slice(Protocol.tokenLength)),
                member.slice(0, Protocol.tokenLength),
                set,
                inc,
                stamp,
                mode
              )
            )
          )) as Array<[number, string?]>
          const gone: Array<string> = []
          const cleanup: Array<Promise<unknown>> = []
          let counted = 0
          replies.forEach(([status, setsJson], i) => {
            const member = members[i]!
            if (status === Scripts.ReclaimReply.Counted) counted++
            if (status === Scripts.ReclaimReply.Kept) return
            if (status === Scripts.ReclaimReply.Counted && mode === "soft") return
            gone.push(member)
            if (setsJson !== undefined) {
              cleanup.push(
                ...leaveIndexes(
                  member.slice(Protocol.tokenLength),
                  member.slice(0, Protocol.tokenLength),
                  setsJson,
                  set
                )
              )
            }
          })
          if (gone.length > 0) cleanup.push(client.zrem(index, ...gone))
          if (cleanup.length > 0) {
            step()
            await Promise.all(cleanup)
          }
          return { counted, seen: members.length, kept: members.length - gone.length, gone: gone.length }
        })
      return Effect.gen(function* () {
        let offset = 0
        let count = 0
        // The first batch; when it is full, the index's size then (plus what it removed) bounds the rest.
        let rounds = 1
        for (let round = 0; round < rounds; round++) {
          const step = yield* batch(offset)
          count += step.counted
          offset += step.kept
          if (step.seen < batchSize) break
          if (round === 0) {
            const size = yield* run("reclaim", () => client.zcard(index))
            rounds = Math.ceil((size + step.gone) / batchSize)
          }
        }
        return count
      })
    }

    /**
     * Changes the stamps of `sets` (`change` gets a set and the keys its script takes) and bumps the epochs of
     * their families. On a single Redis a group's epoch is the script's second key, bumped in the same step; on a
     * Cluster it lives on another slot, and is bumped before and after the change, each step waiting for the one
     * before: a fill that read the epoch before the change then refuses, a read after it verifies.
     */
    const changingStamps = async <A>(
      sets: ReadonlyArray<string>,
      change: (set: string, keys: ReadonlyArray<string>) => Promise<A>,
      hold: { readonly token: string; readonly millis: number | undefined } | undefined = undefined
    ): Promise<Array<A>> => {
      if (!isCluster)
        return Promise.all(
          sets.map((set) => {
            const epoch = epochOfSet(set)
            return change(set, epoch === undefined ? [stampKey(set)] : [stampKey(set), stampKey(epoch)])
          })
        )
      const epochs = [...new Set(sets.flatMap((set) => epochOfSet(set) ?? []))].map(stampKey)
      // A hold is listed in its families' epochs from the first edit on, a release leaves them at the second: the
      // epochs say "held" for as long as the stamps may.
      const editAll = (op: Scripts.EpochOp) =>
        Promise.all(epochs.map((epoch) => editEpoch(epoch, op, hold?.token, hold?.millis)))
      await editAll(hold === undefined ? "bump" : hold.millis === undefined ? "bump" : "hold")
      const results = await Promise.all(sets.map((set) => change(set, [stampKey(set)])))
      await editAll(hold === undefined ? "bump" : hold.millis === undefined ? "release" : "bump")
      return results
    }

    /** Runs the `epoch` script on one epoch key (see `Scripts.epoch`); resolves to its value now, `null` none. */
    const editEpoch = (epoch: string, op: Scripts.EpochOp, token = "", holdMillis = 0): Promise<string | null> =>
      scripts.cachemeEpoch!(epoch, Protocol.newStamp(), op, token, holdMillis).then((value: unknown) =>
        value === null || value === undefined || value === false ? null : String(value)
      )

    const invalidateSet = (set: string, mode: Mode) =>
      run("invalidateSet", async () => {
        const [old] = await changingStamps(
          [set],
          (_, keys) =>
            scripts.cachemeInvalidateStamp!(keys.length, ...keys, mode, Protocol.newStamp()) as Promise<string>
        )
        return old!
      }).pipe(Effect.flatMap((old) => reclaim(set, old, mode)))

    /**
     * Holds one set (`keys`: its stamp, and on a single Redis its family's epoch when it has one): one plain
     * `SET stamp !<holdMillis>:<token> PX holdMillis GET` puts the hold marker in place of whatever stamp was there
     * and returns it; with an epoch, a plain `SET epoch <fresh> XX` is sent right after it on the same connection,
     * so Redis runs it after the stamp changed (a bump must never come before a stamp change that a read could
     * verify against: invariant 8). Only when the stamp was another writer's hold marker (their holds are now to be
     * merged back: marker to marker, no bump needed) or a key of another type (the `SET` failed: the epoch is bumped
     * again once the marker stands) does a second step follow, the `mergeHold` script. Resolves to the stamp
     * before ("" none, or a hold marker) and the marker now.
     */
    /**
     * Holds whose first step is under way, by token: `true` once their release was sent. A release sent before the
     * hold's merge (the hold timed out on the caller, who released it) must not be undone by that merge.
     */
    const pendingHolds = new Map<string, boolean>()

    const holdSet = async (keys: ReadonlyArray<string>, token: string, holdMillis: number) => {
      const [key, epoch] = keys as [string, string?]
      const element = Protocol.holdElement(token, holdMillis)
      const marker = Protocol.holdMark + element
      const held = client.call("SET", key, marker, "PX", holdMillis, "GET")
      // The epoch lists this hold (made when missing), its deadline counted by the next compaction: one plain
      // `APPEND`, which drops no other hold listed there. A key of another type there: the script repairs it.
      const bumped =
        epoch === undefined
          ? undefined
          : client.call("APPEND", epoch, Protocol.epochHoldElement(token, holdMillis)).then(
              (length) => (Number(length) > Protocol.epochCompactAt ? editEpoch(epoch, "compact") : null),
              () => editEpoch(epoch, "hold", token, holdMillis)
            )
      let before: unknown
      try {
        before = await held
      } catch (cause) {
        bumped?.catch(() => undefined)
        if (!String((cause as Error)?.message ?? cause).startsWith("WRONGTYPE")) throw cause
        await scripts.cachemeMergeHold!(key, element, "")
        if (epoch !== undefined) await editEpoch(epoch, "hold", token, holdMillis)
        return { old: "", marker }
      }
      await bumped
      const old = before === null || before === undefined ? "" : String(before)
      if (Protocol.isHold(old)) await scripts.cachemeMergeHold!(key, pendingHolds.get(token) ? "" : element, old)
      return { old, marker }
    }

    const hold = (sets: ReadonlyArray<string>, token: string, holdMillis: number) => {
      const bad = Protocol.badHoldToken(token)
      if (bad !== undefined)
        return Effect.fail(new CacheStoreError({ operation: "hold", reason: "InvalidInput", message: bad }))
      const millis = Math.max(1, Math.min(Math.ceil(holdMillis), Protocol.maxHoldMillis))
      return run("hold", () => {
        pendingHolds.set(token, false)
        return changingStamps(sets, (_, keys) => holdSet(keys, token, millis), { token, millis }).finally(() =>
          pendingHolds.delete(token)
        )
      }).pipe(
        Effect.flatMap((held) => Effect.forEach(sets, (set, i) => reclaim(set, held[i]!.old, "hard", held[i]!.marker)))
      )
    }

    // A release follows a write that is otherwise done: its socket write (tens of microseconds on a busy host)
    // goes out on the next turn of the event loop, once the write has resolved to its caller. The command's
    // timeout starts when it is sent.
    const releaseHold = (sets: ReadonlyArray<string>, token: string) =>
      Effect.andThen(
        nextTurn,
        run("releaseHold", () => {
          if (pendingHolds.has(token)) pendingHolds.set(token, true)
          return changingStamps(
            sets,
            (_, keys) =>
              scripts.cachemeReleaseHold!(keys.length, ...keys, token, Protocol.newStamp()) as Promise<
                [number, string?]
              >,
            { token, millis: undefined }
          )
        }).pipe(
          // A load may have been stored after a hold lapsed: its stamp is gone now, and so are its entries.
          Effect.flatMap((replies) =>
            Effect.forEach(sets, (set, i) => reclaim(set, replies[i]![1] ?? "", "hard"), { discard: true })
          )
        )
      )

    // A Cluster spreads keys over its masters: a scan walks them one after the other, and the cursor it hands
    // out is `<master index>:<that master's cursor>`. Masters are taken in the order of their addresses, so a
    // cursor means the same master to every client of the cluster (ioredis lists them in discovery order).
    const scanTargets = (): ReadonlyArray<Redis> =>
      isCluster
        ? (client as unknown as Cluster)
            .nodes("master")
            .map((node) => [`${node.options.host}:${node.options.port}`, node] as const)
            .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
            .map(([, node]) => node)
        : [client]

    /** A cursor this store handed out: `0`, a Redis cursor, or on a Cluster `<master index>:<cursor>`. */
    const readCursor = (cursor: string, targets: number) => {
      if (cursor === "0") return { target: 0, nodeCursor: "0" }
      const match = /^(?:(0|[1-9][0-9]{0,5}):)?(0|[1-9][0-9]{0,19})$/.exec(cursor)
      if (match === null || BigInt(match[2]!) > 18446744073709551615n) return undefined
      if ((match[1] === undefined) !== (targets === 1)) return undefined
      const target = match[1] === undefined ? 0 : Number(match[1])
      return target < targets ? { target, nodeCursor: match[2]! } : undefined
    }

    const scanPage = async (pattern: string | undefined, cursor: string, count: number) => {
      const match = escapeGlob(prefix) + (pattern ?? "*")
      const targets = scanTargets()
      const read = readCursor(cursor, targets.length)
      if (read === undefined) throw new Error(`the cursor ${JSON.stringify(cursor)} does not fit the masters in view`)
      let { target, nodeCursor } = read
      const [next, keys] = await targets[target]!.scan(nodeCursor, "MATCH", match, "COUNT", count)
      nodeCursor = next
      if (nodeCursor === "0" && target + 1 < targets.length) {
        target += 1
        nodeCursor = "0"
      } else if (nodeCursor === "0") target = -1
      return {
        cursor: target === -1 ? "0" : targets.length === 1 ? nodeCursor : `${target}:${nodeCursor}`,
        keys: keys.filter((key) => !key.startsWith(protocolPrefix)).map((key) => key.slice(prefix.length))
      }
    }

    // Page by page, each page its own command: the count is what was removed, even past one command timeout.
    const checkPattern = (operation: string, pattern: string | undefined) => {
      const glob = pattern === undefined ? undefined : compileGlob(pattern)
      return glob?._tag === "GlobError"
        ? Effect.fail(new CacheStoreError({ operation, reason: "InvalidInput", message: glob.reason }))
        : Effect.void
    }

    const invalidatePattern = (pattern: string, mode: Mode) =>
      Effect.gen(function* () {
        yield* checkPattern("invalidatePattern", pattern)
        let cursor = "0"
        let count = 0
        do {
          const page = yield* run("invalidatePattern", () => scanPage(pattern, cursor, 1000))
          cursor = page.cursor
          if (page.keys.length > 0)
            count += yield* run("invalidatePattern", (step) => invalidateKeys(page.keys, mode, step))
        } while (cursor !== "0")
        return count
      })

    const scan = (options: { pattern?: string | undefined; cursor?: string | undefined; count?: number | undefined }) =>
      Effect.andThen(
        Effect.andThen(
          checkPattern("scan", options.pattern),
          Effect.suspend(() =>
            readCursor(options.cursor ?? "0", scanTargets().length) === undefined
              ? Effect.fail(
                  new CacheStoreError({
                    operation: "scan",
                    reason: "InvalidInput",
                    message: `not a cursor of this store: ${JSON.stringify((options.cursor ?? "").slice(0, 64))}`
                  })
                )
              : Effect.void
          )
        ),
        run("scan", () =>
          scanPage(options.pattern, options.cursor ?? "0", Math.max(1, Math.min(options.count ?? 100, 1000)))
        )
      )

    const inspect = (key: string) =>
      run("inspect", async (step) => {
        const reply = (await scripts.cachemeInspect!(entryKey(key))) as [string | null, number, string?] | null
        if (reply === null) return undefined
        const [record, pttl] = reply
        const ttlMillis = pttl >= 0 ? pttl : undefined
        if (record === null) return { key, value: undefined, freshness: undefined, ttlMillis, leased: false, sets: [] }
        const parsed = Protocol.parse(record)
        if (parsed._tag !== "Value") {
          return { key, value: undefined, freshness: undefined, ttlMillis, leased: parsed._tag === "Lease", sets: [] }
        }
        const sets = Protocol.setsOf(parsed.body)
        if (sets.length > 0) step()
        const stamps = sets.length === 0 ? [] : await getMany(sets.map(stampKey))
        return Protocol.describe(key, parsed, sets, stamps, ttlMillis, Date.now())
      })

    const setSize = (set: string) =>
      run("setSize", async (step) => {
        await client.zremrangebyscore(indexKey(set), "-inf", `(${Date.now()}`)
        step()
        return client.zcard(indexKey(set))
      })

    if (options.client !== undefined && !isCluster && client.options?.autoResendUnfulfilledCommands !== false) {
      yield* Effect.logWarning(
        "effect-cacheme: the Redis client resends unanswered commands after a reconnect (autoResendUnfulfilledCommands): a stamp creation run twice across an invalidation can bring an invalidated value back; create the client with autoResendUnfulfilledCommands: false"
      )
    }

    // Every key of the protocol but a family's epoch may be evicted safely (an eviction only turns a hit into a
    // miss); say so when Redis may evict any key. Never blocks the layer.
    yield* Effect.forkIn(
      Effect.tryPromise(() => client.config("GET", "maxmemory-policy") as Promise<Array<string>>).pipe(
        Effect.flatMap((reply) =>
          typeof reply?.[1] === "string" && reply[1].startsWith("allkeys-")
            ? Effect.logWarning(
                `effect-cacheme: Redis evicts any key (maxmemory-policy ${reply[1]}): an evicted entry, stamp or index only turns hits into misses, but invalidation counts and the admin's key counts leave out what was evicted, and for nodes with invalidatedByValue an evicted family epoch forgets the holds it lists (a writer that then crashes between its COMMIT and its release could leave one pre-COMMIT value cached); a volatile-* policy or noeviction keeps every guarantee`
              )
            : Effect.void
        ),
        Effect.ignore
      ),
      scope
    )

    // The index sweep: bounded steps at a modest cadence, in the layer's scope (see `sweep.ts`).
    const sweeper = makeSweeper({
      client,
      prefix,
      targets: scanTargets,
      run,
      batchSize: Math.max(1, options.sweepBatchSize ?? 500)
    })
    const sweepInterval =
      options.sweepInterval === undefined
        ? settings.sweepInterval
        : options.sweepInterval === null
          ? undefined
          : Duration.fromInputUnsafe(options.sweepInterval)
    if (sweepInterval !== undefined) yield* Effect.forkIn(runSweeps(sweeper, Duration.toMillis(sweepInterval)), scope)

    const ping = run("ping", async () => {
      const start = performance.now()
      await client.ping()
      return performance.now() - start
    })

    return {
      [clientSymbol]: client,
      [sweeperSymbol]: sweeper,
      [verifySymbol]: settleWith,
      kind: "redis",
      prefix,
      prefixSource: options.prefix === undefined ? "settings" : "option",
      scope,
      lookup,
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
      ping,
      ...(isCluster ? {} : { watch: notices.watch })
    }
  })

export const makeRedisStoreFromConfig: Effect.Effect<CacheStore["Service"], never, Scope.Scope> = Effect.flatMap(
  CachemeConfig,
  (settings) => makeRedisStore({ url: settings.redisUrl })
)
