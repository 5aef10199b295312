/**
 * Hostile review of the command deadlines (`internal/deadlines.ts`): one FIFO and one timer per store, a due
 * deadline fired from `setImmediate` so that a reply already in the socket wins. Attacked here, on the shared Redis
 * with the client's methods wrapped (replies held on gates, the event loop stalled at chosen points):
 *
 * - event-loop stalls at every point of a command's life: between issuing it and its socket write (other fibers of
 *   the same turn computing), while its reply waits in the socket, and in the middle of an operation of several
 *   round trips (an invalidation that cleans the indexes, a lease that replaces a dead value);
 * - replies that never come: every command ends with a timeout, however deadlines of one store interleave;
 * - a lease whose reply comes after its deadline, or after its caller was interrupted: released, never orphaned.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import * as Deadlines from "../../src/internal/deadlines.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { putRaw } from "../support/store.ts"

type Store = CacheStore.CacheStore["Service"]

const storeOver = (client: IORedis, prefix: string, commandTimeout: number) =>
  Effect.map(
    Layer.build(
      CacheStore.layerRedis({ client, prefix, commandTimeout }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ prefix }))
      )
    ),
    (context) => Context.get(context, CacheStore.CacheStore)
  )

/** A client of our own (auto-pipelining as the store's own connections) and a store over it. */
const withStore = <A, E>(
  commandTimeout: number,
  body: (client: IORedis, store: Store, prefix: string) => Effect.Effect<A, E, any>
) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url, { enableAutoPipelining: true, autoResendUnfulfilledCommands: false })),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    const store = yield* storeOver(client, prefix, commandTimeout)
    return yield* body(client, store, prefix)
  }).pipe(Effect.scoped) as Effect.Effect<A, E, never>
}

/** Blocks the event loop for `millis` (a long synchronous task, a garbage collection). */
const stall = (millis: number) => {
  const until = performance.now() + millis
  while (performance.now() < until) {
    // stall
  }
}

const sets = CacheStore.sets(["t:node", "g:row:1"])

/**
 * Wraps one of the store's script commands on `client` (`around` sees each call the store makes). The client's
 * auto-pipeline copies the method onto its pipelines, where it must stay the original.
 */
const wrapScript = (
  client: IORedis,
  name: string,
  around: (original: (...args: Array<unknown>) => Promise<unknown>, args: Array<unknown>) => Promise<unknown>
) => {
  const original = (client as any)[name] as (...args: Array<unknown>) => Promise<unknown>
  ;(client as any)[name] = function (this: unknown, ...args: Array<unknown>) {
    if (this !== client) return original.apply(this, args)
    return around((...again) => original.apply(client, again), args)
  }
}

