/**
 * One process of the index soak (see `bench/soak-run.ts`): runs the mix until the main process sends "stop", then
 * sends its counts and exits. Started as
 *
 *   node bench/soak-worker.ts '{"url":..., "prefix":..., "seed":..., "concurrency":..., "deletesPerSecond":...}'
 */
import { Effect, Layer, Schema } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import type { WorkerStats } from "./soak-run.ts"

const options = JSON.parse(process.argv[2] ?? "{}") as {
  readonly url: string
  readonly prefix: string
  readonly seed: number
  readonly concurrency: number
  readonly deletesPerSecond: number
}

const ROWS = 3000
const TEAMS = 50
const EVICTABLE = 1000
const EVICTABLE_GROUPS = 20

/** A seeded PRNG (mulberry32). */
const random = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Zipf (s = 1) over 0 .. n - 1, by inverting its cumulative distribution. */
const zipf = (n: number) => {
  const cdf = new Float64Array(n)
  let total = 0
  for (let i = 0; i < n; i++) {
    total += 1 / (i + 1)
    cdf[i] = total
  }
  return (u: number) => {
    const target = u * total
    let lo = 0
    let hi = n - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (cdf[mid]! < target) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

class NotFound extends Schema.TaggedError<NotFound>()("NotFound", { id: Schema.Number }) {}

const Row = InvalidNode.make("soak-row", { fields: { id: Schema.Number } })
const Team = InvalidNode.make("soak-team", { fields: { team: Schema.Number } })
const Shard = InvalidNode.make("soak-shard", { fields: { shard: Schema.Number } })
const groupsOf = ({ id }: { readonly id: number }) => [Row.make({ id }), Team.make({ team: id % TEAMS })]

const Item = Node.make("soak-item", {
  fields: { id: Schema.Number },
  value: Schema.String,
  ttl: null,
  stale: true,
  invalidatedBy: groupsOf
})
const Brief = Node.make("soak-brief", {
  fields: { id: Schema.Number },
  value: Schema.String,
  ttl: "20 seconds",
  stale: false,
  invalidatedBy: groupsOf
})
const MissingFails = Node.make("soak-missing-fails", {
  fields: { id: Schema.Number },
  value: Schema.String,
  ttl: null,
  invalidatedBy: groupsOf
})
const MissingNull = Node.make("soak-missing-null", {
  fields: { id: Schema.Number },
  value: Schema.NullOr(Schema.String),
  ttl: null,
  invalidatedBy: groupsOf
})
const Evictable = Node.make("soak-evictable", {
  fields: { id: Schema.Number },
  value: Schema.String,
  ttl: null,
  invalidatedBy: ({ id }) => [Shard.make({ shard: id % EVICTABLE_GROUPS })]
})

const stats = {
  reads: 0,
  missingFailed: 0,
  missingNull: 0,
  invalidations: 0,
  deletes: 0,
  errors: 0,
  lastError: undefined as string | undefined
}
let stopped = false
process.on("message", (message) => {
  if (message === "stop") stopped = true
})

const rowOf = zipf(ROWS)
let loads = 0
const value = (id: number) => Effect.sync(() => `row ${id} load ${loads++}`)

/** One operation of the mix. */
const operation = (next: () => number): Effect.Effect<void, unknown, CacheStore.CacheStore> => {
  const r = next()
  const id = rowOf(next())
  const missing = ROWS + Math.floor(next() * 1e12)
  const soft = next() < 0.2
  if (r < 0.015) {
    stats.missingFailed++
    return Effect.fail(new NotFound({ id: missing })).pipe(
      Memo.cached(MissingFails.make({ id: missing })),
      Effect.catchTag("NotFound", () => Effect.void),
      Effect.asVoid
    )
  }
  if (r < 0.03) {
    stats.missingNull++
    return Effect.asVoid(Effect.succeed(null).pipe(Memo.cached(MissingNull.make({ id: missing }))))
  }
  if (r < 0.05) {
    stats.invalidations++
    const choice = next()
    const invalidation =
      choice < 0.3
        ? InvalidNode.invalidate(Team.make({ team: id % TEAMS }), { mode: soft ? "soft" : "hard" })
        : choice < 0.6
          ? InvalidNode.invalidate(Row.make({ id }))
          : choice < 0.995
            ? Memo.invalidate(Item.make({ id }), { mode: soft ? "soft" : "hard" })
            : Memo.invalidateNode(Brief)
    return Effect.asVoid(invalidation)
  }
  stats.reads++
  if (r < 0.15) return Effect.asVoid(value(id).pipe(Memo.cached(Brief.make({ id }))))
  if (r < 0.25) {
    const e = Math.floor(next() * EVICTABLE)
    return Effect.asVoid(value(e).pipe(Memo.cached(Evictable.make({ id: e }))))
  }
  return Effect.asVoid(value(id).pipe(Memo.cached(Item.make({ id }))))
}

const report = (then?: () => void) => {
  if (process.send === undefined) then?.()
  else process.send({ ...stats } satisfies WorkerStats, undefined, {}, () => then?.())
}

const program = Effect.gen(function* () {
  const fibers = Array.from({ length: options.concurrency }, (_, i) => {
    const next = random(options.seed * 7919 + i)
    return Effect.gen(function* () {
      while (!stopped) {
        yield* operation(next).pipe(
          Effect.catchCause((cause) =>
            Effect.sync(() => {
              stats.errors++
              stats.lastError = String(cause).slice(0, 300)
            })
          )
        )
      }
    })
  })
  // Entries deleted behind the store's back, uniformly over the evictable node's entries.
  const raw = new Redis(options.url, { maxRetriesPerRequest: null })
  raw.on("error", () => {})
  const pick = random(options.seed * 104729)
  const deletes = Effect.gen(function* () {
    if (options.deletesPerSecond <= 0) return
    while (!stopped) {
      yield* Effect.sleep(1000 / options.deletesPerSecond)
      const key = options.prefix + Evictable.make({ id: Math.floor(pick() * EVICTABLE) }).key
      yield* Effect.promise(() => raw.del(key))
      stats.deletes++
    }
  })
  const reporting = Effect.gen(function* () {
    while (!stopped) {
      yield* Effect.sleep(1000)
      report()
    }
  })
  yield* Effect.all([...fibers, deletes, reporting], { concurrency: "unbounded", discard: true })
  raw.disconnect()
})

await Effect.runPromise(
  program.pipe(
    Effect.provide(
      CacheStore.layerRedis({ url: options.url, prefix: options.prefix }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "2 seconds" })),
        Layer.orDie
      )
    )
  )
)
// The last counts, then out (the store layer is closed by now).
report(() => process.exit(0))
