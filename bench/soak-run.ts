/**
 * The soak of the Redis store's indexes (issue 8, "Memberships bounded"), shared by `bench/soak.ts` (5 minutes by
 * default) and `test/soak.test.ts` (about 20 s, seeded, in CI).
 *
 * Several OS processes (`bench/soak-worker.ts`, 2 by default) share one Redis and one prefix and run, each from
 * many fibers and a seeded PRNG of its own, a mix of:
 *
 * - Zipf (s = 1) reads of 3,000 rows through two nodes: `soak-item` (no ttl, the default, stale on) and
 *   `soak-brief` (ttl 20 s), each entry in its row's group, its team's group and its node's tag;
 * - 3% lookups of ids that do not exist, attacker style (each a new id): half through a node whose loader fails
 *   (`NotFound`), half through one whose loader returns `null` (cached: a 404 cached like a value);
 * - invalidations: a team's group (hard or soft), a row's group, an entry's key (hard or soft), now and then the
 *   whole `soak-brief` node;
 * - entries deleted behind the store's back (as an eviction would), uniformly over the 1,000 entries of a node of
 *   their own (`soak-evictable`, in its tag and one of 20 groups), 1 a second per process: the members they leave
 *   are the index sweep's to remove (the stores sweep at the library's default cadence).
 *
 * The main process samples every index at once (one Lua script: the sample is atomic) and checks that every set
 * stays within 2x the live entries that list it (`size <= 2 * max(live, 1)`: a set whose last entry just went may
 * hold a member or two of fills and removals in flight). A sample may land inside an invalidation: its reclaim
 * deletes a batch of entries, then removes their members in the next round trip, so a group caught between the
 * two shows all its members and no live entry. A set fails the soak when it is above 2x in two samples in a row
 * (seconds apart: a leak stays, a reclaim is done in milliseconds); the samples also list every set above 2x.
 * It also counts orphans: members whose entry does not hold their incarnation. Once the load stops, one pass of the
 * index sweep must leave no orphan at all, and no set above 2x.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { Context, Effect, Layer } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore } from "../src/index.ts"
import { sweeperOf } from "../src/store/Redis.ts"

export interface SoakOptions {
  readonly url: string
  readonly prefix: string
  readonly seconds: number
  readonly seed: number
  /** OS processes (default 2). */
  readonly processes?: number
  /** Fibers per process (default 32). */
  readonly concurrency?: number
  /** Millis between samples (default 2,000). */
  readonly sampleEvery?: number
  /** Entries deleted behind the store's back per second per process (default 1). */
  readonly deletesPerSecond?: number
  /** Printed as the soak goes. */
  readonly log?: (line: string) => void
}

/** What a worker did (sent to the main process as it goes, and once stopped). */
export interface WorkerStats {
  readonly reads: number
  readonly missingFailed: number
  readonly missingNull: number
  readonly invalidations: number
  readonly deletes: number
  /** Reads that failed with something else than the missing-id failure (none expected). */
  readonly errors: number
  readonly lastError?: string
}

/** One set in a sample. */
export interface SetSample {
  readonly set: string
  readonly size: number
  readonly live: number
  readonly orphans: number
}

export interface Sample {
  /** Seconds since the load started. */
  readonly at: number
  readonly entries: number
  readonly indexes: number
  readonly members: number
  readonly orphans: number
  /** The set with the largest size over live entries (at least 1). */
  readonly worst: SetSample | undefined
  /** Sets above 2x their live entries in this sample (an invalidation's reclaim may be under way). */
  readonly above: ReadonlyArray<SetSample>
  /** Sets above 2x their live entries in this sample and the one before: what the soak fails on. */
  readonly violations: ReadonlyArray<SetSample>
}

export interface SoakResult {
  readonly options: Omit<SoakOptions, "log">
  readonly samples: ReadonlyArray<Sample>
  /** After the load stopped and one pass of the index sweep. */
  readonly final: Sample
  readonly sweep: { readonly steps: number; readonly checked: number; readonly removed: number }
  readonly workers: ReadonlyArray<WorkerStats>
}

