/**
 * A seeded random mix aimed at `Memo.cachedMany`: batches (with duplicates), single reads and `fnMany` of the same
 * keys run beside hard invalidations by key, by a group shared by several keys, and by node, through a store whose
 * lookups, leases and fills are each delayed by a random pause (so the batch's lookup, its leases, its fills and
 * the invalidations interleave every way). Loaders read the "database" version of each key when they start, then
 * pause, and sometimes fail or answer the wrong number of values.
 *
 * Checked for every key of every read: the value belongs to its key (never another key's), and a read that started
 * after a write resolved never returns an older version (in one process every store, the tiered one included,
 * must show its own writes at once). With two tiered stores ("two processes"), a read through the other store that
 * starts once the bound (and a generous margin) has passed since the write resolved must not be older either.
 * `HOSTILE2_SEED=<n>` replays a run's operations.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect, Layer, Schema } from "effect"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { gated } from "../attack/gate.ts"
import { random } from "../attack/support.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { tierOf } from "../../src/store/Tiered.ts"
import { delayProxy } from "./delay-proxy.ts"

const seed =
  process.env.HOSTILE2_SEED !== undefined && process.env.HOSTILE2_SEED !== ""
    ? Number(process.env.HOSTILE2_SEED) >>> 0
    : Math.floor(Math.random() * 2 ** 32) >>> 0

const ops = ["batch", "batch", "batch", "fnMany", "single", "single", "key", "group", "node"] as const
const boundMillis = 400
let counter = 0

/**
 * `tiered-slow`: one tiered store whose invalidation messages arrive 120 ms late (a proxy; the bound stays
 * unlapsed), so its own writes are seen at once only if each write drops its copies itself. `tiered-two-slow`: two.
 */
type Kind = "memory" | "redis" | "tiered" | "tiered-two" | "tiered-slow" | "tiered-two-slow"

const redisMissing = await missing(Redis)

