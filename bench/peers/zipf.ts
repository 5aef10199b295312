/**
 * The trace of Python cacheme's own benchmark, scaled to this machine: Zipf-distributed reads (s = 1.001) over a
 * key space sized so that the requests draw a quarter as many unique keys (50,000 requests: ~12,500 keys),
 * served by 1,000 concurrent workers pulling from one shared queue; a miss's loader sleeps 100 ms, then returns a
 * user record.
 *
 * Every library runs in one process (1,000 workers) and in two processes (500 workers each, the trace split by
 * index parity, started at the same instant). Every run is a fresh child process (or two) under a fresh prefix;
 * the loader counts its runs with a Redis INCR shared across processes. Libraries run interleaved, rotating who
 * goes first, for a few rounds; the figures quoted are medians over rounds, and `time vs effect-cacheme` is the
 * median of the ratios paired within a round.
 *
 * - `ideal`: the time a perfect cache would take on the same queue with 1,000 workers: each unique key's first
 *   request costs 100 ms, any other request costs nothing but waits for its key's load to finish (a plain
 *   event simulation below). The two-process split has its own ideal (two queues of 500 workers, loads
 *   shared); both are in the JSON, the 1,000-worker one is the reference.
 * - `round trips`: commands the library's clients sent (client-side count of `sendCommand`), per request.
 * - `server cmds`: the `INFO commandstats` delta per request (script commands included; the loader's INCR and the
 *   benchmark's own INFO taken out). Redis is shared: another client's commands in the window count too.
 * - `CPU s`: CPU time (user + system) of the worker processes over the run, summed: on a small machine a library
 *   that needs more of it per request finishes later, whatever its round trips.
 *
 * - warm-up: before the measured trace, each worker process runs the head of its part of the trace (20,000
 *   requests, `ZIPF_WARMUP`) on keys outside it, so that every library is measured with its code compiled by the
 *   JIT, as a server that has been up a while runs (a cold process spends its first seconds compiling: the
 *   measured trace is only ~2 s long). `ZIPF_WARMUP=0` gives the cold figures.
 *
 * Run: `node_modules/.bin/node bench/peers/zipf.ts [requests] [rounds]` from the root (defaults 50000 and 2: a
 * round of 8 runs takes ~1.5 min on 2 cores, so 3 rounds would pass 4 minutes).
 * Writes bench/results/zipf.json.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { readFileSync } from "node:fs"
import { createInterface } from "node:readline"
import { Redis } from "ioredis"
import { commandStats, deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "../environment.ts"
import { makeUser } from "../fixture.ts"
import * as H from "../harness.ts"
import type { Peer } from "../peer.ts"
import { countIoredis6, makeCachemeCountedPeer } from "../peer-cacheme-counted.ts"
import { makeCounter } from "../round-trips.ts"
import { makeBentocachePeer } from "./bentocache.ts"
import { countNodeRedis, makeCacheManagerPeer } from "./cache-manager.ts"

const S = 1.001
const SEED = 20240501
const WORKERS = 1000
const LOAD_MS = 100
const WARM_ID = 9_000_000
const WARM_BASE = 20_000_000
/** Requests each worker process runs before the measured trace, on keys outside it (`ZIPF_WARMUP`, 0: none). */
const WARMUP = Number(process.env.ZIPF_WARMUP ?? 20_000)

const makers = {
  // As it ships: the store opens its connection with auto-pipelining (the counter then sees commands, not round trips).
  "effect-cacheme": (prefix: string) => makeCachemeCountedPeer(prefix, { autoPipelining: true }),
  "effect-cacheme tiered": (prefix: string) => makeCachemeCountedPeer(prefix, { autoPipelining: true, tiered: true }),
  "bentocache L2": (prefix: string) => makeBentocachePeer(prefix),
  "bentocache L1+L2": (prefix: string) => makeBentocachePeer(prefix, { tiered: true }),
  "cache-manager": (prefix: string) => makeCacheManagerPeer(prefix)
} satisfies Record<string, (prefix: string) => Promise<Peer>>
type Library = keyof typeof makers
const libraries = Object.keys(makers) as Array<Library>

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// --- the trace ------------------------------------------------------------------------------------------------

