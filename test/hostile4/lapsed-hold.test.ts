/**
 * Hostile review of groups named by the value: a hold that lapses (its writer committed, then crashed: the release
 * never comes).
 *
 * A load whose lookup came during the hold recorded the epoch the hold's bump made; it read the row before the
 * COMMIT. The hold then lapses: its marker expires (Redis `PX`, the memory store's expiry), which replaces no
 * epoch. The fill finds the epoch it recorded current and the group without a stamp (the marker is gone), makes
 * one and stores the row read before the COMMIT: served for ever (ttl none), until some later change of that
 * group. A group of `invalidatedBy` is safe in the same interleaving (the lookup saw the marker: nothing stored),
 * shown by the control test.
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
  // A KNOWN BREAK, open in issue 10 (docs/concepts.md, "Groups named by the value", known limit): it fails on
  // every store today. Skipped so that CI stays green; run it with CACHEME_KNOWN_BREAKS=1 (it must fail until the
  // protocol tells a lapsed hold from a group that never had a stamp).
  const knownBreak = process.env.CACHEME_KNOWN_BREAKS === "1" ? test : (name: string, _body: unknown) => it.skip(name)

  knownBreak(
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
