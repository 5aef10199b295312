/**
 * What write capture and read-your-writes invalidation cost on PostgreSQL: `Database.layer` (sync and async
 * modes, Redis store) against bare Kysely (`PostgresDialect` over a `pg` Pool) in the same run, on the same server.
 *
 * 1. Throughput and latency of a single-row update by primary key (`update t set name = ? where id = ?`, the
 *    table has one `TableInvalidNode` on `id`), sequential and with concurrent callers (each on its own row, so
 *    no variant waits on row locks). Target: the wrapped update at most 1.15x the bare one. The rows, each a
 *    different cut of the same write so the gap can be read off:
 *    - `bare`: Kysely over its own pool, as a Promise.
 *    - `bare in Effect`: the same inside `Effect.tryPromise`, one long-running program (Effect's own cost).
 *    - `capture only`: `captureWrites` with a no-op publish, no cache (this update pins its row with a number, so
 *      it runs without RETURNING: see `Prediction.isCertain`).
 *    - `wrapped sync`: the layer's Kysely as a Promise; the write resolves after the group was invalidated (held
 *      beside the statement: see docs/kysely.md, "Holds").
 *    - `wrapped sync, Database.query`: the same through `Database.query` in one program (the real API).
 *    - `wrapped async`: the layer in `async` mode (the write does not wait for the invalidation).
 *    - `floor: bare + hold script beside`: the bare update with the store's hold (one `SET ... GET` of the marker)
 *      sent beside it as a raw ioredis call, and its release script after: what one store round trip beside the
 *      statement costs on this machine, with no library code.
 * 2. Commit-to-invalidated latency: a cached entry of the written row exists; the update runs in a transaction;
 *    the clock starts as COMMIT is sent and stops when the store answered the invalidation of the entry's group
 *    (an `Invalidation.Listener` timestamps it). Also the COMMIT's own latency, bare and wrapped (in sync mode
 *    the invalidation is inside it: that is the added write latency).
 *
 * 3. What sync mode adds, step by step (Redis PING, a hold, the Invalidator around it, and the post-COMMIT path of
 *    writes whose rows are not known before they commit).
 *
 * Run: `node_modules/.bin/node bench/kysely-write.ts` (PostgreSQL on 127.0.0.1:5432, Redis on 6379; override
 * with CACHEME_BENCH_PG_URL / CACHEME_BENCH_REDIS_URL; CACHEME_BENCH_AUTOPIPELINING=0 turns off ioredis'
 * auto-pipelining). Writes bench/results/kysely-write.json. About two minutes.
 */
