/**
 * Hostile review of groups named by the value, through the other read paths: the fail-safe, stale serving,
 * `Memo.refresh`, `Memo.cachedMany`, and (Redis) the family's epoch key deleted behind the store's back. Each test
 * invalidates (hard) a group the value names at the worst point of the path and checks that no read that starts
 * after the invalidation resolved gets the value loaded before it.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { type CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { type Backend, backends } from "../support/backends.ts"
import { Redis } from "../support/services.ts"
import { Book, fresh, makeLibrary, versionsOf } from "./library.ts"

const suite = (backend: Backend) => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
    backend.test(name, () => body.pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute" }))), 60_000)

  test(
    "fail-safe: a group the value names invalidated hard while the failing load runs: no fail-safe answer",
    Effect.gen(function* () {
      const BookGroup = InvalidNode.make(fresh("book"), { fields: { id: Schema.Number } })
      const Shelf = Node.make(fresh("fs-shelf"), {
        fields: { shelf: Schema.Number },
        value: Schema.Array(Book),
        ttl: "200 millis",
        stale: false,
        failSafe: { window: "1 hour" },
        invalidatedByValue: { families: [BookGroup], groups: (books) => books.map((b) => BookGroup.make({ id: b.id })) }
      })
      const entry = Shelf.make({ shelf: 1 })
      yield* Effect.succeed([{ id: 2, version: 0 }]).pipe(Memo.cached(entry))
      yield* backend.advance(400) // too old to serve: the next read loads, with the fail-safe behind it
      const started = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      const failing = Effect.andThen(
        Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(go)),
        Effect.fail("database down" as const)
      )
      const reader = yield* Effect.forkChild(Effect.exit(failing.pipe(Memo.cached(entry))))
      yield* Deferred.await(started)
      yield* InvalidNode.invalidate(BookGroup.make({ id: 2 }))
      yield* Deferred.succeed(go, undefined)
      const exit = yield* Fiber.join(reader)
      assert.isTrue(Exit.isFailure(exit), `the value named an invalidated group: ${JSON.stringify(exit)}`)
      const after = yield* Effect.exit(Effect.fail("database down" as const).pipe(Memo.cached(entry)))
      assert.isTrue(Exit.isFailure(after), "nor for a read after it")
    })
  )

  test(
    "stale serving: after a hard invalidation of a group the value names, no stale answer; after a soft one, stale",
    Effect.gen(function* () {
      const lib = makeLibrary({ stale: true })
      yield* lib.read(1)
      yield* lib.read(3)
      yield* lib.write(2, "soft")
      // Soft: the previous value may be served (stale) while one caller refreshes.
      const soft = versionsOf(yield* lib.read(1))
      assert.include(["1@0 2@0", "1@0 2@1"], soft)
      yield* backend.advance(200) // a background refresh lands
      yield* lib.write(2, "hard")
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@2", "never the value from before a hard invalidation")
      assert.strictEqual(versionsOf(yield* lib.read(3)), "2@2 5@0")
    })
  )

  test(
    "Memo.refresh: an invalidation of a group the value names while the refresh loads: that value is not served",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const entry = lib.Shelf.make({ shelf: 1 })
      yield* lib.read(1)
      const gate = yield* lib.gateNextLoad
      const load = Effect.sync(() => [
        { id: 1, version: lib.versions.get(1) ?? 0 },
        { id: 2, version: lib.versions.get(2) ?? 0 }
      ])
      const gatedLoad = Effect.gen(function* () {
        const read = yield* load
        yield* Deferred.succeed(gate.started, undefined)
        yield* Deferred.await(gate.go)
        return read
      })
      const refreshing = yield* Effect.forkChild(gatedLoad.pipe(Memo.refresh(entry)))
      yield* Deferred.await(gate.started)
      yield* lib.write(2)
      yield* Deferred.succeed(gate.go, undefined)
      assert.strictEqual(versionsOf(yield* Fiber.join(refreshing)), "1@0 2@0")
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
    })
  )

  test(
    "single flight: a read that starts after an invalidation resolved never joins a load that began before it",
    Effect.gen(function* () {
      const lib = makeLibrary()
      yield* lib.read(3) // the epoch exists
      const gate = yield* lib.gateNextLoad
      const first = yield* Effect.forkChild(lib.read(1))
      yield* Deferred.await(gate.started)
      yield* lib.write(2)
      const second = yield* Effect.forkChild(lib.read(1))
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow
      yield* Deferred.succeed(gate.go, undefined)
      assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
      assert.strictEqual(versionsOf(yield* Fiber.join(second)), "1@0 2@1")
    })
  )

  test(
    "Memo.get and Memo.has after a group the value names changed: nothing (hard), a value only for stale nodes (soft)",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const entry = lib.Shelf.make({ shelf: 1 })
      yield* lib.read(1)
      assert.isTrue(yield* Memo.has(entry))
      yield* lib.write(2, "soft")
      assert.isFalse(yield* Memo.has(entry), "a node without stale serving has nothing after a soft invalidation")
      yield* lib.read(1)
      yield* lib.write(2)
      assert.isTrue(Option.isNone(yield* Memo.get(entry)))
      assert.isFalse(yield* Memo.has(entry))
    })
  )

  test(
    "Memo.cachedMany with a group invalidated between two gated batches: neither batch serves a value from before",
    Effect.gen(function* () {
      const lib = makeLibrary()
      yield* lib.readMany([1, 2, 3])
      yield* lib.write(5)
      const gate = yield* lib.gateNextLoad
      yield* lib.write(2) // shelves 1 and 3 go
      const batch = yield* Effect.forkChild(lib.readMany([1, 2, 3]))
      yield* Deferred.await(gate.started)
      yield* lib.write(2)
      yield* Deferred.succeed(gate.go, undefined)
      yield* Fiber.join(batch)
      const after = (yield* lib.readMany([3, 1, 2])).map(versionsOf)
      assert.deepStrictEqual(after, ["2@2 5@1", "1@0 2@2", "3@0 4@0"])
      assert.deepStrictEqual((yield* lib.readMany([1, 3])).map(versionsOf), ["1@0 2@2", "2@2 5@1"])
    })
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(`hostile4, value groups through the read paths: ${backend.name}`, () => suite(backend))

const redisBackends = backends.filter((b) => b.name !== "memory")
for (const backend of redisBackends)
  describe.skipIf(backend.skip)(`hostile4, the family's epoch deleted behind the store's back: ${backend.name}`, () => {
    const test = (name: string, body: (prefix: string) => Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
      backend.test(
        name,
        () =>
          Effect.gen(function* () {
            const prefix = `test:h4:${process.pid}:${fresh("p")}:`
            yield* body(prefix).pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute", prefix })))
          }),
        60_000
      )
    const raw = Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) => Effect.sync(() => client.disconnect())
    )

    test("deleted while a value loads, then a group it names invalidated: refused; deleted after the fill, then invalidated: not served", (prefix) =>
      Effect.scoped(
        Effect.gen(function* () {
          const client = yield* raw
          const lib = makeLibrary()
          const epoch = `${prefix}~s:e:${lib.BookGroup.name}`
          yield* lib.read(3)
          assert.strictEqual(yield* Effect.promise(() => client.exists(epoch)), 1, `the epoch is ${epoch}`)
          const gate = yield* lib.gateNextLoad
          const first = yield* Effect.forkChild(lib.read(1))
          yield* Deferred.await(gate.started)
          yield* Effect.promise(() => client.del(epoch))
          yield* lib.write(2) // bumps nothing: no epoch
          yield* lib.read(2) // another entry of the family: its lease makes a new epoch
          yield* Deferred.succeed(gate.go, undefined)
          assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
          assert.strictEqual(versionsOf(yield* lib.read(3)), "2@1 5@0")
          // Stored now; the epoch goes again, then book 2 changes, then a lease makes a new epoch.
          yield* Effect.promise(() => client.del(epoch))
          yield* lib.write(2)
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@2")
          yield* Effect.promise(() => client.del(epoch))
          yield* lib.write(2, "soft")
          assert.strictEqual(versionsOf(yield* lib.read(3)), "2@3 5@0")
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@3")
        })
      ))
  })
