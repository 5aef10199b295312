/**
 * `Memo.cachedMany` on every store: one lookup round trip for a batch, one loader call for its misses, and per
 * key the guarantees of `Memo.cached` (a lease each, stamps before the load, fills refused after an
 * invalidation, holds respected), forced step by step with a gate in the loader.
 */
import { assert, describe } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Schema, type Scope } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import * as Codec from "../src/internal/codec.ts"
import { groupSet } from "../src/internal/keys.ts"
import * as Notices from "../src/internal/notices.ts"
import { gated } from "./attack/gate.ts"
import { type Backend, backends, redis, tiered } from "./support/backends.ts"
import { redisTraffic } from "./support/redis-traffic.ts"
import { deleteRedisPrefix, Redis } from "./support/services.ts"
import { leaseAs } from "./support/store.ts"

let nodeCounter = 0
/** Node names are global (metrics, registry): each test gets its own. */
const fresh = (name: string) => `${name}-many-${nodeCounter++}`

/** Store operations seen by a test, by name, with the size of each `lookupMany` batch. */
interface Calls {
  readonly count: (op: string) => number
  readonly batches: Array<number>
  readonly reset: () => void
}

const makeCalls = () => {
  const seen = new Map<string, number>()
  const calls: Calls & { readonly bump: (op: string, args: ReadonlyArray<unknown>) => void } = {
    count: (op) => seen.get(op) ?? 0,
    batches: [],
    reset: () => {
      seen.clear()
      calls.batches.length = 0
    },
    bump: (op, args) => {
      seen.set(op, (seen.get(op) ?? 0) + 1)
      if (op === "lookupMany") calls.batches.push((args[0] as ReadonlyArray<unknown>).length)
    }
  }
  return calls
}

/** A loader that records the ids it was asked for and answers `<prefix><id>`. */
const recording = (prefix: () => string = () => "v") => {
  const asked: Array<Array<number>> = []
  const loader = (fields: ReadonlyArray<{ readonly id: number }>) =>
    Effect.sync(() => {
      asked.push(fields.map((f) => f.id))
      return fields.map((f) => `${prefix()}${f.id}`)
    })
  return { asked, loader }
}

const ids = (n: number, from = 1) => Array.from({ length: n }, (_, i) => from + i)

/** Runs `effect` to its end in a fiber, moving time on (TestClock for the memory store) while it waits. */
const driven = <A, E>(backend: Backend, fiber: Fiber.Fiber<A, E>) =>
  Effect.gen(function* () {
    for (let i = 0; i < 3000 && fiber.pollUnsafe() === undefined; i++) yield* backend.advance(10)
    return yield* Fiber.join(fiber)
  })

/** Polls `condition` (moving time on) until it holds. */
const eventually = (backend: Backend, what: string, condition: () => boolean) =>
  Effect.gen(function* () {
    for (let i = 0; i < 3000; i++) {
      if (condition()) return
      yield* backend.advance(10)
    }
    return yield* Effect.die(new Error(`never: ${what}`))
  })

/** Herd polls an hour apart: a wait that depended on them would never end within a test's timeout. */
const hourLongPolls = {
  herdRetryCount: 1,
  herdRetryInterval: "1 hour",
  herdMaxWait: "2 hours",
  leaseTtl: "1 hour"
} as const

/** The store, with a latch on the first `watch` call (the batch started waiting). */
const spiedWatch = (watched: Deferred.Deferred<void>) =>
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

/** Waits until the batch's subscriptions reached Redis (the in-process store needs nothing). */
const subscribed = (name: string, prefix: string, keys: ReadonlyArray<string>) =>
  name === "memory"
    ? Effect.void
    : Effect.promise(async () => {
        const client = new IORedis(Redis.url)
        try {
          for (const key of keys) {
            for (;;) {
              const [, count] = (await client.pubsub("NUMSUB", Notices.channel(prefix, key))) as [string, number]
              if (Number(count) > 0) break
              await new Promise((resolve) => setTimeout(resolve, 5))
            }
          }
        } finally {
          client.disconnect()
        }
      })