import { readFileSync } from "node:fs"
import { loadavg } from "node:os"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import { Effect, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { Kysely, PostgresDialect } from "kysely"
import { Pool } from "pg"
import { CachemeConfig, CacheStore, Invalidation, Memo } from "../src/index.ts"
import { captureWrites, Database, Invalidator } from "../src/kysely/index.ts"
import { commandStats, deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "./environment.ts"
import { printTable } from "./harness.ts"
import { createRows, pgUrl, rowNodes, updateRow } from "./write-fixture.ts"

const loadAverageAtStart = loadavg()
const ROWS = 1000
const ROUNDS = 7
const WARMUP_ROUNDS = 1
const SEQUENTIAL_OPS = 600
const CALLERS = 16
const PER_CALLER = 60
const POOL_SIZE = CALLERS
const LATENCY_SAMPLES = 300
const TARGET = 1.15

// --- setup ------------------------------------------------------------------------------------------------------

const table = `bench_kysely_write_${process.pid}`
const prefix = `bench:kysely-write:${process.pid}:`
const pool = () => new Pool({ connectionString: pgUrl, max: POOL_SIZE })

const { RowGroup, RowName } = rowNodes(table)

const bare = new Kysely<any>({ dialect: new PostgresDialect({ pool: pool() }) })
await createRows(bare, table, ROWS)

/** Invalidated groups, timestamped as the store answered: the latency phase waits on them. */
const waiters = new Map<string, (at: number) => void>()
/** Invalidations reported per mode: async writes do not wait for theirs, so the phase counts what is left. */
const reported = { sync: 0, async: 0 }
const listener = (mode: "sync" | "async") =>
  Layer.succeed(Invalidation.Listener, (event: Invalidation.Event) =>
    Effect.sync(() => {
      reported[mode] += 1
      const waiter = waiters.get(event.value)
      if (waiter !== undefined) {
        waiters.delete(event.value)
        waiter(performance.now())
      }
    })
  )

// As the store opens its own client from a URL: auto-pipelining on (CACHEME_BENCH_AUTOPIPELINING=0 turns it off).
const redis = new Redis(redisUrl, {
  enableAutoPipelining: process.env.CACHEME_BENCH_AUTOPIPELINING !== "0",
  autoResendUnfulfilledCommands: false
})
const store = CacheStore.layerRedis({ client: redis, prefix, sweepInterval: null }).pipe(
  Layer.provideMerge(CachemeConfig.layer({ prefix })),
  Layer.orDie
)
const wrappedRuntime = (mode: "sync" | "async") =>
  ManagedRuntime.make(
    Database.layer({ dialect: new PostgresDialect({ pool: pool() }), mode }).pipe(
      Layer.provideMerge(store),
      Layer.provide(listener(mode)),
      Layer.orDie
    )
  )
const syncRuntime = wrappedRuntime("sync")
const asyncRuntime = wrappedRuntime("async")
const syncDb = (await syncRuntime.runPromise(Database.Database)).db
const asyncDb = (await asyncRuntime.runPromise(Database.Database)).db
const captureOnly = new Kysely<any>({
  dialect: captureWrites(new PostgresDialect({ pool: pool() }), {
    watched: () => new Map([[table, ["id"]]]),
    publish: async () => {}
  })
})

// --- the operations ---------------------------------------------------------------------------------------------

const update = (db: Kysely<any>, id: number) => updateRow(db, table, id)
const updateEffect = (id: number) => Database.query((db) => updateRow(db, table, id))
const bareEffect = (id: number) => Effect.tryPromise(() => update(bare, id))

/**
 * The floor of read-your-writes on this machine: the bare update, with the store's hold script sent to Redis
 * beside it and its release after, as raw ioredis calls (no effect-cacheme code in the path). Whatever a library
 * does around them, a write that waits for one store round trip beside its statement cannot be cheaper.
 */
const scripts = redis as unknown as Record<string, (...args: Array<unknown>) => Promise<unknown>>
let floorHolds = 0
const bareWithHold = (id: number) => {
  const set = `${prefix}~g:floor:${id}`
  const member = `\u0000hold:floor-${floorHolds++}`
  const epoch = `${prefix}~e:floor`
  // The store's hold: one plain SET ... GET of the marker (a merge script follows only when another hold stood),
  // then, pipelined after it, the family's epoch bump (SET ... XX); the release bumps it inside its script.
  return Promise.all([
    update(bare, id),
    redis.call("SET", set, `!30000:${member}`, "PX", 30_000, "GET"),
    redis.call("SET", epoch, String(floorHolds), "XX")
  ]).then(() => {
    setImmediate(() => void scripts.cachemeReleaseHold!(2, set, epoch, member, String(floorHolds)))
  })
}

// --- timing -----------------------------------------------------------------------------------------------------

interface Round {
  readonly elapsedMs: number
  readonly samples: Float64Array
}

const sequential = async (op: (i: number) => Promise<unknown>): Promise<Round> => {
  const samples = new Float64Array(SEQUENTIAL_OPS)
  const start = performance.now()
  for (let i = 0; i < SEQUENTIAL_OPS; i++) {
    const t0 = performance.now()
    await op((i % ROWS) + 1)
    samples[i] = performance.now() - t0
  }
  return { elapsedMs: performance.now() - start, samples }
}

const concurrent = async (op: (id: number) => Promise<unknown>): Promise<Round> => {
  const samples = new Float64Array(CALLERS * PER_CALLER)
  const start = performance.now()
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, c) => {
      for (let i = 0; i < PER_CALLER; i++) {
        const t0 = performance.now()
        await op(c + 1)
        samples[c * PER_CALLER + i] = performance.now() - t0
      }
    })
  )
  return { elapsedMs: performance.now() - start, samples }
}

