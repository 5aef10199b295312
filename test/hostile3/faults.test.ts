/**
 * Hostile review of the lease keeper and the command deadlines against a Redis of our own (port 6491) that stalls
 * (`DEBUG SLEEP`), pauses its clients (`CLIENT PAUSE`) or is killed and restarted while a slow load holds its key:
 *
 * - a stall longer than the command timeout times the holder's renewal out; the keeper renews again afterwards,
 *   so the load keeps its key and waiters that come after the stall wait for it (the key loads once);
 * - a pause during a burst of reads: every command ends by its deadline (each caller fails open), none hangs, and
 *   the store reads and stores again afterwards;
 * - a restart that lost every key: renewals fail fast while Redis is down, then find the lease gone and stop; the
 *   load's value is returned and not stored (its lease is gone), and the next read loads and stores.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, type Duration, Effect, Exit, Fiber, Layer, Schema, Scope } from "effect"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { gated } from "../attack/gate.ts"
import { uniquePrefix } from "../support/backends.ts"
import { type PrivateRedis, redisServerMissing, startRedis } from "../support/fault-redis.ts"

const port = 6491

const storeLayer = (url: string, prefix: string, onRenew?: (renewed: unknown) => void) => {
  const settings = CachemeConfig.layer({ prefix, herdMaxWait: "2 minutes" })
  const store = CacheStore.layerRedis({ url, prefix, commandTimeout: 200 }).pipe(
    Layer.provideMerge(settings),
    Layer.orDie
  )
  return Layer.merge(
    onRenew === undefined
      ? store
      : gated(
          store,
          () => Effect.void,
          (op, _args, result) =>
            Effect.sync(() => {
              if (op === "renew") onRenew(result)
            })
        ),
    Layer.orDie(settings)
  )
}

/** Waits (polling every 20 ms, at most `millis`) until `condition` holds; returns whether it did. */
const waitFor = (condition: () => boolean, millis = 30_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      if (condition()) return true
      yield* Effect.sleep(20)
    }
    return false
  })

let counter = 0
const slowNode = (leaseTtl: Duration.Input) =>
  Node.make(`h3-fault-${process.pid}-${counter++}`, { fields: { id: Schema.Number }, value: Schema.String, leaseTtl })

/** A load that signals `started` and waits for `open`, as the holder's. */
const gatedLoad = Effect.fnUntraced(function* () {
  const started = yield* Deferred.make<void>()
  const open = yield* Deferred.make<void>()
  let runs = 0
  const load = Effect.andThen(
    Effect.sync(() => {
      runs++
    }),
    Effect.andThen(Deferred.succeed(started, undefined), Effect.as(Deferred.await(open), "holder"))
  )
  return { started, open, load, runs: () => runs }
})

const warm = (redis: PrivateRedis): Effect.Effect<void, never, Scope.Scope> =>
  Effect.promise(() => redis.admin.ping()).pipe(Effect.asVoid)