for (const backend of backends) {
  describe.skipIf(backend.skip)(`Memo.cachedMany: ${backend.name}`, () => {
    const test = (
      name: string,
      body: (calls: Calls) => Effect.Effect<void, unknown, CacheStore.CacheStore | Scope.Scope>,
      settings?: CachemeConfig.Input
    ) =>
      backend.test(
        name,
        () => {
          const calls = makeCalls()
          // The settings too: `gated` provides the backend's layer, hiding its CachemeConfig.
          const layer = Layer.merge(
            gated(backend.layer(settings), (op, args) => Effect.sync(() => calls.bump(op, args))),
            Layer.orDie(CachemeConfig.layer(settings))
          )
          return Effect.scoped(body(calls)).pipe(Effect.provide(layer))
        },
        60_000
      )

    const redisLike = backend.name !== "memory"

    test("all hits: one lookup round trip, no loader call, no lease", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const store = yield* CacheStore.CacheStore
        const traffic = yield* redisTraffic(store.prefix)
        const { asked, loader } = recording()
        const batch = ids(100).map((id) => Users.make({ id }))
        yield* Memo.cachedMany(batch, loader)
        assert.deepStrictEqual(asked, [ids(100)])
        calls.reset()
        traffic.reset()
        const values = yield* Memo.cachedMany(batch, loader)
        assert.deepStrictEqual(
          values,
          ids(100).map((id) => `v${id}`)
        )
        assert.strictEqual(asked.length, 1, "no loader call")
        assert.strictEqual(calls.count("lookupMany"), 1)
        assert.deepStrictEqual(calls.batches, [100])
        for (const op of ["lookup", "lease", "fill", "release", "renew", "invalidate"])
          assert.strictEqual(calls.count(op), 0, op)
        if (backend.name === "redis") {
          // One MGET of the 100 entries and the node's tag stamp (read once), in one socket write.
          assert.deepStrictEqual(traffic.commands(), { mget: 1 })
          assert.strictEqual(traffic.writes(), 1)
        }
        if (backend.name === "tiered") {
          // One tracked read, or none (answered by the in-process tier).
          assert.isAtMost(traffic.total(), 1)
          assert.isAtMost(traffic.writes(), 1)
        }
      }))

    test("all misses: one loader call with every field in order, a lease and a fill per key", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const store = yield* CacheStore.CacheStore
        const traffic = yield* redisTraffic(store.prefix)
        const { asked, loader } = recording()
        const order = [5, 3, 9, 1, 7]
        const values = yield* Memo.cachedMany(
          order.map((id) => Users.make({ id })),
          loader
        )
        assert.deepStrictEqual(
          values,
          order.map((id) => `v${id}`)
        )
        assert.deepStrictEqual(asked, [order])
        assert.strictEqual(calls.count("lookupMany"), 1)
        assert.strictEqual(calls.count("lease"), 5)
        assert.strictEqual(calls.count("fill"), 5)
        assert.strictEqual(calls.count("release"), 0)
        if (redisLike) {
          // The lookup, the leases (each a SET NX, and the tag's stamp made beside them), the fills: three writes.
          assert.strictEqual(traffic.writes(), 3, JSON.stringify(traffic.commands()))
        }
        // Stored: the next batch is all hits.
        assert.deepStrictEqual(
          yield* Memo.cachedMany(
            order.map((id) => Users.make({ id })),
            loader
          ),
          values
        )
        assert.strictEqual(asked.length, 1)
      }))

    test("half and half: the loader gets only the misses, in order; the answer keeps the input order", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        let version = "a"
        const { asked, loader } = recording(() => version)
        yield* Memo.cachedMany(
          [2, 4, 6, 8].map((id) => Users.make({ id })),
          loader
        )
        version = "b"
        calls.reset()
        const order = ids(8).reverse()
        const values = yield* Memo.cachedMany(
          order.map((id) => Users.make({ id })),
          loader
        )
        assert.deepStrictEqual(values, ["a8", "b7", "a6", "b5", "a4", "b3", "a2", "b1"])
        assert.deepStrictEqual(asked, [
          [2, 4, 6, 8],
          [7, 5, 3, 1]
        ])
        assert.strictEqual(calls.count("lookupMany"), 1)
        assert.strictEqual(calls.count("lease"), 4)
        assert.strictEqual(calls.count("fill"), 4)
      }))

    test("duplicate instances are read, leased and loaded once, and answered at each position", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const { asked, loader } = recording()
        const order = [1, 1, 2, 1, 2]
        const values = yield* Memo.cachedMany(
          order.map((id) => Users.make({ id })),
          loader
        )
        assert.deepStrictEqual(values, ["v1", "v1", "v2", "v1", "v2"])
        assert.deepStrictEqual(asked, [[1, 2]])
        assert.deepStrictEqual(calls.batches, [2])
        assert.strictEqual(calls.count("lease"), 2)
        assert.strictEqual(calls.count("fill"), 2)
      }))

    test("an empty batch answers [] without the store or the loader", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const { asked, loader } = recording()
        const none: ReadonlyArray<Node.Instance<typeof Users.fields.fields, typeof Users.value>> = []
        assert.deepStrictEqual(yield* Memo.cachedMany(none, loader), [])
        assert.deepStrictEqual(asked, [])
        assert.deepStrictEqual(calls.batches, [])
      }))

    test("instances of two nodes: a typed error, nothing read or loaded", (calls) =>
      Effect.gen(function* () {
        const A = Node.make(fresh("a"), { fields: { id: Schema.Number }, value: Schema.String })
        const B = Node.make(fresh("b"), { fields: { id: Schema.Number }, value: Schema.String })
        const { asked, loader } = recording()
        const error = yield* Effect.flip(Memo.cachedMany([A.make({ id: 1 }), B.make({ id: 1 })], loader))
        assert.strictEqual(error._tag, "InvalidBatch")
        if (error._tag === "InvalidBatch") assert.strictEqual(error.reason, "MixedNodes")
        assert.deepStrictEqual(asked, [])
        assert.deepStrictEqual(calls.batches, [])
      }))

    test("a loader answering the wrong number of values: a typed error, nothing stored, no lease left", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const store = yield* CacheStore.CacheStore
        const batch = ids(3).map((id) => Users.make({ id }))
        const wrong: ReadonlyArray<
          (fields: ReadonlyArray<{ readonly id: number }>) => Effect.Effect<ReadonlyArray<string>>
        > = [
          (fields) => Effect.succeed(fields.slice(1).map((f) => `v${f.id}`)),
          (fields) => Effect.succeed([...fields.map((f) => `v${f.id}`), "extra"]),
          () => Effect.succeed(new Map([[1, "v1"]]) as unknown as ReadonlyArray<string>),
          () => Effect.succeed([])
        ]
        for (const loader of wrong) {
          const error = yield* Effect.flip(Memo.cachedMany(batch, loader))
          assert.strictEqual(error._tag, "InvalidBatch")
          if (error._tag === "InvalidBatch") assert.strictEqual(error.reason, "WrongLength")
          for (const instance of batch) {
            const found = yield* store.lookup(instance.key, Memo.setsOf(instance))
            assert.strictEqual(found._tag, "Miss", instance.key)
            if (found._tag === "Miss") assert.isUndefined(found.view.holder, `${instance.key}: a lease was left`)
          }
        }
        assert.strictEqual(calls.count("fill"), 0)
        assert.strictEqual(calls.count("release"), 3 * wrong.length)
        const { asked, loader } = recording()
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v3"])
        assert.deepStrictEqual(asked, [[1, 2, 3]])
      }))

    test("an invalidation between the leases and the fills refuses only the fills of the keys it reached", () =>
      Effect.gen(function* () {
        const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [Row.make({ id })]
        })
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        let version = "old"
        const { asked, loader } = recording(() => version)
        const gatedLoader = (fields: ReadonlyArray<{ readonly id: number }>) =>
          Effect.gen(function* () {
            const values = yield* loader(fields)
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(proceed)
            return values
          })
        const batch = ids(4).map((id) => Users.make({ id }))
        const fiber = yield* Effect.forkChild(Memo.cachedMany(batch, gatedLoader))
        yield* Deferred.await(started)
        // The rows change while the loader runs: key 2 directly, key 3 through its group.
        yield* Memo.invalidate(Users.make({ id: 2 }))
        yield* InvalidNode.invalidate(Row.make({ id: 3 }))
        version = "new"
        yield* Deferred.succeed(proceed, undefined)
        // The caller gets what it loaded...
        assert.deepStrictEqual(yield* Fiber.join(fiber), ["old1", "old2", "old3", "old4"])
        // ...but a read that starts after the invalidations never sees the values loaded before them.
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["old1", "new2", "new3", "old4"])
        assert.deepStrictEqual(asked, [
          [1, 2, 3, 4],
          [2, 3]
        ])
        // Single reads agree.
        assert.strictEqual(yield* Effect.succeed("x").pipe(Memo.cached(Users.make({ id: 3 }))), "new3")
      }))

    test("a hold on one key's group refuses only that key's fill, before and during the load", () =>
      Effect.gen(function* () {
        const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [Row.make({ id })]
        })
        const store = yield* CacheStore.CacheStore
        const group = (id: number) => groupSet(Row.make({ id }).key)
        const { asked, loader } = recording()
        const batch = ids(3).map((id) => Users.make({ id }))
        // Held before the batch: all three load (one call), only 2 is not stored.
        yield* store.hold([group(2)], "writer-1", 60_000)
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v3"])
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v3"])
        assert.deepStrictEqual(asked, [[1, 2, 3], [2]])
        yield* store.releaseHold([group(2)], "writer-1")

        // Held while the loader runs: the fill of 3 lands under a hold marker and is never served.
        const Other = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [Row.make({ id })]
        })
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const second = recording()
        const gatedLoader = (fields: ReadonlyArray<{ readonly id: number }>) =>
          Effect.gen(function* () {
            const values = yield* second.loader(fields)
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(proceed)
            return values
          })
        const others = ids(3, 3).map((id) => Other.make({ id }))
        const fiber = yield* Effect.forkChild(Memo.cachedMany(others, gatedLoader))
        yield* Deferred.await(started)
        yield* store.hold([group(3)], "writer-2", 60_000)
        yield* Deferred.succeed(proceed, undefined)
        assert.deepStrictEqual(yield* Fiber.join(fiber), ["v3", "v4", "v5"])
        yield* store.releaseHold([group(3)], "writer-2")
        assert.deepStrictEqual(yield* Memo.cachedMany(others, second.loader), ["v3", "v4", "v5"])
        assert.deepStrictEqual(second.asked, [[3, 4, 5], [3]])
      }))

    test("a key another caller is loading is waited for and served its value, not loaded", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          leaseTtl: "1 minute"
        })
        const store = yield* CacheStore.CacheStore
        const two = Users.make({ id: 2 })
        const sets = Memo.setsOf(two)
        const leasing = yield* leaseAs(store, two.key, "other-process", sets.names, 60_000)
        assert.strictEqual(leasing._tag, "Leased")
        const { asked, loader } = recording()
        const fiber = yield* Effect.forkChild(
          Memo.cachedMany(
            ids(3).map((id) => Users.make({ id })),
            loader
          )
        )
        yield* eventually(backend, "the loader ran", () => asked.length === 1)
        assert.deepStrictEqual(asked, [[1, 3]])
        if (leasing._tag !== "Leased") return
        const encoded = Codec.encode(Users, "theirs")
        assert.isTrue(Exit.isSuccess(encoded))
        if (!Exit.isSuccess(encoded)) return
        assert.isTrue(
          yield* store.fill(two.key, "other-process", sets, leasing.stamps, {
            value: encoded.value,
            freshMillis: undefined,
            lifeMillis: undefined
          })
        )
        assert.deepStrictEqual(yield* driven(backend, fiber), ["v1", "theirs", "v3"])
        assert.deepStrictEqual(asked, [[1, 3]])
      }))

    test("keys whose holder gives up are leased and loaded by a later loader call, each once", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          leaseTtl: "1 minute"
        })
        const store = yield* CacheStore.CacheStore
        // The node's tag stamp exists already: the other caller's release (which drops the stamps its lease made)
        // leaves it alone, and with it the entries this batch stores.
        yield* Memo.cachedMany([Users.make({ id: 99 })], recording().loader)
        const held = [2, 4].map((id) => Users.make({ id }))
        const leases = yield* Effect.forEach(held, (instance) =>
          leaseAs(store, instance.key, "other-process", Memo.setsOf(instance).names, 60_000)
        )
        const { asked, loader } = recording()
        const fiber = yield* Effect.forkChild(
          Memo.cachedMany(
            ids(4).map((id) => Users.make({ id })),
            loader
          )
        )
        yield* eventually(backend, "the loader ran", () => asked.length === 1)
        yield* Effect.forEach(held, (instance, i) => {
          const leasing = leases[i]!
          return leasing._tag === "Leased"
            ? store.release(instance.key, "other-process", Memo.setsOf(instance), leasing.stamps, leasing.created)
            : Effect.die("not leased")
        })
        assert.deepStrictEqual(yield* driven(backend, fiber), ["v1", "v2", "v3", "v4"])
        // Each released key is loaded once, by a later loader call (one per look that found keys freed: the
        // completion notice of the first release may wake the batch before the second).
        assert.deepStrictEqual(asked[0], [1, 3])
        assert.deepStrictEqual(asked.slice(1).flat().sort(), [2, 4])
        // Stored under the leases this batch took.
        assert.deepStrictEqual(
          yield* Memo.cachedMany(
            ids(4).map((id) => Users.make({ id })),
            loader
          ),
          ["v1", "v2", "v3", "v4"]
        )
        assert.strictEqual(asked.flat().length, 4, "nothing loaded again")
      }))

    backend.test(
      "a batch waiting for keys another caller loads wakes on each holder's fill or release, not on its hour-long polls",
      () =>
        Effect.gen(function* () {
          const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
          const store = yield* CacheStore.CacheStore
          // The tag stamp exists already (a release drops the stamps its lease made).
          yield* Memo.cachedMany([Users.make({ id: 99 })], recording().loader)
          const [two, four] = [2, 4].map((id) => Users.make({ id }))
          const sets = Memo.setsOf(two!)
          const leases = yield* Effect.forEach([two!, four!], (instance) =>
            leaseAs(store, instance.key, "other-process", sets.names, 3_600_000)
          )
          const watched = yield* Deferred.make<void>()
          const { asked, loader } = recording()
          const batch = yield* Effect.forkChild(
            Memo.cachedMany(
              ids(4).map((id) => Users.make({ id })),
              loader
            ).pipe(Effect.provide(spiedWatch(watched)))
          )
          yield* Deferred.await(watched)
          yield* subscribed(backend.name, store.prefix, [two!.key, four!.key])
          const [twoLease, fourLease] = leases
          if (twoLease?._tag !== "Leased" || fourLease?._tag !== "Leased") return assert.fail("not leased")
          const encoded = Codec.encode(Users, "theirs")
          if (!Exit.isSuccess(encoded)) return assert.fail("not encoded")
          assert.isTrue(
            yield* store.fill(two!.key, "other-process", sets, twoLease.stamps, {
              value: encoded.value,
              freshMillis: undefined,
              lifeMillis: undefined
            })
          )
          yield* store.release(four!.key, "other-process", sets, fourLease.stamps, fourLease.created)
          assert.deepStrictEqual(yield* Fiber.join(batch), ["v1", "theirs", "v3", "v4"])
          assert.deepStrictEqual(asked[0], [1, 3])
          assert.deepStrictEqual(asked.flat().sort(), [1, 3, 4])
        }).pipe(Effect.provide(backend.layer(hourLongPolls))),
      60_000
    )

    test("a failing loader fails the batch, stores nothing and leaves no lease", (calls) =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const store = yield* CacheStore.CacheStore
        const batch = ids(3).map((id) => Users.make({ id }))
        const error = yield* Effect.flip(Memo.cachedMany(batch, () => Effect.fail("database down" as const)))
        assert.strictEqual(error, "database down")
        assert.strictEqual(calls.count("fill"), 0)
        for (const instance of batch) {
          const found = yield* store.lookup(instance.key, Memo.setsOf(instance))
          assert.isTrue(found._tag === "Miss" && found.view.holder === undefined, instance.key)
        }
      }))

    test("an interrupted batch gives its leases up", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const store = yield* CacheStore.CacheStore
        const started = yield* Deferred.make<void>()
        const batch = ids(3).map((id) => Users.make({ id }))
        const fiber = yield* Effect.forkChild(
          Memo.cachedMany(batch, () => Effect.andThen(Deferred.succeed(started, undefined), Effect.never))
        )
        yield* Deferred.await(started)
        for (const instance of batch) {
          const found = yield* store.lookup(instance.key, Memo.setsOf(instance))
          assert.isTrue(found._tag === "Miss" && found.view.holder !== undefined, `${instance.key} leased`)
        }
        yield* Fiber.interrupt(fiber)
        for (const instance of batch) {
          const found = yield* store.lookup(instance.key, Memo.setsOf(instance))
          assert.isTrue(found._tag === "Miss" && found.view.holder === undefined, `${instance.key} released`)
        }
      }))

    test("values that do not match the node's Schema are returned, not stored; the others are stored", () =>
      Effect.gen(function* () {
        const Counts = Node.make(fresh("count"), { fields: { id: Schema.Number }, value: Schema.Number })
        const asked: Array<Array<number>> = []
        const loader = (fields: ReadonlyArray<{ readonly id: number }>) =>
          Effect.sync(() => {
            asked.push(fields.map((f) => f.id))
            return fields.map((f) => (f.id === 2 ? ("two" as unknown as number) : f.id * 10))
          })
        const batch = ids(3).map((id) => Counts.make({ id }))
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), [10, "two" as unknown as number, 30])
        yield* Memo.cachedMany(batch, loader)
        assert.deepStrictEqual(asked, [[1, 2, 3], [2]])
      }))

    test("skipped instances are loaded in the same loader call and never stored", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          skip: ({ id }) => id === 2
        })
        const { asked, loader } = recording()
        const batch = ids(3).map((id) => Users.make({ id }))
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v3"])
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v3"])
        assert.deepStrictEqual(asked, [[1, 2, 3], [2]])
      }))

    test("stale values are served at once and refreshed by one background loader call", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "400 millis",
          stale: "1 minute"
        })
        let version = "a"
        const { asked, loader } = recording(() => version)
        const batch = ids(3).map((id) => Users.make({ id }))
        yield* Memo.cachedMany(batch, loader)
        yield* backend.advance(600)
        version = "b"
        assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["a1", "a2", "a3"])
        yield* eventually(backend, "the refresh ran", () => asked.length === 2)
        assert.deepStrictEqual(asked[1], [1, 2, 3])
        // The refreshed values land (the refresh stores them under its leases).
        let values: ReadonlyArray<string> = []
        for (let i = 0; i < 300; i++) {
          values = yield* Memo.cachedMany(batch, loader)
          if (values.every((v) => v.startsWith("b"))) break
          yield* backend.advance(10)
        }
        assert.deepStrictEqual(values, ["b1", "b2", "b3"])
        assert.strictEqual(asked.length, 2)
      }))

    test("a failing loader is answered by fail-safe values when every key it was asked for has one", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "300 millis",
          stale: false,
          failSafe: { window: "1 minute" }
        })
        const { loader } = recording()
        yield* Memo.cachedMany(
          ids(2).map((id) => Users.make({ id })),
          loader
        )
        yield* backend.advance(500)
        const failing = () => Effect.fail("down" as const)
        assert.deepStrictEqual(
          yield* Memo.cachedMany(
            ids(2).map((id) => Users.make({ id })),
            failing
          ),
          ["v1", "v2"]
        )
        // Key 3 has no fail-safe value: the failure stands.
        const error = yield* Effect.flip(
          Memo.cachedMany(
            ids(3).map((id) => Users.make({ id })),
            failing
          )
        )
        assert.strictEqual(error, "down")
        // A value invalidated hard while the loader runs is no fail-safe answer (looked up again after the failure).
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(
          Memo.cachedMany(
            ids(2).map((id) => Users.make({ id })),
            () =>
              Effect.gen(function* () {
                yield* Deferred.succeed(started, undefined)
                yield* Deferred.await(proceed)
                return yield* Effect.fail("down" as const)
              })
          )
        )
        yield* Deferred.await(started)
        yield* Memo.invalidate(Users.make({ id: 2 }))
        yield* Deferred.succeed(proceed, undefined)
        const exit = yield* Fiber.await(fiber)
        assert.isTrue(Exit.isFailure(exit) && Cause.squash(exit.cause) === "down", String(exit))
      }))

    test(
      "with the cache off the loader gets every distinct field and nothing is stored",
      (calls) =>
        Effect.gen(function* () {
          const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
          const { asked, loader } = recording()
          const batch = [1, 2, 1].map((id) => Users.make({ id }))
          assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v1"])
          assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2", "v1"])
          assert.deepStrictEqual(asked, [
            [1, 2],
            [1, 2]
          ])
          assert.deepStrictEqual(calls.batches, [])
          const error = yield* Effect.flip(Memo.cachedMany(batch, () => Effect.succeed(["one"])))
          assert.strictEqual(error._tag, "InvalidBatch")
        }),
      { enabled: false }
    )

    test("hooks run once per distinct key: onHit for values found, onMiss for values loaded", () =>
      Effect.gen(function* () {
        const events: Array<string> = []
        const Users = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          onHit: (event) => Effect.sync(() => events.push(`hit ${event.value}`)),
          onMiss: (event) => Effect.sync(() => events.push(`miss ${event.value}`))
        })
        const { loader } = recording()
        yield* Memo.cachedMany([Users.make({ id: 1 })], loader)
        yield* Memo.cachedMany(
          [1, 2, 1].map((id) => Users.make({ id })),
          loader
        )
        assert.deepStrictEqual(events, ["miss v1", "hit v1", "miss v2"])
      }))

    test("fnMany checks every fields value first", () =>
      Effect.gen(function* () {
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Int }, value: Schema.String })
        const { asked, loader } = recording()
        const get = Memo.fnMany(Users, loader)
        assert.deepStrictEqual(yield* get([{ id: 1 }, { id: 2 }]), ["v1", "v2"])
        const error = yield* Effect.flip(get([{ id: 3 }, { id: 1.5 }]))
        assert.strictEqual(error._tag, "InvalidFields")
        assert.deepStrictEqual(asked, [[1, 2]])
      }))
  })
}

