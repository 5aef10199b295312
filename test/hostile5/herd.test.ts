/**
 * Hostile review of issue 9 (herd waiting): a caller that finds another's live lease waits and must not run the
 * loader beside the holder; a re-read that fails (a transient store error) keeps waiting instead of loading.
 *
 * The break: `Memo.cachedMany` waits for keys another caller is loading "as `Memo.cached` waits"
 * (docs/concepts.md, Batched reads), but its wait (`waitFor` in src/internal/many.ts) still loads every key it
 * waits for, without the cache, at the first re-read that fails: `if (lookups === undefined) return yield* load(batch,
 * [], waiting)`. The fix of issue 9 (`failures` in `waitForHerd`, src/Memo.ts) was not carried over. So one
 * dropped connection, or one lookup slower than `commandTimeout` (500 ms), while a batch waits for a cold key
 * another process is loading runs the loader for that key a second time, beside the holder: the thundering herd
 * the lease is there to stop (every process's batch that waits does it). Fails on all three stores.
 *
 * The same test through `Memo.cached` (the fixed path) passes, as the control.
 *
 * A second way around the fix, through `Memo.cached` (Redis and tiered): clocks. A lookup trusts a lease's expiry
 * (written by the holder's clock) within 1 s of skew (`clockSkewMillis` in src/internal/protocol.ts). When the
 * holder's clock is more than 1 s ahead of the waiter's, the waiter never sees the lease as live: every re-read
 * then asks for the lease (the script answers Busy, by the server's clock, so far so good), and a *lease request*
 * that fails is not a failed re-read: `acquire` runs the loader without the cache at once (`loadOnly`). So with
 * skew, any transient store error during the whole wait (not `herdRetryCount` in a row) loads beside the holder.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Fiber, Layer, Ref, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CacheStore, Memo, Node } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { backends, uniquePrefix } from "../support/backends.ts"
import { Redis } from "../support/services.ts"

let counter = 0
const fresh = (name: string) => `${name}-h5-${process.pid}-${counter++}`

const injected = (operation = "lookup") =>
  new CacheStore.CacheStoreError({
    operation,
    reason: "Unavailable",
    message: "injected: the store is briefly unreachable"
  })

for (const backend of backends) {
  describe.skipIf(backend.skip)(`hostile5, herd waiters whose re-reads fail: ${backend.name}`, () => {
    /**
     * A store whose lookups (single and batched, counted together) numbered in `failing` fail, as if the store were
     * briefly unreachable. Lookup 1 is the holder's (below), 2 the waiter's first, 3 and 4 its first re-reads.
     */
    const flaky = (failing: ReadonlySet<number>) => {
      const lookups = Ref.makeUnsafe(0)
      const layer = Layer.effect(
        CacheStore.CacheStore,
        Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const counted = <A>(effect: Effect.Effect<A, CacheStore.CacheStoreError>) =>
            Effect.flatMap(
              Ref.updateAndGet(lookups, (n) => n + 1),
              (n) => (failing.has(n) ? Effect.fail(injected()) : effect)
            )
          return {
            ...store,
            lookup: (...args: Parameters<typeof store.lookup>) => counted(store.lookup(...args)),
            lookupMany: (...args: Parameters<typeof store.lookupMany>) => counted(store.lookupMany(...args))
          }
        })
      )
      return { lookups, layer: layer.pipe(Layer.provide(backend.layer())) }
    }

    const scenario = (
      read: (instance: Node.Instance, runs: Ref.Ref<number>) => Effect.Effect<number, unknown, CacheStore.CacheStore>
    ) => {
      const { lookups, layer } = flaky(new Set([3, 4]))
      return Effect.gen(function* () {
        const Herd = Node.make(fresh("herd"), { fields: { id: Schema.Number }, value: Schema.Number })
        const instance = Herd.make({ id: 1 })
        const store = yield* CacheStore.CacheStore
        const sets = Memo.setsOf(instance)
        // Another process holds the lease on the cold key and is loading.
        const found = yield* store.lookup(instance.key, sets)
        assert.strictEqual(found._tag, "Miss")
        if (found._tag !== "Miss") return
        const leasing = yield* store.lease(instance.key, "elsewhere", sets, found.view, "replace", 4_000)
        assert.strictEqual(leasing._tag, "Leased")
        if (leasing._tag !== "Leased") return
        const runs = yield* Ref.make(0)
        const fiber = yield* Effect.forkChild(read(instance, runs))
        // Until both failing re-reads happened (and one more), whatever the machine's speed.
        for (let i = 0; i < 10_000 && (yield* Ref.get(lookups)) < 5 && (yield* Ref.get(runs)) === 0; i++)
          yield* backend.advance(20)
        assert.strictEqual(yield* Ref.get(runs), 0, "the waiter did not run the loader beside the holder")
        const stored = yield* store.fill(instance.key, "elsewhere", sets, leasing.stamps, {
          value: `${Herd.stamp}\n7`,
          freshMillis: undefined,
          lifeMillis: undefined
        })
        assert.isTrue(stored)
        for (let i = 0; i < 10_000 && fiber.pollUnsafe() === undefined; i++) yield* backend.advance(20)
        assert.strictEqual(yield* Fiber.join(fiber), 7, "the holder's value, not a load of its own")
        assert.strictEqual(yield* Ref.get(runs), 0)
      }).pipe(Effect.provide(layer))
    }

    backend.test(
      "Memo.cachedMany: a batch waiting for a key another process loads, whose re-reads fail now and then, keeps waiting and does not load it",
      () =>
        scenario((instance, runs) =>
          Effect.map(
            Memo.cachedMany([instance], (fields) =>
              Effect.as(
                Ref.update(runs, (n) => n + 1),
                fields.map(() => 42)
              )
            ),
            (values) => values[0] as number
          )
        ),
      60_000
    )

    backend.test(
      "control, Memo.cached: the same waiter keeps waiting (issue 9's fix)",
      () =>
        scenario((instance, runs) =>
          Effect.as(
            Ref.update(runs, (n) => n + 1),
            42
          ).pipe(Memo.cached(instance))
        ),
      60_000
    )
  })
}

