/**
 * AFTER THE REVIEW: a hold now lists itself in the epoch with one plain `APPEND` (docs/concepts.md, "A hold that
 * lapses"): no value is replaced, so there is no merge to race or to lose, and the tests that force the epoch's
 * merge step (`obsolete`) have nothing left to wait for; the unforced probe below runs as is. The stamp's own
 * `mergeHold` race (a hold's release sent before its merge) is fixed for the order it happens in (the merge is
 * built after the `SET`'s reply, and leaves out a hold whose release was sent: `pendingHolds` in `Redis.ts`); the
 * test for it holds the merge after it was built, which that fix does not cover: run with CACHEME_KNOWN_BREAKS=1.
 *
 * Hostile review of issue 10 on a single Redis: the plain hold on a family's epoch (`SET <epoch>
 * !<fresh>;+<holdMillis>@<token> XX GET`) replaces whatever holds the epoch listed, and a second round trip (the
 * `epoch` script, op `merge`) puts them back. Two attacks on the window between the two:
 *
 * 1. **A release racing the merge** (no fault, only timing). Writer A holds book 2; writer B's hold replaces the
 *    epoch (the value it replaced lists A); A's release runs before B's merge: it removes A from an epoch that
 *    lists only B; then B's merge puts A back from the value it replaced. Nothing removes A again until its
 *    deadline passes: after both writers released, the family stays held (no value naming any of its groups is
 *    stored) for the rest of A's hold, 30 s by default (`holdTtl`), though no write is under way. The stamp's own
 *    `mergeHold` has tombstones for exactly this race; the epoch's merge has none. Liveness: "a normal Kysely write
 *    does not leave the family uncacheable" / "its release removes it".
 *
 * 2. **The merge lost** (a connection that drops between the `SET`'s reply and the merge's write: ioredis, with
 *    `enableOfflineQueue: false`, fails the merge at once and never sends it). Writer A holds book 2 (listed);
 *    writer B's `SET` replaces the epoch and its merge never runs: the epoch now lists B only. B's hold fails, so
 *    Kysely releases it and invalidates after COMMIT: the epoch then lists nothing, while A's hold is live. A reader
 *    records that unheld epoch, reads book 2 before A's COMMIT; A commits and crashes; its marker lapses; the fill
 *    finds its epoch current and book 2 without a stamp, and stores the row read before the COMMIT, for ever.
 *    Safety: "a value read before a write's COMMIT is never stored, even when the writer crashes between its COMMIT
 *    and its release".
 *
 * 3. (Pre-existing, the stamp's own merge, any group.) A hold whose release overtakes its own `mergeHold` (its hold
 *    timed out, and Kysely releases a failed hold in the background) is written back by that merge: the group stays
 *    held for the whole hold length after both writers released. Liveness only.
 *
 * The interleavings are forced with a client that holds or fails the one merge command (./faulty-client.ts).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer } from "effect"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { makeLibrary, versionsOf } from "../hostile4/library.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { epochMerge, faultyClient } from "./faulty-client.ts"

let counter = 0
const freshPrefix = () => `test:h5m:${process.pid}:${Date.now().toString(36)}:${counter++}:`

const withStore = <A, E>(
  body: (
    faults: Effect.Success<ReturnType<typeof faultyClient>>["faults"]
  ) => Effect.Effect<A, E, CacheStore.CacheStore>
) =>
  Effect.scoped(
    Effect.gen(function* () {
      const prefix = freshPrefix()
      yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
      const { client, faults } = yield* faultyClient(Redis.url)
      const layer = CacheStore.layerRedis({ client, prefix, sweepInterval: null }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ leaseTtl: "1 minute", commandTimeout: "10 seconds" })),
        Layer.orDie
      )
      return yield* body(faults).pipe(Effect.provide(layer))
    })
  )

/** A test of the epoch merge step that no longer exists (see the head of this file). */
const obsolete = (name: string, _body: unknown, _timeout?: number) => it.skip(name)
/** A documented limit: run with CACHEME_KNOWN_BREAKS=1. */
const knownLimit =
  process.env.CACHEME_KNOWN_BREAKS === "1"
    ? it.live
    : (name: string, _body: unknown, _timeout?: number) => it.skip(name)

