/**
 * Holds on the Redis store (docs/concepts.md, "Stores" and "The store protocol"): a hold is one plain
 * `SET stamp !<holdMillis>:<token> PX holdMillis GET`, followed by a merge script only when it replaced another
 * writer's hold; a release is one `GETDEL` when its hold was alone. Attacked here:
 *
 * - a release that lands between another hold's `SET` and its merge (forced: the merge held at a gate) neither
 *   drops that hold nor comes back with the merge, so the set is cacheable again once the last hold is released;
 * - holds of different lengths: merging a shorter one in, or releasing one of several, never shortens the others;
 * - a key of another type at the stamp, an older marker format, and a hard invalidation of a held set.
 *
 * Private `redis-server` on port 6486; two store layers (two clients) share one prefix, as two processes would.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Option, Schema } from "effect"
import type { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { uniquePrefix } from "../support/backends.ts"
import { redisServerMissing, startRedis } from "../support/fault-redis.ts"
import { gatedClient } from "../support/gated-client.ts"

const skip = redisServerMissing()
const port = 6486

/** A store in the test's scope: over a client of the test's, or over its own connection to `url`. */
const storeOver = (client: IORedis | string, prefix: string) =>
  Effect.map(
    Layer.build(
      (typeof client === "string"
        ? CacheStore.layerRedis({ url: client, prefix, sweepInterval: null })
        : CacheStore.layerRedis({ client, prefix, sweepInterval: null })
      ).pipe(Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "10 seconds" })), Layer.orDie)
    ),
    (context) => Context.get(context, CacheStore.CacheStore)
  )

let counter = 0
const fresh = (name: string) => `${name}-${counter++}`

