/**
 * Hostile review of issue 10's liveness: once a crashed writer's hold is over, values that name its family's groups
 * are cached again "within at most twice its hold (`holdTtl`, 30 s) after the hold" (docs/concepts.md, "A hold
 * that lapses").
 *
 * On a single Redis the plain hold lists itself in the epoch with its length only (`+<holdMillis>`), and the
 * deadline is counted from the *next edit* of the epoch. When nothing edits the epoch while the hold lasts (no
 * read of the family, no other write: a quiet table, the night, a writer that crashed while the family was cold),
 * the first lease after the lapse counts the whole hold again from then: the family stays uncached for one more
 * hold length after its first read, however long after the hold that read comes. With the default `holdTtl`, a
 * family read for the first time an hour after a crashed write is not cached for 30 s more. The memory store and
 * the Cluster (the `epoch` script counts the deadline at the hold, by the server's clock) keep the bound: held.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { CacheStore } from "../../src/index.ts"
import { makeLibrary, versionsOf } from "../hostile4/library.ts"
import { type Backend, backends } from "../support/backends.ts"
import { startHostile5Cluster } from "./cluster.ts"

// On a single Redis the documented bound is one hold length after the first read that finds the family held
// (docs/concepts.md, "A hold that lapses"): this test, which asks for twice the hold after the hold, is a documented
// limit there, run with CACHEME_KNOWN_BREAKS=1. The in-process store and the Cluster count the deadline at the hold.
const knownLimit = process.env.CACHEME_KNOWN_BREAKS === "1"

const suite = (backend: Backend, singleRedis: boolean) => {
  ;(singleRedis && !knownLimit ? (name: string, _: unknown, __?: number) => it.skip(name) : backend.test)(
    "a crashed writer's hold, nobody reading the family while it lasts: values are cached again within twice the hold after the hold",
    () =>
      Effect.gen(function* () {
        const lib = makeLibrary()
        const store = yield* CacheStore.CacheStore
        yield* lib.read(3) // the family's epoch exists
        yield* store.hold([lib.groupSet(2)], "crashed-writer", 300) // the writer commits and dies: no release
        lib.versions.set(2, 1)
        yield* backend.advance(1_500) // five hold lengths later (the bound is two), the first read of the family
        const loads = lib.state.loads
        assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
        assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
        assert.strictEqual(lib.state.loads, loads + 1, "the second read is a hit")
      }).pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute", commandTimeout: "10 seconds" }))),
    60_000
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(`hostile5, a lapsed hold's liveness bound: ${backend.name}`, () =>
    suite(backend, backend.name !== "memory")
  )

const cluster = await startHostile5Cluster([6563, 6564, 6565], "the hostile5 liveness Redis Cluster tests")
describe.skipIf(cluster.skip)("hostile5, a lapsed hold's liveness bound: Redis Cluster", () => suite(cluster, false))
