/**
 * Batched reads: `Memo.cachedMany` of 100 keys against 100 concurrent `Memo.cached` calls of the same keys, on the
 * Redis store, the tiered store and the in-process store, in three cases:
 *
 * - all hits: the 100 keys are cached;
 * - all misses: 100 keys never read before;
 * - half and half: 50 cached, 50 new (interleaved).
 *
 * Per batch: wall time (p50 / p99), Redis round trips waited and commands sent (client side, `sendCommand`
 * counted, bench/round-trips.ts), socket writes carrying the batch's keys, and loader calls. The loader stands
 * for one database query: it sleeps `LOADER_MS` per call (1 ms: one `WHERE id IN (...)` for the batch, one query
 * per key for the single calls, all at once), then builds the rows.
 *
 * Run: `node bench/many.ts` (`--quick` for a smoke run with small counts; `LOADER_MS=5` to change the query
 * time). Writes bench/results/many.json (not with `--quick`).
 */
import { Socket } from "node:net"
import { Context, Effect, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, Memo } from "../src/index.ts"
import { tierOf } from "../src/store/Tiered.ts"
import { deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "./environment.ts"
import { makeUser, type User, UserNode } from "./fixture.ts"
import { makeCounter } from "./round-trips.ts"

const quick = process.argv.includes("--quick")
const ROUNDS = quick ? 1 : 5
const OPS = quick ? 5 : 100
const WARMUP_OPS = quick ? 5 : 200
const BATCH = 100
const LOADER_MS = Number(process.env.LOADER_MS ?? 1)

const prefix = `bench:many:${process.pid}:`
const admin = new Redis(redisUrl, { autoResendUnfulfilledCommands: false })

// Commands and round trips of every ioredis client but the benchmark's own.
const counter = makeCounter()
counter.install(Redis.prototype, "sendCommand")
counter.exclude(admin)

// Socket writes that name a key of the benchmark (the tiered store's heartbeats excepted).
let writes = 0
const originalWrite = Socket.prototype.write
;(Socket.prototype as any).write = function (this: Socket, chunk: unknown, ...rest: Array<unknown>) {
  const text = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) ? chunk.toString("latin1") : ""
  if (
    text
      .split(prefix)
      .slice(1)
      .some((after) => !after.startsWith("~h:"))
  )
    writes++
  return (originalWrite as any).call(this, chunk, ...rest)
}

let loaderCalls = 0
/** One query for a batch of ids. */
const query = (ids: ReadonlyArray<number>) =>
  Effect.andThen(
    Effect.sleep(LOADER_MS),
    Effect.sync(() => {
      loaderCalls++
      return ids.map(makeUser)
    })
  )

const many = (ids: ReadonlyArray<number>) =>
  Memo.cachedMany(
    ids.map((id) => UserNode.make({ id })),
    (fields) => query(fields.map((f) => f.id))
  )

const single = (ids: ReadonlyArray<number>) =>
  Effect.forEach(
    ids,
    (id) =>
      Effect.map(query([id]), (users) => users[0]!).pipe(Memo.cached(UserNode.make({ id }))) as Effect.Effect<
        User,
        never,
        CacheStore.CacheStore
      >,
    { concurrency: "unbounded" }
  )

type Case = "all hits" | "all misses" | "half and half"
const cases: ReadonlyArray<Case> = ["all hits", "all misses", "half and half"]

/** Fresh ids, never read before. */
let nextId = 1_000
const freshIds = (n: number) => Array.from({ length: n }, () => nextId++)