describe.skipIf(skip)("holds on the Redis store (private redis-server)", () => {
  it.live(
    "a release between another hold's SET and its merge: both holds count while they last, neither outlives its release",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const { client, gate } = yield* gatedClient(redis.url)
        const a = yield* storeOver(redis.url, prefix)
        const b = yield* storeOver(client, prefix)
        const Group = fresh("held-row")
        const set = `g:${Group}`
        const stamp = Protocol.stampKey(prefix, set)
        const value = () => Effect.promise(() => redis.admin.get(stamp))

        yield* a.hold([set], "writer-a", 30_000)
        // B's hold: its SET replaces A's marker; its merge waits at the gate.
        yield* gate.arm((name, args) => name === "evalsha" && args.includes(stamp))
        const holdB = yield* Effect.forkChild(b.hold([set], "writer-b", 30_000))
        yield* gate.reached
        assert.strictEqual(yield* value(), "!30000:writer-b")
        // A's write ends meanwhile: its release finds B's marker without A, leaves it, and a tombstone of A's.
        yield* a.releaseHold([set], "writer-a")
        assert.isTrue(Protocol.isHold((yield* value()) ?? ""), "B's hold must stand")
        gate.open()
        yield* Fiber.join(holdB)
        const merged = (yield* value()) ?? ""
        assert.isTrue(merged.startsWith("!30000:writer-b"), merged)
        assert.notInclude(merged.replace(/~\d+:writer-a/, ""), "writer-a", "the merge brought A's released hold back")
        // B's write ends: nothing holds the set any more.
        yield* b.releaseHold([set], "writer-b")
        assert.isNull(yield* value(), "a released hold outlived its release")
      }),
    60_000
  )

  it.live(
    "holds of different lengths: a shorter hold merged in, or a release of one of them, never shortens the others",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const a = yield* storeOver(redis.url, prefix)
        const b = yield* storeOver(redis.url, prefix)
        const set = `g:${fresh("long-short")}`
        const stamp = Protocol.stampKey(prefix, set)
        const pttl = Effect.promise(() => redis.admin.pttl(stamp))

        yield* a.hold([set], "long", 120_000)
        yield* b.hold([set], "short", 1_000)
        assert.isAbove(yield* pttl, 60_000, "merging a 1 s hold into a 2 min one shortened it")
        yield* b.releaseHold([set], "short")
        assert.isAbove(yield* pttl, 60_000, "releasing the 1 s hold shortened the 2 min one")
        yield* b.hold([set], "short-again", 1_000)
        yield* a.releaseHold([set], "long")
        const left = yield* pttl
        assert.isAbove(left, 0)
        assert.isAtMost(left, 1_000, "the 1 s hold left alone expires after 1 s")
        yield* b.releaseHold([set], "short-again")
        assert.strictEqual(yield* pttl, -2)
      }),
    60_000
  )

  it.live(
    "a key of another type at the stamp, a marker of the older format, a hard invalidation of a held set",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const store = yield* storeOver(redis.url, prefix)
        const value = (set: string) => Effect.promise(() => redis.admin.get(Protocol.stampKey(prefix, set)))

        // Another type: replaced by the marker (the hold's SET fails, its merge repairs), then released.
        const listed = `g:${fresh("list")}`
        yield* Effect.promise(() => redis.admin.rpush(Protocol.stampKey(prefix, listed), "x"))
        yield* store.hold([listed], "w", 30_000)
        assert.strictEqual(yield* value(listed), "!30000:w")
        yield* store.releaseHold([listed], "w")
        assert.strictEqual(yield* Effect.promise(() => redis.admin.exists(Protocol.stampKey(prefix, listed))), 0)

        // A marker written by an older version (bare tokens): merged with, released token by token.
        const older = `g:${fresh("older")}`
        yield* Effect.promise(() => redis.admin.set(Protocol.stampKey(prefix, older), "!old-writer", "PX", 20_000))
        yield* store.hold([older], "new-writer", 30_000)
        yield* store.releaseHold([older], "old-writer")
        assert.strictEqual(yield* value(older), "!30000:new-writer")
        yield* store.releaseHold([older], "new-writer")
        assert.isNull(yield* value(older))

        // A hard invalidation of a held set leaves the hold in place, with its life.
        const held = `g:${fresh("held")}`
        yield* store.hold([held], "w", 30_000)
        assert.strictEqual(yield* store.invalidateSet(held, "hard"), 0)
        assert.strictEqual(yield* value(held), "!30000:w")
        assert.isAbove(yield* Effect.promise(() => redis.admin.pttl(Protocol.stampKey(prefix, held))), 20_000)
        yield* store.releaseHold([held], "w")
        assert.isNull(yield* value(held))
      }),
    60_000
  )

  it.live(
    "an entry of a held set is not stored while the hold lasts, and is once the last hold is released",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const Item = Node.make(fresh("held-item"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null
        })
        const layer = CacheStore.layerRedis({ url: redis.url, prefix, sweepInterval: null }).pipe(
          Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "10 seconds" })),
          Layer.orDie
        )
        yield* Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const tag = `t:${Item.name}`
          yield* store.hold([tag], "one", 30_000)
          yield* store.hold([tag], "two", 30_000)
          yield* Effect.succeed("during").pipe(Memo.cached(Item.make({ id: 1 })))
          assert.isTrue(Option.isNone(yield* Memo.get(Item.make({ id: 1 }))), "stored under a hold")
          yield* store.releaseHold([tag], "one")
          yield* Effect.succeed("between").pipe(Memo.cached(Item.make({ id: 1 })))
          assert.isTrue(Option.isNone(yield* Memo.get(Item.make({ id: 1 }))), "stored while one hold remained")
          yield* store.releaseHold([tag], "two")
          yield* Effect.succeed("after").pipe(Memo.cached(Item.make({ id: 1 })))
          assert.strictEqual(
            yield* Effect.succeed("never").pipe(Memo.cached(Item.make({ id: 1 }))),
            "after",
            "not stored once the holds were released"
          )
        }).pipe(Effect.provide(layer))
      }),
    60_000
  )
})
