/**
 * effect-cacheme against its peers on one Redis, three scenarios:
 *
 * 1. Hit, sequential and with 100 concurrent callers: read-through calls whose value is cached (one key per
 *    caller, so no library can merge concurrent reads of one key). Libraries run interleaved, round by round;
 *    `time vs effect-cacheme` is the median over rounds of (effect-cacheme ops/s) / (library ops/s) paired within
 *    a round, so below 1.00x the peer is faster. A bare ioredis GET + JSON.parse is the floor no library beats.
 * 2. Stampede in one process: 100 concurrent calls on a cold key whose loader takes 50 ms; counts loader runs.
 * 3. Stampede across two processes (50 calls each, started at the same instant): what in-process locks cannot
 *    see; counts loader runs in Redis.
 *
 * Every library uses its Redis tier only: effect-cacheme cannot put its in-process store in front of Redis, so
 * bentocache's L1 memory tier is left out to keep the comparison one Redis round trip per hit.
 *
 * Run: `npm --prefix bench/peers install` once, then `node_modules/.bin/node bench/peers/hit.ts` from the root.
 * Writes bench/results/peers.json.
 */
import { execFile } from "node:child_process"
import { readFileSync } from "node:fs"
import { promisify } from "node:util"
import { Redis } from "ioredis"
import { deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "../environment.ts"
import { KEYS, makeUser, type User } from "../fixture.ts"
import * as H from "../harness.ts"
import type { Peer } from "../peer.ts"
import { makeCachemePeer } from "../peer-cacheme.ts"
import { makeBentocachePeer } from "./bentocache.ts"
import { makeCacheManagerPeer } from "./cache-manager.ts"

const ROUNDS = 10
const WARMUP_MS = 2000
const SEQUENTIAL_OPS = 2000
const CALLERS = 100
const PER_CALLER = 30
const STAMPEDE_CALLS = 100
const STAMPEDE_TRIALS = 5
const PROCESS_TRIALS = 3
const LOAD_MS = 50

const makers = {
  "effect-cacheme": makeCachemePeer,
  bentocache: makeBentocachePeer,
  "cache-manager": makeCacheManagerPeer
} as const
type Library = keyof typeof makers
const libraries = Object.keys(makers) as Array<Library>

const runPrefix = `bench:peers:${process.pid}:`
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

// --- a stampede worker process (scenario 3): `hit.ts worker <library> <prefix> <id> <calls> <startAt>` ---------

if (process.argv[2] === "worker") {
  const [library, prefix, id, calls, startAt] = process.argv.slice(3) as [Library, string, string, string, string]
  const counter = new Redis(redisUrl)
  const peer = await makers[library](prefix)
  const load = async () => {
    await counter.incr(`${prefix}loader-runs`)
    await sleep(LOAD_MS)
    return makeUser(Number(id))
  }
  await sleep(Math.max(0, Number(startAt) - Date.now()))
  const values = await Promise.all(Array.from({ length: Number(calls) }, () => peer.getOrSet(Number(id), load)))
  process.stdout.write(JSON.stringify({ ok: values.every((value) => value.id === Number(id)) }))
  await peer.close()
  counter.disconnect()
  process.exit(0)
}

// --- the main process -----------------------------------------------------------------------------------------

const client = new Redis(redisUrl)
const peers: Array<Peer> = []
for (const library of libraries) peers.push(await makers[library](`${runPrefix}${library}:`))
const users = Array.from({ length: KEYS }, (_, id) => makeUser(id))
const loadUser = (id: number) => () => Promise.resolve(users[id]!)

// Scenario 1: hits. Seed every key through each library's own call, then read them back.
for (const peer of peers) await Promise.all(users.map((user) => peer.getOrSet(user.id, loadUser(user.id))))
const floorKeys = users.map((user) => `${runPrefix}floor:${user.id}`)
await Promise.all(users.map((user, i) => client.set(floorKeys[i]!, JSON.stringify(user))))
const floor = (i: number) => client.get(floorKeys[i]!).then((raw) => JSON.parse(raw!) as User)
const FLOOR = "ioredis GET+parse (floor)"

const hitVariants = (mode: "sequential" | "concurrent100"): ReadonlyArray<H.Variant> =>
  [
    ...peers.map((peer) => ({ name: peer.name, op: (i: number) => peer.getOrSet(i, loadUser(i)) })),
    { name: FLOOR, op: floor }
  ].map(({ name, op }) => ({
    name,
    run:
      mode === "sequential"
        ? () => H.sequential((i) => op(i % KEYS), SEQUENTIAL_OPS)
        : () => H.concurrent(op, CALLERS, PER_CALLER)
  }))

const hits: Record<string, Record<string, H.Summary & { timeVsCacheme: number }>> = {}
for (const mode of ["sequential", "concurrent100"] as const) {
  const comparison = await H.compare(hitVariants(mode), { rounds: ROUNDS, warmupMs: WARMUP_MS })
  const cacheme = peers[0]!.name
  hits[mode] = Object.fromEntries(
    [...comparison.summaries].map(([name, s]) => [
      name,
      { ...s, timeVsCacheme: H.pairedRatio(comparison, name, cacheme).median }
    ])
  )
  H.printTable(
    `Hit, ${mode === "sequential" ? "sequential" : `${CALLERS} concurrent callers`} (${ROUNDS} rounds)`,
    ["library", "ops/s", "time vs effect-cacheme", "CPU us/op", "mean us", "p50 us", "p99 us"],
    Object.entries(hits[mode]).map(([name, s]) => [
      name,
      H.fmt.ops(s.opsPerSec),
      H.fmt.ratio(s.timeVsCacheme),
      H.fmt.us(s.cpuUsPerOp),
      H.fmt.us(s.meanUs),
      H.fmt.us(s.p50Us),
      H.fmt.us(s.p99Us)
    ])
  )
}

// Scenario 2: stampede in one process.
const median = (values: ReadonlyArray<number>) => [...values].sort((a, b) => a - b)[values.length >> 1]!
const stampede: Record<string, { loaderRuns: Array<number>; allDoneMs: number; correct: boolean }> = {}
for (const peer of peers) {
  const runs: Array<number> = []
  const times: Array<number> = []
  let correct = true
  for (let trial = 0; trial < STAMPEDE_TRIALS; trial++) {
    const id = 1_000_000 + trial
    let count = 0
    const load = async () => {
      count++
      await sleep(LOAD_MS)
      return makeUser(id)
    }
    const start = performance.now()
    const values = await Promise.all(Array.from({ length: STAMPEDE_CALLS }, () => peer.getOrSet(id, load)))
    times.push(performance.now() - start)
    runs.push(count)
    correct &&= values.every((value) => value.id === id)
  }
  stampede[peer.name] = { loaderRuns: runs, allDoneMs: median(times), correct }
}

// Scenario 3: stampede across two processes.
const run = promisify(execFile)
const crossProcess: Record<string, { loaderRuns: Array<number>; correct: boolean }> = {}
for (const library of libraries) {
  const runs: Array<number> = []
  let correct = true
  for (let trial = 0; trial < PROCESS_TRIALS; trial++) {
    const prefix = `${runPrefix}x${trial}:${library}:`
    const startAt = String(Date.now() + 2500)
    const args = [process.argv[1]!, "worker", library, prefix, String(2_000_000 + trial), "50", startAt]
    const outputs = await Promise.all([run(process.execPath, args), run(process.execPath, args)])
    correct &&= outputs.every((output) => JSON.parse(output.stdout).ok === true)
    runs.push(Number(await client.get(`${prefix}loader-runs`)))
  }
  crossProcess[peers[libraries.indexOf(library)]!.name] = { loaderRuns: runs, correct }
}

H.printTable(
  `Stampede: ${STAMPEDE_CALLS} concurrent calls on a cold key, ${LOAD_MS} ms loader`,
  ["library", "loader runs, 1 process", "all done (median ms)", "loader runs, 2 processes x 50", "values ok"],
  peers.map((peer) => [
    peer.name,
    stampede[peer.name]!.loaderRuns.join(" "),
    stampede[peer.name]!.allDoneMs.toFixed(1),
    crossProcess[peer.name]!.loaderRuns.join(" "),
    String(stampede[peer.name]!.correct && crossProcess[peer.name]!.correct)
  ])
)

const versionOf = (name: string): string =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version
await writeJson(new URL("../results/peers.json", import.meta.url).pathname, {
  benchmark: "peers",
  environment: environment(redisVersionOf(await client.info("server")), {
    bentocache: versionOf("bentocache"),
    "cache-manager": versionOf("cache-manager"),
    keyv: versionOf("keyv"),
    "@keyv/redis": versionOf("@keyv/redis"),
    ioredisForBentocache: versionOf("ioredis")
  }),
  setup: {
    rounds: ROUNDS,
    warmupMsPerVariant: WARMUP_MS,
    sequentialOpsPerRound: SEQUENTIAL_OPS,
    callers: CALLERS,
    opsPerCallerPerRound: PER_CALLER,
    keys: KEYS,
    tiers: "Redis only for every library (effect-cacheme has no memory tier in front of Redis)",
    stampede: { calls: STAMPEDE_CALLS, loadMs: LOAD_MS, trials: STAMPEDE_TRIALS, processTrials: PROCESS_TRIALS }
  },
  hits,
  stampede,
  crossProcessStampede: crossProcess
})

for (const peer of peers) await peer.close()
await deleteByPrefix(client, runPrefix)
client.disconnect()
