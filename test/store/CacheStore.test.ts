import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { backends, redis, uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, Redis } from "../support/services.ts"
import { storeContract } from "./contract.ts"

for (const backend of backends) storeContract(backend)

/** The Redis store over a fresh prefix, with a raw client beside it to plant and read keys. */
const withRedis = <A>(
  body: (raw: IORedis, prefix: string) => Effect.Effect<A, unknown, CacheStore.CacheStore>,
  options: { readonly batchSize?: number } = {}
) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const raw = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    return yield* body(raw, prefix)
  }).pipe(
    Effect.scoped,
    Effect.provide(
      CacheStore.layerRedis({ url: Redis.url, prefix, ...options }).pipe(
        Layer.provide(CachemeConfig.layer()),
        Layer.orDie
      )
    )
  )
}

const on = (...names: Array<string>) => CacheStore.sets(names)

/** Lookup, lease and fill, as Memo does. */
const put = (key: string, value: string, sets: CacheStore.Sets) =>
  Effect.gen(function* () {
    const store = yield* CacheStore.CacheStore
    const found = yield* store.lookup(key, sets)
    if (found._tag === "Hit") return assert.fail(`${key} is already cached`)
    const token = Protocol.newToken()
    const leasing = yield* store.lease(key, token, sets, found.view, "replace", 10_000)
    if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
    assert.isTrue(
      yield* store.fill(key, token, sets, leasing.stamps, {
        value,
        freshMillis: undefined,
        lifeMillis: undefined
      })
    )
  })

const keysUnder = (raw: IORedis, prefix: string) =>
  Effect.promise(async () => {
    const found: Array<string> = []
    let cursor = "0"
    do {
      const [next, keys] = await raw.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
      cursor = next
      found.push(...keys)
    } while (cursor !== "0")
    return found.sort()
  })

describe.skipIf(redis.skip)("Redis store", () => {
  it.live("a set larger than a batch is reclaimed whole, and counted exactly", () =>
    withRedis(
      (raw, prefix) =>
        Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          for (let i = 0; i < 7; i++) yield* put(`k${i}`, "v", on("g:x", "t:n"))
          assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 7)
          // The entries are gone, and so are their members in every index.
          assert.deepStrictEqual(yield* keysUnder(raw, prefix), [Protocol.stampKey(prefix, "t:n")])
          for (let i = 0; i < 5; i++) yield* put(`k${i}`, "v", on("g:x", "t:n"))
          assert.deepStrictEqual(yield* store.hold(["g:x"], "w1", 10_000), [5])
          assert.strictEqual(yield* store.setSize("t:n"), 0)
          const pttl = yield* Effect.promise(() => raw.pttl(Protocol.stampKey(prefix, "g:x")))
          // The hold expires by itself: a writer that dies leaves nothing for ever.
          assert.isTrue(pttl > 5_000 && pttl <= 10_000, `pttl ${pttl}`)
          yield* store.releaseHold(["g:x"], "w1")
          assert.strictEqual(yield* Effect.promise(() => raw.exists(Protocol.stampKey(prefix, "g:x"))), 0)
        }),
      { batchSize: 2 }
    )
  )

  it.live("a miss that fails leaves no key behind (no lease, no group stamp, no index) but its tag's stamp", () =>
    withRedis((raw, prefix) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const sets = on("g:user:404", "t:user")
        const found = yield* store.lookup("user:404", sets)
        if (found._tag !== "Miss") return assert.fail(found._tag)
        const leasing = yield* store.lease("user:404", "t1", sets, found.view, "replace", 10_000)
        if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
        assert.deepStrictEqual(leasing.created, [true, true])
        yield* store.release("user:404", "t1", sets, leasing.stamps, leasing.created)
        // A tag's stamp stays (tags are few; another lease may have recorded it: see Protocol.dropsOnRelease).
        assert.deepStrictEqual(yield* keysUnder(raw, prefix), [Protocol.stampKey(prefix, "t:user")])
      })
    )
  )

  it.live("a lease with no expiry or a far one (forged, or left by a bug) is taken over", () =>
    withRedis((raw, prefix) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* Effect.promise(() =>
          raw.set(`${prefix}a`, Protocol.leaseRecord(Protocol.fixedToken("forged"), Date.now() + 1000))
        )
        yield* Effect.promise(() =>
          raw.set(
            `${prefix}b`,
            Protocol.leaseRecord(Protocol.fixedToken("forged"), Date.now() + 3_600_000),
            "PX",
            3_600_000
          )
        )
        for (const key of ["a", "b"]) {
          const found = yield* store.lookup(key, on())
          if (found._tag !== "Miss") return assert.fail(found._tag)
          const leasing = yield* store.lease(key, "t1", on(), found.view, "replace", 10_000)
          assert.strictEqual(leasing._tag, "Leased", key)
        }
      })
    )
  )

  it.live("a key of another type, or a string of another format, under an entry's name is repaired", () =>
    withRedis((raw, prefix) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* Effect.promise(() => raw.rpush(`${prefix}list`, "a", "b"))
        yield* Effect.promise(() => raw.hset(`${prefix}hash`, "v", "x"))
        yield* Effect.promise(() => raw.set(`${prefix}string`, "garbage"))
        for (const key of ["list", "hash", "string"]) {
          yield* put(key, `value of ${key}`, on("t:n"))
          assert.deepStrictEqual(yield* store.lookup(key, on("t:n")), { _tag: "Hit", value: `value of ${key}` })
        }
      })
    )
  )

  it.live("an evicted stamp turns its entries into misses, never into hits", () =>
    withRedis((raw, prefix) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "v", on("g:x", "t:n"))
        yield* Effect.promise(() => raw.del(Protocol.stampKey(prefix, "g:x")))
        assert.strictEqual((yield* store.lookup("k", on("g:x", "t:n")))._tag, "Miss")
        // A stamp made again (by the next lease) is another incarnation: the old entry stays dead.
        yield* put("other", "v", on("g:x"))
        assert.strictEqual((yield* store.lookup("k", on("g:x", "t:n")))._tag, "Miss")
      })
    )
  )

  it.live("pattern invalidation removes matching keys of any type under the prefix, never protocol keys", () =>
    withRedis((raw, prefix) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("user:1", "v", on("t:user"))
        yield* Effect.promise(() => raw.rpush(`${prefix}user:list`, "a"))
        yield* Effect.promise(() => raw.sadd(`${prefix}user:set`, "a"))
        assert.strictEqual(yield* store.invalidatePattern("user:*", "hard"), 3)
        assert.deepStrictEqual(yield* keysUnder(raw, `${prefix}user`), [])
        assert.strictEqual(yield* Effect.promise(() => raw.exists(Protocol.stampKey(prefix, "t:user"))), 1)
      })
    )
  )
})
