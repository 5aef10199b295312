/**
 * A seeded random mix against read-your-writes (README: "a caller that starts after an invalidation resolved
 * never gets a value loaded before it, not even by joining a load under way in its own process"; concepts.md:
 * refresh, get). Two Redis stores on one prefix stand for two processes (two single-flight tables, two notice
 * subscribers); fibers run reads, gets, refreshes and hard invalidations by key, group and node through either, with
 * loaders that read a version, then pause, and sometimes fail. Every read and get that starts after a write resolved
 * must return at least that write's version (tiered: the writes made through its own store). `HOSTILE_SEED=<n>`
 * replays a run. `HOSTILE_MIX_SET=1` adds `Memo.set`: violations then appear, from the race in set-refresh.test.ts
 * but also from concurrent sets (either may win), so with it the mix is a demonstration, not an oracle.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Option, Schema } from "effect"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { random } from "../attack/support.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"

const seed =
  process.env.HOSTILE_SEED !== undefined && process.env.HOSTILE_SEED !== ""
    ? Number(process.env.HOSTILE_SEED) >>> 0
    : Math.floor(Math.random() * 2 ** 32) >>> 0

/** `HOSTILE_MIX_SET=1` adds `Memo.set` (of a new version) to the mix: it shows set-test.ts's key race. */
const withSet = process.env.HOSTILE_MIX_SET === "1"
const ops = ["read", "read", "read", "read", "get", "refresh", "key", "group", "node", "set"] as const

let counter = 0

describe.skipIf(await missing(Redis))("hostile mix: read-your-writes across two stores", () => {
  for (const kind of ["redis", "tiered"] as const)
    it.live(
      `${kind}: reads, gets, refreshes and invalidations (seed ${seed})`,
      () =>
        Effect.gen(function* () {
          console.log(`hostile mix seed ${seed}`)
          const next = random(seed)
          const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(next() * items.length)]!
          const prefix = `test:${process.pid}:hmix${counter++}:`
          yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
          // Tiered: each store's tier must show its own writes at once; another store's only within the bound, so
          // there each reader is checked against the writes made through its own store.
          const layer = (
            kind === "redis"
              ? CacheStore.layerRedis({ url: Redis.url, prefix })
              : CacheStore.layerTiered({ url: Redis.url, prefix, local: { bound: "10 seconds" } })
          ).pipe(Layer.provideMerge(CachemeConfig.layer({ prefix, stale: false })), Layer.orDie)
          const stores = [yield* Layer.build(layer), yield* Layer.build(layer)]
          const Row = InvalidNode.make(`hmix-row-${process.pid}-${counter}`, { fields: { id: Schema.Number } })
          const Item = Node.make(`hmix-item-${process.pid}-${counter}`, {
            fields: { id: Schema.Number },
            value: Schema.Number,
            stale: false,
            invalidatedBy: ({ id }) => [Row.make({ id })]
          })
          const ids = [0, 1, 2]
          const db = ids.map(() => 0)
          const floors = [ids.map(() => 0), ids.map(() => 0)]
          const violations: Array<string> = []
          // Decided up front, so that a seed replays the same operations (their interleaving is the machine's).
          const plans = Array.from({ length: 6 }, (_, fiber) =>
            Array.from({ length: 120 }, (_, step) => ({
              fiber,
              step,
              op: pick(withSet ? ops : ops.filter((op) => op !== "set")),
              id: pick(ids),
              store: pick([0, 1]),
              pause: Math.floor(next() * 4),
              fail: next() < 0.1
            }))
          )
          const loader = (id: number, pause: number, fail: boolean) =>
            Effect.gen(function* () {
              const version = db[id]!
              yield* Effect.sleep(pause)
              if (fail) return yield* Effect.fail("database down" as const)
              return version
            })
          const write = (id: number) => ++db[id]!
          const run = (plan: (typeof plans)[number][number]) => {
            const { op, id, pause, fail } = plan
            const floor = kind === "redis" ? floors[0]! : floors[plan.store]!
            const resolved = (id: number, version: number) => {
              floor[id] = Math.max(floor[id]!, version)
            }
            const entry = Item.make({ id })
            const at = `fiber ${plan.fiber} step ${plan.step} ${op} ${id} via store ${plan.store}`
            const body = Effect.gen(function* () {
              switch (op) {
                case "read": {
                  const before = floor[id]!
                  const got = yield* Effect.result(loader(id, pause, fail).pipe(Memo.cached(entry)))
                  if (got._tag === "Success" && got.success < before)
                    violations.push(`${at}: read ${got.success} after version ${before} resolved`)
                  return
                }
                case "get": {
                  const before = floor[id]!
                  const got = yield* Memo.get(entry)
                  if (Option.isSome(got) && got.value < before)
                    violations.push(`${at}: got ${got.value} after version ${before} resolved`)
                  return
                }
                case "refresh": {
                  const version = write(id)
                  const got = yield* Effect.result(loader(id, pause, fail).pipe(Memo.refresh(entry)))
                  if (got._tag === "Success" && got.success < version)
                    violations.push(`${at}: refresh answered ${got.success}, older than ${version}`)
                  resolved(id, version)
                  return
                }
                case "set": {
                  const version = write(id)
                  yield* Memo.set(entry, version)
                  resolved(id, version)
                  return
                }
                case "key": {
                  const version = write(id)
                  yield* Memo.invalidate(entry)
                  resolved(id, version)
                  return
                }
                case "group": {
                  const version = write(id)
                  yield* InvalidNode.invalidate(Row.make({ id }))
                  resolved(id, version)
                  return
                }
                case "node": {
                  const versions = ids.map(write)
                  yield* Memo.invalidateNode(Item)
                  for (const [i, other] of ids.entries()) resolved(other, versions[i]!)
                  return
                }
              }
            })
            return body.pipe(Effect.provide(stores[plan.store]!), Effect.orDie)
          }
          yield* Effect.forEach(plans, (plan) => Effect.forEach(plan, run, { discard: true }), {
            concurrency: "unbounded",
            discard: true
          })
          assert.deepStrictEqual(violations.slice(0, 20), [], `seed ${seed}`)
        }).pipe(Effect.scoped),
      120_000
    )
})