for (const backend of backends.filter((b) => b.name !== "memory")) {
  describe.skipIf(backend.skip)(`hostile5, herd waiting across skewed clocks: ${backend.name}`, () => {
    /** A store whose lease requests numbered in `failing` fail (a dropped connection). */
    const flakyLeases = (prefix: string, failing: ReadonlySet<number>) => {
      const leases = Ref.makeUnsafe(0)
      const layer = Layer.effect(
        CacheStore.CacheStore,
        Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          return {
            ...store,
            lease: (...args: Parameters<typeof store.lease>) =>
              Effect.flatMap(
                Ref.updateAndGet(leases, (n) => n + 1),
                (n) => (failing.has(n) ? Effect.fail(injected("lease")) : store.lease(...args))
              )
          }
        })
      )
      return { leases, layer: layer.pipe(Layer.provide(backend.layer({ prefix, leaseTtl: "5 seconds" }))) }
    }

    const scenario = (skewMillis: number) =>
      Effect.scoped(
        Effect.gen(function* () {
          const prefix = uniquePrefix()
          const { leases, layer } = flakyLeases(prefix, new Set([3]))
          const raw = yield* Effect.acquireRelease(
            Effect.sync(() => new IORedis(Redis.url)),
            (client) => Effect.sync(() => client.disconnect())
          )
          const Herd = Node.make(fresh("skew"), { fields: { id: Schema.Number }, value: Schema.Number })
          const instance = Herd.make({ id: 1 })
          // Another process, whose clock is `skewMillis` ahead, took the lease on the cold key (what its store
          // writes: a lease record ending at its now + leaseTtl, living leaseTtl) and is loading, renewing it.
          const leaseMillis = 5_000
          const record = Protocol.leaseRecord(Protocol.fixedToken("elsewhere"), Date.now() + skewMillis + leaseMillis)
          yield* Effect.promise(() => raw.set(`${prefix}${instance.key}`, record, "PX", leaseMillis, "NX"))
          yield* Effect.gen(function* () {
            const runs = yield* Ref.make(0)
            const fiber = yield* Effect.forkChild(
              Effect.as(
                Ref.update(runs, (n) => n + 1),
                42
              ).pipe(Memo.cached(instance))
            )
            // Let the waiter poll until it made a lease request past the failing one (3), or loaded, or 2 s passed
            // (in step, it makes none: it sees the lease as live).
            for (let i = 0; i < 100 && (yield* Ref.get(runs)) === 0 && (yield* Ref.get(leases)) < 4; i++)
              yield* Effect.sleep(20)
            assert.strictEqual(
              yield* Ref.get(runs),
              0,
              `the waiter did not run the loader beside the holder (lease requests: ${yield* Ref.get(leases)})`
            )
            yield* Fiber.interrupt(fiber)
          }).pipe(Effect.provide(layer))
        })
      )

    backend.test(
      "Memo.cached: a holder whose clock is 2 s ahead, one lease request of the waiter failing: the waiter does not load",
      () => scenario(2_000),
      60_000
    )

    backend.test("control: clocks in step, the same fault: the waiter does not load", () => scenario(0), 60_000)
  })
}
