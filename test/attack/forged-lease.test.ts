/**
 * ATTACK (guarantee 4): "a lease with no expiry, or one further away than leaseTtl (forged, or left by a bug), is
 * taken over".
 *
 * The Lua `lease` script does take such a lease over, but `Memo` never asks: `Protocol.judge` reports the holder of
 * any `L` record (it cannot see the key's PTTL) and of any refresh lease whose `leaseUntil > now` (without the
 * `<= now + leaseTtl` bound the script applies), and `Memo.lead` goes straight to `waitForHerd` when
 * `view.holder` is set, whose polls see the same holder, and then loads without the lease. So the key is never
 * cached again while the forged lease stands: for ever when it has no expiry. Each call also pays the whole herd
 * wait (herdRetryCount x herdRetryInterval) first.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schema } from "effect"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { attackPrefix, deletePrefix, memory, rawRedis, redisUrl } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-forged-${process.pid}-${counter++}`

const settings: CachemeConfig.Input = {
  leaseTtl: "1 second",
  herdRetryCount: 3,
  herdRetryInterval: "10 millis",
  commandTimeout: "5 seconds"
}

const redisLayer = (prefix: string) =>
  Layer.merge(
    CacheStore.layerRedis({ url: redisUrl, prefix }).pipe(
      Layer.provideMerge(CachemeConfig.layer(settings)),
      Layer.orDie
    ),
    Layer.effectDiscard(Effect.acquireRelease(Effect.void, () => Effect.promise(() => deletePrefix(prefix))))
  )

describe("a forged or over-long lease is taken over by Memo", () => {
  for (const variant of ["no expiry", "expiry 60 s (leaseTtl is 1 s)"] as const) {
    it.live(`redis, L record with ${variant}: the key is cached again after leaseTtl`, () =>
      Effect.gen(function* () {
        const prefix = attackPrefix()
        const raw = yield* rawRedis()
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String, ttl: null })
        const loads = yield* Ref.make(0)
        const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
          Effect.map((n) => `load ${n}`),
          Memo.cached(Title.make({ id: 1 }))
        )
        yield* Effect.gen(function* () {
          // A lease record nobody holds: an attacker's, or a crashed process of a deploy whose leaseTtl was 60 s.
          const record = Protocol.leaseRecord("forgedforgedfrgd", 0)
          const key = `${prefix}${Title.make({ id: 1 }).key}`
          if (variant === "no expiry") yield* Effect.promise(() => raw.set(key, record))
          else yield* Effect.promise(() => raw.set(key, record, "PX", 60_000))
          yield* Effect.sleep(1_500) // past leaseTtl
          const started = Date.now()
          for (let i = 0; i < 10; i++) yield* read
          const elapsed = Date.now() - started
          const n = yield* Ref.get(loads)
          const after = yield* Effect.promise(() => raw.get(key))
          console.log(
            `[forged lease, ${variant}] 10 reads after leaseTtl: ${n} loads, ${elapsed} ms, record now ${JSON.stringify(after?.slice(0, 40))}`
          )
          assert.isAtMost(n, 1, "the forged lease was never taken over: every read loaded without caching")
        }).pipe(Effect.provide(redisLayer(prefix)))
      })
    )
  }

  it.live("redis, a stale value with a far refresh lease is refreshed, not served stale for ever", () =>
    Effect.gen(function* () {
      const prefix = attackPrefix()
      const raw = yield* rawRedis()
      const Title = Node.make(fresh("stale"), {
        fields: { id: Schema.Number },
        value: Schema.String,
        ttl: null,
        stale: true
      })
      const loads = yield* Ref.make(0)
      const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
        Effect.map((n) => `load ${n}`),
        Memo.cached(Title.make({ id: 1 }))
      )
      yield* Effect.gen(function* () {
        assert.strictEqual(yield* read, "load 1")
        yield* Memo.invalidate(Title.make({ id: 1 }), { mode: "soft" })
        // Someone (an attacker, or a process with a far larger leaseTtl) set a refresh lease ten years away.
        const key = `${prefix}${Title.make({ id: 1 }).key}`
        const far = String(Date.now() + 10 * 365 * 24 * 3600 * 1000).padStart(13, "0")
        yield* Effect.promise(() => raw.setrange(key, Protocol.offsets.leaseUntil, `${far}forgedforgedfrgd`))
        yield* Effect.sleep(1_500)
        const seen: Array<string> = []
        for (let i = 0; i < 5; i++) {
          seen.push(yield* read)
          yield* Effect.sleep(100)
        }
        console.log(`[forged refresh lease] reads after leaseTtl: ${seen.join(", ")}; loads ${yield* Ref.get(loads)}`)
        assert.notStrictEqual(seen.at(-1), "load 1", "the soft-invalidated value is never refreshed")
      }).pipe(Effect.provide(redisLayer(prefix)))
    })
  )

  it.live("memory: a lease taken with a longer leaseTtl than this node's is taken over", () =>
    Effect.gen(function* () {
      const Title = Node.make(fresh("mem"), { fields: { id: Schema.Number }, value: Schema.String, ttl: null })
      const loads = yield* Ref.make(0)
      const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
        Effect.map((n) => `load ${n}`),
        Memo.cached(Title.make({ id: 1 }))
      )
      yield* Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const instance = Title.make({ id: 1 })
        const on = CacheStore.sets([`t:${Title.name}`])
        const found = yield* store.lookup(instance.key, on)
        assert.strictEqual(found._tag, "Miss")
        if (found._tag !== "Miss") return
        // Another caller's lease for an hour (its own leaseTtl), never filled or released (it crashed).
        yield* store.lease(instance.key, "crashed", on, found.view, "replace", 3_600_000)
        yield* Effect.sleep(1_500)
        for (let i = 0; i < 10; i++) yield* read
        const n = yield* Ref.get(loads)
        console.log(`[memory over-long lease] 10 reads after leaseTtl: ${n} loads`)
        assert.isAtMost(n, 1)
      }).pipe(Effect.provide(memory.layer(settings)))
    })
  )
})
