/**
 * Completion notices: a herd waiter wakes when the lease holder fills or releases, not at its next poll. The
 * polls here are an hour apart: a waiter that depended on them would never finish within the test's timeout.
 * The lease is taken the way another process would (store steps under `Memo`), on every store.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CacheStore, Memo, Node } from "../src/index.ts"
import * as Codec from "../src/internal/codec.ts"
import * as Notices from "../src/internal/notices.ts"
import { tagSet } from "../src/internal/keys.ts"
import { backends } from "./support/backends.ts"
import { Redis } from "./support/services.ts"
import { leaseAs } from "./support/store.ts"

let counter = 0
const fresh = (name: string) => `${name}-notices-${process.pid}-${counter++}`

const settings = {
  herdRetryCount: 1,
  herdRetryInterval: "1 hour",
  herdMaxWait: "2 hours",
  leaseTtl: "1 hour"
} as const

/** The store, with a latch on the first `watch` call (a waiter started waiting). */
const spied = (watched: Deferred.Deferred<void>) =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.map(CacheStore.CacheStore, (store): CacheStore.CacheStore["Service"] => ({
      ...store,
      watch: (key: string) => {
        const watch = store.watch!(key)
        Deferred.doneUnsafe(watched, Effect.void)
        return watch
      }
    }))
  )

/** Waits until the waiter's subscription reached Redis (the in-process store needs nothing). */
const subscribed = (name: string, prefix: string, key: string) =>
  name === "memory"
    ? Effect.void
    : Effect.promise(async () => {
        const client = new IORedis(Redis.url)
        try {
          for (;;) {
            const [, count] = (await client.pubsub("NUMSUB", Notices.channel(prefix, key))) as [string, number]
            if (Number(count) > 0) return
            await new Promise((resolve) => setTimeout(resolve, 5))
          }
        } finally {
          client.disconnect()
        }
      })

for (const backend of backends) {
  describe.skipIf(backend.skip)(`Memo completion notices: ${backend.name}`, () => {
    const scenario = (end: "fill" | "release") =>
      backend.test(`a herd waiter wakes on the holder's ${end}, long before its next poll`, () =>
        Effect.gen(function* () {
          const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
          const entry = Title.make({ id: 1 })
          const names = [tagSet(Title.name)]
          const sets = CacheStore.sets(names)
          const store = yield* CacheStore.CacheStore
          const watched = yield* Deferred.make<void>()
          const leasing = yield* leaseAs(store, entry.key, "other-process", names, 3_600_000)
          assert.strictEqual(leasing._tag, "Leased")
          if (leasing._tag !== "Leased") return
          const reader = yield* Effect.forkChild(
            Effect.succeed("mine").pipe(Memo.cached(entry), Effect.provide(spied(watched)))
          )
          yield* Deferred.await(watched)
          yield* subscribed(backend.name, store.prefix, entry.key)
          if (end === "fill") {
            const encoded = Codec.encode(Title, "theirs")
            assert.isTrue(encoded._tag === "Success")
            if (encoded._tag !== "Success") return
            const stored = yield* store.fill(entry.key, "other-process", sets, leasing.stamps, {
              value: encoded.value,
              freshMillis: undefined,
              lifeMillis: undefined
            })
            assert.isTrue(stored)
            assert.strictEqual(yield* Fiber.join(reader), "theirs")
          } else {
            yield* store.release(entry.key, "other-process", sets, leasing.stamps, leasing.created)
            // The waiter takes the lease over and loads itself.
            assert.strictEqual(yield* Fiber.join(reader), "mine")
          }
        }).pipe(Effect.provide(backend.layer(settings)))
      )
    scenario("fill")
    scenario("release")
  })
}
