/**
 * Redis commands per hit and per miss of each library, counted exactly (the counts do not move with machine
 * noise).
 *
 * Per library, under a fresh prefix, after a warm-up call (connections open, scripts loaded, the node's tag
 * stamp made): N sequential cold misses (distinct keys; the loader returns a user record), then N sequential
 * hits of the same keys. For each phase:
 *
 * - client side: every command the library's clients send is counted (`round-trips.ts` wraps `sendCommand` of
 *   ioredis 6, ioredis 5 and node-redis): `sent` commands and `waits`, the round trips a sequential caller waits
 *   for (commands issued together, in one `Promise.all` or pipeline, share one wait). effect-cacheme gets its own
 *   ioredis 6 client with `enableAutoPipelining: false`, so each command is its own socket write.
 * - server side: the `INFO commandstats` delta (summed over all commands, each `redis.call` inside a script
 *   counting as one besides the EVALSHA; the benchmark's own INFO and ECHO markers taken out). Deltas rather
 *   than CONFIG RESETSTAT, so that other users of the Redis keep their statistics. Redis is shared: a MONITOR
 *   connection records the phase too, and counts the commands of this process's connections (plus the script
 *   commands that follow them). When the two disagree, another client was busy: the phase is run again (up to
 *   3 times), and if it never comes out clean the MONITOR count is reported, flagged.
 *
 * Rows: effect-cacheme on a node without groups and on a node with one group (`invalidatedBy` a row group: the
 * number of sets matters), bentocache with its Redis tier only, with one tag per entry (its counterpart of a
 * group), and with an L1 and its bus, cache-manager over @keyv/redis (no group concept). effect-cacheme's
 * background index sweep (a bounded step per second, see `src/store/sweep.ts`) is off here: these are the costs
 * of the operations themselves.
 *
 * Then the exact command sequence (MONITOR) of one miss and one hit of each.
 *
 * Run: `node_modules/.bin/node bench/peers/commands.ts [N]` from the root (N defaults to 200). Writes
 * bench/results/commands.json.
 */
