/**
 * Hostile review of the lease keeper on Redis, through `Memo.cached`: a slow load must keep its lease for as long as
 * it runs, so that waiters elsewhere never load a second time. Attacked with one failed renewal of the holder (its
 * connection failing the command, or its network path holding the reply past the command timeout) while Redis and
 * the waiters are fine: the keeper must renew again at its next turn instead of giving the lease up.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, lastJson, missing, Redis } from "../support/services.ts"
import { holdProxy } from "./hold-proxy.ts"

const run = promisify(execFile)
const worker = "test/hostile3/fixtures/holder-worker.ts"

/** Waits (polling every 20 ms, at most `millis`) until `condition` holds; returns whether it did. */
const waitFor = (condition: () => Effect.Effect<boolean> | boolean, millis = 30_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + millis
    while (Date.now() < deadline) {
      const now = condition()
      if (typeof now === "boolean" ? now : yield* now) return true
      yield* Effect.sleep(20)
    }
    return false
  })

describe.skipIf(await missing(Redis))("hostile3: the lease keeper on Redis", () => {
  it.live(
    "a holder whose renewal failed once keeps its key: a waiter of another store never loads",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
        const settings = CachemeConfig.layer({ prefix, herdMaxWait: "2 minutes" })
        const holderClient = yield* Effect.acquireRelease(
          Effect.sync(
            () => new IORedis(Redis.url, { enableAutoPipelining: true, autoResendUnfulfilledCommands: false })
          ),
          (client) => Effect.sync(() => client.disconnect())
        )
        // The holder's first renewal fails as a command on a dropped connection does; the others pass.
        let renewals = 0
        const wrap = () => {
          const original = (holderClient as any).cachemeRenew
          ;(holderClient as any).cachemeRenew = function (this: unknown, ...args: Array<unknown>) {
            if (this !== holderClient) return original.apply(this, args)
            renewals++
            return renewals === 1
              ? Promise.reject(new Error("Connection is closed."))
              : original.apply(holderClient, args)
          }
        }
        const holderStore = yield* Layer.build(
          CacheStore.layerRedis({ client: holderClient, prefix, commandTimeout: 200 }).pipe(
            Layer.provideMerge(settings)
          )
        )
        const waiterStore = yield* Layer.build(
          CacheStore.layerRedis({ url: Redis.url, prefix, commandTimeout: 200 }).pipe(Layer.provideMerge(settings))
        )
        // The store defines its scripts when it is built: wrap the one it defined.
        yield* Effect.sync(wrap)
        const Slow = Node.make(`h3-keeper-${process.pid}`, {
          fields: { id: Schema.Number },
          value: Schema.String,
          leaseTtl: "600 millis"
        })
        const started = yield* Deferred.make<void>()
        const open = yield* Deferred.make<void>()
        let waiterLoads = 0
        const holder = yield* Effect.forkChild(
          Effect.andThen(Deferred.succeed(started, undefined), Effect.as(Deferred.await(open), "holder")).pipe(
            Memo.cached(Slow.make({ id: 1 })),
            Effect.provide(holderStore)
          )
        )
        yield* Deferred.await(started)
        const waiter = yield* Effect.forkChild(
          Effect.sync(() => {
            waiterLoads++
            return "waiter"
          }).pipe(Memo.cached(Slow.make({ id: 1 })), Effect.provide(waiterStore))
        )
        // Six more renewals (three lease lives) after the failed one, or the waiter loads.
        yield* waitFor(() => renewals >= 7 || waiterLoads > 0)
        yield* Deferred.succeed(open, undefined)
        assert.strictEqual(yield* Fiber.join(holder), "holder")
        assert.strictEqual(yield* Fiber.join(waiter), "holder", `renewals: ${renewals}`)
        assert.strictEqual(waiterLoads, 0)
      }).pipe(Effect.scoped),
    60_000
  )

  it.live(
    "across processes: a holder whose network path held one renewal reply keeps its key, the key loads once",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
        const control = yield* Effect.acquireRelease(
          Effect.sync(() => new IORedis(Redis.url)),
          (client) => Effect.sync(() => client.disconnect())
        )
        const runs = () => Effect.promise(async () => Number((await control.get(`${prefix}loader-runs`)) ?? 0))
        const proxy = yield* holdProxy(Redis.port)
        // The holder goes through the proxy: a 3 s lease renewed every second, a 200 ms command timeout.
        const holder = yield* Effect.forkChild(
          Effect.promise(() => run(process.execPath, [worker, proxy.url, Redis.url, prefix, "holder", "3000", "200"]))
        )
        assert.isTrue(yield* waitFor(() => Effect.map(runs(), (n) => n >= 1)), "the holder's loader started")
        // Its next renewal's reply is held for a second: the renewal times out, the lease (3 s) does not.
        proxy.holdNext(1000)
        const waiters = yield* Effect.forkChild(
          Effect.all(
            Array.from({ length: 2 }, () =>
              Effect.promise(() =>
                run(process.execPath, [worker, Redis.url, Redis.url, prefix, "waiter", "3000", "200"])
              )
            ),
            { concurrency: "unbounded" }
          )
        )
        // Four renewals after the held one (more than a lease life), or a second load.
        yield* waitFor(() => Effect.map(runs(), (n) => n > 1 || proxy.sinceHold() >= 5), 60_000)
        proxy.release()
        yield* Effect.promise(() => control.set(`${prefix}open`, "1"))
        const values = [
          lastJson<{ value: string }>((yield* Fiber.join(holder)).stdout).value,
          ...(yield* Fiber.join(waiters)).map(({ stdout }) => lastJson<{ value: string }>(stdout).value)
        ]
        assert.deepStrictEqual(values, ["holder", "holder", "holder"], `commands after the hold: ${proxy.sinceHold()}`)
        assert.strictEqual(yield* runs(), 1)
      }).pipe(Effect.scoped),
    120_000
  )
})
