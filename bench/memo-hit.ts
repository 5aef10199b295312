/**
 * A `Memo.cached` hit against the bare minimum: an ioredis `GET` + `JSON.parse` of the same user record, on the
 * same Redis and the same ioredis client, sequentially and with 100 concurrent callers (one key per caller, so
 * in-process single-flight never merges hits). Target: Memo at most 1.3x the bare read.
 *
 * Rows (each a different cut of the same hit, so the gap can be read off):
 * - `bare GET+parse`: the baseline.
 * - `lookup+decode, no Effect`: the library's Redis work without Effect: the MGET of the entry and its stamp, the check,
 *   `JSON.parse` and the Schema decode. Its gap to the baseline is the cost of the lookup and the decode.
 * - `bare in Effect`: the baseline inside `Effect.tryPromise`: what Effect alone costs around one promise.
 * - `Memo.cached`: the real thing.
 * Each Effect row runs twice: `runPromise/call` (a `ManagedRuntime` built once, `runtime.runPromise` per call,
 * as an app's request handler does) and `one program` (a single long-running Effect loops), so Effect's per-run
 * overhead shows apart from the per-operation cost.
 *
 * The ratio printed last is paired: the median over rounds of bare ops/s / Memo ops/s measured back to back in the
 * same round (see harness.ts), so load from elsewhere on the machine hits both sides alike.
 *
 * Run: `npm run bench`. Writes bench/results/memo-hit.json.
 */
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Metrics } from "../src/index.ts"
import {
  commandStats,
  deleteByPrefix,
  environment,
  redisUrl,
  redisVersionOf,
  serverUsPerCall,
  writeJson
} from "./environment.ts"
import { KEYS, makeUser, UserNode } from "./fixture.ts"
import * as H from "./harness.ts"
import * as Protocol from "../src/internal/protocol.ts"

const ROUNDS = 12
const WARMUP_MS = 2000
const SEQUENTIAL_OPS = 2000
const CALLERS = 100
const PER_CALLER = 30
const TARGET = 1.3

const client = new Redis(redisUrl, { autoResendUnfulfilledCommands: false })
const prefix = `bench:memo-hit:${process.pid}:`
const users = Array.from({ length: KEYS }, (_, id) => makeUser(id))
const bareKeys = users.map((user) => `${prefix}bare:${user.id}`)
const entryKeys = users.map((user) => `${prefix}${UserNode.make({ id: user.id }).key}`)

const runtime = ManagedRuntime.make(
  CacheStore.layerRedis({ client, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer({ prefix })), Layer.orDie)
)
await runtime.context()

// --- the operations -------------------------------------------------------------------------------------------

const bare = (i: number) => client.get(bareKeys[i]!).then((raw) => JSON.parse(raw!))

// The store's own lookup without Effect: one MGET of the entry and its tag's stamp, the record judged against the
// stamp, the value's stamp checked, JSON.parse and the Schema decode.
const sets = CacheStore.sets([`t:${UserNode.name}`])
const stampKeys = sets.names.map((set) => Protocol.stampKey(prefix, set))
const decodeUser = Schema.decodeUnknownExit(UserNode.codec)
const lookupAndDecode = (i: number) =>
  client.mget(entryKeys[i]!, ...stampKeys).then((replies) => {
    const found = Protocol.judge(replies[0] ?? null, sets, replies.slice(1), Date.now())
    if (found._tag !== "Hit") throw new Error(`not a hit: ${found._tag}`)
    const raw = found.value
    const newline = raw.indexOf("\n")
    if (raw.slice(0, newline) !== UserNode.stamp) throw new Error("stamp mismatch")
    return decodeUser(JSON.parse(raw.slice(newline + 1)))
  })

const bareEffect = (i: number) =>
  Effect.map(
    Effect.tryPromise(() => client.get(bareKeys[i]!)),
    (raw) => JSON.parse(raw!)
  )

const memo = (i: number) => Effect.succeed(users[i]!).pipe(Memo.cached(UserNode.make({ id: i })))

// --- seeding --------------------------------------------------------------------------------------------------

await Promise.all(users.map((user, i) => client.set(bareKeys[i]!, JSON.stringify(user))))
await runtime.runPromise(Effect.forEach(users, (user) => memo(user.id), { discard: true }))

// --- the comparison -------------------------------------------------------------------------------------------

type Mode = "sequential" | "concurrent100"