/** mulberry32: a small seeded generator, so every process draws the same trace. */
const generator = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** Expected unique keys among `requests` Zipf(s) draws over `keys` keys. */
const expectedUnique = (keys: number, requests: number) => {
  let h = 0
  for (let k = 1; k <= keys; k++) h += k ** -S
  let unique = 0
  for (let k = 1; k <= keys; k++) unique += 1 - (1 - k ** -S / h) ** requests
  return unique
}

/** The key space whose expected unique count over `requests` draws is a quarter of them (bisection). */
const keySpaceFor = (requests: number) => {
  let lo = requests / 4
  let hi = requests * 8
  while (hi - lo > 100) {
    const mid = Math.round((lo + hi) / 2)
    if (expectedUnique(mid, requests) < requests / 4) lo = mid
    else hi = mid
  }
  return Math.round(hi / 100) * 100
}

const makeTrace = (keys: number, requests: number): Int32Array => {
  const cdf = new Float64Array(keys)
  let sum = 0
  for (let k = 1; k <= keys; k++) {
    sum += k ** -S
    cdf[k - 1] = sum
  }
  const random = generator(SEED)
  const trace = new Int32Array(requests)
  for (let i = 0; i < requests; i++) {
    const u = random() * sum
    let lo = 0
    let hi = keys - 1
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (cdf[mid]! < u) lo = mid + 1
      else hi = mid
    }
    trace[i] = lo
  }
  return trace
}

// --- the loader-bound ideal -----------------------------------------------------------------------------------

/** A binary min-heap of numbers (worker free times). */
class MinHeap {
  private readonly items: Array<number> = []
  constructor(size: number) {
    for (let i = 0; i < size; i++) this.items.push(0)
  }
  peek() {
    return this.items[0]!
  }
  pop() {
    const items = this.items
    const top = items[0]!
    const last = items.pop()!
    if (items.length > 0) {
      items[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < items.length && items[l]! < items[m]!) m = l
        if (r < items.length && items[r]! < items[m]!) m = r
        if (m === i) break
        ;[items[i], items[m]] = [items[m]!, items[i]!]
        i = m
      }
    }
    return top
  }
  push(value: number) {
    const items = this.items
    items.push(value)
    let i = items.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (items[p]! <= items[i]!) break
      ;[items[i], items[p]] = [items[p]!, items[i]!]
      i = p
    }
  }
}

/**
 * A perfect cache on `parts` queues (request i goes to queue i % parts), `workers` workers each: a free worker
 * takes its queue's next request; a key's first request (over all queues, in time) costs `LOAD_MS`; any other
 * costs nothing but ends no earlier than that load. Queues advance in time order, so "first" is global.
 */
const idealMs = (trace: Int32Array, parts: number, workers: number): number => {
  const heaps = Array.from({ length: parts }, () => new MinHeap(workers))
  const next = Array.from({ length: parts }, (_, p) => p)
  const loaded = new Map<number, number>()
  let end = 0
  for (;;) {
    let part = -1
    for (let p = 0; p < parts; p++) {
      if (next[p]! < trace.length && (part === -1 || heaps[p]!.peek() < heaps[part]!.peek())) part = p
    }
    if (part === -1) return end
    const key = trace[next[part]!]!
    next[part]! += parts
    const start = heaps[part]!.pop()
    const done = loaded.get(key)
    let finish: number
    if (done === undefined) {
      finish = start + LOAD_MS
      loaded.set(key, finish)
    } else {
      finish = Math.max(start, done)
    }
    heaps[part]!.push(finish)
    if (finish > end) end = finish
  }
}

