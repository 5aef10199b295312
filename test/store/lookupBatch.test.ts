/**
 * The Redis store's single lookups of one turn go out as one `MGET` (`internal/lookupBatch.ts`), and its commands
 * share one deadline timer (`internal/deadlines.ts`). Attacked here:
 *
 * - read-your-writes: a lookup that starts after an invalidation resolved must not share a read that was sent
 *   before it (a batch that kept accepting callers until its reply came would hand them the value the
 *   invalidation removed);
 * - sharing: lookups of one turn, the same key included, are one command, each answered as it would be alone;
 * - false timeouts: a reply that is already in the socket when the event loop comes back from a stall is
 *   delivered, not failed by a deadline that fell due during the stall.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { redisTraffic } from "../support/redis-traffic.ts"
import { putRaw } from "../support/store.ts"
import { tier, tieredStore, until } from "../support/tiered.ts"

const sets = CacheStore.sets(["t:node", "g:row:1"])

/** A Redis store over `client`, in the test's scope. */
const storeOver = (client: IORedis, prefix: string, commandTimeout?: number) =>
  Effect.map(
    Layer.build(
      CacheStore.layerRedis({ client, prefix, ...(commandTimeout === undefined ? {} : { commandTimeout }) }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ prefix }))
      )
    ),
    (context) => Context.get(context, CacheStore.CacheStore)
  )

const withClient = <A, E>(
  options: { readonly autoPipelining: boolean },
  body: (client: IORedis, prefix: string) => Effect.Effect<A, E, any>
) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const client = yield* Effect.acquireRelease(
      Effect.sync(
        () =>
          new IORedis(Redis.url, {
            enableAutoPipelining: options.autoPipelining,
            autoResendUnfulfilledCommands: false
          })
      ),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    return yield* body(client, prefix)
  }).pipe(Effect.scoped) as Effect.Effect<A, E, never>
}

const tagOf = (lookup: CacheStore.Lookup) => (lookup._tag === "Hit" ? `Hit ${lookup.value}` : lookup._tag)

describe.skipIf(await missing(Redis))("the Redis store's lookup batch", () => {
  it.live(
    "a lookup that starts after an invalidation resolved never shares a read sent before it",
    () =>
      withClient({ autoPipelining: true }, (client, prefix) =>
        Effect.gen(function* () {
          const store = yield* storeOver(client, prefix)
          yield* putRaw(store, "k", "old", { names: sets.names })
          // The first MGET is sent at once, but its reply is held back until the gate opens.
          const sent = yield* Deferred.make<void>()
          const gate = yield* Deferred.make<void>()
          const mget = client.mget.bind(client)
          let calls = 0
          client.mget = ((...keys: Array<string>) => {
            calls++
            const reply = mget(...keys)
            if (calls > 1) return reply
            Deferred.doneUnsafe(sent, Exit.void)
            return reply.then((value) => Effect.runPromise(Deferred.await(gate)).then(() => value))
          }) as typeof client.mget
          const early = yield* Effect.forkChild(store.lookup("k", sets, 5000))
          yield* Deferred.await(sent)
          assert.strictEqual(yield* store.invalidate(["k"], "hard"), 1)
          // Started after the invalidation resolved: its own read, which sees it.
          const late = yield* store.lookup("k", sets, 5000)
          assert.strictEqual(late._tag, "Miss")
          assert.strictEqual(calls, 2)
          yield* Deferred.succeed(gate, undefined)
          // The early lookup read before the invalidation: it may see the old value (it started before it).
          assert.strictEqual(tagOf(yield* Fiber.join(early)), "Hit old")
        })
      ),
    60_000
  )

  it.live(
    "lookups of one turn are one MGET, the same key read once, each answered as alone",
    () =>
      withClient({ autoPipelining: false }, (client, prefix) =>
        Effect.gen(function* () {
          const store = yield* storeOver(client, prefix)
          yield* putRaw(store, "a", "va", { names: sets.names })
          yield* putRaw(store, "b", "vb", { names: ["t:node"] })
          const mget = client.mget.bind(client)
          const asked: Array<Array<string>> = []
          client.mget = ((...keys: Array<string>) => {
            asked.push(keys)
            return mget(...keys)
          }) as typeof client.mget
          const found = yield* Effect.all(
            [
              store.lookup("a", sets, 5000),
              store.lookup("a", sets, 5000),
              store.lookup("b", CacheStore.sets(["t:node"]), 5000),
              store.lookup("c", sets, 5000),
              // The same key under other sets is its own request (judged against its own stamps).
              store.lookup("a", CacheStore.sets(["t:node"]), 5000)
            ],
            { concurrency: "unbounded" }
          )
          assert.deepStrictEqual(found.map(tagOf), ["Hit va", "Hit va", "Hit vb", "Miss", "Miss"])
          assert.strictEqual(asked.length, 1)
          // a, its two stamps, b, c: each Redis key once.
          assert.strictEqual(asked[0]!.length, 5)
          assert.strictEqual(new Set(asked[0]).size, 5)
        })
      ),
    60_000
  )

  it.live(
    "tiered store: single tracked lookups of one turn are one tracked read, then answered in process",
    () =>
      withClient({ autoPipelining: true }, (_client, prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix)
          yield* until("the tier serves", () => tier(store).serving())
          for (const key of ["a", "b", "c"]) yield* putRaw(store, key, `v${key}`, { names: sets.names })
          const traffic = yield* redisTraffic(prefix)
          const read = () =>
            Effect.all(
              ["a", "b", "c", "a", "d"].map((key) => store.lookup(key, sets, 5000, true)),
              { concurrency: "unbounded" }
            )
          assert.deepStrictEqual((yield* read()).map(tagOf), ["Hit va", "Hit vb", "Hit vc", "Hit va", "Miss"])
          assert.deepStrictEqual(traffic.commands(), { evalsha: 1 })
          // The hits' copies are kept: the same reads again need Redis only for the miss.
          traffic.reset()
          assert.deepStrictEqual((yield* read()).map(tagOf), ["Hit va", "Hit vb", "Hit vc", "Hit va", "Miss"])
          assert.deepStrictEqual(traffic.commands(), { evalsha: 1 })
        })
      ),
    60_000
  )

  it.live(
    "a reply waiting in the socket after an event-loop stall is delivered, not timed out",
    () =>
      withClient({ autoPipelining: false }, (client, prefix) =>
        Effect.gen(function* () {
          const store = yield* storeOver(client, prefix, 100)
          yield* putRaw(store, "k", "v", { names: sets.names })
          const mget = client.mget.bind(client)
          client.mget = ((...keys: Array<string>) => {
            const reply = mget(...keys)
            // The command is written; the loop then stalls for ten times the command timeout (the reply
            // arrives meanwhile and waits in the socket).
            setImmediate(() => {
              const until = performance.now() + 1000
              while (performance.now() < until) {
                // stall
              }
            })
            return reply
          }) as typeof client.mget
          const found = yield* Effect.exit(store.lookup("k", sets, 5000))
          assert.isTrue(Exit.isSuccess(found), String(found))
          if (Exit.isSuccess(found)) assert.strictEqual(tagOf(found.value), "Hit v")
        })
      ),
    60_000
  )
})
