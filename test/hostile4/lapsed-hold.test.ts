/**
 * Hostile review of groups named by the value: a hold that lapses (its writer committed, then crashed: the release
 * never comes).
 *
 * A load whose lookup came during the hold recorded the epoch the hold's bump made; it read the row before the
 * COMMIT. The hold then lapses: its marker expires (Redis `PX`, the memory store's expiry), which replaces no
 * epoch. Before the fix the fill found the epoch it recorded current and the group without a stamp (the marker
 * gone), made one and stored the row read before the COMMIT: served for ever (ttl none), until some later change
 * of that group. Now the epoch lists the family's live holds, so the load that recorded it is not stored; a load
 * that starts after the lapse is (the lease drops the lapsed hold from the epoch). A group of `invalidatedBy` is
 * safe in the same interleaving (the lookup saw the marker: nothing stored), shown by the control test.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { Cluster } from "ioredis"
import { afterAll } from "vitest"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { type Backend, backends, uniquePrefix } from "../support/backends.ts"
import { startCluster } from "../support/cluster.ts"
import { fresh, makeLibrary, versionsOf } from "./library.ts"

const suite = (backend: Backend) => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
    backend.test(name, () => body.pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute" }))), 60_000)
  test(
    "a load that began during a hold and fills after the hold lapsed (writer crashed after COMMIT): never served",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3) // the family's epoch exists
      // A writer holds book 2 (its COMMIT is on its way), with a short hold.
      yield* store.hold([lib.groupSet(2)], "crashed-writer", 300)
      const gate = yield* lib.gateNextLoad
      const first = yield* Effect.forkChild(lib.read(1))
      yield* Deferred.await(gate.started) // the load read book 2 before the COMMIT
      lib.versions.set(2, 1) // the COMMIT; then the writer dies: no release
      yield* backend.advance(1_500) // the hold lapses
      yield* Deferred.succeed(gate.go, undefined)
      assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0", "its caller gets what it loaded")
      assert.strictEqual(
        versionsOf(yield* lib.read(1)),
        "1@0 2@1",
        "a read after the hold lapsed never gets the row read before the COMMIT"
      )
    })
  )

  test(
    "two holds in the family, the longer one released mid-load, the shorter one lapsing: still never served",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(2) // the family's epoch exists (shelf 2 names books 3 and 4)
      // Writer A holds book 2 briefly, commits and dies; writer B holds book 3 for long and releases normally.
      yield* store.hold([lib.groupSet(2)], "crashed-writer", 300)
      yield* store.hold([lib.groupSet(3)], "living-writer", 60_000)
      const gate = yield* lib.gateNextLoad
      const first = yield* Effect.forkChild(lib.read(1))
      yield* Deferred.await(gate.started) // shelf 1 read book 2 before A's COMMIT
      lib.versions.set(2, 1) // A's COMMIT; A dies
      yield* store.releaseHold([lib.groupSet(3)], "living-writer") // B is done
      yield* backend.advance(1_500) // A's hold lapses
      yield* Deferred.succeed(gate.go, undefined)
      assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1", "the row read before A's COMMIT is never served")
    })
  )

  test(
    "after a crashed writer's hold lapsed, loads are stored again (the lapsed hold leaves the epoch)",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3)
      yield* store.hold([lib.groupSet(2)], "crashed-writer", 300)
      lib.versions.set(2, 1)
      yield* backend.advance(1_500) // the hold lapses; no release ever comes
      // On a single Redis the plain hold listed itself with its length only; the first edit after it (this read's
      // lease) counts its deadline from then, so the family is held at most one more hold length.
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
      yield* backend.advance(1_500)
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
      const loads = lib.state.loads
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
      assert.strictEqual(lib.state.loads, loads, "stored by then: the next read is a hit")
    })
  )

  test(
    "two writers hold groups of one family at once: loads are stored only once both released",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3)
      yield* store.hold([lib.groupSet(2)], "writer-a", 60_000)
      yield* store.hold([lib.groupSet(4)], "writer-b", 60_000)
      yield* store.releaseHold([lib.groupSet(4)], "writer-b")
      // Writer A still holds book 2 (its hold must not have been lost when B's joined the epoch): shelf 1 names
      // book 2, and a load now is not stored.
      let loads = lib.state.loads
      yield* lib.read(1)
      yield* lib.read(1)
      assert.strictEqual(lib.state.loads, loads + 2, "not stored while A holds")
      yield* store.releaseHold([lib.groupSet(2)], "writer-a")
      loads = lib.state.loads
      yield* lib.read(1)
      yield* lib.read(1)
      assert.strictEqual(lib.state.loads, loads + 1, "stored once both released")
    })
  )

  test(
    "control: the same interleaving with the group in invalidatedBy stores nothing",
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const BookGroup = InvalidNode.make(fresh("book"), { fields: { id: Schema.Number } })
      const Title = Node.make(fresh("title"), {
        fields: { id: Schema.Number },
        value: Schema.Number,
        ttl: null,
        invalidatedBy: (f) => [BookGroup.make({ id: f.id })]
      })
      let version = 0
      const started = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      let gated = true
      const load = Effect.gen(function* () {
        const read = version
        if (gated) {
          gated = false
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(go)
        }
        return read
      })
      const read = load.pipe(Memo.cached(Title.make({ id: 2 })))
      yield* store.hold([`g:${BookGroup.make({ id: 2 }).key}`], "crashed-writer", 300)
      const first = yield* Effect.forkChild(read)
      yield* Deferred.await(started)
      version = 1
      yield* backend.advance(1_500)
      yield* Deferred.succeed(go, undefined)
      assert.strictEqual(yield* Fiber.join(first), 0)
      assert.strictEqual(yield* read, 1)
    })
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(`hostile4, a lapsed hold and groups named by the value: ${backend.name}`, () =>
    suite(backend)
  )

// A local Redis Cluster on this file's own ports (hostile4's range): the epoch and the stamp on different slots.
const ports = [6520, 6521, 6522]
const local = await startCluster(ports, "the hostile4 lapsed-hold Redis Cluster tests")
afterAll(() => local.stop())

const cluster: Backend = {
  name: "redis",
  skip: !local.ready,
  test: it.live,
  layer: (settings) =>
    Layer.unwrap(
      Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))),
          (client) => Effect.sync(() => client.disconnect())
        ),
        (client) => CacheStore.layerRedis({ client, prefix: settings?.prefix ?? uniquePrefix() })
      )
    ).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie),
  advance: (millis) => Effect.sleep(millis)
}

describe.skipIf(cluster.skip)("hostile4, a lapsed hold and groups named by the value: Redis Cluster", () =>
  suite(cluster)
)