interface Row {
  readonly store: string
  readonly case: Case
  readonly variant: string
  readonly batches: number
  readonly p50Ms: number
  readonly p99Ms: number
  readonly meanMs: number
  readonly roundTrips: number
  readonly commands: number
  readonly writes: number
  readonly loaderCalls: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN

const settings = CachemeConfig.layer({ prefix })
const stores = {
  redis: CacheStore.layerRedis({ url: redisUrl, prefix }),
  tiered: CacheStore.layerTiered({ url: redisUrl, prefix }),
  memory: CacheStore.layerMemory({ maxEntries: 1_000_000 })
} as const

const rows: Array<Row> = []
for (const [storeName, storeLayer] of Object.entries(stores)) {
  const runtime = ManagedRuntime.make(storeLayer.pipe(Layer.provideMerge(settings), Layer.orDie))
  const store = Context.get(await runtime.context(), CacheStore.CacheStore)
  const tier = tierOf(store)
  if (tier !== undefined) while (!tier.serving()) await new Promise((resolve) => setTimeout(resolve, 10))
  const hot = freshIds(BATCH)
  await runtime.runPromise(many(hot))
  // The tiered store keeps copies of what a lookup read: one more read brings them in.
  await runtime.runPromise(many(hot))

  /** The ids of one batch of a case; the cached half is filled before the batch is timed. */
  const prepare = async (c: Case): Promise<ReadonlyArray<number>> => {
    if (c === "all hits") return hot
    const ids = freshIds(BATCH)
    if (c === "all misses") return ids
    const cached = ids.filter((_, i) => i % 2 === 0)
    await runtime.runPromise(many(cached))
    await runtime.runPromise(many(cached))
    return ids
  }

  const variants = [
    { name: "cachedMany", run: many },
    { name: "100 x Memo.cached", run: single }
  ] as const

  for (const c of cases) {
    for (let i = 0; i < WARMUP_OPS; i++) for (const v of variants) await runtime.runPromise(v.run(await prepare(c)))
    const samples = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
    const totals = new Map(variants.map((v) => [v.name, { roundTrips: 0, commands: 0, writes: 0, loaderCalls: 0 }]))
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(round + k) % variants.length]!
        for (let op = 0; op < OPS; op++) {
          const ids = await prepare(c)
          counter.reset()
          writes = 0
          loaderCalls = 0
          const start = performance.now()
          await runtime.runPromise(v.run(ids))
          samples.get(v.name)!.push(performance.now() - start)
          const counts = counter.read()
          const total = totals.get(v.name)!
          total.roundTrips += counts.waits
          total.commands += counts.sent
          total.writes += writes
          total.loaderCalls += loaderCalls
        }
      }
    }
    for (const v of variants) {
      const sorted = samples.get(v.name)!.sort((a, b) => a - b)
      const total = totals.get(v.name)!
      const n = sorted.length
      rows.push({
        store: storeName,
        case: c,
        variant: v.name,
        batches: n,
        p50Ms: percentile(sorted, 0.5),
        p99Ms: percentile(sorted, 0.99),
        meanMs: sorted.reduce((s, x) => s + x, 0) / n,
        roundTrips: total.roundTrips / n,
        commands: total.commands / n,
        writes: total.writes / n,
        loaderCalls: total.loaderCalls / n
      })
    }
  }
  await runtime.dispose()
}

const fixed = (x: number, digits = 2) => (Number.isNaN(x) ? "-" : x.toFixed(digits))
const header = ["store", "case", "variant", "p50 ms", "p99 ms", "round trips", "commands", "writes", "loader calls"]
const table = rows.map((row) => [
  row.store,
  row.case,
  row.variant,
  fixed(row.p50Ms, 3),
  fixed(row.p99Ms, 3),
  fixed(row.roundTrips, 1),
  fixed(row.commands, 1),
  fixed(row.writes, 1),
  fixed(row.loaderCalls, 1)
])
const widths = header.map((h, i) => Math.max(h.length, ...table.map((cells) => cells[i]!.length)))
const line = (cells: ReadonlyArray<string>) =>
  cells.map((cell, i) => (i < 3 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
console.log(
  `\nA batch of ${BATCH} keys (${ROUNDS} rounds x ${OPS} batches per variant, loader ${LOADER_MS} ms per call; per batch)`
)
console.log(line(header))
console.log(widths.map((w) => "-".repeat(w)).join("  "))
for (const cells of table) console.log(line(cells))
console.log("\ntime of 100 x Memo.cached / time of cachedMany (p50):")
const ratios: Record<string, number> = {}
for (const storeName of Object.keys(stores)) {
  for (const c of cases) {
    const find = (variant: string) => rows.find((r) => r.store === storeName && r.case === c && r.variant === variant)!
    const ratio = find("100 x Memo.cached").p50Ms / find("cachedMany").p50Ms
    ratios[`${storeName} / ${c}`] = ratio
    console.log(`  ${storeName.padEnd(7)} ${c.padEnd(14)} ${fixed(ratio)}x`)
  }
}

if (!quick) {
  await writeJson(new URL("./results/many.json", import.meta.url).pathname, {
    benchmark: "many",
    environment: environment(redisVersionOf(await admin.info("server"))),
    setup: { rounds: ROUNDS, batchesPerRound: OPS, warmupBatches: WARMUP_OPS, batch: BATCH, loaderMs: LOADER_MS },
    rows,
    ratios
  })
}

Socket.prototype.write = originalWrite
await deleteByPrefix(admin, prefix)
admin.disconnect()