/** The bound every set must keep: 2x its live entries (a set without any may hold 2 members in flight). */
export const bound = (live: number) => 2 * Math.max(live, 1)

/**
 * An atomic sample of every index under `ARGV[1]` (the prefix, glob-escaped in `ARGV[2]`): the number of live
 * entries (value records of ours), then per index its set, size, live entries listing the set, and orphans
 * (members whose entry does not hold their fill token). A test tool: it reads keys it is not given (single Redis
 * only) and every member, which a library script never does.
 */
const sampleLua = `
local prefix = ARGV[1]
local protocol = prefix .. '~'
local indexPrefix = prefix .. '~m:'
local keys, cursor = {}, '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[2] .. '*', 'COUNT', 1000)
  cursor = page[1]
  for _, key in ipairs(page[2]) do table.insert(keys, key) end
until cursor == '0'
local live, fills, indexes, entries = {}, {}, {}, 0
for _, key in ipairs(keys) do
  if string.sub(key, 1, #indexPrefix) == indexPrefix then
    table.insert(indexes, key)
  elseif string.sub(key, 1, #protocol) ~= protocol and redis.call('TYPE', key)['ok'] == 'string' then
    local rec = redis.call('GET', key)
    local state = string.sub(rec, 2, 2)
    if string.sub(rec, 1, 1) == '2' and (state == 'V' or state == 'S') then
      local a = string.find(rec, '\\n', 45, true)
      local b = a and string.find(rec, '\\n', a + 1, true)
      if b then
        entries = entries + 1
        fills[string.sub(key, #prefix + 1)] = string.sub(rec, 45, a - 1)
        local ok, sets = pcall(cjson.decode, string.sub(rec, a + 1, b - 1))
        if ok and type(sets) == 'table' then
          for _, set in ipairs(sets) do live[set] = (live[set] or 0) + 1 end
        end
      end
    end
  end
end
local out = {entries}
for _, index in ipairs(indexes) do
  local set = string.sub(index, #indexPrefix + 1)
  local members = redis.call('ZRANGE', index, 0, -1)
  local orphans = 0
  for _, member in ipairs(members) do
    if fills[string.sub(member, 17)] ~= string.sub(member, 1, 16) then orphans = orphans + 1 end
  end
  table.insert(out, set)
  table.insert(out, #members)
  table.insert(out, live[set] or 0)
  table.insert(out, orphans)
end
return out`

const escapeGlob = (literal: string) => literal.replace(/[*?[\]\\]/g, "\\$&")

/**
 * Takes one atomic sample of the indexes under `prefix`; `previous` is the sample before (a set is a violation when
 * it is above the bound in both).
 */
export const sample = async (
  client: Redis,
  prefix: string,
  at: number,
  previous?: Sample | undefined
): Promise<Sample> => {
  const reply = (await client.eval(sampleLua, 0, prefix, escapeGlob(prefix))) as Array<string | number>
  const sets: Array<SetSample> = []
  for (let i = 1; i < reply.length; i += 4) {
    sets.push({
      set: String(reply[i]),
      size: Number(reply[i + 1]),
      live: Number(reply[i + 2]),
      orphans: Number(reply[i + 3])
    })
  }
  const ratio = (set: SetSample) => set.size / Math.max(set.live, 1)
  const above = sets.filter((set) => set.size > bound(set.live))
  return {
    at,
    entries: Number(reply[0]),
    indexes: sets.length,
    members: sets.reduce((sum, set) => sum + set.size, 0),
    orphans: sets.reduce((sum, set) => sum + set.orphans, 0),
    worst: sets.reduce<SetSample | undefined>(
      (worst, set) => (worst === undefined || ratio(set) > ratio(worst) ? set : worst),
      undefined
    ),
    above,
    violations: above.filter((set) => previous?.above.some((before) => before.set === set.set) ?? false)
  }
}

