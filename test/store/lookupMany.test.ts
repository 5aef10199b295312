/**
 * The batched lookup beyond the contract suite (which checks that it answers as single lookups do, on every
 * store): on Redis it is one command in one write, reading a stamp its entries share once; on the tiered store
 * it goes through the tracked read, so its hits are kept as copies and later batches are answered in process,
 * each request under its own ticket (an invalidation that overtakes the reply voids only the requests that read
 * the key).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Redis as IORedis } from "ioredis"
import { CacheStore } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { channelProxy } from "../support/channel-proxy.ts"
import { redisTraffic } from "../support/redis-traffic.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { putRaw } from "../support/store.ts"
import { redisStore, tier, tieredStore, until } from "../support/tiered.ts"

const sets = (...names: Array<string>) => CacheStore.sets(names)

const withPrefix = <A, E>(body: (prefix: string, raw: IORedis) => Effect.Effect<A, E, any>) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const raw = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    return yield* body(prefix, raw)
  }).pipe(Effect.scoped) as Effect.Effect<A, E, never>
}

const values = (lookups: ReadonlyArray<CacheStore.Lookup>) =>
  lookups.map((lookup) => (lookup._tag === "Hit" ? lookup.value : lookup._tag))

describe.skipIf(await missing(Redis))("CacheStore.lookupMany on Redis", () => {
  it.live(
    "Redis store: a batch is one MGET in one write, whatever the client's pipelining",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* redisStore(Redis.url, prefix)
          const requests = Array.from({ length: 50 }, (_, i) => ({ key: `k${i}`, sets: sets("t:n", `g:${i % 5}`) }))
          for (const { key, sets } of requests) yield* putRaw(store, key, `v${key}`, { names: sets.names })
          const traffic = yield* redisTraffic(prefix)
          const found = yield* store.lookupMany(requests)
          assert.deepStrictEqual(
            values(found),
            requests.map(({ key }) => `v${key}`)
          )
          assert.deepStrictEqual(traffic.commands(), { mget: 1 })
          assert.strictEqual(traffic.writes(), 1)
        })
      ),
    60_000
  )

  it.live(
    "tiered store: hits read through the tracked read are kept; the next batch is answered in process",
    () =>
      withPrefix((prefix, raw) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix, { bound: "30 seconds" })
          const writer = yield* redisStore(Redis.url, prefix)
          yield* until("the tier serves", () => tier(store).serving())
          const requests = ["a", "b", "c", "d"].map((key) => ({ key, sets: sets("t:n", `g:${key}`) }))
          for (const { key, sets } of requests.slice(0, 3)) yield* putRaw(writer, key, `${key}1`, { names: sets.names })
          const traffic = yield* redisTraffic(prefix)
          // One tracked read: the shared tag stamp once, so 4 entries + 4 groups + 1 tag.
          assert.deepStrictEqual(values(yield* store.lookupMany(requests)), ["a1", "b1", "c1", "Miss"])
          assert.strictEqual(traffic.writes(), 1)
          assert.strictEqual(traffic.total(), 1)
          assert.isTrue(tier(store).has(`${prefix}a`))
          assert.isFalse(tier(store).has(`${prefix}d`), "a miss is never kept")
          // Answered in process but for the miss (one more tracked read of d alone).
          traffic.reset()
          const before = tier(store).stats.localHits
          assert.deepStrictEqual(values(yield* store.lookupMany(requests)), ["a1", "b1", "c1", "Miss"])
          assert.strictEqual(tier(store).stats.localHits - before, 3)
          assert.strictEqual(traffic.total(), 1)
          // A write outside the library drops the copy it reaches, and only it.
          const invalidations = tier(store).stats.invalidations
          yield* Effect.promise(() => raw.del(`${prefix}b`))
          yield* until("the invalidation arrived", () => tier(store).stats.invalidations > invalidations)
          assert.deepStrictEqual(values(yield* store.lookupMany(requests)), ["a1", "Miss", "c1", "Miss"])
          assert.isTrue(tier(store).has(`${prefix}a`))
          assert.isTrue(tier(store).has(`${prefix}c`))
        })
      ),
    60_000
  )

  it.live(
    "tiered store: an invalidation that overtakes a batch's reply keeps only that key's request out",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const proxy = yield* channelProxy(6379)
          const store = yield* tieredStore(proxy.url, prefix, { bound: "30 seconds" })
          const writer = yield* redisStore(Redis.url, prefix)
          yield* until("the tier serves", () => tier(store).serving())
          for (let attempt = 0; ; attempt++) {
            const [a, b] = [`a${attempt}`, `b${attempt}`]
            const requests = [a, b].map((key) => ({ key, sets: sets() }))
            yield* putRaw(writer, a, "a1")
            yield* putRaw(writer, b, "b1")
            // The batch's tracked read reaches Redis and runs; its reply is held back by the proxy.
            proxy.set("read", "hold")
            const read = yield* Effect.forkChild(store.lookupMany(requests))
            yield* Effect.sleep(50)
            const invalidations = tier(store).stats.invalidations
            yield* writer.invalidate([a], "hard")
            yield* until("the invalidation has been handled", () => tier(store).stats.invalidations > invalidations)
            yield* putRaw(writer, a, "a2")
            proxy.set("read", "pass")
            const first = values(yield* Fiber.join(read))
            // The premise: the read ran before the write. On a machine too busy for 50 ms to suffice, try again.
            if (first[0] !== "a1") {
              assert.isBelow(attempt, 5, "the read never ran before the write")
              continue
            }
            assert.deepStrictEqual(first, ["a1", "b1"])
            assert.isFalse(tier(store).has(`${prefix}${a}`), "the overtaken request was kept")
            assert.isTrue(tier(store).has(`${prefix}${b}`), "the other request was not kept")
            assert.deepStrictEqual(values(yield* store.lookupMany(requests)), ["a2", "b1"])
            return
          }
        })
      ),
    60_000
  )
})
