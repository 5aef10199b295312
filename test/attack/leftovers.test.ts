/**
 * ATTACK (guarantee 5, "failed loads leave nothing behind in Redis"): a failing load whose lease reply came late.
 *
 * The lease's reply is late (a slow link: here a proxy holds it past `commandTimeout`): the caller fails open and
 * runs the load, which fails. When the reply arrives, `releaseLate` (src/store/Redis.ts) releases the entry's
 * lease, but not the stamps the same round trip created (`release` would drop them with `dropStamp`; the late
 * path does not): the tag's and the group's stamps stay, with no expiry for a node without ttl.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { gated } from "./gate.ts"
import { proxy } from "./proxy.ts"
import { attackPrefix, deletePrefix, rawRedis } from "./support.ts"

it.live("a failed load whose lease reply came late leaves no stamp behind", () =>
  Effect.gen(function* () {
    const prefix = attackPrefix()
    yield* Effect.addFinalizer(() => Effect.promise(() => deletePrefix(prefix)))
    const raw = yield* rawRedis()
    const px = yield* proxy()
    const G = InvalidNode.make(`left-g-${process.pid}`, { fields: { id: Schema.Number } })
    const N = Node.make(`left-n-${process.pid}`, {
      fields: { id: Schema.Number },
      value: Schema.String,
      ttl: null,
      invalidatedBy: ({ id }) => [G.make({ id })]
    })
    // The lease's reply (and what follows) is late: held from the lease on, delivered after the timeout.
    const store = gated(
      CacheStore.layerRedis({ url: px.url, prefix }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "200 millis" })),
        Layer.orDie
      ),
      (op) => Effect.sync(() => (op === "lease" && arm ? px.hold(true) : undefined))
    )
    let arm = false
    const failing = Effect.fail("database down" as const).pipe(Memo.cached(N.make({ id: 1 })))
    yield* Effect.gen(function* () {
      yield* Effect.promise(() => raw.ping())
      // Warm the connection (scripts loaded), then make the next replies late.
      yield* Effect.ignore(Effect.fail("x").pipe(Memo.cached(N.make({ id: 99 }))))
      yield* Effect.promise(() => deletePrefix(prefix))
      arm = true
      const exit = yield* Effect.exit(failing)
      arm = false
      px.hold(false) // the late replies arrive now
      yield* Effect.sleep(1_000)
      const keys = yield* Effect.promise(() => raw.keys(`${prefix}*`))
      const ttls = yield* Effect.promise(() => Promise.all(keys.map((k) => raw.pttl(k))))
      console.log(
        `[leftovers] load ${exit._tag}; keys left under the prefix: ${keys.map((k, i) => `${k.slice(prefix.length)} (pttl ${ttls[i]})`).join(", ")}`
      )
      // Only the node's tag stamp may stay (one per tag, shared by every entry: Protocol.dropsOnRelease).
      assert.deepStrictEqual(
        keys.filter((key) => !key.startsWith(`${prefix}~s:t:`)),
        [],
        "a failed load left keys behind"
      )
    }).pipe(Effect.provide(store))
  })
)