const workerFile = fileURLToPath(new URL("./soak-worker.ts", import.meta.url))

interface Worker {
  readonly child: ChildProcess
  stats: WorkerStats
  readonly exited: Promise<void>
}

const startWorker = (options: SoakOptions, index: number): Worker => {
  const child = spawn(
    process.execPath,
    [
      workerFile,
      JSON.stringify({
        url: options.url,
        prefix: options.prefix,
        seed: options.seed * 1000 + index,
        concurrency: options.concurrency ?? 32,
        deletesPerSecond: options.deletesPerSecond ?? 1
      })
    ],
    { stdio: ["ignore", "inherit", "inherit", "ipc"] }
  )
  const worker: Worker = {
    child,
    stats: { reads: 0, missingFailed: 0, missingNull: 0, invalidations: 0, deletes: 0, errors: 0 },
    exited: new Promise<void>((resolve) => child.once("exit", () => resolve()))
  }
  child.on("message", (message: WorkerStats) => {
    worker.stats = message
  })
  return worker
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

/** Runs the soak; resolves with every sample and the final state (it does not judge them: see {@link bound}). */
export const runSoak = async (options: SoakOptions): Promise<SoakResult> => {
  const log = options.log ?? (() => {})
  const client = new Redis(options.url, { maxRetriesPerRequest: null })
  client.on("error", () => {})
  const workers: Array<Worker> = []
  try {
    for (let i = 0; i < (options.processes ?? 2); i++) workers.push(startWorker(options, i))
    const started = performance.now()
    const elapsed = () => (performance.now() - started) / 1000
    const samples: Array<Sample> = []
    const every = options.sampleEvery ?? 2000
    while (elapsed() < options.seconds) {
      await sleep(Math.min(every, Math.max(0, (options.seconds - elapsed()) * 1000)))
      const taken = await sample(client, options.prefix, elapsed(), samples.at(-1))
      samples.push(taken)
      log(describe(taken, workers))
    }
    for (const worker of workers) worker.child.send("stop")
    await Promise.all(workers.map((worker) => worker.exited))

    // One pass of the index sweep over what the load left, then the final sample.
    const sweep = await Effect.runPromise(
      Effect.scoped(
        Effect.gen(function* () {
          const context = yield* Layer.build(
            CacheStore.layerRedis({ url: options.url, prefix: options.prefix, sweepInterval: null }).pipe(
              Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "10 seconds" })),
              Layer.orDie
            )
          )
          const sweeper = sweeperOf(Context.get(context, CacheStore.CacheStore))
          if (sweeper === undefined) return yield* Effect.die("the Redis store has no index sweep")
          return yield* Effect.orDie(sweeper.pass)
        })
      )
    )
    const final = await sample(client, options.prefix, elapsed())
    const settled = { ...final, violations: final.above }
    log(`after the load, one sweep pass (${JSON.stringify(sweep)}): ${describe(settled, workers)}`)
    const { log: _log, ...recorded } = options
    return { options: recorded, samples, final: settled, sweep, workers: workers.map((worker) => worker.stats) }
  } finally {
    for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill("SIGKILL")
    client.disconnect()
  }
}

const describe = (taken: Sample, workers: ReadonlyArray<Worker>) => {
  const reads = workers.reduce((sum, worker) => sum + worker.stats.reads, 0)
  const worst = taken.worst
  return (
    `${taken.at.toFixed(0)} s: ${reads} reads, ${taken.entries} live entries, ${taken.indexes} indexes, ` +
    `${taken.members} members, ${taken.orphans} orphans, worst ${worst === undefined ? "-" : `${worst.set} ${worst.size}/${worst.live}`}` +
    (taken.above.length > 0
      ? `, ${taken.above.length} sets above 2x (${taken.violations.length} also in the sample before)`
      : "")
  )
}