import { readFileSync } from "node:fs"
import { Socket } from "node:net"
import { Redis } from "ioredis"
import { commandStats, deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "../environment.ts"
import { makeUser } from "../fixture.ts"
import * as H from "../harness.ts"
import type { Peer } from "../peer.ts"
import { countIoredis6, makeCachemeCountedPeer } from "../peer-cacheme-counted.ts"
import { type Counts, makeCounter } from "../round-trips.ts"
import { makeBentocachePeer } from "./bentocache.ts"
import { countNodeRedis, makeCacheManagerPeer } from "./cache-manager.ts"

const N = Number(process.argv[2] ?? 200)
const ATTEMPTS = 3
const WARM_ID = 9_000_000
const runPrefix = `bench:commands:${process.pid}:`

const makers: ReadonlyArray<{ readonly slug: string; readonly make: (prefix: string) => Promise<Peer> }> = [
  { slug: "cacheme", make: (prefix) => makeCachemeCountedPeer(prefix, { sweep: false }) },
  { slug: "cacheme-group", make: (prefix) => makeCachemeCountedPeer(prefix, { grouped: true, sweep: false }) },
  { slug: "bento-l2", make: (prefix) => makeBentocachePeer(prefix) },
  { slug: "bento-l2-tag", make: (prefix) => makeBentocachePeer(prefix, { tagged: true }) },
  { slug: "bento-l1l2", make: (prefix) => makeBentocachePeer(prefix, { tiered: true }) },
  { slug: "cache-manager", make: makeCacheManagerPeer }
]

// --- counting -------------------------------------------------------------------------------------------------

const counter = makeCounter()
countIoredis6(counter)
counter.install(Redis.prototype, "sendCommand")
countNodeRedis(counter)

const admin = new Redis(redisUrl)
counter.exclude(admin)
await admin.ping()

interface MonitorLine {
  readonly source: string
  readonly args: ReadonlyArray<string>
}
const monitor = await admin.monitor()
counter.exclude(monitor)
let recording: Array<MonitorLine> | undefined
let waitingFor: { readonly marker: string; readonly done: () => void } | undefined
monitor.on("monitor", (_time: string, args: Array<string>, source: string) => {
  recording?.push({ source, args })
  if (waitingFor !== undefined && args[0]?.toLowerCase() === "echo" && args[1] === waitingFor.marker) {
    waitingFor.done()
  }
})

/** Local ports of this process's connections to Redis, but the admin and MONITOR ones. */
const ownPorts = (): Set<string> => {
  const skip = new Set([admin.stream.localPort, monitor.stream.localPort])
  const handles = (process as unknown as { _getActiveHandles: () => Array<unknown> })._getActiveHandles()
  return new Set(
    handles
      .filter((h): h is Socket => h instanceof Socket && h.localPort !== undefined && !skip.has(h.localPort))
      .map((socket) => `${socket.localAddress}:${socket.localPort}`)
  )
}

/** The commands of `ports` in `lines`: their own lines, and the script commands that follow each of them. */
const attribute = (lines: ReadonlyArray<MonitorLine>, ports: Set<string>): Array<MonitorLine> => {
  const ours: Array<MonitorLine> = []
  let owner = false
  for (const line of lines) {
    if (line.source !== "lua") owner = ports.has(line.source)
    if (owner) ours.push(line)
  }
  return ours
}

let markers = 0
const echoMarker = async () => {
  const marker = `bench-marker-${process.pid}-${markers++}`
  const seen = new Promise<void>((resolve) => {
    waitingFor = { marker, done: resolve }
  })
  await admin.echo(marker)
  await seen
  waitingFor = undefined
}

interface Phase {
  /** Client side, per operation. */
  readonly sent: number
  readonly waits: number
  /** Server side, per operation: commandstats delta (or MONITOR count when never clean). */
  readonly server: number
  readonly serverByCommand: Record<string, number>
  readonly monitorPerOp: number
  readonly attempts: number
  readonly source: "commandstats" | "monitor"
}

/** Runs `ops` (N operations) with both counters and MONITOR recording; `ops(attempt)` must be repeatable. */
const measure = async (ops: (attempt: number) => Promise<void>): Promise<Phase> => {
  let last: Phase | undefined
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const before = commandStats(await admin.info("commandstats"))
    recording = []
    await echoMarker()
    counter.reset()
    await ops(attempt)
    const client: Counts = counter.read()
    await echoMarker()
    const after = commandStats(await admin.info("commandstats"))
    const lines = recording
    recording = undefined
    // The benchmark's own commands in the window: the INFO before it, and the two ECHO markers.
    const own: Record<string, number> = { info: 1, echo: 2 }
    const byCommand: Record<string, number> = {}
    let total = 0
    for (const [command, stats] of Object.entries(after)) {
      const calls = stats.calls - (before[command]?.calls ?? 0) - (own[command] ?? 0)
      if (calls !== 0) {
        byCommand[command] = calls / N
        total += calls
      }
    }
    const ours = attribute(lines, ownPorts())
    const clean = ours.length === total
    last = {
      sent: client.sent / N,
      waits: client.waits / N,
      server: (clean ? total : ours.length) / N,
      serverByCommand: clean ? byCommand : countBy(ours),
      monitorPerOp: ours.length / N,
      attempts: attempt + 1,
      source: clean ? "commandstats" : "monitor"
    }
    if (clean) return last
    console.log(`  (foreign traffic: commandstats ${total}, this process ${ours.length}; again)`)
  }
  return last!
}

const countBy = (lines: ReadonlyArray<MonitorLine>): Record<string, number> => {
  const counts: Record<string, number> = {}
  for (const line of lines) {
    const command = line.args[0]!.toLowerCase()
    counts[command] = (counts[command] ?? 0) + 1
  }
  return Object.fromEntries(Object.entries(counts).map(([command, calls]) => [command, calls / N]))
}

// --- the runs -------------------------------------------------------------------------------------------------

const shorten = (arg: string) => (arg.length > 44 ? `${arg.slice(0, 40)}...(${arg.length})` : arg)
const render = (lines: ReadonlyArray<MonitorLine>, prefix: string) =>
  lines.map(
    (line) =>
      `${line.source === "lua" ? "    lua " : "  client"} ${line.args
        .map((arg, i) => (i === 0 ? arg.toUpperCase() : shorten(arg.replaceAll(prefix, "<p>"))))
        .join(" ")}`
  )

interface Row {
  readonly name: string
  readonly prefix: string
  readonly miss: Phase
  readonly hit: Phase
  /** Loader runs per operation: 1 in the misses, 0 in the hits. */
  readonly loaderRuns: { readonly miss: number; readonly hit: number }
  readonly valuesOk: boolean
  readonly trace: { readonly miss: Array<string>; readonly hit: Array<string> }
}

