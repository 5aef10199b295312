/**
 * Memo's read-through guarantees, run against every store: django-cacheme's own scenarios translated, then
 * the races and failure modes the seed left open.
 */
import { assert, describe } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Layer, Ref, Schema } from "effect"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Metrics, Node } from "../src/index.ts"
import { groupSet } from "../src/internal/keys.ts"
import { backends } from "./support/backends.ts"
import { leaseAs, putRaw } from "./support/store.ts"

let nodeCounter = 0
/** Node names are global (metrics, registry): each test gets its own. */
const fresh = (name: string) => `${name}-${nodeCounter++}`

/** An effect that counts its runs. */
const counted = <A>(runs: Ref.Ref<number>, value: A) =>
  Effect.as(
    Ref.update(runs, (n) => n + 1),
    value
  )

/** Reads seen by the store of the herd test. */
const reads = Ref.makeUnsafe(0)

/** Wraps the store so that a test can count its reads. */
const countingReads = Layer.effect(
  CacheStore.CacheStore,
  Effect.gen(function* () {
    const store = yield* CacheStore.CacheStore
    return {
      ...store,
      lookup: (key: string, sets: CacheStore.Sets) =>
        Effect.andThen(
          Ref.update(reads, (n) => n + 1),
          store.lookup(key, sets)
        )
    }
  })
)