describe.skipIf(redisServerMissing())("hostile3: keeper and deadlines under Redis faults", () => {
  it.live(
    "DEBUG SLEEP longer than the command timeout during a slow load: the holder keeps its key, later waiters wait, one load",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        yield* warm(redis)
        const prefix = uniquePrefix()
        const Slow = slowNode("3 seconds")
        const renewals: Array<unknown> = []
        const holderLayer = storeLayer(redis.url, prefix, (result) => renewals.push(result))
        const waiterLayer = storeLayer(redis.url, prefix)
        const { started, open, load, runs } = yield* gatedLoad()
        const holder = yield* Effect.forkChild(
          load.pipe(Memo.cached(Slow.make({ id: 1 })), Effect.provide(holderLayer))
        )
        yield* Deferred.await(started)
        // One renewal passes first (the script is loaded on the connection), then Redis sleeps longer than a
        // renewal period: the renewal sent meanwhile times out (200 ms).
        assert.isTrue(yield* waitFor(() => renewals.length >= 1))
        yield* Effect.promise(() => redis.admin.call("DEBUG", "SLEEP", "1.3"))
        const afterSleep = renewals.length
        // Waiters come after the stall and wait for more than a lease.
        let waiterLoads = 0
        const waiters = yield* Effect.forkChild(
          Effect.all(
            Array.from({ length: 3 }, () =>
              Effect.sync(() => {
                waiterLoads++
                return "waiter"
              }).pipe(Memo.cached(Slow.make({ id: 1 })), Effect.provide(waiterLayer))
            ),
            { concurrency: "unbounded" }
          )
        )
        yield* waitFor(() => renewals.length >= afterSleep + 4 || waiterLoads > 0)
        yield* Deferred.succeed(open, undefined)
        assert.strictEqual(yield* Fiber.join(holder), "holder")
        assert.deepStrictEqual(
          yield* Fiber.join(waiters),
          ["holder", "holder", "holder"],
          `renewals ${renewals.length}`
        )
        assert.strictEqual(waiterLoads, 0)
        assert.strictEqual(runs(), 1)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "CLIENT PAUSE ALL during a burst of reads: every command ends by its deadline, callers fail open, the store works after",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        yield* warm(redis)
        const prefix = uniquePrefix()
        const Items = slowNode("5 seconds")
        let loads = 0
        const read = (id: number) =>
          Effect.sync(() => {
            loads++
            return `v${id}`
          }).pipe(Memo.cached(Items.make({ id })))
        yield* Effect.gen(function* () {
          // Warm: the connection is up and the scripts are loaded.
          yield* read(1000)
          // Paused for 6 s (CLIENT UNPAUSE itself waits for the pause): the burst must end well before.
          yield* Effect.promise(() => redis.admin.call("CLIENT", "PAUSE", "6000", "ALL"))
          const burst = yield* Effect.forkChild(
            Effect.all(
              Array.from({ length: 50 }, (_, i) => read(i % 20)),
              { concurrency: "unbounded" }
            )
          )
          // Answered by failing open (200 ms deadlines), not by waiting for the pause to end.
          assert.isTrue(
            yield* waitFor(() => burst.pollUnsafe() !== undefined, 5000),
            "the burst waited for the pause to end"
          )
          assert.deepStrictEqual(
            yield* Fiber.join(burst),
            Array.from({ length: 50 }, (_, i) => `v${i % 20}`)
          )
          yield* Effect.promise(() => redis.admin.set("h3:probe", "1"))
          // After the pause: the keys load once more and are stored.
          loads = 0
          yield* Effect.all(
            Array.from({ length: 20 }, (_, i) => read(i)),
            { concurrency: "unbounded" }
          )
          const stored = loads
          yield* Effect.all(
            Array.from({ length: 20 }, (_, i) => read(i)),
            { concurrency: "unbounded" }
          )
          assert.strictEqual(loads, stored, "read again after the pause, the values are hits")
        }).pipe(Effect.provide(storeLayer(redis.url, prefix)))
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "a Redis restart (every key lost) during a slow load: renewals fail fast while it is down, stop once they find the lease gone; the load answers",
    () =>
      Effect.gen(function* () {
        const first = yield* Scope.make()
        const redis = yield* startRedis(port).pipe(Scope.provide(first))
        yield* warm(redis)
        const prefix = uniquePrefix()
        const Slow = slowNode("900 millis")
        const renewals: Array<unknown> = []
        const layer = storeLayer(redis.url, prefix, (result) => renewals.push(result))
        const { started, open, load } = yield* gatedLoad()
        const context = yield* Layer.build(layer)
        const holder = yield* Effect.forkChild(load.pipe(Memo.cached(Slow.make({ id: 1 })), Effect.provide(context)))
        yield* Deferred.await(started)
        assert.isTrue(yield* waitFor(() => renewals.length >= 1))
        yield* Scope.close(first, Exit.void)
        // Down for a few renewal periods (300 ms each), then back, empty.
        yield* Effect.sleep(1000)
        yield* startRedis(port)
        // A renewal finds the lease gone (false); then no more renewals go out while the load still runs.
        assert.isTrue(yield* waitFor(() => renewals.includes(false)), `renewals: ${JSON.stringify(renewals)}`)
        const stopped = renewals.length
        yield* Effect.sleep(1000)
        assert.strictEqual(
          renewals.length,
          stopped,
          `renewed on after finding the lease gone: ${JSON.stringify(renewals)}`
        )
        yield* Deferred.succeed(open, undefined)
        assert.strictEqual(yield* Fiber.join(holder), "holder")
        // Its lease was lost with the restart: not stored. The next read loads and stores.
        let loads = 0
        const again = Effect.sync(() => {
          loads++
          return "again"
        }).pipe(Memo.cached(Slow.make({ id: 1 })), Effect.provide(context))
        assert.strictEqual(yield* again, "again")
        assert.strictEqual(yield* again, "again")
        assert.strictEqual(loads, 1)
      }).pipe(Effect.scoped),
    60_000
  )
})