describe.skipIf(await missing(Redis))("hostile3: command deadlines", () => {
  it.live(
    "a stall between issuing a command and its socket write is no timeout (other fibers of the turn computing)",
    () =>
      withStore(100, (_client, store) =>
        Effect.gen(function* () {
          yield* putRaw(store, "k", "v", { names: sets.names })
          // Two fibers started together: the first issues the invalidation, the second then computes for ten
          // command timeouts in the same turn, before the client writes the command to its socket.
          const [invalidated] = yield* Effect.all(
            [Effect.exit(store.invalidate(["k"], "hard")), Effect.sync(() => stall(1000))],
            { concurrency: "unbounded" }
          )
          assert.isTrue(Exit.isSuccess(invalidated), `a false timeout: ${String(invalidated)}`)
          if (Exit.isSuccess(invalidated)) assert.strictEqual(invalidated.value, 1)
        })
      ),
    60_000
  )

  it.live(
    "an invalidation whose reply waits in the socket through a stall is delivered, its index cleanup included",
    () =>
      withStore(100, (client, store) =>
        Effect.gen(function* () {
          yield* putRaw(store, "k", "v", { names: sets.names })
          wrapScript(client, "cachemeInvalidateKey", (original, args) => {
            const reply = original(...args)
            // Written; the loop then stalls for ten command timeouts while the reply arrives.
            setImmediate(() => stall(1000))
            return reply
          })
          const invalidated = yield* Effect.exit(store.invalidate(["k"], "hard"))
          assert.isTrue(Exit.isSuccess(invalidated), `a false timeout: ${String(invalidated)}`)
          if (Exit.isSuccess(invalidated)) assert.strictEqual(invalidated.value, 1)
          // The index members of the removed value are gone too.
          assert.strictEqual(yield* store.setSize("g:row:1"), 0)
        })
      ),
    60_000
  )

  it.live(
    "a lease over a dead value whose reply waits in the socket through a stall is delivered",
    () =>
      withStore(100, (client, store, prefix) =>
        Effect.gen(function* () {
          yield* putRaw(store, "k", "v", { names: sets.names })
          // The value dies: its group's stamp changes under it (the value stays in place).
          yield* Effect.promise(() => client.set(Protocol.stampKey(prefix, "g:row:1"), "another"))
          const found = yield* store.lookup("k", sets, 5000)
          assert.strictEqual(found._tag, "Miss")
          if (found._tag !== "Miss") return
          wrapScript(client, "cachemeLease", (original, args) => {
            const reply = original(...args)
            setImmediate(() => stall(1000))
            return reply
          })
          const leased = yield* Effect.exit(store.lease("k", "tok", sets, found.view, "replace", 60_000))
          assert.isTrue(Exit.isSuccess(leased), `a false timeout: ${String(leased)}`)
          if (Exit.isSuccess(leased)) assert.strictEqual(leased.value._tag, "Leased")
        })
      ),
    60_000
  )

  it.live(
    "replies that never come: every command ends with a timeout, whatever the interleaving of deadlines",
    () =>
      withStore(50, (client, store) =>
        Effect.gen(function* () {
          // Every MGET and renewal of this client hangs for ever; the others answer.
          client.mget = (() => new Promise(() => {})) as any
          wrapScript(client, "cachemeRenew", () => new Promise(() => {}))
          const outcomes = yield* Effect.all(
            Array.from({ length: 60 }, (_, i) =>
              Effect.andThen(
                Effect.sleep(i % 7 === 0 ? 0 : (i * 13) % 40),
                Effect.exit(
                  i % 3 === 0
                    ? Effect.as(store.renew(`r${i}`, "tok", 1000), "renew")
                    : i % 3 === 1
                      ? Effect.as(store.lookup(`l${i}`, sets, 1000), "lookup")
                      : // Answered: its deadline is cancelled in the middle of the hanging ones.
                        Effect.as(store.ping, "ping")
                )
              )
            ),
            { concurrency: "unbounded" }
          )
          outcomes.forEach((exit, i) => {
            if (i % 3 === 2) assert.isTrue(Exit.isSuccess(exit), `ping ${i}: ${String(exit)}`)
            else
              assert.isTrue(Exit.isFailure(exit) && String(exit).includes("took longer than"), `${i}: ${String(exit)}`)
          })
        })
      ),
    60_000
  )

  it.live(
    "a lease whose reply comes after its deadline, or after its caller gave up, is released",
    () =>
      withStore(100, (client, store) =>
        Effect.gen(function* () {
          for (const how of ["timeout", "interrupt"] as const) {
            const key = `late-${how}`
            const found = yield* store.lookup(key, sets, 60_000)
            assert.strictEqual(found._tag, "Miss")
            if (found._tag !== "Miss") return
            // The lease of an empty key is a plain SET NX GET: its reply is held until the caller gave up.
            const gate = yield* Deferred.make<void>()
            const call = client.call.bind(client) as (...args: Array<any>) => Promise<unknown>
            ;(client as any).call = (...args: Array<any>) => {
              const reply = call(...args)
              if (args[0] === "SET" && String(args[1]).endsWith(key))
                return reply.then((value) => Effect.runPromise(Deferred.await(gate)).then(() => value))
              return reply
            }
            const fiber = yield* Effect.forkChild(
              Effect.exit(store.lease(key, "tok", sets, found.view, "replace", 60_000))
            )
            if (how === "interrupt") {
              yield* Effect.sleep(20)
              yield* Fiber.interrupt(fiber)
            } else {
              const exit = yield* Fiber.join(fiber)
              assert.isTrue(Exit.isFailure(exit) && String(exit).includes("took longer than"), String(exit))
            }
            ;(client as any).call = call
            yield* Deferred.succeed(gate, undefined)
            // The lease (60 s) was taken on Redis; it is released once its late reply arrives.
            const deadline = Date.now() + 20_000
            let holder: string | undefined = "?"
            while (Date.now() < deadline) {
              const now = yield* store.lookup(key, sets, 60_000)
              holder = now._tag === "Miss" ? now.view.holder : "value"
              if (holder === undefined) break
              yield* Effect.sleep(20)
            }
            assert.strictEqual(holder, undefined, `${how}: the lease is orphaned`)
          }
        })
      ),
    60_000
  )
})

describe("hostile3: the deadline FIFO", () => {
  it.live(
    "a fire that arms a new deadline, cancellations in every order: each due deadline fires once, none is lost",
    () =>
      Effect.promise(async () => {
        const deadlines = Deadlines.makeDeadlines(5)
        const fired = new Map<number, number>()
        let armed = 0
        const arm = (id: number, rearm: boolean): Deadlines.Deadline =>
          deadlines.arm(() => {
            fired.set(id, (fired.get(id) ?? 0) + 1)
            // A timeout's continuation issues the next command at once (a retry, a fallback).
            if (rearm) arm(10_000 + id, false)
          })
        const cancelled = new Set<number>()
        for (let round = 0; round < 20; round++) {
          const batch: Array<[number, Deadlines.Deadline]> = []
          for (let i = 0; i < 50; i++) {
            const id = armed++
            batch.push([id, arm(id, i % 5 === 0)])
          }
          // Cancel some at the head, some in the middle, some at the tail.
          for (const [id, deadline] of batch)
            if (id % 4 === 1 || id % 50 === 0 || id % 50 === 49) {
              deadline.cancel()
              cancelled.add(id)
            }
          await new Promise((resolve) => setTimeout(resolve, round % 3))
        }
        const until = Date.now() + 20_000
        while (deadlines.size() > 0 && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10))
        assert.strictEqual(deadlines.size(), 0)
        for (let id = 0; id < armed; id++) {
          assert.strictEqual(fired.get(id) ?? 0, cancelled.has(id) ? 0 : 1, `deadline ${id}`)
          if (!cancelled.has(id) && (id % 50) % 5 === 0) assert.strictEqual(fired.get(10_000 + id), 1, `rearmed ${id}`)
        }
      }),
    60_000
  )

  it.live("a timeout longer than Node's timers keep (weeks) neither fires early nor spins", () =>
    Effect.promise(async () => {
      const real = globalThis.setTimeout
      let timers = 0
      ;(globalThis as any).setTimeout = (...args: Array<any>) => {
        timers++
        return (real as any)(...args)
      }
      try {
        const deadlines = Deadlines.makeDeadlines(30 * 24 * 3600 * 1000)
        let fired = false
        const deadline = deadlines.arm(() => {
          fired = true
        })
        await new Promise((resolve) => real(resolve, 200))
        deadline.cancel()
        assert.isFalse(fired)
        assert.isAtMost(timers, 3, `${timers} timers in 200 ms`)
      } finally {
        ;(globalThis as any).setTimeout = real
      }
    })
  )
})
