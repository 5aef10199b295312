/**
 * ATTACK (guarantee 1, across app instances): a stamp comes back after a hard invalidation deleted it.
 *
 * "Stamps are random and never reused: a deleted stamp is made again as a new incarnation" (docs/concepts.md,
 * invariant 1). But the Redis store creates a missing stamp with a plain `SET stamp <fresh> NX GET` sent by
 * ioredis, and the client the store opens from a URL keeps ioredis' default `autoResendUnfulfilledCommands`
 * with `maxRetriesPerRequest: 1`: when a connection drops after the command ran but before its reply arrived,
 * ioredis reconnects and sends it again. If the stamp was deleted by a hard invalidation meanwhile, the resent
 * `SET NX` makes the *same* incarnation again, and every entry that recorded it and was loaded before the
 * invalidation is current again. Since commit cbfccfa the fill no longer compares stamps, so such an entry is
 * stored even when its fill lands after the invalidation (and the invalidation's reclaim, which ran before the
 * fill, cannot delete it).
 *
 * Interleaving (A reaches Redis through a proxy that holds its replies, B directly):
 * 1. A reads k1: its lease creates the group's stamp s; the replies are held.
 * 2. B reads k2 (same group): lookup sees s, lease, load reads "old"; its fill waits.
 * 3. The row changes; B invalidates the group hard: s deleted. Resolved.
 * 4. B's fill lands: k2 = "old" recorded with s (dead: s is gone).
 * 5. A's connection drops; ioredis reconnects and resends A's lease: `SET stamp s NX` makes s again.
 * 6. C, which starts after the invalidation resolved, reads k2: a hit on "old".
 */
import { assert, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Ref, Schema } from "effect"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { gated } from "./gate.ts"
import { proxy } from "./proxy.ts"
import { attackPrefix, deletePrefix, rawRedis, redisUrl } from "./support.ts"

const settings: CachemeConfig.Input = {
  commandTimeout: "10 seconds",
  herdRetryCount: 5,
  herdRetryInterval: "10 millis",
  stale: false
}

it.live(
  "a lease resent after a reconnect never makes a deleted stamp again (no value loaded before the invalidation is served)",
  () =>
    Effect.gen(function* () {
      const prefix = attackPrefix()
      yield* Effect.addFinalizer(() => Effect.promise(() => deletePrefix(prefix)))
      const raw = yield* rawRedis()
      const px = yield* proxy()
      const G = InvalidNode.make(`resend-g-${process.pid}`, { fields: { g: Schema.Number } })
      const N = Node.make(`resend-n-${process.pid}`, {
        fields: { id: Schema.Number },
        value: Schema.String,
        ttl: null,
        stale: false,
        invalidatedBy: () => [G.make({ g: 0 })]
      })
      const database = yield* Ref.make("old")
      const read = (id: number) => Ref.get(database).pipe(Memo.cached(N.make({ id })))
      const stampKey = `${prefix}~s:g:${G.make({ g: 0 }).key}`

      const base = (url: string) =>
        CacheStore.layerRedis({ url, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)
      // A: replies are held from its lease on.
      const a = yield* Layer.build(
        gated(base(px.url), (op) => Effect.sync(() => (op === "lease" ? px.hold(true) : undefined)))
      )
      // B: its fill waits for the gate.
      const fillArrived = yield* Deferred.make<void>()
      const fillGate = yield* Deferred.make<void>()
      let gateFill = true
      const b = yield* Layer.build(
        gated(base(redisUrl), (op) =>
          Effect.suspend(() =>
            op === "fill" && gateFill
              ? Effect.andThen(Deferred.succeed(fillArrived, undefined), Deferred.await(fillGate))
              : Effect.void
          )
        )
      )
      const c = yield* Layer.build(base(redisUrl))

      // 1. A's lease creates the group's stamp; its replies never arrive.
      const readerA = yield* Effect.forkChild(Effect.provide(read(1), a))
      let stamp: string | null = null
      for (let i = 0; i < 200 && stamp === null; i++) {
        yield* Effect.sleep(5)
        stamp = yield* Effect.promise(() => raw.get(stampKey))
      }
      assert.isNotNull(stamp, "A's lease made the stamp")
      // 2. B reads k2 under that stamp; its fill waits.
      const readerB = yield* Effect.forkChild(Effect.provide(read(2), b))
      yield* Deferred.await(fillArrived)
      // 3. The row changes, the group is invalidated hard.
      yield* Ref.set(database, "new")
      yield* Effect.provide(InvalidNode.invalidate(G.make({ g: 0 })), b)
      const afterInvalidation = yield* Effect.promise(() => raw.get(stampKey))
      // 4. B's fill lands (dead on arrival).
      gateFill = false
      yield* Deferred.succeed(fillGate, undefined)
      assert.strictEqual(yield* Fiber.join(readerB), "old")
      // 5. A's connection drops; ioredis resends its lease.
      px.killAll()
      px.hold(false)
      yield* Fiber.join(readerA)
      const afterResend = yield* Effect.promise(() => raw.get(stampKey))
      // 6. A caller that starts after the invalidation resolved.
      const seen = yield* Effect.provide(read(2), c)
      console.log(
        `[resend] stamp made by A's lease ${stamp}; after the invalidation ${afterInvalidation}; after the resend ${afterResend}; ` +
          `C (started after the invalidation resolved) read k2: ${seen}; proxy connections ${px.connections()}`
      )
      assert.strictEqual(seen, "new", "a value loaded before the invalidation was served after it resolved")
    })
)