const sequentialEffect = <E, R>(op: (id: number) => Effect.Effect<unknown, E, R>) =>
  Effect.gen(function* () {
    const samples = new Float64Array(SEQUENTIAL_OPS)
    const start = performance.now()
    for (let i = 0; i < SEQUENTIAL_OPS; i++) {
      const t0 = performance.now()
      yield* op((i % ROWS) + 1)
      samples[i] = performance.now() - t0
    }
    return { elapsedMs: performance.now() - start, samples } satisfies Round
  })

const concurrentEffect = <E, R>(op: (id: number) => Effect.Effect<unknown, E, R>) =>
  Effect.gen(function* () {
    const samples = new Float64Array(CALLERS * PER_CALLER)
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: CALLERS }, (_, c) => c),
      (c) =>
        Effect.gen(function* () {
          for (let i = 0; i < PER_CALLER; i++) {
            const t0 = performance.now()
            yield* op(c + 1)
            samples[c * PER_CALLER + i] = performance.now() - t0
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    return { elapsedMs: performance.now() - start, samples } satisfies Round
  })

setFlagsFromString("--expose-gc")
const gc = runInNewContext("gc") as () => void
const settle = async () => {
  gc()
  await new Promise((resolve) => setTimeout(resolve, 20))
}

const quantile = (sorted: ArrayLike<number>, q: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
const median = (values: ReadonlyArray<number>) =>
  quantile(
    [...values].sort((a, b) => a - b),
    0.5
  )
const sortedOf = (values: Iterable<number>) => Float64Array.from(values).sort()

interface Summary {
  readonly opsPerSec: number
  readonly meanUs: number
  readonly p50Us: number
  readonly p99Us: number
}

const summarize = (rounds: ReadonlyArray<Round>): Summary => {
  const all = sortedOf(rounds.flatMap((round) => [...round.samples]))
  return {
    opsPerSec: median(rounds.map((round) => (round.samples.length / round.elapsedMs) * 1000)),
    meanUs: (all.reduce((sum, x) => sum + x, 0) / all.length) * 1000,
    p50Us: quantile(all, 0.5) * 1000,
    p99Us: quantile(all, 0.99) * 1000
  }
}

interface Variant {
  readonly name: string
  readonly run: () => Promise<Round>
}

/**
 * Warm-up, then `ROUNDS` rounds of every variant, interleaved (round r starts with variant r), a GC before each.
 * The ratio of two variants is the median over rounds of their per-round time per op, so slow drift of the
 * machine (disk, other processes) hits both sides of a pair alike.
 */
const compare = async (variants: ReadonlyArray<Variant>) => {
  for (let w = 0; w < WARMUP_ROUNDS; w++) for (const variant of variants) await variant.run()
  const rounds = new Map<string, Array<Round>>(variants.map((variant) => [variant.name, []]))
  for (let r = 0; r < ROUNDS; r++) {
    for (let v = 0; v < variants.length; v++) {
      const variant = variants[(r + v) % variants.length]!
      await settle()
      rounds.get(variant.name)!.push(await variant.run())
    }
  }
  const ratio = (name: string, base: string) => {
    const per = (round: Round) => round.elapsedMs / round.samples.length
    const pairs = rounds.get(name)!.map((round, r) => per(round) / per(rounds.get(base)![r]!))
    return { median: median(pairs), min: Math.min(...pairs), max: Math.max(...pairs) }
  }
  return { summaries: new Map([...rounds].map(([name, measured]) => [name, summarize(measured)])), ratio }
}

const us = (n: number) => n.toFixed(0)
const x = (n: number) => `${n.toFixed(2)}x`

/** Redis calls per command name (INFO commandstats). */
const commandCalls = async (): Promise<Record<string, number>> =>
  Object.fromEntries(Object.entries(commandStats(await redis.info("commandstats"))).map(([name, s]) => [name, s.calls]))

// --- 1. update throughput -----------------------------------------------------------------------------------------

const BARE = "bare"
const variants = (mode: "sequential" | "concurrent"): ReadonlyArray<Variant> => {
  const promiseRound = (op: (id: number) => Promise<unknown>) =>
    mode === "sequential" ? () => sequential(op) : () => concurrent(op)
  const programRound = <R>(
    runtime: ManagedRuntime.ManagedRuntime<R, never>,
    op: (id: number) => Effect.Effect<unknown, unknown, R>
  ) =>
    mode === "sequential"
      ? () => runtime.runPromise(sequentialEffect(op))
      : () => runtime.runPromise(concurrentEffect(op))
  return [
    { name: BARE, run: promiseRound((id) => update(bare, id)) },
    { name: "bare in Effect", run: programRound(syncRuntime, bareEffect) },
    { name: "capture only", run: promiseRound((id) => update(captureOnly, id)) },
    { name: "wrapped sync", run: promiseRound((id) => update(syncDb, id)) },
    { name: "wrapped sync, Database.query", run: programRound(syncRuntime, updateEffect) },
    { name: "wrapped async", run: promiseRound((id) => update(asyncDb, id)) },
    { name: "floor: bare + hold script beside", run: promiseRound(bareWithHold) }
  ]
}

/** Writes of one wrapped variant in one phase, warm-up rounds included (one group invalidation each). */
const writesPerVariant = (mode: "sequential" | "concurrent") =>
  (ROUNDS + WARMUP_ROUNDS) * (mode === "sequential" ? SEQUENTIAL_OPS : CALLERS * PER_CALLER)

const throughput: Record<string, unknown> = {}
for (const mode of ["sequential", "concurrent"] as const) {
  const callsBefore = await commandCalls()
  const asyncBefore = reported.async
  const comparison = await compare(variants(mode))
  // Async writes do not wait for their invalidations: count what is still queued, then let it drain.
  const drained = performance.now()
  const backlog = writesPerVariant(mode) - (reported.async - asyncBefore)
  for (let last = -1; reported.async !== last; ) {
    last = reported.async
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  const drainMs = performance.now() - drained - 200
  const callsAfter = await commandCalls()
  const ratios = Object.fromEntries(
    [...comparison.summaries.keys()].filter((name) => name !== BARE).map((name) => [name, comparison.ratio(name, BARE)])
  )
  const base = comparison.summaries.get(BARE)!
  printTable(
    `Single-row update by primary key, ${mode === "sequential" ? "sequential" : `${CALLERS} concurrent callers`} (${ROUNDS} rounds, PostgreSQL + Redis)`,
    ["variant", "ops/s", "time vs bare [min-max]", "mean us", "p50 us", "p99 us", "added p50 us"],
    [...comparison.summaries].map(([name, s]) => {
      const r = ratios[name]
      return [
        name,
        Math.round(s.opsPerSec).toLocaleString("en-US"),
        r === undefined ? "1.00x" : `${x(r.median)} [${x(r.min)}-${x(r.max)}]`,
        us(s.meanUs),
        us(s.p50Us),
        us(s.p99Us),
        name === BARE ? "" : us(s.p50Us - base.p50Us)
      ]
    })
  )
  // INFO commandstats is server-wide; nothing else talks to this Redis during the phase. Every store command
  // of a write is a script (EVALSHA): a hold and its release in sync mode, one set invalidation in async mode.
  const redisCalls = {
    // The floor row sends two scripts per write of its own.
    evalsha:
      ((callsAfter.evalsha ?? 0) - (callsBefore.evalsha ?? 0) - 2 * writesPerVariant(mode)) /
      (3 * writesPerVariant(mode))
  }
  console.log(
    `Redis commands per wrapped write: ${JSON.stringify(redisCalls)}; async invalidations still queued when the ` +
      `phase ended: ${Math.max(0, backlog)} (drained in ~${Math.max(0, Math.round(drainMs))} ms)`
  )
  throughput[mode] = {
    summaries: Object.fromEntries(comparison.summaries),
    ratios,
    redisCalls,
    asyncBacklogAtEnd: Math.max(0, backlog)
  }
}

// --- 2. commit-to-invalidated ---------------------------------------------------------------------------------------

interface LatencySamples {
  readonly commit: Array<number>
  readonly invalidated: Array<number>
}

const fill = (runtime: ManagedRuntime.ManagedRuntime<CacheStore.CacheStore, never>, id: number) =>
  runtime.runPromise(Effect.succeed(`row ${id}`).pipe(Memo.cached(RowName.make({ id }))))

const commitLatency = async (
  db: Kysely<any>,
  runtime: ManagedRuntime.ManagedRuntime<CacheStore.CacheStore, never> | undefined
): Promise<LatencySamples> => {
  const samples: LatencySamples = { commit: [], invalidated: [] }
  for (let i = 0; i < LATENCY_SAMPLES + 20; i++) {
    const id = (i % ROWS) + 1
    const group = RowGroup.make({ id }).key
    if (runtime !== undefined) await fill(runtime, id)
    const invalidated =
      runtime === undefined ? undefined : new Promise<number>((resolve) => waiters.set(group, resolve))
    const trx = await db.startTransaction().execute()
    await update(trx, id)
    const sent = performance.now()
    await trx.commit().execute()
    const committed = performance.now()
    const at = invalidated === undefined ? undefined : await invalidated
    if (i < 20) continue // warm-up
    samples.commit.push((committed - sent) * 1000)
    if (at !== undefined) samples.invalidated.push((at - sent) * 1000)
  }
  return samples
}

const latency = {
  bare: await commitLatency(bare, undefined),
  sync: await commitLatency(syncDb, syncRuntime),
  async: await commitLatency(asyncDb, asyncRuntime)
}
// The entry of the last written row is gone from Redis (the listener fired after the store answered).
const lastKey = `${prefix}${RowName.make({ id: ((LATENCY_SAMPLES + 19) % ROWS) + 1 }).key}`
const lastGone = (await redis.exists(lastKey)) === 0

const stat = (values: ReadonlyArray<number>) => {
  const sorted = sortedOf(values)
  return {
    p50Us: quantile(sorted, 0.5),
    p99Us: quantile(sorted, 0.99),
    meanUs: values.reduce((a, b) => a + b, 0) / values.length
  }
}
const latencyRows = {
  bareCommit: stat(latency.bare.commit),
  syncCommit: stat(latency.sync.commit),
  syncCommitToInvalidated: stat(latency.sync.invalidated),
  asyncCommit: stat(latency.async.commit),
  asyncCommitToInvalidated: stat(latency.async.invalidated)
}
printTable(
  `Commit-to-invalidated, a cached entry per written row (${LATENCY_SAMPLES} transactions each)`,
  ["measure", "p50 us", "p99 us", "mean us"],
  [
    ["bare COMMIT", latencyRows.bareCommit],
    ["sync: COMMIT (invalidation included)", latencyRows.syncCommit],
    ["sync: COMMIT sent -> entry invalidated", latencyRows.syncCommitToInvalidated],
    ["async: COMMIT", latencyRows.asyncCommit],
    ["async: COMMIT sent -> entry invalidated", latencyRows.asyncCommitToInvalidated]
  ].map(([name, s]) => {
    const row = s as ReturnType<typeof stat>
    return [name as string, us(row.p50Us), us(row.p99Us), us(row.meanUs)]
  })
)
// Only the medians subtract meaningfully (the p99s of two distributions are not paired).
const addedSync = { p50Us: latencyRows.syncCommit.p50Us - latencyRows.bareCommit.p50Us }
console.log(`sync mode adds ${us(addedSync.p50Us)} us (p50) to a COMMIT; last entry gone from Redis: ${lastGone}`)

// --- 3. where the added time goes -----------------------------------------------------------------------------------

const BREAKDOWN_OPS = 2000
// Groups nobody is registered in, as in the throughput phase (no cached entry of the written rows).
const emptyEvent = (i: number) => [
  { table, operation: "update" as const, rows: [{ id: ROWS + 1 + i }], wholeTable: false }
]
const steps: ReadonlyArray<readonly [string, (i: number) => Promise<unknown>]> = [
  ["redisPing", () => redis.ping()],
  [
    "storeHold",
    (i) =>
      syncRuntime.runPromise(
        Effect.flatMap(CacheStore.CacheStore, (cache) => cache.hold([`g:bench-empty-${i}`], `bench-${i}`, 30_000))
      )
  ],
  [
    "invalidatorHoldAndCommit",
    (i) =>
      syncRuntime.runPromise(
        Effect.flatMap(Invalidator.Invalidator, (inv) =>
          Effect.flatMap(inv.hold(emptyEvent(i)), (hold) => hold?.commit(emptyEvent(i)) ?? Effect.void)
        )
      )
  ],
  [
    "publishAndWait",
    (i) => syncRuntime.runPromise(Effect.flatMap(Invalidator.Invalidator, (inv) => inv.publishAndWait(emptyEvent(i))))
  ]
]
// The steps take turns, so the machine's drift spreads over all of them alike.
const stepSamples = steps.map((): Array<number> => [])
for (let i = -200; i < BREAKDOWN_OPS; i++) {
  for (const [index, [, op]] of steps.entries()) {
    const t0 = performance.now()
    await op(i + BREAKDOWN_OPS * index)
    if (i >= 0) stepSamples[index]!.push((performance.now() - t0) * 1000)
  }
}
const breakdown = Object.fromEntries(steps.map(([name], index) => [name, stat(stepSamples[index]!)])) as Record<
  "redisPing" | "storeHold" | "invalidatorHoldAndCommit" | "publishAndWait",
  ReturnType<typeof stat>
>
printTable(
  "What sync mode adds, one group nobody is registered in (a hold runs beside the write; publishAndWait after it)",
  ["step", "p50 us", "p99 us"],
  [
    ["Redis PING round trip", breakdown.redisPing],
    ["store.hold (one script)", breakdown.storeHold],
    ["+ resolve, Listener, commit (Invalidator.hold)", breakdown.invalidatorHoldAndCommit],
    ["publishAndWait (rows not known before COMMIT)", breakdown.publishAndWait]
  ].map(([name, s]) => {
    const row = s as ReturnType<typeof stat>
    return [name as string, us(row.p50Us), us(row.p99Us)]
  })
)

// --- summary and results ------------------------------------------------------------------------------------------

const headline = (mode: string) =>
  (throughput[mode] as { ratios: Record<string, { median: number }> }).ratios["wrapped sync, Database.query"]!.median
console.log(`\nWrapped (sync, Database.query) / bare, time per update (target <= ${TARGET}x):`)
for (const mode of ["sequential", "concurrent"]) {
  const ratio = headline(mode)
  console.log(`  ${mode.padEnd(11)} ${x(ratio)} ${ratio <= TARGET ? "ok" : "over target"}`)
}

const versionOf = (name: string): string =>
  JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), "utf8")).version