const rows: Array<Row> = []
for (const { slug, make } of makers) {
  const prefix = `${runPrefix}${slug}:`
  const peer = await make(prefix)
  let loaderRuns = 0
  let valuesOk = true
  const call = async (id: number) => {
    const value = await peer.getOrSet(id, async () => {
      loaderRuns++
      return makeUser(id)
    })
    valuesOk &&= value.id === id
  }
  await call(WARM_ID)
  await call(WARM_ID)

  let base = 0
  let missLoads = 0
  const miss = await measure(async (attempt) => {
    base = attempt * N
    const start = loaderRuns
    for (let i = 0; i < N; i++) await call(base + i)
    missLoads = loaderRuns - start
  })
  let hitLoads = 0
  const hit = await measure(async () => {
    const start = loaderRuns
    for (let i = 0; i < N; i++) await call(base + i)
    hitLoads = loaderRuns - start
  })

  // One miss and one hit under MONITOR, for the exact sequence.
  const ports = ownPorts()
  const traced = async (id: number) => {
    recording = []
    await echoMarker()
    await call(id)
    await echoMarker()
    const lines = attribute(recording, ports)
    recording = undefined
    return render(lines, prefix)
  }
  const trace = { miss: await traced(WARM_ID + 1), hit: await traced(WARM_ID + 1) }

  rows.push({
    name: peer.name,
    prefix,
    miss,
    hit,
    loaderRuns: { miss: missLoads / N, hit: hitLoads / N },
    valuesOk,
    trace
  })
  console.log(`${peer.name}: done`)
  await peer.close()
}
monitor.disconnect()

// --- report ---------------------------------------------------------------------------------------------------

const n2 = (x: number) => (Number.isInteger(x) ? String(x) : x.toFixed(2))
const cell = (phase: Phase) =>
  `${n2(phase.waits)} / ${n2(phase.sent)} / ${n2(phase.server)}${phase.source === "monitor" ? "*" : ""}`
H.printTable(
  `Redis commands per operation, N=${N} sequential operations each (round trips waited / commands sent / commands run by the server)`,
  ["library", "hit", "miss", "miss + hit, server", "loads per miss / hit", "values ok"],
  rows.map((row) => [
    row.name,
    cell(row.hit),
    cell(row.miss),
    n2(row.hit.server + row.miss.server),
    `${n2(row.loaderRuns.miss)} / ${n2(row.loaderRuns.hit)}`,
    String(row.valuesOk)
  ])
)
console.log("(round trips: commands sent while none is in flight; * = MONITOR count, commandstats never clean)")

H.printTable(
  "Server commands by name, per operation",
  ["library", "hit", "miss"],
  rows.map((row) => {
    const list = (phase: Phase) =>
      Object.entries(phase.serverByCommand)
        .sort((a, b) => b[1] - a[1])
        .map(([command, calls]) => `${command} ${n2(calls)}`)
        .join(", ")
    return [row.name, list(row.hit), list(row.miss)]
  })
)

for (const row of rows) {
  console.log(`\n${row.name}: one miss (MONITOR, <p> = ${row.prefix})`)
  for (const line of row.trace.miss) console.log(line)
  console.log(`${row.name}: one hit`)
  for (const line of row.trace.hit) console.log(line)
}

const versionOf = (name: string): string =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url), "utf8")).version
await writeJson(new URL("../results/commands.json", import.meta.url).pathname, {
  benchmark: "commands",
  environment: environment(redisVersionOf(await admin.info("server")), {
    ioredisForCacheme: JSON.parse(
      readFileSync(new URL("../../node_modules/ioredis/package.json", import.meta.url), "utf8")
    ).version,
    bentocache: versionOf("bentocache"),
    "cache-manager": versionOf("cache-manager"),
    keyv: versionOf("keyv"),
    "@keyv/redis": versionOf("@keyv/redis"),
    ioredisForBentocache: versionOf("ioredis")
  }),
  setup: {
    operations: N,
    order: "N sequential misses on distinct cold keys, then N sequential hits of the same keys, per library",
    warmup: "one miss and one hit of another key before counting (connections, scripts, tag stamps)",
    clientCounts:
      "sent: sendCommand calls per operation; waits: round trips waited (a command sent while none is in flight starts one)",
    serverCounts:
      "INFO commandstats delta per operation, every command summed (script commands included), the benchmark's own INFO/ECHO removed; cross-checked against MONITOR",
    effectCachemeClient: "its own ioredis 6 client, enableAutoPipelining: false"
  },
  rows: rows.map(({ trace: _trace, ...row }) => row),
  traces: Object.fromEntries(rows.map((row) => [row.name, row.trace]))
})

for (const row of rows) await deleteByPrefix(admin, row.prefix)
admin.disconnect()
