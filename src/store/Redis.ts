/**
 * The Redis store over `ioredis`. Every operation on an entry is one Lua script on one key (registered with
 * `defineCommand`, run by EVALSHA), so a hit is one round trip and every script stays within one hash slot.
 * Commands that span keys (invalidating a set's members, leaving sets) are sent together without waiting
 * for each reply, which pipelines them on the connection and works the same on a Cluster client.
 *
 * `ioredis` is loaded only when the layer opens its own connection from a URL, so it stays an optional peer.
 */
import { Duration, Effect, type Scope } from "effect"
import type { Cluster, Redis } from "ioredis"
import {
  CacheStoreError,
  type CacheStore,
  type EntryInfo,
  type Fill,
  type Mode,
  type ReadResult
} from "../CacheStore.ts"
import { CachemeConfig } from "../CachemeConfig.ts"
import { escapeGlob } from "../internal/glob.ts"
import { setMarker } from "../internal/keys.ts"
import * as Scripts from "./scripts.ts"

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
  /** Members removed from a set per round trip when invalidating it (default 500). */
  readonly batchSize?: number | undefined
}

interface Commands {
  cachemeRead(key: string, token: string, leaseMillis: number): Promise<[number, string?, number?]>
  cachemeTrack(set: string, member: string, lifeMillis: number): Promise<number>
  cachemeFill(
    key: string,
    token: string,
    value: string,
    freshMillis: number,
    lifeMillis: number,
    sets: string
  ): Promise<number>
  cachemeRelease(key: string, token: string): Promise<number>
  cachemeInvalidate(key: string, mode: Mode): Promise<[number, string]>
  cachemePop(set: string, count: number): Promise<Array<string>>
  cachemeHold(set: string, member: string, holdMillis: number, count: number): Promise<Array<string>>
  cachemeReleaseHold(set: string, member: string): Promise<number>
  cachemeInspect(key: string): Promise<[string | null, string, number, string, number] | null>
}

type Client = (Redis | Cluster) & Commands

const commands: ReadonlyArray<readonly [keyof Commands, string]> = [
  ["cachemeRead", Scripts.read],
  ["cachemeTrack", Scripts.track],
  ["cachemeFill", Scripts.fill],
  ["cachemeRelease", Scripts.release],
  ["cachemeInvalidate", Scripts.invalidate],
  ["cachemePop", Scripts.pop],
  ["cachemeHold", Scripts.hold],
  ["cachemeReleaseHold", Scripts.releaseHold],
  ["cachemeInspect", Scripts.inspect]
]

/** How far this machine's clock may be behind Redis's before a stale value could pass for a fresh one. */
const clockSkewMillis = 1000

/** Resumes on the next turn of the event loop (after I/O callbacks and the promise jobs of the current one). */
const nextTurn: Effect.Effect<void> = Effect.callback<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const defineCommands = (client: Redis | Cluster): Client => {
  const target = client as Client
  for (const [name, lua] of commands) {
    if (typeof (target as any)[name] !== "function") client.defineCommand(name, { numberOfKeys: 1, lua })
  }
  return target
}

