/**
 * Hostile tests of the fail-safe (`failSafe: { window, softTimeout }`), docs/concepts.md "Operations and
 * fail-safe": "When a reader finds such a value too old to serve and its own load fails ... it is answered with
 * that value", "A hard invalidation removes the value, so nothing invalidated hard is ever served as a fail-safe
 * value", the window bounds how old a fail-safe answer is, and README's read-your-writes ("a caller that starts
 * after an invalidation resolved never gets a value loaded before it").
 *
 * Every interleaving is forced with gates (a loader waiting on a Deferred, a store wrapper holding one lookup's
 * reply); time is TestClock on the in-process store, real sleeps on Redis (only to let an entry go stale).
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, type Duration, Effect, Exit, Fiber, Schema } from "effect"
import { TestClock } from "effect/testing"
import { InvalidNode, Memo, Node } from "../../src/index.ts"
import { gated } from "../attack/gate.ts"
import { backends } from "../support/backends.ts"

let counter = 0
const fresh = (name: string) => `${name}-hostile-fs-${process.pid}-${counter++}`

const failSafeNode = (window: Duration.Input = "1 hour") =>
  Node.make(fresh("fs"), {
    fields: { id: Schema.Number },
    value: Schema.String,
    ttl: "200 millis",
    stale: false,
    failSafe: { window }
  })

/** A loader that says it started, then waits for the test's word and fails. */
const gatedFailure = Effect.gen(function* () {
  const started = yield* Deferred.make<void>()
  const go = yield* Deferred.make<void>()
  const load = Effect.gen(function* () {
    yield* Deferred.succeed(started, undefined)
    yield* Deferred.await(go)
    return yield* Effect.fail("database down" as const)
  })
  return { started, go, load }
})

/** Lets the other fibers run what they can without I/O (a joiner reaching its join). */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 50; i++) yield* Effect.yieldNow
})

