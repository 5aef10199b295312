/**
 * The tiered store's hits and its coherence latency, side by side with the Redis store (and bentocache's L1 + L2
 * with its bus, when `bench/peers` is installed):
 *
 * 1. Hot-key hits of a 10-field user record, sequential and 100 concurrent callers (one key per caller), each as
 *    `runPromise` per call and inside one long-running program: `Memo.cached` over the tiered store, over the
 *    Redis store, and bentocache `getOrSet` (L1 memory + L2 Redis + Redis bus). Ratios are paired per round
 *    (harness.ts).
 * 2. Cross-process invalidation to local copy gone: a second store (its own connections, as another process)
 *    invalidates a key held in the first one's tier; the time from the invalidation's reply to the copy being
 *    gone (the tier's own invalidation counter moving; p50 / p99 over `INVALIDATIONS` trials).
 *
 * Run: `node bench/tiered-hit.ts` (`--quick` for a smoke run with small counts). Writes
 * bench/results/tiered-hit.json (not with `--quick`).
 */
import { Context, Effect, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, Memo } from "../src/index.ts"
import { tierOf } from "../src/store/Tiered.ts"
import { deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "./environment.ts"
import { KEYS, makeUser, type User, UserNode } from "./fixture.ts"
import * as H from "./harness.ts"
import type { Peer } from "./peer.ts"

const quick = process.argv.includes("--quick")
const ROUNDS = quick ? 2 : 10
const WARMUP_MS = quick ? 200 : 2000
const SEQUENTIAL_OPS = quick ? 200 : 2000
const CALLERS = 100
const PER_CALLER = quick ? 5 : 30
const INVALIDATIONS = quick ? 50 : 1000

const client = new Redis(redisUrl, { autoResendUnfulfilledCommands: false, enableAutoPipelining: true })
const prefix = `bench:tiered-hit:${process.pid}:`
const users = Array.from({ length: KEYS }, (_, id) => makeUser(id))

const settings = CachemeConfig.layer({ prefix })
const tieredLayer = CacheStore.layerTiered({ url: redisUrl, prefix }).pipe(Layer.provideMerge(settings), Layer.orDie)
const redisLayer = CacheStore.layerRedis({ client, prefix }).pipe(Layer.provideMerge(settings), Layer.orDie)
const tiered = ManagedRuntime.make(tieredLayer)
const plain = ManagedRuntime.make(redisLayer)
const tieredStore = Context.get(await tiered.context(), CacheStore.CacheStore)
await plain.context()

const memo = (i: number) => Effect.succeed(users[i]!).pipe(Memo.cached(UserNode.make({ id: i })))

// Seeded through the Redis store; the tiered store's first reads then bring the copies in.
await plain.runPromise(Effect.forEach(users, (user) => memo(user.id), { discard: true }))
const tier = tierOf(tieredStore)!
while (!tier.serving()) await new Promise((resolve) => setTimeout(resolve, 10))
await tiered.runPromise(Effect.forEach(users, (user) => memo(user.id), { discard: true }))

// bentocache L1 + L2 + bus, if the peers are installed (`npm --prefix bench/peers install`).
const peersModule = "./peers/bentocache.ts"
const bento: Peer | undefined = await import(peersModule)
  .then((module: { makeBentocachePeer: (prefix: string, options: unknown) => Promise<Peer> }) =>
    module.makeBentocachePeer(`bench:tiered-hit:bento:${process.pid}:`, { tiered: true })
  )
  .catch((error: unknown) => {
    console.log(`(bentocache not installed, its rows are left out: ${String(error).split("\n")[0]})`)
    return undefined
  })
const load = (id: number) => async (): Promise<User> => users[id]!
if (bento !== undefined) for (const user of users) await bento.getOrSet(user.id, load(user.id))

type Mode = "sequential" | "concurrent100"

const variants = (mode: Mode): ReadonlyArray<H.Variant> => {
  const promiseRound = (op: (i: number) => Promise<unknown>) =>
    mode === "sequential"
      ? () => H.sequential((i) => op(i % KEYS), SEQUENTIAL_OPS)
      : () => H.concurrent(op, CALLERS, PER_CALLER)
  const programRound = (runtime: typeof tiered | typeof plain) =>
    mode === "sequential"
      ? () => runtime.runPromise(H.sequentialEffect((i) => memo(i % KEYS), SEQUENTIAL_OPS))
      : () => runtime.runPromise(H.concurrentEffect(memo, CALLERS, PER_CALLER))
  return [
    { name: "tiered, runPromise/call", run: promiseRound((i) => tiered.runPromise(memo(i))) },
    { name: "tiered, one program", run: programRound(tiered) },
    { name: "redis, runPromise/call", run: promiseRound((i) => plain.runPromise(memo(i))) },
    { name: "redis, one program", run: programRound(plain) },
    ...(bento === undefined
      ? []
      : [{ name: "bentocache L1+L2+bus", run: promiseRound((i) => bento.getOrSet(i, load(i))) }])
  ]
}

const results: Record<string, Record<string, H.Summary>> = {}
const ratios: Record<string, Record<string, { median: number; min: number; max: number }>> = {}
for (const mode of ["sequential", "concurrent100"] as const) {
  const localBefore = tier.stats.localHits
  const comparison = await H.compare(variants(mode), { rounds: ROUNDS, warmupMs: WARMUP_MS })
  results[mode] = Object.fromEntries(comparison.summaries)
  const base = bento === undefined ? "redis, runPromise/call" : "bentocache L1+L2+bus"
  ratios[mode] = Object.fromEntries(
    ["tiered, runPromise/call", "tiered, one program", "redis, runPromise/call"].map((name) => [
      name,
      H.pairedRatio(comparison, base, name)
    ])
  )
  H.printTable(
    `${mode === "sequential" ? "Sequential" : `${CALLERS} concurrent callers`}: hot-key hits (${ROUNDS} rounds)`,
    ["variant", "ops/s", "CPU us/op", "mean us", "p50 us", "p99 us"],
    [...comparison.summaries].map(([name, s]) => [
      name,
      H.fmt.ops(s.opsPerSec),
      H.fmt.us(s.cpuUsPerOp),
      H.fmt.us(s.meanUs),
      H.fmt.us(s.p50Us),
      H.fmt.us(s.p99Us)
    ])
  )
  console.log(`  tiered hits answered from process memory: ${tier.stats.localHits - localBefore}`)
  console.log(`  throughput vs ${base} (paired median, >1: faster):`)
  for (const [name, r] of Object.entries(ratios[mode]!)) console.log(`    ${name.padEnd(26)} ${H.fmt.ratio(r.median)}`)
}

// --- cross-process invalidation to local copy gone --------------------------------------------------------------

const other = ManagedRuntime.make(
  CacheStore.layerTiered({ url: redisUrl, prefix }).pipe(Layer.provideMerge(settings), Layer.orDie)
)
const otherStore = Context.get(await other.context(), CacheStore.CacheStore)
const latencies = new Float64Array(INVALIDATIONS)
const sinceSent = new Float64Array(INVALIDATIONS)
for (let trial = 0; trial < INVALIDATIONS; trial++) {
  const id = trial % KEYS
  // The copy is in the tier (a local hit), then the other process invalidates the key.
  await tiered.runPromise(memo(id))
  const before = tier.stats.localHits
  await tiered.runPromise(memo(id))
  if (tier.stats.localHits === before) {
    latencies[trial] = Number.NaN
    sinceSent[trial] = Number.NaN
    continue
  }
  const seen = tier.stats.invalidations
  const sent = performance.now()
  await other.runPromise(otherStore.invalidate([UserNode.make({ id }).key], "hard"))
  const replied = performance.now()
  // Each turn of the event loop lets the subscriber's socket be read.
  while (tier.stats.invalidations === seen) await new Promise((resolve) => setImmediate(resolve))
  const gone = performance.now()
  latencies[trial] = gone - replied
  sinceSent[trial] = gone - sent
}
const distribution = (samples: Float64Array) => {
  const measured = samples.filter((x) => !Number.isNaN(x)).sort()
  const pct = (p: number) => measured[Math.min(measured.length - 1, Math.floor(p * measured.length))] ?? Number.NaN
  return {
    trials: measured.length,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    maxMs: measured[measured.length - 1] ?? Number.NaN
  }
}
const invalidation = { afterReply: distribution(latencies), afterSend: distribution(sinceSent) }
for (const [label, d] of [
  ["from the invalidation's reply", invalidation.afterReply],
  ["from the invalidation's call ", invalidation.afterSend]
] as const) {
  console.log(
    `Cross-process invalidation ${label} to the copy gone (${d.trials} trials): p50 ${d.p50Ms.toFixed(3)} ms, p99 ${d.p99Ms.toFixed(3)} ms, max ${d.maxMs.toFixed(3)} ms`
  )
}

if (!quick) {
  await writeJson(new URL("./results/tiered-hit.json", import.meta.url).pathname, {
    benchmark: "tiered-hit",
    environment: environment(redisVersionOf(await client.info("server"))),
    setup: {
      rounds: ROUNDS,
      warmupMsPerVariant: WARMUP_MS,
      sequentialOpsPerRound: SEQUENTIAL_OPS,
      callers: CALLERS,
      opsPerCallerPerRound: PER_CALLER,
      keys: KEYS
    },
    results,
    ratios,
    invalidation,
    tier: { ...tier.stats }
  })
}

await other.dispose()
await tiered.dispose()
await plain.dispose()
await bento?.close()
await deleteByPrefix(client, prefix)
client.disconnect()