const postgres = String(
  Object.values(await bare.selectNoFrom((eb) => eb.fn<string>("version").as("v")).executeTakeFirstOrThrow())[0]
)
await writeJson(new URL("./results/kysely-write.json", import.meta.url).pathname, {
  benchmark: "kysely-write",
  environment: environment(redisVersionOf(await redis.info("server")), {
    loadAverageAtStart,
    postgres,
    ...Object.fromEntries(["effect", "kysely", "pg", "ioredis"].map((name) => [name, versionOf(name)]))
  }),
  setup: {
    rows: ROWS,
    rounds: ROUNDS,
    sequentialOpsPerRound: SEQUENTIAL_OPS,
    callers: CALLERS,
    opsPerCallerPerRound: PER_CALLER,
    poolSize: POOL_SIZE,
    latencySamples: LATENCY_SAMPLES,
    statement: `update ${table} set name = $1 where id = $2 (one TableInvalidNode on id)`
  },
  target: TARGET,
  headline: { sequential: headline("sequential"), concurrent: headline("concurrent") },
  throughput,
  commitLatency: { ...latencyRows, addedBySync: addedSync, lastEntryGone: lastGone },
  breakdown
})

// --- cleanup --------------------------------------------------------------------------------------------------------

await bare.schema.dropTable(table).ifExists().execute()
await captureOnly.destroy()
await syncRuntime.dispose()
await asyncRuntime.dispose()
await bare.destroy()
await deleteByPrefix(redis, prefix)
redis.disconnect()