for (const backend of backends) {
  describe.skipIf(backend.skip)(`Memo: ${backend.name}`, () => {
    const test = (
      name: string,
      body: Effect.Effect<void, unknown, CacheStore.CacheStore>,
      settings?: CachemeConfig.Input
    ) => backend.test(name, () => body.pipe(Effect.provide(backend.layer(settings))))

    // --- django-cacheme's scenarios ---------------------------------------------------------------

    test(
      "a second call is a hit",
      Effect.gen(function* () {
        const UserNode = Node.make(fresh("user"), { fields: { id: Schema.Number }, value: Schema.String })
        const runs = yield* Ref.make(0)
        const get = (id: number) => counted(runs, `user ${id}`).pipe(Memo.cached(UserNode.make({ id })))
        assert.strictEqual(yield* get(1), "user 1")
        assert.strictEqual(yield* get(1), "user 1")
        assert.strictEqual(yield* get(2), "user 2")
        assert.strictEqual(yield* Ref.get(runs), 2)
      })
    )

    test(
      "invalidating one node's group leaves an unrelated node alone",
      Effect.gen(function* () {
        const UserGroup = InvalidNode.make(fresh("user-group"), { fields: { id: Schema.Number } })
        const BookGroup = InvalidNode.make(fresh("book-group"), { fields: { id: Schema.Number } })
        const UserNode = Node.make(fresh("user"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [UserGroup.make({ id })]
        })
        const BookNode = Node.make(fresh("book"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [BookGroup.make({ id })]
        })
        const userRuns = yield* Ref.make(0)
        const bookRuns = yield* Ref.make(0)
        const user = counted(userRuns, "u").pipe(Memo.cached(UserNode.make({ id: 1 })))
        const book = counted(bookRuns, "b").pipe(Memo.cached(BookNode.make({ id: 1 })))
        yield* user
        yield* book
        assert.strictEqual(yield* InvalidNode.invalidate(UserGroup.make({ id: 1 })), 1)
        yield* user
        yield* book
        assert.strictEqual(yield* Ref.get(userRuns), 2)
        assert.strictEqual(yield* Ref.get(bookRuns), 1)
      })
    )

    test(
      "hit and miss counts",
      Effect.gen(function* () {
        const name = fresh("counted")
        const CountNode = Node.make(name, { fields: { id: Schema.Number }, value: Schema.Number })
        const get = (id: number) => Effect.succeed(id).pipe(Memo.cached(CountNode.make({ id })))
        yield* get(1)
        yield* get(1)
        yield* get(1)
        yield* get(2)
        const stats = yield* Metrics.stats(name)
        assert.strictEqual(stats.hits, 2)
        assert.strictEqual(stats.misses, 2)
        assert.strictEqual(stats.loads, 2)
        assert.strictEqual(stats.hitRatio, 0.5)
      })
    )

    test(
      "tag invalidation returns its count, then 0",
      Effect.gen(function* () {
        const tag = fresh("shared-tag")
        const A = Node.make(fresh("a"), { fields: { id: Schema.Number }, value: Schema.Number, tags: [tag] })
        const B = Node.make(fresh("b"), { fields: { id: Schema.Number }, value: Schema.Number, tags: [tag] })
        yield* Effect.succeed(1).pipe(Memo.cached(A.make({ id: 1 })))
        yield* Effect.succeed(2).pipe(Memo.cached(A.make({ id: 2 })))
        yield* Effect.succeed(3).pipe(Memo.cached(B.make({ id: 1 })))
        assert.strictEqual(yield* Memo.invalidateTag(tag), 3)
        assert.strictEqual(yield* Memo.invalidateTag(tag), 0)
        yield* Effect.succeed(1).pipe(Memo.cached(A.make({ id: 1 })))
        assert.strictEqual(yield* Memo.invalidateNode(A), 1)
        assert.strictEqual(yield* Memo.invalidateNode(A), 0)
      })
    )

    test(
      "skip by boolean and by predicate",
      Effect.gen(function* () {
        const Always = Node.make(fresh("skip-all"), { fields: { id: Schema.Number }, value: Schema.Number, skip: true })
        const Odd = Node.make(fresh("skip-odd"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          skip: ({ id }) => id % 2 === 1
        })
        const runs = yield* Ref.make(0)
        for (let i = 0; i < 3; i++) yield* counted(runs, 0).pipe(Memo.cached(Always.make({ id: 2 })))
        assert.strictEqual(yield* Ref.get(runs), 3)
        yield* Ref.set(runs, 0)
        for (let i = 0; i < 3; i++) yield* counted(runs, 0).pipe(Memo.cached(Odd.make({ id: 1 })))
        for (let i = 0; i < 3; i++) yield* counted(runs, 0).pipe(Memo.cached(Odd.make({ id: 2 })))
        assert.strictEqual(yield* Ref.get(runs), 4)
      })
    )

    test(
      "ttl expiry",
      Effect.gen(function* () {
        const TtlNode = Node.make(fresh("ttl"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          ttl: "1 second",
          stale: false
        })
        const runs = yield* Ref.make(0)
        const get = counted(runs, 1).pipe(Memo.cached(TtlNode.make({ id: 1 })))
        yield* get
        yield* get
        assert.strictEqual(yield* Ref.get(runs), 1)
        yield* backend.advance(1100)
        yield* get
        assert.strictEqual(yield* Ref.get(runs), 2)
      })
    )

    backend.test("a key whose lease is held elsewhere waits for the herd schedule, then loads", () =>
      Effect.gen(function* () {
        const name = fresh("herd")
        const HerdNode = Node.make(name, { fields: { id: Schema.Number }, value: Schema.Number })
        const store = yield* CacheStore.CacheStore
        // Another process holds the lease (within this node's leaseTtl, so it is live) and never finishes.
        assert.strictEqual((yield* leaseAs(store, HerdNode.make({ id: 1 }).key, "elsewhere", [], 4_000))._tag, "Leased")
        yield* Ref.set(reads, 0)
        const runs = yield* Ref.make(0)
        const fiber = yield* Effect.forkChild(counted(runs, 42).pipe(Memo.cached(HerdNode.make({ id: 1 }))))
        yield* backend.advance(50)
        assert.strictEqual(yield* Ref.get(runs), 0, "still waiting after 50 ms")
        yield* backend.advance(100)
        assert.strictEqual(yield* Fiber.join(fiber), 42)
        assert.strictEqual(yield* Ref.get(runs), 1)
        // One read, then re-reads 20 ms apart until herdMaxWait (100 ms) is over.
        const lookups = yield* Ref.get(reads)
        assert.isTrue(lookups >= 4 && lookups <= 7, `${lookups} lookups`)
        assert.strictEqual((yield* Metrics.stats(name)).herdWaits, 1)
        // Without the lease, the value was not stored: the holder's lease is intact.
        assert.strictEqual((yield* leaseAs(store, HerdNode.make({ id: 1 }).key, "t", [], 4_000))._tag, "Busy")
      }).pipe(
        Effect.provide(countingReads.pipe(Layer.provide(backend.layer({ herdMaxWait: "100 millis" })))),
        Effect.provide(CachemeConfig.layer({ herdMaxWait: "100 millis" }).pipe(Layer.orDie))
      )
    )

    backend.test(
      "a waiter whose re-reads fail now and then keeps waiting for the holder's value and does not load",
      () => {
        // Lookups 3 and 4 (the waiter's first two re-reads; 1 is the holder's, 2 the waiter's first) fail as if
        // the store were briefly unreachable.
        const lookups = Ref.makeUnsafe(0)
        const flaky = Layer.effect(
          CacheStore.CacheStore,
          Effect.gen(function* () {
            const store = yield* CacheStore.CacheStore
            return {
              ...store,
              lookup: (...args: Parameters<typeof store.lookup>) =>
                Effect.flatMap(
                  Ref.updateAndGet(lookups, (n) => n + 1),
                  (n) =>
                    n === 3 || n === 4
                      ? Effect.fail(
                          new CacheStore.CacheStoreError({
                            operation: "lookup",
                            reason: "Unavailable",
                            message: "injected: the store is briefly unreachable"
                          })
                        )
                      : store.lookup(...args)
                )
            }
          })
        )
        return Effect.gen(function* () {
          const HerdNode = Node.make(fresh("herd-flaky"), { fields: { id: Schema.Number }, value: Schema.Number })
          const instance = HerdNode.make({ id: 1 })
          const store = yield* CacheStore.CacheStore
          const sets = Memo.setsOf(instance)
          // Another process holds the lease and is loading.
          const found = yield* store.lookup(instance.key, sets)
          assert.strictEqual(found._tag, "Miss")
          if (found._tag !== "Miss") return
          const leasing = yield* store.lease(instance.key, "elsewhere", sets, found.view, "replace", 4_000)
          assert.strictEqual(leasing._tag, "Leased")
          if (leasing._tag !== "Leased") return
          const runs = yield* Ref.make(0)
          const fiber = yield* Effect.forkChild(counted(runs, 42).pipe(Memo.cached(instance)))
          // Wait until both failing re-reads happened (and one more), whatever the machine's speed.
          for (let i = 0; i < 10_000 && (yield* Ref.get(lookups)) < 5 && (yield* Ref.get(runs)) === 0; i++)
            yield* backend.advance(20)
          assert.strictEqual(yield* Ref.get(runs), 0, "still waiting")
          // The holder's load lands.
          const stored = yield* store.fill(instance.key, "elsewhere", sets, leasing.stamps, {
            value: `${HerdNode.stamp}\n7`,
            freshMillis: undefined,
            lifeMillis: undefined
          })
          assert.isTrue(stored)
          for (let i = 0; i < 10_000 && fiber.pollUnsafe() === undefined; i++) yield* backend.advance(20)
          assert.strictEqual(yield* Fiber.join(fiber), 7, "the holder's value, not a load of its own")
          assert.strictEqual(yield* Ref.get(runs), 0)
        }).pipe(Effect.provide(flaky.pipe(Layer.provide(backend.layer()))))
      }
    )

    // --- beyond the seed ----------------------------------------------------------------------------

    test(
      "invalidating while a loader runs: the caller gets its value, the store does not keep it",
      Effect.gen(function* () {
        const Group = InvalidNode.make(fresh("race-group"), { fields: { id: Schema.Number } })
        const RaceNode = Node.make(fresh("race"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [Group.make({ id })]
        })
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const runs = yield* Ref.make(0)
        const slowLoad = Effect.gen(function* () {
          yield* Ref.update(runs, (n) => n + 1)
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(proceed)
          return "loaded before the write"
        })
        const fiber = yield* Effect.forkChild(slowLoad.pipe(Memo.cached(RaceNode.make({ id: 1 }))))
        yield* Deferred.await(started)
        // The database write commits and invalidates the group while the load is under way.
        yield* InvalidNode.invalidate(Group.make({ id: 1 }))
        yield* Deferred.succeed(proceed, undefined)
        assert.strictEqual(yield* Fiber.join(fiber), "loaded before the write")
        const next = yield* Effect.as(
          Ref.update(runs, (n) => n + 1),
          "fresh"
        ).pipe(Memo.cached(RaceNode.make({ id: 1 })))
        assert.strictEqual(next, "fresh")
        assert.strictEqual(yield* Ref.get(runs), 2)
      })
    )

    test(
      "while a write holds a node's group, calls load and are answered but nothing is stored until it releases",
      Effect.gen(function* () {
        const Group = InvalidNode.make(fresh("held-group"), { fields: { id: Schema.Number } })
        const HeldNode = Node.make(fresh("held"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          invalidatedBy: ({ id }) => [Group.make({ id })]
        })
        const store = yield* CacheStore.CacheStore
        const sets = [groupSet(Group.make({ id: 1 }).key)]
        const runs = yield* Ref.make(0)
        const get = counted(runs, 7).pipe(Memo.cached(HeldNode.make({ id: 1 })))
        yield* get
        assert.deepStrictEqual(yield* store.hold(sets, "write-1", 60_000), [1])
        assert.strictEqual(yield* get, 7)
        assert.strictEqual(yield* get, 7)
        assert.strictEqual(yield* Ref.get(runs), 3, "each call loads while the group is held")
        // The lease was given up, so nobody waits on it.
        assert.isUndefined(yield* store.inspect(HeldNode.make({ id: 1 }).key))
        yield* store.releaseHold(sets, "write-1")
        assert.strictEqual(yield* get, 7)
        assert.strictEqual(yield* get, 7)
        assert.strictEqual(yield* Ref.get(runs), 4)
      })
    )

    test(
      "invalidating a key directly while a loader runs voids its lease too",
      Effect.gen(function* () {
        const KeyNode = Node.make(fresh("race-key"), { fields: { id: Schema.Number }, value: Schema.String })
        const started = yield* Deferred.make<void>()
        const proceed = yield* Deferred.make<void>()
        const fiber = yield* Effect.forkChild(
          Effect.gen(function* () {
            yield* Deferred.succeed(started, undefined)
            yield* Deferred.await(proceed)
            return "old"
          }).pipe(Memo.cached(KeyNode.make({ id: 1 })))
        )
        yield* Deferred.await(started)
        yield* Memo.invalidate(KeyNode.make({ id: 1 }))
        yield* Deferred.succeed(proceed, undefined)
        assert.strictEqual(yield* Fiber.join(fiber), "old")
        assert.strictEqual(yield* Effect.succeed("new").pipe(Memo.cached(KeyNode.make({ id: 1 }))), "new")
      })
    )

    test(
      "concurrent calls for a cold key share one load",
      Effect.gen(function* () {
        const Cold = Node.make(fresh("cold"), { fields: { id: Schema.Number }, value: Schema.Number })
        const runs = yield* Ref.make(0)
        const gate = yield* Deferred.make<void>()
        const load = Effect.andThen(
          Ref.update(runs, (n) => n + 1),
          Effect.as(Deferred.await(gate), 7)
        )
        const fibers = yield* Effect.forEach(
          Array.from({ length: 200 }),
          // Forked from this fiber (a concurrent forEach would fork them from short-lived workers).
          () => Effect.forkChild(load.pipe(Memo.cached(Cold.make({ id: 1 }))))
        )
        yield* Effect.yieldNow
        yield* Deferred.succeed(gate, undefined)
        const values = yield* Fiber.joinAll(fibers)
        assert.strictEqual(values.length, 200)
        assert.isTrue(values.every((v) => v === 7))
        assert.strictEqual(yield* Ref.get(runs), 1)
      })
    )

    test(
      "a failing loader wakes every waiter with its error, and nothing is cached",
      Effect.gen(function* () {
        class Boom extends Schema.TaggedError<Boom>()("Boom", { n: Schema.Number }) {}
        const Failing = Node.make(fresh("failing"), { fields: { id: Schema.Number }, value: Schema.Number })
        const runs = yield* Ref.make(0)
        const gate = yield* Deferred.make<void>()
        const load = Effect.gen(function* () {
          yield* Ref.update(runs, (n) => n + 1)
          yield* Deferred.await(gate)
          return yield* new Boom({ n: 1 })
        })
        const fibers = yield* Effect.forEach(Array.from({ length: 20 }), () =>
          Effect.forkChild(Effect.exit(load.pipe(Memo.cached(Failing.make({ id: 1 })))))
        )
        yield* Effect.yieldNow
        yield* Deferred.succeed(gate, undefined)
        const exits = yield* Fiber.joinAll(fibers)
        assert.isTrue(exits.every((exit) => Exit.isFailure(exit) && Cause.squash(exit.cause) instanceof Boom))
        assert.strictEqual(yield* Ref.get(runs), 1)
        // Not cached: the next call loads again, at once.
        assert.strictEqual(yield* Effect.succeed(5).pipe(Memo.cached(Failing.make({ id: 1 }))), 5)
      })
    )

    test(
      "falsy values are cached values like any other",
      Effect.gen(function* () {
        const Anything = Node.make(fresh("falsy"), {
          fields: { id: Schema.Number },
          value: Schema.Union([Schema.Null, Schema.Number, Schema.String, Schema.Boolean, Schema.Array(Schema.Number)])
        })
        const values = [null, 0, "", false, []] as const
        const runs = yield* Ref.make(0)
        for (const [id, value] of values.entries()) {
          const get = counted(runs, value).pipe(Memo.cached(Anything.make({ id })))
          assert.deepStrictEqual(yield* get, value)
          assert.deepStrictEqual(yield* get, value)
        }
        assert.strictEqual(yield* Ref.get(runs), values.length)
      })
    )

    test(
      "Date, bigint and Schema classes round-trip",
      Effect.gen(function* () {
        class User extends Schema.Class<User>("User")({
          id: Schema.Number,
          joined: Schema.Date,
          balance: Schema.BigInt,
          tags: Schema.Array(Schema.String)
        }) {}
        const UserNode = Node.make(fresh("typed"), { fields: { id: Schema.Number }, value: User })
        const user = new User({ id: 1, joined: new Date("2024-01-02T03:04:05Z"), balance: 10n ** 20n, tags: ["a"] })
        const runs = yield* Ref.make(0)
        yield* counted(runs, user).pipe(Memo.cached(UserNode.make({ id: 1 })))
        const back = yield* counted(runs, user).pipe(Memo.cached(UserNode.make({ id: 1 })))
        assert.strictEqual(yield* Ref.get(runs), 1)
        assert.instanceOf(back, User)
        assert.instanceOf(back.joined, Date)
        assert.strictEqual(back.joined.toISOString(), "2024-01-02T03:04:05.000Z")
        assert.strictEqual(back.balance, 10n ** 20n)
      })
    )

    test(
      "a changed value Schema (or version) is a miss, never a wrong shape",
      Effect.gen(function* () {
        const name = fresh("evolving")
        const V1 = Node.make(name, { fields: { id: Schema.Number }, value: Schema.String })
        assert.strictEqual(yield* Effect.succeed("one").pipe(Memo.cached(V1.make({ id: 1 }))), "one")
        const V2 = Node.make(name, { fields: { id: Schema.Number }, value: Schema.Number, replace: true })
        assert.strictEqual(yield* Effect.succeed(2).pipe(Memo.cached(V2.make({ id: 1 }))), 2)
        assert.strictEqual(yield* Effect.succeed(-1).pipe(Memo.cached(V2.make({ id: 1 }))), 2)
        const V3 = Node.make(name, { fields: { id: Schema.Number }, value: Schema.Number, version: 3, replace: true })
        assert.strictEqual(yield* Effect.succeed(3).pipe(Memo.cached(V3.make({ id: 1 }))), 3)
      })
    )

    test(
      "a corrupt entry is a miss, and is repaired",
      Effect.gen(function* () {
        const Fragile = Node.make(fresh("fragile"), { fields: { id: Schema.Number }, value: Schema.Number })
        const key = Fragile.make({ id: 1 }).key
        const store = yield* CacheStore.CacheStore
        yield* putRaw(store, key, `${Fragile.stamp}\n{not json`, { names: [`t:${Fragile.name}`] })
        const runs = yield* Ref.make(0)
        assert.strictEqual(yield* counted(runs, 9).pipe(Memo.cached(Fragile.make({ id: 1 }))), 9)
        assert.strictEqual(yield* counted(runs, 9).pipe(Memo.cached(Fragile.make({ id: 1 }))), 9)
        assert.strictEqual(yield* Ref.get(runs), 1)
        const info = yield* store.inspect(key)
        assert.strictEqual(info?.value, `${Fragile.stamp}\n9`)
      })
    )

    test(
      "stale values are served at once while one caller refreshes in the background",
      Effect.gen(function* () {
        const name = fresh("stale")
        const StaleNode = Node.make(name, {
          fields: { id: Schema.Number },
          value: Schema.Number,
          ttl: "1 second",
          stale: "10 seconds"
        })
        const version = yield* Ref.make(1)
        const get = Ref.get(version).pipe(Memo.cached(StaleNode.make({ id: 1 })))
        assert.strictEqual(yield* get, 1)
        yield* Ref.set(version, 2)
        yield* backend.advance(1100)
        assert.strictEqual(yield* get, 1, "stale value served at once")
        // let the background refresh land
        yield* backend.advance(100)
        assert.strictEqual(yield* get, 2)
        assert.strictEqual((yield* Metrics.stats(name)).staleServed, 1)
      })
    )

    test(
      "soft invalidation serves the old value while refreshing; hard does not",
      Effect.gen(function* () {
        const SoftNode = Node.make(fresh("soft"), { fields: { id: Schema.Number }, value: Schema.Number, stale: true })
        const version = yield* Ref.make(1)
        const get = Ref.get(version).pipe(Memo.cached(SoftNode.make({ id: 1 })))
        yield* get
        yield* Ref.set(version, 2)
        assert.strictEqual(yield* Memo.invalidate(SoftNode.make({ id: 1 }), { mode: "soft" }), 1)
        assert.strictEqual(yield* get, 1)
        yield* backend.advance(100)
        assert.strictEqual(yield* get, 2)
        yield* Ref.set(version, 3)
        yield* Memo.invalidate(SoftNode.make({ id: 1 }))
        assert.strictEqual(yield* get, 3)
      })
    )

    test(
      "a node without stale loads synchronously after a soft invalidation",
      Effect.gen(function* () {
        const Strict = Node.make(fresh("no-stale"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          stale: false
        })
        const version = yield* Ref.make(1)
        const get = Ref.get(version).pipe(Memo.cached(Strict.make({ id: 1 })))
        yield* get
        yield* Ref.set(version, 2)
        yield* Memo.invalidate(Strict.make({ id: 1 }), { mode: "soft" })
        assert.strictEqual(yield* get, 2)
      })
    )

    test(
      "the enable flag off makes Memo.cached a pass-through",
      Effect.gen(function* () {
        const Off = Node.make(fresh("off"), { fields: { id: Schema.Number }, value: Schema.Number })
        const runs = yield* Ref.make(0)
        yield* counted(runs, 1).pipe(Memo.cached(Off.make({ id: 1 })))
        yield* counted(runs, 1).pipe(Memo.cached(Off.make({ id: 1 })))
        assert.strictEqual(yield* Ref.get(runs), 2)
        const store = yield* CacheStore.CacheStore
        assert.isUndefined(yield* store.inspect(Off.make({ id: 1 }).key))
      }),
      { enabled: false }
    )

    test(
      "pattern invalidation stays under the prefix and returns its count",
      Effect.gen(function* () {
        const P = Node.make(fresh("pattern"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          key: ({ id }) => `pat:${id}`
        })
        for (let id = 0; id < 5; id++) yield* Effect.succeed(id).pipe(Memo.cached(P.make({ id })))
        assert.strictEqual(yield* Memo.invalidatePattern("pat:[0-2]"), 3)
        assert.strictEqual(yield* Memo.invalidatePattern("pat:*"), 2)
      })
    )

    test(
      "Memo.fn validates fields and names the field at fault",
      Effect.gen(function* () {
        const Book = Node.make(fresh("book-fn"), { fields: { id: Schema.Number }, value: Schema.String })
        const title = Memo.fn(Book, ({ id }) => Effect.succeed(`Book ${id}`))
        assert.strictEqual(yield* title({ id: 7 }), "Book 7")
        const error = yield* Effect.flip(title({ id: "7" as unknown as number }))
        assert.strictEqual(error._tag, "InvalidFields")
        assert.strictEqual(error.field, "id")
        assert.match(error.message, /id/)
      })
    )
  })
}
