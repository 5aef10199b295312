/**
 * The in-process store (`CacheStore.layerMemory`) against bentocache 1.6's in-process L1 (memory driver alone, no
 * L2, no bus), the peer named by issue 11:
 *
 * 1. Hot-key hits of the 10-field user record (`fixture.ts`, 100 keys, one per concurrent caller), sequential and
 *    100 concurrent callers, `Memo.cached` as `runPromise` per call and inside one long-running program, against
 *    bentocache `getOrSet` with `serialize: false` (the target: at least 1.0x its throughput) and with its default
 *    `serialize: true` (for reference). Ratios are paired per round (harness.ts).
 * 2. Effect operations per hit: the fiber's own operation count around one hit inside a program.
 * 3. Heap bytes per entry: 100,000 entries filled through each cache's read-through call (the loader returns a
 *    fresh object, as a database would), then each read once (so that a cache that keeps decoded values holds
 *    them), two full GCs, and the growth of V8's used heap plus array buffers (lru-cache keeps its bookkeeping in
 *    typed arrays) divided by the entries. Each cache is measured in a fresh child process (`--expose-gc`), for
 *    a small record (`{ id, name }`) and for the user record. bentocache's `maxItems` is the entry count (its
 *    arrays are preallocated for that many); the in-process store's `maxEntries` likewise.
 *
 * Run: `node bench/memory-hit.ts` (`--quick` for a smoke run with small counts), after
 * `npm --prefix bench/peers install`. Writes bench/results/memory-hit.json (not with `--quick`).
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { CachemeConfig, CacheStore, Memo, Node } from "../src/index.ts"
import { environment, writeJson } from "./environment.ts"
import { KEYS, makeUser, type User, UserNode } from "./fixture.ts"
import * as H from "./harness.ts"

const quick = process.argv.includes("--quick")
const ROUNDS = quick ? 2 : 10
const WARMUP_MS = quick ? 200 : 2000
const SEQUENTIAL_OPS = quick ? 500 : 5000
const CALLERS = 100
const PER_CALLER = quick ? 10 : 50
const HEAP_ENTRIES = quick ? 10_000 : 100_000

interface L1 {
  readonly getOrSet: <V>(key: string, load: () => Promise<V>) => Promise<V>
  readonly close: () => Promise<void>
}
type MakeL1 = (options: { readonly serialize: boolean; readonly maxItems: number }) => L1
const peersModule = "./peers/bentocache.ts"
const makeL1: MakeL1 = await import(peersModule).then((module: { makeBentocacheL1: MakeL1 }) => module.makeBentocacheL1)

/** The small record of the heap measure. */
const Small = Schema.Struct({ id: Schema.Number, name: Schema.String })
const SmallNode = Node.make("bench-small", {
  fields: { id: Schema.Number },
  value: Small,
  key: ({ id }) => `bench-small:${id}`,
  ttl: null
})
const makeSmall = (id: number) => ({ id, name: `User ${id}` })

const memoryRuntime = (maxEntries: number) =>
  ManagedRuntime.make(
    CacheStore.layerMemory({ maxEntries }).pipe(Layer.provideMerge(CachemeConfig.layer({ prefix: "bench:memory:" })))
  )

// --- heap bytes per entry (child process) -----------------------------------------------------------------------

const heapChild = async (cache: "cacheme" | "bento-object" | "bento-json", value: "small" | "user", n: number) => {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error("run the heap measure with --expose-gc")
  const used = () => {
    gc()
    gc()
    const usage = process.memoryUsage()
    return usage.heapUsed + usage.arrayBuffers
  }
  const make = value === "small" ? makeSmall : makeUser
  const node = value === "small" ? SmallNode : UserNode
  const batch = Array.from({ length: 1000 }, (_, i) => i)
  let fill: (id: number) => Promise<unknown>
  let close: () => Promise<void>
  if (cache === "cacheme") {
    const runtime = memoryRuntime(n)
    await runtime.context()
    const memo = (id: number) => Effect.sync(() => make(id)).pipe(Memo.cached(node.make({ id }) as never))
    fill = (from) => runtime.runPromise(Effect.forEach(batch, (i) => memo(from + i), { discard: true }))
    close = () => runtime.dispose()
  } else {
    const l1 = makeL1({ serialize: cache === "bento-json", maxItems: n })
    fill = (from) => Promise.all(batch.map((i) => l1.getOrSet(`${node.name}:${from + i}`, async () => make(from + i))))
    close = l1.close
  }
  // One entry first: what a cache allocates once (its tables, compiled codecs) is not counted per entry.
  await fill(n)
  const before = used()
  for (let from = 0; from < n; from += batch.length) await fill(from)
  // Read once more: a cache that keeps decoded values holds them from the first hit on.
  for (let from = 0; from < n; from += batch.length) await fill(from)
  const after = used()
  await close()
  return { bytesPerEntry: (after - before) / n }
}

if (process.argv[2] === "heap") {
  const [cache, value, n] = process.argv.slice(3) as [
    "cacheme" | "bento-object" | "bento-json",
    "small" | "user",
    string
  ]
  console.log(JSON.stringify(await heapChild(cache, value, Number(n))))
  process.exit(0)
}