// --- a worker process: `zipf.ts worker <library> <prefix> <part> <parts> <workers> <keys> <requests>` ---------

interface WorkerResult {
  readonly requests: number
  readonly elapsedMs: number
  readonly endAt: number
  readonly sent: number
  /** CPU time of the process (user + system) over the measured window. */
  readonly cpuMs: number
  readonly wrong: number
  readonly failed: number
}

if (process.argv[2] === "worker") {
  const [library, prefix, part, parts, workers, keys, requests] = process.argv.slice(3) as [
    Library,
    string,
    string,
    string,
    string,
    string,
    string
  ]
  const counter = makeCounter()
  countIoredis6(counter)
  counter.install(Redis.prototype, "sendCommand")
  countNodeRedis(counter)
  const runs = new Redis(redisUrl)
  counter.exclude(runs)
  const runsKey = `${prefix}loader-runs`
  const trace = makeTrace(Number(keys), Number(requests))
  const mine: Array<number> = []
  for (let i = Number(part); i < trace.length; i += Number(parts)) mine.push(trace[i]!)

  const peer = await makers[library](prefix)
  const incrs: Array<Promise<unknown>> = []
  const load = (id: number) => async () => {
    incrs.push(runs.incr(runsKey))
    await sleep(LOAD_MS)
    return makeUser(id)
  }
  // Warm up (connections, scripts, the node's tag stamp) on a key outside the trace...
  await peer.getOrSet(WARM_ID, async () => makeUser(WARM_ID))
  await peer.getOrSet(WARM_ID, async () => makeUser(WARM_ID))
  // ...then the code itself: the head of the same trace on keys outside it, so that every library is measured
  // with its hot paths compiled, as in a server that has been up for a while (not counted as loader runs).
  const warmBase = WARM_BASE + Number(part) * 1_000_000
  let warmNext = 0
  const warmWorker = async () => {
    for (;;) {
      const i = warmNext++
      if (i >= Math.min(WARMUP, mine.length)) return
      const id = warmBase + mine[i]!
      await peer.getOrSet(id, async () => {
        await sleep(LOAD_MS)
        return makeUser(id)
      })
    }
  }
  await Promise.all(Array.from({ length: Number(workers) }, warmWorker))
  await runs.ping()

  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  process.stdout.write("ready\n")
  const go = Number(((await lines.next()).value as string).split(" ")[1])
  await sleep(Math.max(0, go - Date.now()))

  counter.reset()
  let next = 0
  let wrong = 0
  let failed = 0
  const worker = async () => {
    for (;;) {
      const i = next++
      if (i >= mine.length) return
      const id = mine[i]!
      try {
        const value = await peer.getOrSet(id, load(id))
        if (value.id !== id) wrong++
      } catch {
        failed++
      }
    }
  }
  const cpu = process.cpuUsage()
  const start = performance.now()
  await Promise.all(Array.from({ length: Number(workers) }, worker))
  const elapsedMs = performance.now() - start
  const used = process.cpuUsage(cpu)
  const cpuMs = (used.user + used.system) / 1000
  const endAt = Date.now()
  const { sent } = counter.read()
  await Promise.all(incrs)
  const result: WorkerResult = { requests: mine.length, elapsedMs, endAt, sent, cpuMs, wrong, failed }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  await lines.next() // "close": after the parent has read the server's statistics
  await peer.close()
  runs.disconnect()
  process.exit(0)
}

// --- the main process -----------------------------------------------------------------------------------------

