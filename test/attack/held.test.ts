/**
 * Interleavings that HELD (kept as regression tests; they pass): holds from two writers where one lapses; soft then
 * hard invalidation while a background refresh is loading; a key invalidation racing a refill by another store
 * instance; ttl expiry racing a refresh. Each is checked with a caller that starts after the last invalidation (or
 * release) resolved, in another store instance (no single-flight), and must not get a value read before it.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Ref, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { backends } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-held-${process.pid}-${counter++}`

for (const backend of backends) {
  describe(`interleavings that hold: ${backend.name}`, () => {
    backend.test("two writers hold one group; the first lapses, a load fills meanwhile; releases in either order", () =>
      Effect.gen(function* () {
        for (const order of ["first-then-second", "second-then-first"] as const) {
          const G = InvalidNode.make(fresh("g"), { fields: { id: Schema.Number } })
          const N = Node.make(fresh("n"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            ttl: null,
            stale: false,
            invalidatedBy: ({ id }) => [G.make({ id })]
          })
          const database = yield* Ref.make("v0")
          const read = Ref.get(database).pipe(Memo.cached(N.make({ id: 1 })))
          const store = yield* CacheStore.CacheStore
          const sets = [`g:${G.make({ id: 1 }).key}`]
          yield* read
          yield* store.hold(sets, "w1", 50) // writer 1: a short hold that lapses
          yield* backend.advance(80)
          const lapsed = yield* read // loads "v0" (writer 1 has not committed) and stores it
          yield* store.hold(sets, "w2", 10_000) // writer 2
          const seen: Array<string> = [lapsed]
          if (order === "first-then-second") {
            yield* Ref.set(database, "v1") // writer 1 commits
            yield* store.releaseHold(sets, "w1")
            seen.push(yield* read)
            yield* Ref.set(database, "v2")
            yield* store.releaseHold(sets, "w2")
            seen.push(yield* read)
            assert.strictEqual(seen[2], "v2", `${order}: ${seen.join(",")}`)
          } else {
            yield* Ref.set(database, "v2") // writer 2 commits first
            yield* store.releaseHold(sets, "w2")
            seen.push(yield* read) // writer 1 still open: "v2" is what the database holds
            yield* Ref.set(database, "v1+v2")
            yield* store.releaseHold(sets, "w1")
            seen.push(yield* read)
            assert.strictEqual(seen[2], "v1+v2", `${order}: ${seen.join(",")}`)
          }
          console.log(`[holds ${backend.name} ${order}] reads ${seen.join(" -> ")}`)
        }
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("soft then hard invalidation while a background refresh loads", () =>
      Effect.gen(function* () {
        const G = InvalidNode.make(fresh("sg"), { fields: { id: Schema.Number } })
        const N = Node.make(fresh("sn"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          stale: true,
          invalidatedBy: ({ id }) => [G.make({ id })]
        })
        const database = yield* Ref.make("v0")
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        let slow = false
        const read = Ref.get(database).pipe(
          Effect.tap(() =>
            slow ? Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(finish)) : Effect.void
          ),
          Memo.cached(N.make({ id: 1 }))
        )
        yield* read
        yield* InvalidNode.invalidate(G.make({ id: 1 }), { mode: "soft" })
        slow = true
        assert.strictEqual(yield* read, "v0") // stale, by design; refresh forked
        yield* Deferred.await(started) // the refresh read "v0"
        slow = false
        yield* Ref.set(database, "v1")
        yield* InvalidNode.invalidate(G.make({ id: 1 }))
        yield* Deferred.succeed(finish, undefined)
        yield* backend.advance(50)
        const after = yield* read
        console.log(`[soft then hard ${backend.name}] read after the hard invalidation: ${after}`)
        assert.strictEqual(after, "v1")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("ttl expiry racing a refresh: a refresh that read before a hard invalidation is not served", () =>
      Effect.gen(function* () {
        const G = InvalidNode.make(fresh("tg"), { fields: { id: Schema.Number } })
        const N = Node.make(fresh("tn"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "30 millis",
          stale: "2 seconds",
          invalidatedBy: ({ id }) => [G.make({ id })]
        })
        const database = yield* Ref.make("v0")
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        let slow = false
        const read = Ref.get(database).pipe(
          Effect.tap(() =>
            slow ? Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(finish)) : Effect.void
          ),
          Memo.cached(N.make({ id: 1 }))
        )
        yield* read
        yield* backend.advance(60) // fresh time over: stale
        slow = true
        yield* read // stale; the refresh starts and reads "v0"
        yield* Deferred.await(started)
        slow = false
        yield* Ref.set(database, "v1")
        yield* InvalidNode.invalidate(G.make({ id: 1 }))
        yield* Deferred.succeed(finish, undefined)
        yield* backend.advance(50)
        const after = yield* read
        console.log(`[ttl+refresh ${backend.name}] read after the invalidation: ${after}`)
        assert.strictEqual(after, "v1")
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}

describe("a key invalidation racing a refill by another store instance (redis)", () => {
  const redis = backends[1]!
  redis.test("A's fill after the key invalidation and B's refill is refused", () =>
    Effect.gen(function* () {
      const N = Node.make(fresh("kn"), { fields: { id: Schema.Number }, value: Schema.String, ttl: null, stale: false })
      const database = yield* Ref.make("v0")
      const started = yield* Deferred.make<void>()
      const finish = yield* Deferred.make<void>()
      let slow = true
      const read = Ref.get(database).pipe(
        Effect.tap(() =>
          slow ? Effect.andThen(Deferred.succeed(started, undefined), Deferred.await(finish)) : Effect.void
        ),
        Memo.cached(N.make({ id: 1 }))
      )
      const prefix = `attack:${process.pid}:keyrace:${counter++}:`
      const a = yield* Layer.build(redis.layer(undefined, prefix))
      const b = yield* Layer.build(redis.layer(undefined, prefix))
      const slowA = yield* Effect.forkChild(Effect.provide(read, a))
      yield* Deferred.await(started)
      slow = false
      yield* Ref.set(database, "v1")
      yield* Effect.provide(Memo.invalidate(N.make({ id: 1 })), b)
      assert.strictEqual(yield* Effect.provide(read, b), "v1") // B refills
      yield* Ref.set(database, "v2")
      yield* Effect.provide(Memo.invalidate(N.make({ id: 1 })), b)
      yield* Deferred.succeed(finish, undefined)
      assert.strictEqual(yield* Fiber.join(slowA), "v0")
      const after = yield* Effect.provide(read, b)
      console.log(`[key race] read after both invalidations: ${after}`)
      assert.strictEqual(after, "v2")
    })
  )
})
