/**
 * Hostile review of issue 10: hostile values at a family's epoch (`<prefix>~s:e:<family>`), written behind the
 * store's back (another program sharing the Redis, a stray `SET`, a restore from elsewhere). What was tried:
 *
 * - Strings that break the epoch's parser: `nan`, `inf`, `1e400`, `-1e400`, `+1e400`, hex, empty elements, lone
 *   `!`, `!;`, `!x;@`, deadlines past 2^63. No script fails (Lua's `tonumber` gives nil, inf or nan; `%d` of those
 *   writes -9223372036854775808, which the next edit drops as lapsed). Held: no Lua error, no invalidation fails.
 * - **A key of another type** (a hash) at the epoch: breaks. Every lease of the family's value-naming nodes makes
 *   the "missing" epoch with `SET ... NX GET`, which answers WRONGTYPE, so the lease fails: every read runs its
 *   loader and stores nothing. Unlike a group's stamp (an invalidation of the group deletes a key of another type
 *   there, see `invalidateStamp`), nothing ever repairs an epoch: the `epoch` script reads it with `pcall` and
 *   leaves it; the plain hold's `SET ... XX GET` fails and falls back to that script. So the family is never
 *   cached again, whatever is invalidated or written (docs/concepts.md invariant 7: keys of another type are
 *   repaired, never an error for ever). Worse, each failed lease leaves its lease record behind (the entry's `SET
 *   NX` ran; the failure came from the stamp write beside it), so every other process reading the key waits on a
 *   lease nobody holds, up to `leaseTtl`, before taking it and failing the same way.
 * - **A hold far in the future** (`!x;9999999999999@t`: a deadline in the year 2286): breaks liveness. The lease's
 *   `clean` keeps it (not lapsed), every edit keeps it, so the family reads as held for ever: no value naming any of
 *   its groups is stored again. A lease record further away than `leaseTtl` is not trusted ("forged, or left by a
 *   bug"); an epoch's hold deadline further away than any hold can last is.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode } from "../../src/index.ts"
import { makeLibrary, versionsOf } from "../hostile4/library.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"

let counter = 0
const freshPrefix = () => `test:h5v:${process.pid}:${Date.now().toString(36)}:${counter++}:`

const setup = (settings: CachemeConfig.Input) =>
  Effect.gen(function* () {
    const prefix = freshPrefix()
    yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
    const raw = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) => Effect.sync(() => client.disconnect())
    )
    const layer = () =>
      CacheStore.layerRedis({ url: Redis.url, prefix, sweepInterval: null }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ ...settings, prefix })),
        Layer.orDie
      )
    return { prefix, raw, layer }
  })

describe.skipIf(await missing(Redis))("hostile5, hostile values at a family's epoch (Redis)", () => {
  it.live(
    "a key of another type at the epoch: repaired by the family's next change, then its values are cached again",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          // A short lease: each failed lease leaves its record behind (next test), which the next read of the key
          // waits out.
          const { prefix, raw, layer } = yield* setup({ leaseTtl: "1 second", commandTimeout: "10 seconds" })
          const lib = makeLibrary()
          const epoch = `${prefix}~s:e:${lib.BookGroup.name}`
          yield* Effect.promise(() => raw.hset(epoch, "planted", "by someone else"))
          yield* Effect.gen(function* () {
            yield* lib.read(1) // fails open: loads
            // The family changes every way it can: a group invalidated hard and soft, a hold and its release.
            yield* InvalidNode.invalidate(lib.BookGroup.make({ id: 2 }))
            yield* InvalidNode.invalidate(lib.BookGroup.make({ id: 5 }), { mode: "soft" })
            const store = yield* CacheStore.CacheStore
            yield* store.hold([lib.groupSet(2)], "writer", 30_000)
            yield* store.releaseHold([lib.groupSet(2)], "writer")
            // Another key of the family, and the first again: by now one of them is stored.
            const loads = lib.state.loads
            assert.strictEqual(versionsOf(yield* lib.read(3)), "2@0 5@0")
            assert.strictEqual(versionsOf(yield* lib.read(3)), "2@0 5@0")
            assert.strictEqual(
              lib.state.loads,
              loads + 1,
              `the second read is a hit (epoch type now: ${yield* Effect.promise(() => raw.type(epoch))})`
            )
          }).pipe(Effect.provide(layer()))
        })
      ),
    60_000
  )

  it.live(
    "a key of another type at the epoch: a lease that failed on it is not left behind for another process to wait on",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { prefix, raw, layer } = yield* setup({ leaseTtl: "3 seconds", commandTimeout: "10 seconds" })
          const lib = makeLibrary()
          const epoch = `${prefix}~s:e:${lib.BookGroup.name}`
          yield* Effect.promise(() => raw.hset(epoch, "planted", "by someone else"))
          // Process 1 reads shelf 1: its lease fails (the epoch's SET NX GET answers WRONGTYPE), it loads uncached.
          yield* lib.read(1).pipe(Effect.provide(layer()))
          const record = yield* Effect.promise(() => raw.get(`${prefix}${lib.Shelf.make({ shelf: 1 }).key}`))
          const ttl = yield* Effect.promise(() => raw.pttl(`${prefix}${lib.Shelf.make({ shelf: 1 }).key}`))
          // The lease now repairs the key and the load is stored: a value record, not a lease left behind.
          assert.isTrue(
            record === null || record[1] !== "L",
            `nobody holds a lease on shelf 1 now (found a record ${JSON.stringify(record?.slice(0, 40))}, pttl ${ttl} ms: process 2 would wait on it)`
          )
        })
      ),
    60_000
  )

  it.live(
    "a hold listed with a deadline centuries away (forged, or a clock gone wrong): the family is cached again after its next change",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { prefix, raw, layer } = yield* setup({ leaseTtl: "1 minute", commandTimeout: "10 seconds" })
          const lib = makeLibrary()
          const epoch = `${prefix}~s:e:${lib.BookGroup.name}`
          yield* Effect.gen(function* () {
            yield* lib.read(3) // the epoch exists
            yield* Effect.promise(() => raw.set(epoch, "!forged;9999999999999@nobody"))
            yield* InvalidNode.invalidate(lib.BookGroup.make({ id: 2 }))
            const store = yield* CacheStore.CacheStore
            yield* store.hold([lib.groupSet(2)], "writer", 30_000)
            yield* store.releaseHold([lib.groupSet(2)], "writer")
            const loads = lib.state.loads
            yield* lib.read(1)
            yield* lib.read(1)
            assert.strictEqual(
              lib.state.loads,
              loads + 1,
              `the second read is a hit (epoch now ${yield* Effect.promise(() => raw.get(epoch))})`
            )
          }).pipe(Effect.provide(layer()))
        })
      ),
    60_000
  )

  it.live(
    "held: epochs that break the parser (nan, inf, 1e400, hex, empty elements) fail no script and no invalidation, and lapse by the next change",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const { prefix, raw, layer } = yield* setup({ leaseTtl: "1 minute", commandTimeout: "10 seconds" })
          const planted = [
            "!x;nan@t",
            "!x;inf@t",
            "!x;1e400@t",
            "!x;-1e400@t",
            "!x;+1e400@t",
            "!x;+nan@t",
            "!x;0x10@t",
            "!x;99999999999999999999999@t",
            "!x;;;@;",
            "!x;@",
            "!;",
            "!"
          ]
          yield* Effect.gen(function* () {
            for (const value of planted) {
              const lib = makeLibrary()
              const epoch = `${prefix}~s:e:${lib.BookGroup.name}`
              yield* lib.read(3)
              yield* Effect.promise(() => raw.set(epoch, value))
              // Every change of the family goes through (none fails on the planted value).
              yield* InvalidNode.invalidate(lib.BookGroup.make({ id: 2 }))
              const store = yield* CacheStore.CacheStore
              yield* store.hold([lib.groupSet(2)], "writer", 30_000)
              yield* store.releaseHold([lib.groupSet(2)], "writer")
              yield* InvalidNode.invalidate(lib.BookGroup.make({ id: 5 }))
              const loads = lib.state.loads
              yield* lib.read(1)
              yield* lib.read(1)
              assert.strictEqual(
                lib.state.loads,
                loads + 1,
                `planted ${value}: now ${yield* Effect.promise(() => raw.get(epoch))}`
              )
            }
          }).pipe(Effect.provide(layer()))
        })
      ),
    60_000
  )
})