const REQUESTS = Number(process.argv[2] ?? 50_000)
const ROUNDS = Number(process.argv[3] ?? 2)
const KEYS = keySpaceFor(REQUESTS)
const trace = makeTrace(KEYS, REQUESTS)
const unique = new Set(trace).size
const ideal1 = idealMs(trace, 1, WORKERS)
const ideal2 = idealMs(trace, 2, WORKERS / 2)
console.log(
  `trace: ${REQUESTS} requests, Zipf s=${S} over ${KEYS} keys (seed ${SEED}): ${unique} unique keys ` +
    `(${((unique / REQUESTS) * 100).toFixed(1)}%); hottest key ${trace.filter((k) => k === 0).length} requests`
)
console.log(
  `loader-bound ideal: ${(ideal1 / 1000).toFixed(2)} s with ${WORKERS} workers on one queue, ` +
    `${(ideal2 / 1000).toFixed(2)} s on two queues of ${WORKERS / 2}`
)

const admin = new Redis(redisUrl)
const runPrefix = `bench:zipf:${process.pid}:`

const lineReader = (child: ChildProcess) => {
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
  return async () => {
    const line = await lines.next()
    if (line.done === true) throw new Error(`worker ${child.pid} exited early`)
    return line.value as string
  }
}

interface Run {
  readonly library: Library
  readonly processes: number
  readonly round: number
  readonly wallMs: number
  /** CPU time of the worker processes, summed. */
  readonly cpuMs: number
  readonly loaderRuns: number
  readonly sentPerRequest: number
  readonly serverPerRequest: number
  readonly serverByCommand: Record<string, number>
  readonly wrong: number
  readonly failed: number
}

const runOnce = async (library: Library, processes: number, round: number): Promise<Run> => {
  const prefix = `${runPrefix}r${round}:p${processes}:${library.replace(/[^a-z0-9]+/gi, "-")}:`
  const children = Array.from({ length: processes }, (_, part) =>
    spawn(
      process.execPath,
      [
        process.argv[1]!,
        "worker",
        library,
        prefix,
        String(part),
        String(processes),
        String(WORKERS / processes),
        String(KEYS),
        String(REQUESTS)
      ],
      { stdio: ["pipe", "pipe", "inherit"] }
    )
  )
  const readers = children.map(lineReader)
  for (const read of readers) if ((await read()) !== "ready") throw new Error("worker not ready")
  const before = commandStats(await admin.info("commandstats"))
  const go = Date.now() + 100
  for (const child of children) child.stdin!.write(`go ${go}\n`)
  const results = (await Promise.all(readers.map((read) => read()))).map((line) => JSON.parse(line) as WorkerResult)
  const after = commandStats(await admin.info("commandstats"))
  for (const child of children) child.stdin!.write("close\n")
  await Promise.all(children.map((child) => new Promise((resolve) => child.once("exit", resolve))))
  const loaderRuns = Number(await admin.get(`${prefix}loader-runs`))
  const own: Record<string, number> = { info: 1, incr: loaderRuns }
  const serverByCommand: Record<string, number> = {}
  let server = 0
  for (const [command, stats] of Object.entries(after)) {
    const calls = stats.calls - (before[command]?.calls ?? 0) - (own[command] ?? 0)
    if (calls !== 0) {
      serverByCommand[command] = calls / REQUESTS
      server += calls
    }
  }
  await deleteByPrefix(admin, prefix)
  const sum = (f: (r: WorkerResult) => number) => results.reduce((n, r) => n + f(r), 0)
  return {
    library,
    processes,
    round,
    wallMs: Math.max(...results.map((r) => r.endAt)) - go,
    cpuMs: sum((r) => r.cpuMs),
    loaderRuns,
    sentPerRequest: sum((r) => r.sent) / REQUESTS,
    serverPerRequest: server / REQUESTS,
    serverByCommand,
    wrong: sum((r) => r.wrong),
    failed: sum((r) => r.failed)
  }
}

const runs: Array<Run> = []
const started = performance.now()
for (let round = 0; round < ROUNDS; round++) {
  for (const processes of [1, 2]) {
    for (let l = 0; l < libraries.length; l++) {
      const library = libraries[(round + l) % libraries.length]!
      const run = await runOnce(library, processes, round)
      runs.push(run)
      console.log(
        `round ${round + 1}, ${processes} process${processes === 1 ? "" : "es"}, ${library}: ` +
          `${(run.wallMs / 1000).toFixed(2)} s, ${run.loaderRuns} loads`
      )
    }
  }
}
console.log(`(all runs: ${((performance.now() - started) / 1000).toFixed(0)} s)`)

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