const openClient = (url: string, timeoutMillis: number) =>
  Effect.acquireRelease(
    Effect.promise(async () => {
      const { Redis } = await import("ioredis")
      const client = new Redis(url, {
        lazyConnect: true,
        // Fail commands at once while disconnected: the cache fails open instead of queueing callers.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 1,
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

export const makeRedisStore = (options: RedisOptions): Effect.Effect<CacheStore["Service"], never, Scope.Scope> =>
  Effect.gen(function* () {
    const settings = yield* CachemeConfig
    const prefix = options.prefix ?? settings.prefix
    const timeout =
      options.commandTimeout === undefined ? settings.commandTimeout : Duration.fromInputUnsafe(options.commandTimeout)
    const timeoutMillis = Duration.toMillis(timeout)
    const batchSize = options.batchSize ?? 500
    const scope = yield* Effect.scope
    const client = defineCommands(options.client ?? (yield* openClient(options.url!, timeoutMillis)))
    const setPrefix = `${prefix}${setMarker}`
    const entryKey = (key: string) => prefix + key
    const setKey = (set: string) => setPrefix + set

    // One timer per command, cleared when the reply comes (racing the promise against an Effect sleep would
    // start and interrupt fibers on every hit).
    const run = <A>(operation: string, f: () => Promise<A>): Effect.Effect<A, CacheStoreError> =>
      Effect.callback<A, CacheStoreError>((resume) => {
        let settled = false
        const timer = setTimeout(() => {
          settled = true
          resume(
            Effect.fail(
              new CacheStoreError({
                operation,
                reason: "Timeout",
                message: `Redis ${operation} took longer than ${timeoutMillis} ms`
              })
            )
          )
        }, timeoutMillis)
        const fail = (cause: unknown) =>
          new CacheStoreError({
            operation,
            reason: "Unavailable",
            message: `Redis ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
            cause
          })
        let promise: Promise<A>
        try {
          promise = f()
        } catch (cause) {
          clearTimeout(timer)
          settled = true
          resume(Effect.fail(fail(cause)))
          return
        }
        promise.then(
          (value) => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            resume(Effect.succeed(value))
          },
          (cause) => {
            if (settled) return
            settled = true
            clearTimeout(timer)
            resume(Effect.fail(fail(cause)))
          }
        )
        return Effect.sync(() => {
          settled = true
          clearTimeout(timer)
        })
      })

    // A hit needs no lease, so a plain HMGET answers it: far cheaper for Redis than a script. Only a value that
    // is clearly fresh is answered so (fresh for ever, or for more than the clock-skew margin by this machine's
    // clock); everything else (no value, stale, about to go stale) takes the script, which judges freshness by
    // the server's clock and takes the lease atomically with its read.
    const readFresh = async (key: string, token: string, leaseMillis: number) => {
      const [value, freshUntil] = await client.hmget(entryKey(key), "v", "x")
      if (value !== null && freshUntil !== null) {
        const until = Number(freshUntil)
        if (until === 0 || until - Date.now() > clockSkewMillis) return [1, value] as [number, string]
      }
      return client.cachemeRead(entryKey(key), token, leaseMillis)
    }

    const read = (key: string, token: string, leaseMillis: number) =>
      run("read", () => readFresh(key, token, leaseMillis)).pipe(
        Effect.map((reply): ReadResult => {
          switch (reply[0]) {
            case 1:
              return { _tag: "Hit", value: reply[1]! }
            case 2:
              return { _tag: "Stale", value: reply[1]!, lease: reply[2] === 1 }
            case 3:
              return { _tag: "Miss" }
            default:
              return { _tag: "Busy" }
          }
        })
      )

    // The sets are tracked concurrently: when one is held, the key may still be registered in the others, which
    // only costs a pointless invalidation later.
    const track = (key: string, sets: ReadonlyArray<string>, lifeMillis: number | undefined) =>
      sets.length === 0
        ? Effect.succeed(true)
        : run("track", () =>
            Promise.all(sets.map((set) => client.cachemeTrack(setKey(set), key, lifeMillis ?? -1)))
          ).pipe(Effect.map((replies) => replies.every((registered) => registered === 1)))

    const fill = (key: string, token: string, value: Fill) =>
      run("fill", () =>
        client.cachemeFill(
          entryKey(key),
          token,
          value.value,
          value.freshMillis ?? -1,
          value.lifeMillis ?? -1,
          value.sets.join("\n")
        )
      ).pipe(Effect.map((stored) => stored === 1))

    const release = (key: string, token: string) =>
      run("release", () => client.cachemeRelease(entryKey(key), token)).pipe(Effect.asVoid)

    /** Invalidates entry keys (prefix excluded) and, for hard invalidation, takes them out of their sets. */
    const invalidateKeys = async (keys: ReadonlyArray<string>, mode: Mode, except?: string): Promise<number> => {
      if (keys.length === 0) return 0
      const replies = await Promise.all(keys.map((key) => client.cachemeInvalidate(entryKey(key), mode)))
      let count = 0
      replies.forEach(([held, sets], i) => {
        count += held
        if (sets === "") return
        // Leaving the other sets is pruning: nobody reads through a set to a value, so the invalidation does not
        // wait for it (the commands still go out in order on the connection, before anything sent later).
        for (const set of sets.split("\n")) {
          if (set !== except) client.zrem(setKey(set), keys[i]!).catch(() => undefined)
        }
      })
      return count
    }

    const invalidate = (keys: ReadonlyArray<string>, mode: Mode) => run("invalidate", () => invalidateKeys(keys, mode))

    /**
     * Invalidates hard the members of a set, starting from a batch already taken out of it (by the pop or hold
     * script). Members are taken out before their entries are invalidated: a lease taken meanwhile registers
     * again. Bounded by the size after the first full batch, so a set refilled as fast as it drains cannot hold
     * the caller; a set that fits in one batch costs one round trip before its entries.
     */
    const drainSet = async (set: string, first: ReadonlyArray<string>): Promise<number> => {
      const key = setKey(set)
      let members = first
      let count = 0
      let rounds: number | undefined
      while (members.length > 0) {
        count += await invalidateKeys(members, "hard", set)
        if (members.length < batchSize) break
        rounds ??= Math.ceil((await client.zcount(key, 0, "+inf")) / batchSize)
        if (rounds-- <= 0) break
        members = await client.cachemePop(key, batchSize)
      }
      return count
    }

    const invalidateSetHard = async (set: string) => drainSet(set, await client.cachemePop(setKey(set), batchSize))

    const invalidateSet = (set: string, mode: Mode) =>
      run("invalidateSet", async () => {
        if (mode === "hard") return invalidateSetHard(set)
        // Soft invalidation keeps memberships, so a later hard invalidation still reaches the stale values.
        let count = 0
        let cursor = "0"
        do {
          const [next, flat] = await client.zscan(setKey(set), cursor, "COUNT", batchSize)
          cursor = next
          // Pairs of member and score; holds are the negative scores.
          const members = flat.filter((_, i) => i % 2 === 0 && !flat[i + 1]!.startsWith("-"))
          count += await invalidateKeys(members, "soft")
        } while (cursor !== "0")
        return count
      })

    // One script per set, all sent at once (pipelined on the connection), then the entries of every set.
    const hold = (sets: ReadonlyArray<string>, token: string, holdMillis: number) =>
      run("hold", async () => {
        const member = Scripts.holdMember(token)
        const popped = await Promise.all(
          sets.map((set) => client.cachemeHold(setKey(set), member, holdMillis, batchSize))
        )
        return Promise.all(sets.map((set, i) => drainSet(set, popped[i]!)))
      })

    // A release follows a write that is otherwise done: its socket write (tens of microseconds on a busy host)
    // goes out on the next turn of the event loop, once the write has resolved to its caller. The command's
    // timeout starts when it is sent.
    const releaseHold = (sets: ReadonlyArray<string>, token: string) =>
      Effect.andThen(
        nextTurn,
        run("releaseHold", async () => {
          const member = Scripts.holdMember(token)
          const live = await Promise.all(sets.map((set) => client.cachemeReleaseHold(setKey(set), member)))
          // A load may have been stored after a hold lapsed.
          await Promise.all(sets.filter((_, i) => live[i] === 0).map(invalidateSetHard))
        })
      )

    // A Cluster spreads keys over its masters: a scan walks them one after the other, and the cursor it hands
    // out is `<master index>:<that master's cursor>`.
    const scanTargets = (): ReadonlyArray<Redis> =>
      "nodes" in client && typeof (client as Cluster).nodes === "function" && (client as Cluster).isCluster
        ? (client as Cluster).nodes("master")
        : [client as Redis]

    const scanPage = async (pattern: string | undefined, cursor: string, count: number) => {
      const match = escapeGlob(prefix) + (pattern ?? "*")
      const targets = scanTargets()
      const separator = cursor.indexOf(":")
      let target = separator === -1 ? 0 : Number(cursor.slice(0, separator))
      let nodeCursor = separator === -1 ? cursor : cursor.slice(separator + 1)
      const [next, keys] = await targets[target]!.scan(nodeCursor, "MATCH", match, "COUNT", count)
      nodeCursor = next
      if (nodeCursor === "0" && target + 1 < targets.length) {
        target += 1
        nodeCursor = "0"
      } else if (nodeCursor === "0") target = -1
      return {
        cursor: target === -1 ? "0" : targets.length === 1 ? nodeCursor : `${target}:${nodeCursor}`,
        keys: keys.filter((key) => !key.startsWith(setPrefix)).map((key) => key.slice(prefix.length))
      }
    }

    const invalidatePattern = (pattern: string, mode: Mode) =>
      run("invalidatePattern", async () => {
        let cursor = "0"
        let count = 0
        do {
          const page = await scanPage(pattern, cursor, 1000)
          cursor = page.cursor
          count += await invalidateKeys(page.keys, mode)
        } while (cursor !== "0")
        return count
      })

    const scan = (options: { pattern?: string | undefined; cursor?: string | undefined; count?: number | undefined }) =>
      run("scan", () =>
        scanPage(options.pattern, options.cursor ?? "0", Math.max(1, Math.min(options.count ?? 100, 1000)))
      )

    const inspect = (key: string) =>
      run("inspect", () => client.cachemeInspect(entryKey(key))).pipe(
        Effect.map((reply): EntryInfo | undefined => {
          if (reply === null) return undefined
          const [value, fresh, leased, sets, pttl] = reply
          const freshUntil = Number(fresh)
          return {
            key,
            value: value ?? undefined,
            freshUntil: freshUntil === 0 ? undefined : freshUntil,
            ttlMillis: pttl >= 0 ? pttl : undefined,
            leased: leased === 1,
            sets: sets === "" ? [] : sets.split("\n")
          }
        })
      )

    const setSize = (set: string) => run("setSize", () => client.zcount(setKey(set), 0, "+inf"))

    const ping = run("ping", async () => {
      const start = performance.now()
      await client.ping()
      return performance.now() - start
    })

    return {
      kind: "redis",
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
      ping
    }
  })

export const makeRedisStoreFromConfig: Effect.Effect<CacheStore["Service"], never, Scope.Scope> = Effect.flatMap(
  CachemeConfig,
  (settings) => makeRedisStore({ url: settings.redisUrl })
)