describe("hostile2: cachedMany in a random mix with single reads and invalidations", () => {
  for (const kind of [
    "memory",
    "redis",
    "tiered",
    "tiered-two",
    "tiered-slow",
    "tiered-two-slow"
  ] as const satisfies ReadonlyArray<Kind>)
    it.live.skipIf(kind !== "memory" && redisMissing)(
      `${kind} (seed ${seed})`,
      () =>
        Effect.gen(function* () {
          console.log(`hostile2 many-mix ${kind} seed ${seed}`)
          const next = random(seed)
          const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(next() * items.length)]!
          const n = counter++
          const prefix = `test:${process.pid}:h2mix${n}:`
          yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
          const settings = CachemeConfig.layer({
            prefix,
            stale: false,
            herdRetryInterval: "2 millis",
            commandTimeout: "5 seconds"
          })
          // Each store operation waits a random 0-3 ms before it is sent (a second stream of randomness, so that
          // the operations of a seed stay the same whatever the pauses).
          const delays = random(seed ^ 0x5bd1e995)
          const jitter = (inner: Layer.Layer<CacheStore.CacheStore>) =>
            gated(inner, (op) =>
              op === "lookup" || op === "lookupMany" || op === "lease" || op === "fill" || op === "release"
                ? Effect.sleep(Math.floor(delays() * 4))
                : Effect.void
            )
          const slow = kind === "tiered-slow" || kind === "tiered-two-slow"
          const url = slow ? (yield* delayProxy(6379, 120)).url : Redis.url
          const base = (): Layer.Layer<CacheStore.CacheStore> =>
            kind === "memory"
              ? CacheStore.layerMemory().pipe(Layer.provide(settings), Layer.orDie)
              : kind === "redis"
                ? CacheStore.layerRedis({ url: Redis.url, prefix }).pipe(Layer.provide(settings), Layer.orDie)
                : CacheStore.layerTiered({ url, prefix, local: { bound: boundMillis } }).pipe(
                    Layer.provide(settings),
                    Layer.orDie
                  )
          const storeCount = kind === "tiered-two" || kind === "tiered-two-slow" ? 2 : 1
          const raw = yield* Effect.forEach(Array.from({ length: storeCount }), () => Layer.build(base()))
          const handles = raw.map((context) => tierOf(Context.get(context, CacheStore.CacheStore)))
          const stores = yield* Effect.forEach(raw, (context) =>
            Layer.build(Layer.merge(jitter(Layer.succeedContext(context)), settings))
          )
          const Shelf = InvalidNode.make(`h2mix-shelf-${process.pid}-${n}`, { fields: { shelf: Schema.Number } })
          const Item = Node.make(`h2mix-item-${process.pid}-${n}`, {
            fields: { id: Schema.Number },
            value: Schema.Struct({ id: Schema.Number, version: Schema.Number }),
            stale: false,
            invalidatedBy: ({ id }) => [Shelf.make({ shelf: id % 3 })]
          })
          const ids = [0, 1, 2, 3, 4, 5]
          const db = ids.map(() => 0)
          /** Per store: the version of each key that a write through it resolved (what its reads must see). */
          const floors = stores.map(() => ids.map(() => 0))
          /** Writes resolved, with when, for the cross-store bound check. */
          const resolvedAt: Array<{
            readonly store: number
            readonly id: number
            readonly version: number
            readonly at: number
          }> = []
          const violations: Array<string> = []
          const plans = Array.from({ length: 8 }, (_, fiber) =>
            Array.from({ length: 90 }, (_, step) => {
              const size = 1 + Math.floor(next() * 5)
              return {
                fiber,
                step,
                op: pick(ops),
                ids: Array.from({ length: size }, () => pick(ids)),
                store: Math.floor(next() * storeCount),
                pause: Math.floor(next() * 4),
                fail: next() < 0.08,
                wrong: next() < 0.04
              }
            })
          )
          const loadMany = (plan: (typeof plans)[number][number]) => (fields: ReadonlyArray<{ readonly id: number }>) =>
            Effect.gen(function* () {
              const versions = fields.map((f) => db[f.id]!)
              yield* Effect.sleep(plan.pause)
              if (plan.fail) return yield* Effect.fail("database down" as const)
              const values = fields.map((f, i) => ({ id: f.id, version: versions[i]! }))
              return plan.wrong ? values.slice(1) : values
            })
          const write = (id: number) => ++db[id]!
          const run = (plan: (typeof plans)[number][number]) => {
            const floor = floors[plan.store]!
            const resolved = (id: number, version: number) => {
              floor[id] = Math.max(floor[id]!, version)
              resolvedAt.push({ store: plan.store, id, version, at: performance.now() })
            }
            const at = `fiber ${plan.fiber} step ${plan.step} ${plan.op} [${plan.ids}] via store ${plan.store}`
            const check = (
              asked: ReadonlyArray<number>,
              before: ReadonlyArray<number>,
              startedAt: number,
              got: ReadonlyArray<{ readonly id: number; readonly version: number }>
            ) => {
              asked.forEach((id, i) => {
                const value = got[i]!
                if (value.id !== id) violations.push(`${at}: position ${i} asked ${id}, got key ${value.id}'s value`)
                if (value.version < before[i]!)
                  violations.push(
                    `${at}: key ${id} read version ${value.version} after ${before[i]} resolved (own store)`
                  )
                for (const write of resolvedAt) {
                  if (write.store === plan.store || write.id !== id) continue
                  if (startedAt - write.at >= boundMillis + 100 && value.version < write.version)
                    violations.push(
                      `${at}: key ${id} read version ${value.version} ${Math.round(startedAt - write.at)} ms after version ${write.version} resolved through store ${write.store}`
                    )
                }
              })
            }
            const body = Effect.gen(function* () {
              const before = plan.ids.map((id) => floor[id]!)
              const startedAt = performance.now()
              switch (plan.op) {
                case "batch": {
                  const got = yield* Effect.result(
                    Memo.cachedMany(
                      plan.ids.map((id) => Item.make({ id })),
                      loadMany(plan)
                    )
                  )
                  if (got._tag === "Success") check(plan.ids, before, startedAt, got.success)
                  else if (!plan.fail && !plan.wrong) violations.push(`${at}: failed ${JSON.stringify(got.failure)}`)
                  return
                }
                case "fnMany": {
                  const got = yield* Effect.result(Memo.fnMany(Item, loadMany(plan))(plan.ids.map((id) => ({ id }))))
                  if (got._tag === "Success") check(plan.ids, before, startedAt, got.success)
                  return
                }
                case "single": {
                  const id = plan.ids[0]!
                  const got = yield* Effect.result(
                    Effect.map(loadMany({ ...plan, wrong: false })([{ id }]), (values) => values[0]!).pipe(
                      Memo.cached(Item.make({ id }))
                    )
                  )
                  if (got._tag === "Success") check([id], before, startedAt, [got.success])
                  return
                }
                case "key": {
                  const id = plan.ids[0]!
                  const version = write(id)
                  yield* Memo.invalidate(Item.make({ id }))
                  resolved(id, version)
                  return
                }
                case "group": {
                  const shelf = plan.ids[0]! % 3
                  const touched = ids.filter((id) => id % 3 === shelf)
                  const versions = touched.map(write)
                  yield* InvalidNode.invalidate(Shelf.make({ shelf }))
                  touched.forEach((id, i) => {
                    resolved(id, versions[i]!)
                  })
                  return
                }
                case "node": {
                  const versions = ids.map(write)
                  yield* Memo.invalidateNode(Item)
                  ids.forEach((id, i) => {
                    resolved(id, versions[i]!)
                  })
                  return
                }
              }
            })
            return body.pipe(Effect.provide(stores[plan.store]!), Effect.orDie)
          }
          if (kind.startsWith("tiered")) {
            // The tier must be serving before the mix starts, or the mix tests the Redis store again.
            for (const handle of handles) {
              for (let i = 0; i < 3000 && handle?.serving() !== true; i++) yield* Effect.sleep(10)
              assert.isTrue(handle?.serving(), "the tier serves")
            }
          }
          yield* Effect.forEach(plans, (plan) => Effect.forEach(plan, run, { discard: true }), {
            concurrency: "unbounded",
            discard: true
          })
          for (const handle of handles) {
            if (handle !== undefined)
              console.log(`${kind}: ${handle.stats.localHits} local hits, ${handle.stats.flushes} flushes`)
          }
          assert.deepStrictEqual(violations.slice(0, 20), [], `seed ${seed}`)
        }).pipe(Effect.scoped),
      180_000
    )
})
