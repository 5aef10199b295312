/**
 * Hostile tests of `Memo.set` and `Memo.refresh` (docs/concepts.md, "Operations and fail-safe"; `Memo.set`'s own
 * doc: "with the stamps its groups and tags have now, so an invalidation that lands meanwhile wins"; "answers
 * false instead of storing while a committing write holds one of the entry's sets"; `refresh`: "returns the new
 * value"). Interleavings are forced with a store wrapper that holds one command before it is sent.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { groupSet } from "../../src/internal/keys.ts"
import { gated } from "../attack/gate.ts"
import { backends } from "../support/backends.ts"

let counter = 0
const fresh = (name: string) => `${name}-hostile-s-${process.pid}-${counter++}`

/** A store whose next `op` waits, once armed, until the test releases it; `reached` says it got there. */
const holdOnce = (backend: (typeof backends)[number], op: string) => {
  const state = { armed: false }
  const reached = Deferred.makeUnsafe<void>()
  const release = Deferred.makeUnsafe<void>()
  const layer = gated(backend.layer(), (name) => {
    if (name !== op || !state.armed) return Effect.void
    state.armed = false
    return Effect.andThen(Deferred.succeed(reached, undefined), Deferred.await(release))
  })
  return { state, reached, release, layer }
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`hostile set and refresh: ${backend.name}`, () => {
    {
      const gate = holdOnce(backend, "lease")
      backend.test("a key invalidation concurrent with set: either may win, and set's answer says which", () =>
        Effect.gen(function* () {
          const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
          const entry = Title.make({ id: 1 })
          gate.state.armed = true
          const setting = yield* Effect.forkChild(Memo.set(entry, "given before the write"))
          // set looked the key up and is about to take its lease: the write commits and invalidates the key.
          yield* Deferred.await(gate.reached)
          yield* Memo.invalidate(entry)
          yield* Deferred.succeed(gate.release, undefined)
          const stored = yield* Fiber.join(setting)
          // The two overlap: invalidate-then-set and set-then-invalidate are both valid orders (a key
          // invalidation of an empty key leaves nothing to see). What may not happen: set says one thing and the
          // store holds the other.
          const after = yield* Memo.get(entry)
          assert.deepStrictEqual(after, stored ? Option.some("given before the write") : Option.none())
        }).pipe(Effect.provide(gate.layer))
      )
    }

    {
      const gate = holdOnce(backend, "lease")
      backend.test("held: a group invalidation that lands while set runs wins", () =>
        Effect.gen(function* () {
          const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
          const Title = Node.make(fresh("title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            invalidatedBy: ({ id }) => [Row.make({ id })]
          })
          const entry = Title.make({ id: 1 })
          // The group's stamp exists (an earlier entry made it).
          yield* Effect.succeed("earlier").pipe(Memo.cached(entry))
          gate.state.armed = true
          const setting = yield* Effect.forkChild(Memo.set(entry, "given before the write"))
          yield* Deferred.await(gate.reached)
          yield* InvalidNode.invalidate(Row.make({ id: 1 }))
          yield* Deferred.succeed(gate.release, undefined)
          yield* Fiber.join(setting)
          assert.deepStrictEqual(yield* Memo.get(entry), Option.none())
        }).pipe(Effect.provide(gate.layer))
      )
    }

    {
      const gate = holdOnce(backend, "fill")
      backend.test("a hold that starts while set runs: its value is never served, during the hold or after", () =>
        Effect.gen(function* () {
          const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
          const Title = Node.make(fresh("title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            invalidatedBy: ({ id }) => [Row.make({ id })]
          })
          const entry = Title.make({ id: 1 })
          const store = yield* CacheStore.CacheStore
          const group = groupSet(Row.make({ id: 1 }).key)
          gate.state.armed = true
          const setting = yield* Effect.forkChild(Memo.set(entry, "during the write"))
          yield* Deferred.await(gate.reached)
          yield* store.hold([group], "write-token-0001", 60_000)
          yield* Deferred.succeed(gate.release, undefined)
          // set may answer true: the value was written, dead on arrival (its stamps predate the hold).
          yield* Fiber.join(setting)
          const during = yield* Memo.get(entry)
          yield* store.releaseHold([group], "write-token-0001")
          assert.deepStrictEqual(
            { during, after: yield* Memo.get(entry) },
            { during: Option.none(), after: Option.none() }
          )
        }).pipe(Effect.provide(gate.layer))
      )
    }

    {
      const gate = holdOnce(backend, "lease")
      backend.test("held: a stale refresh that looked up before set cannot store over set's value", () =>
        Effect.gen(function* () {
          const Title = Node.make(fresh("title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            ttl: "100 millis",
            stale: "1 hour"
          })
          const entry = Title.make({ id: 1 })
          yield* Effect.succeed("v1").pipe(Memo.cached(entry))
          yield* backend.advance(300)
          // A stale reader: answered v1 at once, its background refresh held before its lease.
          gate.state.armed = true
          assert.strictEqual(yield* Effect.succeed("loaded before the set").pipe(Memo.cached(entry)), "v1")
          yield* Deferred.await(gate.reached)
          assert.isTrue(yield* Memo.set(entry, "set"))
          yield* Deferred.succeed(gate.release, undefined)
          // Whatever the refresh does, the value set stays until something newer.
          for (let i = 0; i < 20; i++) {
            yield* backend.advance(5)
            assert.deepStrictEqual(yield* Memo.get(entry), Option.some("set"))
          }
        }).pipe(Effect.provide(gate.layer))
      )
    }

    backend.test("refresh on a fail-safe node whose load fails answers the error, not the old value", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "1 hour",
          stale: false,
          failSafe: { window: "1 hour" }
        })
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("old").pipe(Memo.cached(entry))
        const exit = yield* Effect.exit(Effect.fail("database down").pipe(Memo.refresh(entry)))
        assert.isTrue(
          Exit.isFailure(exit),
          `refresh ("loads the entry again ... returns the new value") answered ${JSON.stringify(exit)}`
        )
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}