const variants = (mode: Mode): ReadonlyArray<H.Variant> => {
  const promiseRound = (op: (i: number) => Promise<unknown>) =>
    mode === "sequential"
      ? () => H.sequential((i) => op(i % KEYS), SEQUENTIAL_OPS)
      : () => H.concurrent(op, CALLERS, PER_CALLER)
  const programRound = (op: (i: number) => Effect.Effect<unknown, unknown, CacheStore.CacheStore>) =>
    mode === "sequential"
      ? () => runtime.runPromise(H.sequentialEffect((i) => op(i % KEYS), SEQUENTIAL_OPS))
      : () => runtime.runPromise(H.concurrentEffect(op, CALLERS, PER_CALLER))
  return [
    { name: "bare GET+parse", run: promiseRound(bare) },
    { name: "lookup+decode, no Effect", run: promiseRound(lookupAndDecode) },
    { name: "bare in Effect, runPromise/call", run: promiseRound((i) => runtime.runPromise(bareEffect(i))) },
    { name: "bare in Effect, one program", run: programRound(bareEffect) },
    { name: "Memo.cached, runPromise/call", run: promiseRound((i) => runtime.runPromise(memo(i))) },
    { name: "Memo.cached, one program", run: programRound(memo) }
  ]
}

const MEMO = ["Memo.cached, runPromise/call", "Memo.cached, one program"] as const
const BARE = "bare GET+parse"

const statsBefore = commandStats(await client.info("commandstats"))
const results: Record<string, Record<string, H.Summary>> = {}
const ratios: Record<string, Record<string, { median: number; min: number; max: number }>> = {}
for (const mode of ["sequential", "concurrent100"] as const) {
  const comparison = await H.compare(variants(mode), { rounds: ROUNDS, warmupMs: WARMUP_MS })
  const base = comparison.summaries.get(BARE)!
  results[mode] = Object.fromEntries(comparison.summaries)
  ratios[mode] = Object.fromEntries(MEMO.map((name) => [name, H.pairedRatio(comparison, name, BARE)]))
  H.printTable(
    `${mode === "sequential" ? "Sequential" : `${CALLERS} concurrent callers`}: hit of a 10-field user record (${ROUNDS} rounds)`,
    ["variant", "ops/s", "time vs bare", "CPU us/op", "mean us", "p50 us", "p99 us"],
    [...comparison.summaries].map(([name, s]) => [
      name,
      H.fmt.ops(s.opsPerSec),
      H.fmt.ratio(base.opsPerSec / s.opsPerSec),
      H.fmt.us(s.cpuUsPerOp),
      H.fmt.us(s.meanUs),
      H.fmt.us(s.p50Us),
      H.fmt.us(s.p99Us)
    ])
  )
}
const server = serverUsPerCall(statsBefore, commandStats(await client.info("commandstats")), ["get", "evalsha"])

// Every Memo read above must have been a hit: loads happen only while seeding.
const stats = await runtime.runPromise(Metrics.stats(UserNode.name))
console.log(`\nMemo counters: ${stats.hits} hits, ${stats.misses} misses, ${stats.loads} loads (seeding: ${KEYS})`)
console.log(`Redis server time per call: GET ${server.get} us, EVALSHA (read script) ${server.evalsha} us`)

console.log(`\nRatio Memo/bare, time per op, median of ${ROUNDS} back-to-back rounds [min-max] (target <= ${TARGET}x):`)
for (const [mode, byVariant] of Object.entries(ratios)) {
  for (const [name, r] of Object.entries(byVariant)) {
    const range = `[${H.fmt.ratio(r.min)}-${H.fmt.ratio(r.max)}]`
    console.log(
      `  ${mode.padEnd(14)} ${name.padEnd(28)} ${H.fmt.ratio(r.median)} ${range.padEnd(14)} ${r.median <= TARGET ? "ok" : "over target"}`
    )
  }
}

await writeJson(new URL("./results/memo-hit.json", import.meta.url).pathname, {
  benchmark: "memo-hit",
  environment: environment(redisVersionOf(await client.info("server")), {
    effect: (await import("effect/package.json", { with: { type: "json" } })).default.version,
    ioredis: (await import("ioredis/package.json", { with: { type: "json" } })).default.version
  }),
  setup: {
    rounds: ROUNDS,
    warmupMsPerVariant: WARMUP_MS,
    sequentialOpsPerRound: SEQUENTIAL_OPS,
    callers: CALLERS,
    opsPerCallerPerRound: PER_CALLER,
    keys: KEYS
  },
  target: TARGET,
  ratios,
  results,
  redisServerUsPerCall: server,
  memoCounters: stats
})

await runtime.dispose()
await deleteByPrefix(client, prefix)
client.disconnect()