/** A store whose batched lookups fail (a Redis that stopped answering). */
const failingLookups = (inner: Layer.Layer<CacheStore.CacheStore>) =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.map(CacheStore.CacheStore, (store) => ({
      ...store,
      lookupMany: () =>
        Effect.fail(new CacheStore.CacheStoreError({ operation: "lookup", reason: "Timeout", message: "no answer" }))
    }))
  ).pipe(Layer.provide(inner))

describe("Memo.cachedMany: store failures", () => {
  const memory = backends[0]!
  memory.test("fail open: the loader loads the batch; strict: a CacheStoreError", () =>
    Effect.gen(function* () {
      const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
      const { asked, loader } = recording()
      const batch = ids(2).map((id) => Users.make({ id }))
      assert.deepStrictEqual(yield* Memo.cachedMany(batch, loader), ["v1", "v2"])
      assert.deepStrictEqual(asked, [[1, 2]])
      const exit = yield* Effect.exit(Memo.cachedManyStrict(batch, loader))
      assert.isTrue(Exit.isFailure(exit))
      if (Exit.isFailure(exit)) {
        assert.strictEqual((Cause.squash(exit.cause) as { _tag: string })._tag, "CacheStoreError")
      }
    }).pipe(Effect.provide(failingLookups(memory.layer())))
  )
})

