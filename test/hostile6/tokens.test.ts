/**
 * Hostile review, round 2, of issue 10 (groups named by the value) after "a family's epoch is a log that lists its
 * live holds": the log keys holds and releases by token, and a release element `;-@T` cancels every hold of T
 * listed anywhere in the log (before or after it) until a compaction. Two ways for a caller of `store.hold` to
 * make a live hold invisible in the epoch:
 *
 * 1. A token reused after its release (the API asks for no unique token; Kysely's are unique per process):
 *
 * ```
 * writer                            epoch(book)                             reader (shelf 1 names book 2)
 * hold book 2, token T; release T    base;+300@T;-@T
 * hold book 2, token T again         base;+300@T;-@T;+300@T   (reads as NOT held: T is released)
 *                                                                       ◀─── lookup/lease: epoch not held; records it
 *                                                                            load reads book 2 (old row)
 * COMMIT; the writer dies: no release
 *                                    marker expires; epoch unchanged
 *                                                                       ◀─── fill: epoch current, book 2 has no stamp:
 *                                                                            one is made, the old row is stored
 * ```
 *
 * 2. A token holding `;` (split into elements by the parser): token `w;-@w` appends `;+300@w;-@w`, a hold that
 *    releases itself; same interleaving.
 *
 * Both are API-level (a hostile or careless caller of `store.hold`), not reachable through the Kysely invalidator
 * (its tokens are `<pid>.<time>.<random>.<counter>`, unique). Both fail on memory, redis, tiered and the Cluster
 * (3 of 3 runs; Cluster 1 of 1); the control and the compaction case pass.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, type Scope } from "effect"
import { CacheStore } from "../../src/index.ts"
import { makeLibrary, versionsOf } from "../hostile4/library.ts"
import { type Backend, backends } from "../support/backends.ts"
import { startHostile5Cluster } from "../hostile5/cluster.ts"

let counter = 0
const freshPrefix = () => `test:h6:${process.pid}:${Date.now().toString(36)}:${counter++}:`

const suite = (backend: Backend) => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore | Scope.Scope>) =>
    backend.test(
      name,
      () =>
        Effect.scoped(
          Effect.gen(function* () {
            const prefix = freshPrefix()
            yield* body.pipe(
              Effect.provide(backend.layer({ leaseTtl: "1 minute", commandTimeout: "10 seconds", prefix }))
            )
          })
        ),
      60_000
    )

  const crashAfterCommit = (
    setup: (store: CacheStore.CacheStore["Service"], group: string) => Effect.Effect<void, unknown>
  ) =>
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      yield* lib.read(3) // the family's epoch exists
      yield* setup(store, lib.groupSet(2))
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

  test(
    "a token reused after its release, the writer crashing after COMMIT: the row read before the COMMIT is never stored",
    crashAfterCommit((store, group) =>
      Effect.gen(function* () {
        yield* store.hold([group], "reused", 300)
        yield* store.releaseHold([group], "reused")
        yield* store.hold([group], "reused", 300)
      })
    )
  )

  test(
    "a token holding ';-@' (it would read as its own release) is refused with a typed error, and holds nothing",
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      for (const token of ["w;-@w", "a@b", "a,b", "a:b", "!a", "~a", "a b", ""]) {
        const exit = yield* Effect.exit(store.hold(["g:book-h6:2"], token, 300))
        assert.isTrue(
          Exit.isFailure(exit) &&
            Cause.squash(exit.cause) instanceof CacheStore.CacheStoreError &&
            (Cause.squash(exit.cause) as CacheStore.CacheStoreError).reason === "InvalidInput",
          `token ${JSON.stringify(token)}`
        )
      }
    })
  )

  test(
    "held: the epoch compacted many times (other writers' holds and releases, invalidations) while a hold is live, the writer crashing after COMMIT: nothing from before the COMMIT is stored",
    crashAfterCommit((store, group) =>
      Effect.gen(function* () {
        yield* store.hold([group], "crashed-writer-with-a-longish-token-0123456789", 300)
        for (let i = 0; i < 20; i++) {
          const other = group.replace(/2$/, String(10 + i))
          yield* store.hold([other], `other-writer-${i}-0123456789`, 300)
          yield* store.invalidateSet(other, "hard")
          yield* store.releaseHold([other], `other-writer-${i}-0123456789`)
        }
      })
    )
  )

  test(
    "control: fresh plain tokens: nothing from before the COMMIT is stored",
    crashAfterCommit((store, group) =>
      Effect.gen(function* () {
        yield* store.hold([group], "first", 300)
        yield* store.releaseHold([group], "first")
        yield* store.hold([group], "second", 300)
      })
    )
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(`hostile6, hold tokens: ${backend.name}`, () => suite(backend))
void it

const cluster = await startHostile5Cluster([6570, 6571, 6572], "the hostile6 token Redis Cluster tests")
describe.skipIf(cluster.skip)("hostile6, hold tokens: Redis Cluster", () => suite(cluster))