describe.skipIf(await missing(Redis))("hostile5, the epoch's plain hold and its merge (single Redis)", () => {
  obsolete(
    "a release between another hold's SET and its merge: once both writers released, loads are stored again",
    () =>
      withStore((faults) =>
        Effect.gen(function* () {
          const lib = makeLibrary()
          const store = yield* CacheStore.CacheStore
          yield* lib.read(3) // the family's epoch exists
          yield* store.hold([lib.groupSet(2)], "writer-a", 60_000) // the epoch lists A
          yield* faults.arm(epochMerge, "hold")
          const b = yield* Effect.forkChild(store.hold([lib.groupSet(4)], "writer-b", 60_000))
          yield* faults.reached // B's SET replaced the epoch (which listed A); B's merge is on its way
          yield* store.releaseHold([lib.groupSet(2)], "writer-a") // A is done: leaves an epoch that lists B only
          faults.open() // B's merge puts back what its SET replaced: A, released already
          yield* Fiber.join(b)
          yield* store.releaseHold([lib.groupSet(4)], "writer-b") // B is done
          // No write is under way: shelf 1 (books 1, 2) is stored by its next load.
          const loads = lib.state.loads
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@0")
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@0")
          assert.strictEqual(
            lib.state.loads,
            loads + 1,
            "both holds released: the second read is a hit (fails: A's released hold is listed again until its 60 s deadline)"
          )
        })
      ),
    60_000
  )

  it.live(
    "the same race without forcing it: one process's hold and another write's release issued in one turn (200 of 200 probes resurrected the released hold)",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const prefix = freshPrefix()
          yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
          const layer = CacheStore.layerRedis({ url: Redis.url, prefix, sweepInterval: null }).pipe(
            Layer.provideMerge(CachemeConfig.layer({ leaseTtl: "1 minute", commandTimeout: "10 seconds" })),
            Layer.orDie
          )
          yield* Effect.gen(function* () {
            const lib = makeLibrary()
            const store = yield* CacheStore.CacheStore
            yield* lib.read(3)
            yield* store.hold([lib.groupSet(2)], "writer-a", 60_000)
            // Writer B starts as writer A finishes: B's SET goes out first, A's release on the next turn, B's merge
            // after B's SET replied.
            yield* Effect.all(
              [store.hold([lib.groupSet(4)], "writer-b", 60_000), store.releaseHold([lib.groupSet(2)], "writer-a")],
              { concurrency: "unbounded" }
            )
            yield* store.releaseHold([lib.groupSet(4)], "writer-b")
            const loads = lib.state.loads
            yield* lib.read(1)
            yield* lib.read(1)
            assert.strictEqual(lib.state.loads, loads + 1, "both writes are done: the second read is a hit")
          }).pipe(Effect.provide(layer))
        })
      ),
    60_000
  )

  obsolete(
    "a hold's merge lost (connection dropped) while another writer's hold is live, that writer crashing after COMMIT: the row read before its COMMIT is never stored",
    () =>
      withStore((faults) =>
        Effect.gen(function* () {
          const lib = makeLibrary()
          const store = yield* CacheStore.CacheStore
          yield* lib.read(3) // the family's epoch exists
          yield* store.hold([lib.groupSet(2)], "crashed-writer", 300) // A, listed; A will crash after its COMMIT
          yield* faults.arm(epochMerge, "fail")
          const b = yield* Effect.exit(store.hold([lib.groupSet(4)], "writer-b", 60_000))
          assert.isTrue(Exit.isFailure(b), "B's hold failed (its merge never reached Redis)")
          // As Kysely does on a failed hold: B releases (and invalidates after its COMMIT).
          yield* store.releaseHold([lib.groupSet(4)], "writer-b")
          yield* store.invalidateSet(lib.groupSet(4), "hard")
          const gate = yield* lib.gateNextLoad
          const first = yield* Effect.forkChild(lib.read(1))
          yield* Deferred.await(gate.started) // shelf 1 read book 2 before A's COMMIT
          lib.versions.set(2, 1) // A's COMMIT; A dies
          yield* Effect.sleep(1_500) // A's hold lapses
          yield* Deferred.succeed(gate.go, undefined)
          assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
          assert.strictEqual(
            versionsOf(yield* lib.read(1)),
            "1@0 2@1",
            "the row read before A's COMMIT is never served"
          )
        })
      ),
    60_000
  )

  knownLimit(
    "a hold released before its own stamp merge (its hold timed out and Kysely released it): once both writers released, the group is cached again",
    () =>
      withStore((faults) =>
        Effect.gen(function* () {
          // Not the epoch's merge: the stamp's (`mergeHold`), the hold protocol from before issue 10. Writer W holds
          // book 2; B's hold replaces W's marker with its own (plain SET ... GET); B's hold times out before the reply
          // (a slow link), so Kysely releases B in the background: the release is written before the merge, which
          // goes out only once the SET's reply arrives. The release deletes B's marker (only B is in it, and leaves no
          // tombstone: no other hold is left in it); the merge then writes W's hold back *and B's own*.
          const lib = makeLibrary()
          const store = yield* CacheStore.CacheStore
          yield* lib.read(3)
          yield* store.hold([lib.groupSet(2)], "writer-w", 60_000)
          yield* faults.arm(
            (name, args) =>
              (name === "evalsha" || name === "eval") && args.some((arg) => arg.startsWith("!60000:writer-w")),
            "hold"
          )
          const b = yield* Effect.forkChild(store.hold([lib.groupSet(2)], "writer-b", 60_000))
          yield* faults.reached // B's SET replaced W's marker; B's merge waits for the SET's (late) reply
          yield* store.releaseHold([lib.groupSet(2)], "writer-b") // B gave up on its hold: released
          faults.open()
          yield* Fiber.join(b)
          yield* store.releaseHold([lib.groupSet(2)], "writer-w")
          const loads = lib.state.loads
          yield* lib.read(1)
          yield* lib.read(1)
          assert.strictEqual(
            lib.state.loads,
            loads + 1,
            "both released: stored (fails: the stamp is B's marker again, for B's whole hold)"
          )
        })
      ),
    60_000
  )

  obsolete(
    "held: two plain holds whose SETs both land before either merge: every hold stays listed until released",
    () =>
      withStore((faults) =>
        Effect.gen(function* () {
          const lib = makeLibrary()
          const store = yield* CacheStore.CacheStore
          yield* lib.read(3)
          yield* store.hold([lib.groupSet(2)], "writer-a", 60_000)
          yield* faults.arm(epochMerge, "hold")
          const b = yield* Effect.forkChild(store.hold([lib.groupSet(4)], "writer-b", 60_000))
          yield* faults.reached // B replaced A's listing; its merge is held
          yield* store.hold([lib.groupSet(5)], "writer-c", 60_000) // C replaces B's, merges B back
          faults.open()
          yield* Fiber.join(b)
          for (const [released, left] of [
            ["writer-c", 5],
            ["writer-b", 4]
          ] as const) {
            yield* store.releaseHold([lib.groupSet(left)], released)
            const loads = lib.state.loads
            yield* lib.read(1)
            yield* lib.read(1)
            assert.strictEqual(
              lib.state.loads,
              loads + 2,
              `A still holds book 2 after ${released} released: not stored`
            )
          }
          yield* store.releaseHold([lib.groupSet(2)], "writer-a")
          const loads = lib.state.loads
          yield* lib.read(1)
          yield* lib.read(1)
          assert.strictEqual(lib.state.loads, loads + 1, "stored once all three released")
        })
      ),
    60_000
  )
})