/**
 * Part one of batched reads: concurrent `Memo.cached` calls of one turn of the event loop share one command (the
 * store's lookup batch: one `MGET` of every entry and distinct stamp, see `internal/lookupBatch.ts`), so one socket
 * write and one round trip, with or without the client's auto-pipelining; the leases and fills of one turn share
 * a socket write through auto-pipelining. Counted at the socket (writes naming this test's keys).
 */
describe.skipIf(redis.skip)("Memo.cached: concurrent reads of one turn share one round trip", () => {
  const read = (Users: Node.Node<{ readonly id: typeof Schema.Number }, typeof Schema.String>) => (id: number) =>
    Effect.succeed(`v${id}`).pipe(Memo.cached(Users.make({ id })))

  for (const backend of [redis, tiered]) {
    backend.test(
      `${backend.name}: 100 concurrent hits of different keys go out in one socket write`,
      () =>
        Effect.gen(function* () {
          const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
          const store = yield* CacheStore.CacheStore
          const traffic = yield* redisTraffic(store.prefix)
          yield* Effect.forEach(ids(100), read(Users), { concurrency: "unbounded" })
          traffic.reset()
          // Fibers of one program...
          const values = yield* Effect.forEach(ids(100), read(Users), { concurrency: "unbounded" })
          assert.deepStrictEqual(
            values,
            ids(100).map((id) => `v${id}`)
          )
          assert.strictEqual(traffic.writes(), 1, JSON.stringify(traffic.commands()))
          // (the fills do not copy into the in-process tier: these hits were read from Redis, in one command)
          assert.strictEqual(traffic.total(), 1)
          // ...and separate runs started in one turn (requests of one server tick).
          const context = yield* Effect.context<CacheStore.CacheStore>()
          traffic.reset()
          const separate = yield* Effect.promise(() =>
            Promise.all(ids(100, 101).map((id) => Effect.runPromiseWith(context)(read(Users)(id))))
          )
          assert.strictEqual(separate.length, 100)
          // Cold keys: the lookups of one turn share a write, and so on for the leases and the fills.
          assert.isAtMost(traffic.writes(), 6, JSON.stringify(traffic.commands()))
          traffic.reset()
          yield* Effect.promise(() =>
            Promise.all(ids(100, 101).map((id) => Effect.runPromiseWith(context)(read(Users)(id))))
          )
          assert.strictEqual(traffic.writes(), 1)
        }).pipe(Effect.scoped, Effect.provide(backend.layer())),
      60_000
    )
  }

  redis.test(
    "without auto-pipelining too, the 100 reads of one turn go out as one command (the store's own batch)",
    () =>
      Effect.gen(function* () {
        const prefix = `${redis.name}:${process.pid}:${nodeCounter}:control:`
        const client = yield* Effect.acquireRelease(
          Effect.sync(
            () => new IORedis(Redis.url, { enableAutoPipelining: false, autoResendUnfulfilledCommands: false })
          ),
          (client) =>
            Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
              Effect.andThen(Effect.sync(() => client.disconnect()))
            )
        )
        const Users = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        yield* Effect.gen(function* () {
          const traffic = yield* redisTraffic(prefix)
          yield* Effect.forEach(ids(100), read(Users), { concurrency: "unbounded" })
          traffic.reset()
          yield* Effect.forEach(ids(100), read(Users), { concurrency: "unbounded" })
          assert.strictEqual(traffic.writes(), 1)
          assert.strictEqual(traffic.total(), 1)
        }).pipe(
          Effect.provide(
            CacheStore.layerRedis({ client, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer()), Layer.orDie)
          )
        )
      }).pipe(Effect.scoped),
    60_000
  )
})
