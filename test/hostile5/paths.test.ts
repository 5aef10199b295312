/**
 * Hostile review of issue 10 through the other write paths, under holds (attacks that held; hostile4 did the same
 * with invalidations): `Memo.set`, `Memo.refresh` and `Memo.cachedMany` while a group of the family is held, a
 * crashed writer's hold lapsing during a `cachedMany` batch's load, and two holds of one family overlapping with one
 * lapsing while the other is released. Pass on memory, Redis, tiered and the Cluster.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber } from "effect"
import { CacheStore, Memo } from "../../src/index.ts"
import { makeLibrary, versionsOf } from "../hostile4/library.ts"
import { type Backend, backends } from "../support/backends.ts"
import { startHostile5Cluster } from "./cluster.ts"

const suite = (backend: Backend) => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
    backend.test(
      name,
      () => body.pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute", commandTimeout: "10 seconds" }))),
      60_000
    )

  test(
    "Memo.set while a group of the family is held: refused (for a value naming another group of it too); stored once released",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3)
      yield* store.hold([lib.groupSet(2)], "writer", 60_000)
      const shelf1 = lib.Shelf.make({ shelf: 1 })
      const shelf2 = lib.Shelf.make({ shelf: 2 })
      assert.isFalse(yield* Memo.set(shelf1, [{ id: 2, version: 0 }]), "names the held group")
      assert.isFalse(yield* Memo.set(shelf2, [{ id: 4, version: 0 }]), "names another group of the held family")
      yield* store.releaseHold([lib.groupSet(2)], "writer")
      assert.isTrue(yield* Memo.set(shelf1, [{ id: 2, version: 9 }]))
      assert.strictEqual(versionsOf(yield* lib.read(1)), "2@9")
    })
  )

  test(
    "Memo.refresh during a hold: its caller gets the new rows, nothing is stored until the hold is released",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(1)
      yield* store.hold([lib.groupSet(2)], "writer", 60_000)
      lib.versions.set(2, 1)
      const entry = lib.Shelf.make({ shelf: 1 })
      const load = Effect.sync(() => [
        { id: 1, version: lib.versions.get(1) ?? 0 },
        { id: 2, version: lib.versions.get(2) ?? 0 }
      ])
      assert.strictEqual(versionsOf(yield* load.pipe(Memo.refresh(entry))), "1@0 2@1")
      lib.versions.set(2, 2) // the write goes on (another statement of the same transaction)
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@2", "the refresh stored nothing under the hold")
      yield* store.releaseHold([lib.groupSet(2)], "writer")
      const loads = lib.state.loads
      yield* lib.read(1)
      yield* lib.read(1)
      assert.strictEqual(lib.state.loads, loads + 1)
    })
  )

  test(
    "Memo.cachedMany: a batch whose lookup came during a hold, the writer crashing after COMMIT and the hold lapsing mid-load: nothing from before the COMMIT is stored",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3)
      yield* store.hold([lib.groupSet(2)], "crashed-writer", 300)
      const gate = yield* lib.gateNextLoad
      const batch = yield* Effect.forkChild(lib.readMany([1, 2]))
      yield* Deferred.await(gate.started)
      lib.versions.set(2, 1)
      yield* backend.advance(1_500)
      yield* Deferred.succeed(gate.go, undefined)
      assert.deepStrictEqual((yield* Fiber.join(batch)).map(versionsOf), ["1@0 2@0", "3@0 4@0"])
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
    })
  )

  test(
    "overlapping holds: A (long) and B (short) on two groups; B's writer crashes after COMMIT and lapses, A is released; a load from during both is never served",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(2) // the epoch exists; shelf 3 is cold
      yield* store.hold([lib.groupSet(4)], "writer-a", 60_000)
      const gate = yield* lib.gateNextLoad
      const reader = yield* Effect.forkChild(lib.read(3)) // shelf 3: books 2 and 5
      yield* Deferred.await(gate.started)
      yield* store.hold([lib.groupSet(2)], "crashed-writer", 300) // B lands after the lookup, on a group shelf 3 names
      lib.versions.set(2, 1) // B's COMMIT; B dies
      yield* store.releaseHold([lib.groupSet(4)], "writer-a")
      yield* backend.advance(1_500) // B lapses
      yield* Deferred.succeed(gate.go, undefined)
      assert.strictEqual(versionsOf(yield* Fiber.join(reader)), "2@0 5@0")
      assert.strictEqual(versionsOf(yield* lib.read(3)), "2@1 5@0")
    })
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(
    `hostile5, value groups through set, refresh and cachedMany under holds: ${backend.name}`,
    () => suite(backend)
  )

const cluster = await startHostile5Cluster([6566, 6567, 6568], "the hostile5 paths Redis Cluster tests")
describe.skipIf(cluster.skip)(
  "hostile5, value groups through set, refresh and cachedMany under holds: Redis Cluster",
  () => suite(cluster)
)
