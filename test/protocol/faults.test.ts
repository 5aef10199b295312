/**
 * The store protocol under faults a real Redis produces: eviction under `maxmemory`, a server that stalls
 * writes or everything (`CLIENT PAUSE`), keys of the wrong type under the prefix, and values too large to
 * store. Each test starts a private `redis-server` on port 6397 (one after the other), killed when the test ends.
 *
 * Only the public API and raw ioredis are used; of the store's layout, only "the entry for key K lives at
 * prefix + K" is relied on. Nothing waits on wall-clock durations: tests wait on replies (a command that
 * returns once a pause is over) and count loads and metrics.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Schema } from "effect"
import { InvalidNode, Memo, Metrics, Node } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { redisServerMissing, scanKeys, startRedis, storeLayer } from "../support/fault-redis.ts"

const port = 6397
/**
 * The command timeout of tests that are not about timeouts: a busy machine must not turn a slow reply into a
 * fail-open load (an extra loader run) or a failed invalidation.
 */
const patient = "10 seconds"
const skip = redisServerMissing()

/** A loader that counts its runs per key and returns `<run number>|<padding>`. */
const versionedLoader = (padding: number) => {
  const versions = new Map<string, number>()
  const pad = "p".repeat(padding)
  return {
    versions,
    load: (key: string) =>
      Effect.sync(() => {
        const version = (versions.get(key) ?? 0) + 1
        versions.set(key, version)
        return `${version}|${pad}`
      })
  }
}

const versionOf = (value: string) => Number(value.slice(0, value.indexOf("|")))

/** The failure of an exit in one line (no stack). */
const failureOf = (exit: Exit.Exit<unknown, unknown>) => (Exit.isFailure(exit) ? String(Cause.squash(exit.cause)) : "")