for (const backend of backends.filter((b) => b.name !== "tiered")) {
  describe.skipIf(backend.skip)(`hostile fail-safe: ${backend.name}`, () => {
    backend.test("a fail-safe value answers every failing load within the window, not only the first", () =>
      Effect.gen(function* () {
        const Title = failSafeNode()
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("last good").pipe(Memo.cached(entry))
        yield* backend.advance(400)
        const failing = Effect.fail("database down" as const)
        // Well within the window (1 hour), the load fails: the last value answers.
        assert.strictEqual(yield* failing.pipe(Memo.cached(entry)), "last good")
        // Still within the window, the database still down: the same promise holds for the next reader.
        const second = yield* Effect.exit(failing.pipe(Memo.cached(entry)))
        assert.deepStrictEqual(
          second,
          Exit.succeed("last good"),
          "the first failing load's lease replaced the value and its release deleted it: the fail-safe is gone"
        )
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("a hard invalidation during a failing load: the value is not served as fail-safe", () =>
      Effect.gen(function* () {
        const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
        const Title = Node.make(fresh("fs"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "200 millis",
          stale: false,
          failSafe: { window: "1 hour" },
          invalidatedBy: ({ id }) => [Row.make({ id })]
        })
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("before the write").pipe(Memo.cached(entry))
        yield* backend.advance(400)
        const { started, go, load } = yield* gatedFailure
        const reader = yield* Effect.forkChild(load.pipe(Memo.cached(entry)))
        yield* Deferred.await(started)
        // The row changes; its group is invalidated hard and the invalidation resolves (the stale value, kept in
        // place under the reader's lease, is the one entry it reaches).
        assert.strictEqual(yield* InvalidNode.invalidate(Row.make({ id: 1 })), 1)
        yield* Deferred.succeed(go, undefined)
        const exit = yield* Fiber.await(reader)
        assert.isTrue(
          Exit.isFailure(exit),
          `"nothing invalidated hard is ever served as a fail-safe value", got ${JSON.stringify(exit)}`
        )
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test(
      "read-your-writes: a caller that starts after a hard invalidation resolved never joins a fail-safe answer of the removed value",
      () => {
        // R's first lookup reply is held until the invalidation resolved: R saw the old value, then takes the
        // lease after the invalidation (on the record's absence). C starts after the invalidation resolved,
        // sees R's lease with unchanged stamps, and joins R's flight; R's load fails and answers its fail-safe
        // value, read before the invalidation.
        let holdNextLookup = false
        const lookedUp = Deferred.makeUnsafe<void>()
        const release = Deferred.makeUnsafe<void>()
        const layer = gated(
          backend.layer(),
          () => Effect.void,
          (op) => {
            if (op !== "lookup" || !holdNextLookup) return Effect.void
            holdNextLookup = false
            return Effect.andThen(Deferred.succeed(lookedUp, undefined), Deferred.await(release))
          }
        )
        return Effect.gen(function* () {
          const Title = failSafeNode()
          const entry = Title.make({ id: 1 })
          yield* Effect.succeed("old").pipe(Memo.cached(entry))
          yield* backend.advance(400)
          const { started, go, load } = yield* gatedFailure
          holdNextLookup = true
          const reader = yield* Effect.forkChild(load.pipe(Memo.cached(entry)))
          yield* Deferred.await(lookedUp)
          // The write: the key is invalidated hard, and that resolved.
          assert.strictEqual(yield* Memo.invalidate(entry), 1)
          yield* Deferred.succeed(release, undefined)
          yield* Deferred.await(started)
          // C starts now, after the invalidation resolved.
          const late = yield* Effect.forkChild(Effect.succeed("new").pipe(Memo.cached(entry)))
          yield* settle
          yield* Deferred.succeed(go, undefined)
          // R's value was removed hard before its load failed: no fail-safe answer, not even for R.
          assert.isTrue(Exit.isFailure(yield* Fiber.await(reader)), "R got a value invalidated hard")
          // C joined a load that started after the invalidation; it failed, so C gets its failure (or, had it
          // loaded itself, "new"), never the value the invalidation removed.
          const answer = yield* Fiber.await(late)
          assert.isTrue(
            Exit.isFailure(answer) || answer.value === "new",
            `a caller that started after the hard invalidation resolved got ${JSON.stringify(answer)}`
          )
        }).pipe(Effect.provide(layer))
      }
    )
  })
}

describe("hostile fail-safe: memory (TestClock)", () => {
  const layer = backends.find((b) => b.name === "memory")!.layer
  const memoryTest = backends.find((b) => b.name === "memory")!.test

  memoryTest("no fail-safe answer beyond the window, even when the load fails late", () =>
    Effect.gen(function* () {
      const Title = Node.make(fresh("fs"), {
        fields: { id: Schema.Number },
        value: Schema.String,
        ttl: "100 millis",
        stale: false,
        failSafe: { window: "1 second" }
      })
      const entry = Title.make({ id: 1 })
      yield* Effect.succeed("last good").pipe(Memo.cached(entry))
      // 800 ms past its freshness: inside the 1 s window.
      yield* TestClock.adjust(900)
      const { started, go, load } = yield* gatedFailure
      const reader = yield* Effect.forkChild(load.pipe(Memo.cached(entry)))
      yield* Deferred.await(started)
      // The load takes ten minutes, then fails.
      yield* TestClock.adjust(600_000)
      yield* Deferred.succeed(go, undefined)
      const exit = yield* Fiber.await(reader)
      assert.isTrue(
        Exit.isFailure(exit),
        `answered ${JSON.stringify(exit)} 10 minutes past its freshness, with a fail-safe window of 1 second`
      )
    }).pipe(Effect.provide(layer()))
  )

  memoryTest("soft timeout: a reader that finds the slow load's lease gets the fail-safe value too", () =>
    Effect.gen(function* () {
      const Title = Node.make(fresh("fs"), {
        fields: { id: Schema.Number },
        value: Schema.String,
        ttl: "100 millis",
        stale: false,
        failSafe: { window: "1 hour", softTimeout: "50 millis" }
      })
      const entry = Title.make({ id: 1 })
      yield* Effect.succeed("last good").pipe(Memo.cached(entry))
      yield* TestClock.adjust(500)
      const go = yield* Deferred.make<void>()
      const slow = Effect.as(Deferred.await(go), "slow")
      const first = yield* Effect.forkChild(slow.pipe(Memo.cached(entry)))
      for (let i = 0; i < 20; i++) yield* TestClock.adjust(5)
      assert.strictEqual(yield* Fiber.join(first), "last good")
      // The slow load still runs. A second reader (the flight is over): what does it get within its soft timeout?
      const second = yield* Effect.forkChild(slow.pipe(Memo.cached(entry)))
      for (let i = 0; i < 40; i++) yield* TestClock.adjust(5)
      yield* settle
      const exit = second.pollUnsafe()
      yield* Deferred.succeed(go, undefined)
      for (let i = 0; i < 40; i++) yield* TestClock.adjust(5)
      yield* Fiber.await(second)
      assert.deepStrictEqual(
        exit,
        Exit.succeed("last good"),
        "the second reader, 200 ms into a load with a 50 ms soft timeout, has no answer: it waits on the lease (the value was replaced by the lease)"
      )
    }).pipe(Effect.provide(layer()))
  )
})