// --- hot-key hits -------------------------------------------------------------------------------------------------

const users = Array.from({ length: KEYS }, (_, id) => makeUser(id))
const runtime = memoryRuntime(10_000)
await runtime.context()
const memo = (i: number) => Effect.succeed(users[i]!).pipe(Memo.cached(UserNode.make({ id: i })))
await runtime.runPromise(Effect.forEach(users, (user) => memo(user.id), { discard: true }))

const bentoObject = makeL1({ serialize: false, maxItems: 10_000 })
const bentoJson = makeL1({ serialize: true, maxItems: 10_000 })
const load = (id: number) => async (): Promise<User> => users[id]!
for (const user of users) {
  await bentoObject.getOrSet(`user:${user.id}`, load(user.id))
  await bentoJson.getOrSet(`user:${user.id}`, load(user.id))
}

// Fiber operations per hit: the runtime's own count around one hit inside a program, net of reading it.
const operationsPerHit = await runtime.runPromise(
  Effect.gen(function* () {
    const count = Effect.withFiber((fiber) =>
      Effect.succeed((fiber as unknown as { readonly currentOpCount: number }).currentOpCount)
    )
    const a0 = yield* count
    yield* Effect.void
    const a1 = yield* count
    const b0 = yield* count
    yield* memo(1)
    const b1 = yield* count
    return b1 - b0 - (a1 - a0)
  })
)
console.log(`Effect operations per hit (Memo.cached, in-process store): ${operationsPerHit}`)

type Mode = "sequential" | "concurrent100"
const base = "bentocache L1 serialize:false"

const variants = (mode: Mode): ReadonlyArray<H.Variant> => {
  const promiseRound = (op: (i: number) => Promise<unknown>) =>
    mode === "sequential"
      ? () => H.sequential((i) => op(i % KEYS), SEQUENTIAL_OPS)
      : () => H.concurrent(op, CALLERS, PER_CALLER)
  const programRound =
    mode === "sequential"
      ? () => runtime.runPromise(H.sequentialEffect((i) => memo(i % KEYS), SEQUENTIAL_OPS))
      : () => runtime.runPromise(H.concurrentEffect(memo, CALLERS, PER_CALLER))
  return [
    { name: "memory, runPromise/call", run: promiseRound((i) => runtime.runPromise(memo(i))) },
    { name: "memory, one program", run: programRound },
    { name: base, run: promiseRound((i) => bentoObject.getOrSet(`user:${i}`, load(i))) },
    { name: "bentocache L1 serialize:true", run: promiseRound((i) => bentoJson.getOrSet(`user:${i}`, load(i))) }
  ]
}

const results: Record<string, Record<string, H.Summary>> = {}
const ratios: Record<string, Record<string, { median: number; min: number; max: number }>> = {}
for (const mode of ["sequential", "concurrent100"] as const) {
  const comparison = await H.compare(variants(mode), { rounds: ROUNDS, warmupMs: WARMUP_MS })
  results[mode] = Object.fromEntries(comparison.summaries)
  ratios[mode] = Object.fromEntries(
    ["memory, runPromise/call", "memory, one program", "bentocache L1 serialize:true"].map((name) => [
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
  console.log(`  throughput vs ${base} (paired median, >1: faster):`)
  for (const [name, r] of Object.entries(ratios[mode]!))
    console.log(`    ${name.padEnd(30)} ${H.fmt.ratio(r.median)} [${H.fmt.ratio(r.min)}-${H.fmt.ratio(r.max)}]`)
}
await runtime.dispose()
await bentoObject.close()
await bentoJson.close()

// --- heap, each cache in a child process ------------------------------------------------------------------------

const run = promisify(execFile)
const heap: Record<string, Record<string, number>> = {}
console.log(`\nHeap bytes per entry (${HEAP_ENTRIES.toLocaleString("en-US")} entries, each read once after its fill)`)
for (const value of ["small", "user"] as const) {
  heap[value] = {}
  for (const cache of ["cacheme", "bento-object", "bento-json"] as const) {
    const { stdout } = await run(process.execPath, [
      "--expose-gc",
      new URL(import.meta.url).pathname,
      "heap",
      cache,
      value,
      String(HEAP_ENTRIES)
    ])
    const { bytesPerEntry } = JSON.parse(stdout.trim().split("\n").pop()!) as { bytesPerEntry: number }
    heap[value]![cache] = Math.round(bytesPerEntry)
  }
  const row = heap[value]!
  console.log(
    `  ${value.padEnd(6)} memory store ${row.cacheme} B, bentocache L1 serialize:false ${row["bento-object"]} B, serialize:true ${row["bento-json"]} B`
  )
}

if (!quick) {
  await writeJson(new URL("./results/memory-hit.json", import.meta.url).pathname, {
    benchmark: "memory-hit",
    environment: environment("none"),
    setup: {
      rounds: ROUNDS,
      warmupMsPerVariant: WARMUP_MS,
      sequentialOpsPerRound: SEQUENTIAL_OPS,
      callers: CALLERS,
      opsPerCallerPerRound: PER_CALLER,
      keys: KEYS,
      heapEntries: HEAP_ENTRIES
    },
    results,
    ratios,
    operationsPerHit,
    heapBytesPerEntry: heap
  })
}