describe.skipIf(skip)("store protocol under Redis faults (private redis-server)", () => {
  it.live(
    "1. eviction: after groups are invalidated, no entry that survived eviction serves its old value",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port, ["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"])
        const prefix = uniquePrefix()
        const Group = InvalidNode.make("fault-evict-group", { fields: { g: Schema.Number } })
        const EvictNode = Node.make("fault-evict", {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          invalidatedBy: ({ id }) => [Group.make({ g: id % 100 })]
        })
        const loader = versionedLoader(2000)
        const ids = Array.from({ length: 300 }, (_, i) => i)
        const get = (id: number) => loader.load(String(id)).pipe(Memo.cached(EvictNode.make({ id })))

        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, get, { concurrency: 20, discard: true })
          const cachedKeys = (yield* scanKeys(redis.admin, prefix)).length
          const evictedAfterFill = yield* redis.infoNumber("stats", "evicted_keys")

          // Junk outside the prefix, 1 KB a key, until eviction has taken a good share of what the cache wrote.
          const junk = "j".repeat(1024)
          let written = 0
          let left = cachedKeys
          while (left > cachedKeys * 0.6 && written < 20_000) {
            const batch = redis.admin.pipeline()
            for (let i = 0; i < 25; i++) batch.set(`fault-junk:${written++}`, junk)
            yield* Effect.promise(() => batch.exec())
            left = (yield* scanKeys(redis.admin, prefix)).length
          }
          const evicted = yield* redis.infoNumber("stats", "evicted_keys")
          console.log(
            `[eviction] keys under the prefix: ${cachedKeys} after the fill, ${left} after ${written} junk keys; ` +
              `evicted_keys ${evictedAfterFill} after the fill, ${evicted} in all`
          )
          assert.isAbove(evicted, evictedAfterFill, "the junk made Redis evict keys")

          const before = new Map(ids.map((id) => [id, loader.versions.get(String(id)) ?? 0]))
          yield* Effect.forEach(
            Array.from({ length: 100 }, (_, g) => g),
            (g) => InvalidNode.invalidate(Group.make({ g })),
            { concurrency: 10, discard: true }
          )

          const violations: Array<number> = []
          for (const id of ids) {
            const value = yield* get(id)
            if (versionOf(value) <= before.get(id)!) violations.push(id)
          }
          console.log(`[eviction] ${violations.length} of 300 reads served a value loaded before the invalidation`)
          assert.strictEqual(
            violations.length,
            0,
            `stale after invalidation: ${violations.length} of 300 (ids ${violations.slice(0, 20).join(", ")}...)`
          )
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: patient })))
      }),
    120_000
  )

  it.live(
    "2. orphan lease: a read script that timed out under CLIENT PAUSE WRITE does not block the key afterwards",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const OrphanNode = Node.make("fault-orphan", { fields: { id: Schema.String }, value: Schema.String, ttl: null })
        const loader = versionedLoader(0)
        const get = (id: string) => loader.load(id).pipe(Memo.cached(OrphanNode.make({ id })))

        yield* Effect.gen(function* () {
          // A miss on another key first: the connection is up and the scripts are loaded, so what the pause
          // holds back below is the read script itself (not a NOSCRIPT retry sent after the pause).
          yield* get("warm")

          yield* Effect.promise(() => redis.admin.call("CLIENT", "PAUSE", "1500", "WRITE"))
          const value = yield* get("k")
          assert.strictEqual(value, "1|", "the call failed open with the loader's value")
          assert.strictEqual(loader.versions.get("k"), 1)

          // Returns once the pause is over; whatever the store sent during it is then behind us.
          yield* Effect.promise(() => redis.admin.set("fault:probe", "1"))

          for (let i = 0; i < 10; i++) yield* get("k")
          const loads = loader.versions.get("k")! - 1
          console.log(`[orphan lease] the loader ran ${loads} times over 10 calls after the pause`)
          assert.isAtMost(loads, 2, `an orphan lease kept the key uncached: ${loads} loads over 10 calls`)
        }).pipe(
          Effect.provide(
            storeLayer(redis.url, prefix, {
              commandTimeout: "200 millis",
              herdRetryCount: 5,
              herdRetryInterval: "20 millis"
            })
          )
        )
      }),
    60_000
  )

  it.live(
    "3. stall cost: a miss while Redis is paused (CLIENT PAUSE ALL) counts at most one store error",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const StallNode = Node.make("fault-stall", { fields: { id: Schema.String }, value: Schema.String, ttl: null })
        const loader = versionedLoader(0)
        const get = (id: string) => loader.load(id).pipe(Memo.cached(StallNode.make({ id })))

        yield* Effect.gen(function* () {
          yield* get("warm")
          const errorsBefore = (yield* Metrics.stats("fault-stall")).storeErrors

          yield* Effect.promise(() => redis.admin.call("CLIENT", "PAUSE", "800", "ALL"))
          const value = yield* get("k")
          const errors = (yield* Metrics.stats("fault-stall")).storeErrors - errorsBefore
          assert.strictEqual(value, "1|", "the call failed open with the loader's value")
          console.log(`[stall] one miss during CLIENT PAUSE ALL counted ${errors} store errors`)
          assert.isAtMost(errors, 1, `one call counted ${errors} store errors`)

          // Let the pause end before the server goes.
          yield* Effect.promise(() => redis.admin.ping())
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: "200 millis" })))
      }),
    60_000
  )

  it.live(
    "3b. stall cost: a miss on an entry of another Schema while writes are paused counts at most one store error",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        // Two nodes on one key: an entry written by the first is a miss (another stamp) for the second.
        const Before = Node.make("fault-stall-before", {
          fields: { id: Schema.String },
          value: Schema.Number,
          ttl: null,
          key: ({ id }) => `stall-shared:${id}`
        })
        const After = Node.make("fault-stall-after", {
          fields: { id: Schema.String },
          value: Schema.String,
          ttl: null,
          key: ({ id }) => `stall-shared:${id}`
        })
        const loader = versionedLoader(0)

        yield* Effect.gen(function* () {
          yield* Effect.succeed(1).pipe(Memo.cached(Before.make({ id: "k" })))
          const errorsBefore = (yield* Metrics.stats("fault-stall-after")).storeErrors

          // Reads pass, writes and scripts wait: the stored entry is read, dropping it is what stalls.
          yield* Effect.promise(() => redis.admin.call("CLIENT", "PAUSE", "1500", "WRITE"))
          const value = yield* loader.load("k").pipe(Memo.cached(After.make({ id: "k" })))
          const errors = (yield* Metrics.stats("fault-stall-after")).storeErrors - errorsBefore
          assert.strictEqual(value, "1|", "the call failed open with the loader's value")
          console.log(
            `[stall] one miss (entry of another Schema) during CLIENT PAUSE WRITE counted ${errors} store errors`
          )
          assert.isAtMost(errors, 1, `one call counted ${errors} store errors`)

          yield* Effect.promise(() => redis.admin.set("fault:probe", "1"))
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: "200 millis" })))
      }),
    60_000
  )

  it.live(
    "4a. wrong types at an entry key (string, list, hash of other fields) are repaired: one load, then hits",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const WrongNode = Node.make("fault-wrongtype", {
          fields: { id: Schema.String },
          value: Schema.String,
          ttl: null
        })
        const loader = versionedLoader(0)
        const kinds = ["string", "list", "hash"] as const
        const instance = (kind: string) => WrongNode.make({ id: kind })

        yield* Effect.promise(async () => {
          await redis.admin.set(prefix + instance("string").key, "garbage")
          await redis.admin.rpush(prefix + instance("list").key, "a", "b", "c")
          const fields: Record<string, string> = {}
          for (let i = 0; i < 5; i++) fields[`rnd-${Math.random().toString(36).slice(2)}`] = Math.random().toString(36)
          await redis.admin.hset(prefix + instance("hash").key, fields)
        })

        const outcomes: Array<string> = []
        yield* Effect.gen(function* () {
          for (const kind of kinds) {
            const get = loader.load(kind).pipe(Memo.cached(instance(kind)))
            const first = yield* get
            const second = yield* get
            const loads = loader.versions.get(kind)
            outcomes.push(`${kind}: first ${first}, second ${second}, loads ${loads}`)
          }
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: patient })))
        console.log(`[wrong types] ${outcomes.join("; ")}`)
        for (const kind of kinds) {
          assert.strictEqual(loader.versions.get(kind), 1, `a ${kind} at the entry key was not repaired: ${outcomes}`)
        }
      }),
    60_000
  )

  it.live(
    "4b. invalidatePattern removes keys of other types under the prefix, counts them, and does not fail",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const PatternNode = Node.make("fault-pattern", {
          fields: { id: Schema.String },
          value: Schema.String,
          ttl: null,
          key: ({ id }) => `pat:${id}`
        })
        yield* Effect.gen(function* () {
          for (const id of ["1", "2"]) yield* Effect.succeed(`v${id}`).pipe(Memo.cached(PatternNode.make({ id })))
          yield* Effect.promise(async () => {
            await redis.admin.rpush(`${prefix}pat:list`, "a", "b")
            await redis.admin.sadd(`${prefix}pat:set`, "a", "b")
          })
          const exit = yield* Effect.exit(Memo.invalidatePattern("pat:*"))
          const left = yield* scanKeys(redis.admin, prefix, "pat:*")
          console.log(
            `[pattern] invalidatePattern: ${Exit.isSuccess(exit) ? `count ${exit.value}` : failureOf(exit)}; ` +
              `keys left: ${left.length}`
          )
          assert.isTrue(Exit.isSuccess(exit), `invalidatePattern failed: ${failureOf(exit)}`)
          if (Exit.isSuccess(exit)) assert.strictEqual(exit.value, 4, "2 entries + a list + a set")
          assert.deepStrictEqual(left, [], "keys matching the pattern are left under the prefix")
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: patient })))
      }),
    60_000
  )

  it.live(
    "5. a value above the size limit (9 MB) is returned but not stored",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const HugeNode = Node.make("fault-huge", { fields: { id: Schema.Number }, value: Schema.String, ttl: null })
        const size = 9 * 1024 * 1024
        let loads = 0
        const get = Effect.sync(() => {
          loads++
          return "h".repeat(size)
        }).pipe(Memo.cached(HugeNode.make({ id: 1 })))

        // A generous timeout: a 9 MB command must not time out on a busy machine (that would leave it stored
        // while the read back fails open, which would look like "not stored").
        yield* Effect.gen(function* () {
          assert.strictEqual((yield* get).length, size)
          assert.strictEqual((yield* get).length, size)
        }).pipe(Effect.provide(storeLayer(redis.url, prefix, { commandTimeout: "20 seconds" })))

        const sizes = yield* Effect.flatMap(scanKeys(redis.admin, prefix), (keys) =>
          Effect.promise(() =>
            Promise.all(
              keys.map(async (key) => ({
                key,
                bytes: Number((await redis.admin.call("MEMORY", "USAGE", key, "SAMPLES", "0")) ?? 0)
              }))
            )
          )
        )
        const big = sizes.filter(({ bytes }) => bytes >= 8 * 1024 * 1024)
        console.log(
          `[huge] loads over 2 calls: ${loads}; keys under the prefix: ` +
            sizes.map(({ key, bytes }) => `${key.slice(prefix.length)} ${bytes} B`).join(", ")
        )
        assert.strictEqual(loads, 2, "the 9 MB value was stored (the second call was a hit)")
        assert.deepStrictEqual(
          big.map(({ key }) => key.slice(prefix.length)),
          [],
          "a key of 8 MB or more sits under the prefix"
        )
      }),
    60_000
  )
})
