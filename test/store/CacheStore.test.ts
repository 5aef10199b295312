import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { backends, redis, uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, Redis } from "../support/services.ts"
import { storeContract } from "./contract.ts"

for (const backend of backends) storeContract(backend)

describe.skipIf(redis.skip)("Redis store: holds", () => {
  it.live("a hold drains a set larger than a batch, and the set then lives as long as its holds", () => {
    const prefix = uniquePrefix()
    return Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const raw = yield* Effect.acquireRelease(
        Effect.sync(() => new IORedis(Redis.url)),
        (client) =>
          Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
            Effect.andThen(Effect.sync(() => client.disconnect()))
          )
      )
      const set = `${prefix}~g:x`
      for (let i = 0; i < 5; i++) {
        assert.strictEqual((yield* store.read(`k${i}`, "t", 10_000))._tag, "Miss")
        // Members for ever: the set key has no expiry of its own.
        assert.isTrue(yield* store.track(`k${i}`, ["g:x"], undefined))
        const value = { value: "v", freshMillis: undefined, lifeMillis: undefined, sets: ["g:x"] }
        assert.isTrue(yield* store.fill(`k${i}`, "t", value))
      }
      assert.strictEqual(yield* Effect.promise(() => raw.pttl(set)), -1)
      // Batches of 2: one taken by the hold script, then two rounds that must leave the hold in place.
      assert.deepStrictEqual(yield* store.hold(["g:x"], "w1", 10_000), [5])
      for (let i = 0; i < 5; i++) assert.strictEqual((yield* store.read(`k${i}`, "t2", 10_000))._tag, "Miss")
      assert.isFalse(yield* store.track("k0", ["g:x"], undefined))
      assert.strictEqual(yield* Effect.promise(() => raw.zcard(set)), 1)
      // Only the hold is left: the set expires with it instead of living for ever if its writer dies.
      const pttl = yield* Effect.promise(() => raw.pttl(set))
      assert.isTrue(pttl > 5_000 && pttl <= 10_000, `pttl ${pttl}`)
      yield* store.releaseHold(["g:x"], "w1")
      assert.strictEqual(yield* Effect.promise(() => raw.exists(set)), 0)
    }).pipe(
      Effect.scoped,
      Effect.provide(
        CacheStore.layerRedis({ url: Redis.url, prefix, batchSize: 2 }).pipe(
          Layer.provide(CachemeConfig.layer()),
          Layer.orDie
        )
      )
    )
  })
})