const summaries = [1, 2].flatMap((processes) =>
  libraries.map((library) => {
    const mine = runs.filter((run) => run.library === library && run.processes === processes)
    const cacheme = runs.filter((run) => run.library === "effect-cacheme" && run.processes === processes)
    const wall = median(mine.map((run) => run.wallMs))
    return {
      library,
      processes,
      wallMs: wall,
      wallMsByRound: mine.map((run) => run.wallMs),
      cpuMs: median(mine.map((run) => run.cpuMs)),
      timeVsIdeal: wall / ideal1,
      timeVsCacheme: median(mine.map((run, i) => run.wallMs / cacheme[i]!.wallMs)),
      loaderRuns: mine.map((run) => run.loaderRuns),
      loaderRunsPerUniqueKey: median(mine.map((run) => run.loaderRuns)) / unique,
      sentPerRequest: median(mine.map((run) => run.sentPerRequest)),
      serverPerRequest: median(mine.map((run) => run.serverPerRequest)),
      wrong: mine.reduce((n, run) => n + run.wrong, 0),
      failed: mine.reduce((n, run) => n + run.failed, 0)
    }
  })
)

const n2 = (x: number) => x.toFixed(2)
H.printTable(
  `Zipf trace: ${REQUESTS} requests, ${unique} unique keys, ${LOAD_MS} ms loader, ${WORKERS} workers ` +
    `(medians of ${ROUNDS} rounds; ideal ${(ideal1 / 1000).toFixed(2)} s)`,
  [
    "library",
    "processes",
    "wall s",
    "vs ideal",
    "time vs effect-cacheme",
    "CPU s",
    "loader runs (per round)",
    "runs / unique",
    "round trips / req",
    "server cmds / req",
    "wrong / failed"
  ],
  summaries.map((s) => [
    s.library,
    s.processes === 1 ? "1 x 1000" : "2 x 500",
    n2(s.wallMs / 1000),
    `${n2(s.timeVsIdeal)}x`,
    `${n2(s.timeVsCacheme)}x`,
    n2(s.cpuMs / 1000),
    s.loaderRuns.join(" "),
    n2(s.loaderRunsPerUniqueKey),
    n2(s.sentPerRequest),
    n2(s.serverPerRequest),
    `${s.wrong} / ${s.failed}`
  ])
)

const versionOf = (name: string): string =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version
await writeJson(new URL("../results/zipf.json", import.meta.url).pathname, {
  benchmark: "zipf",
  environment: environment(redisVersionOf(await admin.info("server")), {
    bentocache: versionOf("bentocache"),
    "cache-manager": versionOf("cache-manager"),
    keyv: versionOf("keyv"),
    "@keyv/redis": versionOf("@keyv/redis"),
    ioredisForBentocache: versionOf("ioredis")
  }),
  setup: {
    requests: REQUESTS,
    zipfS: S,
    keySpace: KEYS,
    seed: SEED,
    uniqueKeys: unique,
    workers: WORKERS,
    loadMs: LOAD_MS,
    rounds: ROUNDS,
    twoProcesses: "500 workers each, trace split by index parity, started at the same instant",
    idealMs: { oneQueue1000Workers: ideal1, twoQueues500Workers: ideal2 },
    clients:
      "effect-cacheme: its own ioredis 6 client without auto-pipelining; bentocache: ioredis 5; cache-manager: node-redis",
    serverCounts:
      "INFO commandstats delta per request, the loader's INCR and the benchmark's INFO removed; other clients of the shared Redis count too"
  },
  summaries,
  runs
})

admin.disconnect()
