/**
 * Runs one torture run: creates the items table, starts the worker processes (worker.ts, `run` mode) and waits
 * for them, runs the final pass (`verify` mode), reads the cold-key loader counts, judges the histories
 * (check.ts), and removes the table and every Redis key of the run.
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Redis as IORedis } from "ioredis"
import { createConnection } from "mysql2/promise"
import { Client } from "pg"
import { deleteRedisPrefix, MariaDB, Redis } from "../support/services.ts"
import { check, report, type Verdict } from "./check.ts"
import type { FinalReport, TierReport, WorkerLog, WriteRecord } from "./history.ts"
import { auxKeys, baseRows, createTableSql } from "./model.ts"
import type { WorkerConfig } from "./worker.ts"

const workerPath = fileURLToPath(new URL("./worker.ts", import.meta.url))

export interface Options {
  readonly label: string
  readonly dialect: WorkerConfig["dialect"]
  /** The store every process builds (default `redis`); `tiered`: each with its own in-process tier. */
  readonly store?: WorkerConfig["store"] | undefined
  readonly workers: number
  readonly fibers: number
  /** Operations per fiber. */
  readonly ops: number
  /** Cold-key phases, spread over the run. */
  readonly coldPhases: number
  readonly seed: number
  /** The share of operations that are cached reads (default 0.4, see `WorkerConfig`). */
  readonly reads?: number | undefined
  /** The share of item picks that are hot rows (default 0.3, see `WorkerConfig`). */
  readonly hot?: number | undefined
}

export interface Outcome {
  readonly verdict: Verdict
  readonly final: FinalReport
  readonly coldRuns: ReadonlyMap<number, number>
  readonly durationMs: number
  /** The workers' tiers' counters, summed (tiered store runs only). */
  readonly tier: TierReport | undefined
  /** One line: what ran and what was found. */
  readonly summary: string
  /** The seed, the counts and the histories of the first violations; empty when there are none. */
  readonly failure: string
  /** Unexpected failures in the workers (not checks). */
  readonly errors: ReadonlyArray<string>
}

/** `CACHEME_TORTURE_SEED` when set, else a fresh one (printed before the run starts). */
export const seedOf = (): number => {
  const fixed = process.env.CACHEME_TORTURE_SEED
  return fixed !== undefined && fixed !== "" ? Number(fixed) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0
}

/** `CACHEME_TORTURE_OPS` scales the operations per fiber (for longer runs by hand). */
export const opsOf = (fallback: number): number => {
  const given = Number(process.env.CACHEME_TORTURE_OPS)
  return Number.isInteger(given) && given > 0 ? given : fallback
}

interface Sql {
  readonly run: (text: string, values?: ReadonlyArray<unknown>) => Promise<void>
  readonly close: () => Promise<void>
}

const connect = async (dialect: WorkerConfig["dialect"]): Promise<Sql> => {
  if (dialect === "postgres") {
    const client = new Client({ host: "127.0.0.1", port: 5432, user: "postgres", database: "test" })
    await client.connect()
    return {
      run: async (text, values) => {
        await client.query(text, values as Array<unknown> | undefined)
      },
      close: () => client.end()
    }
  }
  const connection = await createConnection({ uri: MariaDB.url })
  return {
    run: async (text, values) => {
      await connection.query(text.replace(/\$\d+/g, "?"), values === undefined ? undefined : [...values])
    },
    close: () => connection.end()
  }
}

const spawnWorker = (config: WorkerConfig, timeoutMs: number): Promise<void> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [workerPath, JSON.stringify(config)], { stdio: ["ignore", "pipe", "pipe"] })
    let tail = ""
    const keep = (chunk: unknown) => {
      tail = (tail + String(chunk)).slice(-4000)
    }
    child.stdout.on("data", keep)
    child.stderr.on("data", keep)
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs)
    child.on("exit", (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve()
      else reject(new Error(`torture worker ${config.mode} ${config.worker} exited (${code ?? signal}): ${tail}`))
    })
  })

/** The tiers' counters summed over the workers (`undefined` when no worker ran on the tiered store). */
const tierTotals = (logs: ReadonlyArray<WorkerLog>): TierReport | undefined => {
  const reports = logs.flatMap((log) => (log.tier === undefined ? [] : [log.tier]))
  if (reports.length === 0) return undefined
  const sum = (field: Exclude<keyof TierReport, "byNode">) =>
    reports.reduce((total, report) => total + report[field], 0)
  const byNode: Record<string, number> = {}
  for (const report of reports) {
    for (const [node, count] of Object.entries(report.byNode)) {
      // Node names carry the run id: `tt-<run>-item` is counted as `item`.
      const name = node.slice(node.lastIndexOf("-") + 1)
      byNode[name] = (byNode[name] ?? 0) + count
    }
  }
  return {
    localHits: sum("localHits"),
    kept: sum("kept"),
    discarded: sum("discarded"),
    invalidated: sum("invalidated"),
    flushes: sum("flushes"),
    heartbeats: sum("heartbeats"),
    sessions: sum("sessions"),
    byNode
  }
}

/** What the tiers did, for the summary (empty without tiers). */
const tierLine = (tier: TierReport | undefined): string => {
  if (tier === undefined) return ""
  const byNode = Object.entries(tier.byNode)
    .map(([node, count]) => `${node} ${count}`)
    .join(", ")
  return (
    `in-process tiers: ${tier.localHits} lookups answered locally (${byNode}), ${tier.kept} reads kept, ` +
    `${tier.discarded} discarded, ${tier.invalidated} copies dropped, ${tier.flushes} flushes, ${tier.sessions} sessions; `
  )
}

export const runTorture = async (options: Options): Promise<Outcome> => {
  const started = Date.now()
  const { dialect, seed } = options
  const store = options.store ?? "redis"
  const run = `${dialect.slice(0, 2)}${store === "tiered" ? "ti" : ""}${process.pid}${seed.toString(36)}`
  const table = `torture_${dialect}${store === "tiered" ? "_tiered" : ""}_${process.pid}`
  const prefix = `test:${process.pid}:torture:${run}:`
  const aux = `test:${process.pid}:torture-aux:${run}:`
  const dir = mkdtempSync(join(tmpdir(), "cacheme-torture-"))
  const db = await connect(dialect)
  const redis = new IORedis(Redis.url)
  redis.on("error", () => {})
  try {
    await db.run(`drop table if exists ${table}`)
    await db.run(createTableSql(table))
    const rows = baseRows()
    for (const row of rows) {
      await db.run(`insert into ${table} (id, grp, title, version) values ($1, $2, $3, $4)`, [
        row.id,
        row.grp,
        row.title,
        row.version
      ])
    }
    const initial: WriteRecord = {
      kind: "write",
      worker: -1,
      fiber: 0,
      seq: 0,
      start: 0,
      end: 0,
      op: "initial",
      outcome: "committed",
      states: rows.map((row) => ({ ...row, deleted: false, prevGrp: null })),
      counters: [],
      detail: "the rows the table starts with"
    }
    const coldAt = Array.from({ length: options.coldPhases }, (_, i) =>
      Math.floor(((i + 0.5) * options.ops) / options.coldPhases)
    )
    const common = {
      dialect,
      store,
      redisUrl: Redis.url,
      prefix,
      aux,
      run,
      table,
      workers: options.workers,
      fibers: options.fibers,
      ops: options.ops,
      seed,
      coldAt,
      coldCallers: 12,
      coldLoadMillis: 300,
      reads: options.reads,
      hot: options.hot
    } as const
    await Promise.all(
      Array.from({ length: options.workers }, (_, worker) =>
        spawnWorker({ ...common, mode: "run", worker, out: join(dir, `worker-${worker}.json`) }, 150_000)
      )
    )
    const logs = Array.from(
      { length: options.workers },
      (_, worker) => JSON.parse(readFileSync(join(dir, `worker-${worker}.json`), "utf8")) as WorkerLog
    )
    await spawnWorker({ ...common, mode: "verify", worker: options.workers, out: join(dir, "final.json") }, 60_000)
    const final = JSON.parse(readFileSync(join(dir, "final.json"), "utf8")) as FinalReport
    const keys = auxKeys(aux)
    const coldRuns = new Map<number, number>()
    for (let phase = 0; phase < options.coldPhases; phase++) {
      coldRuns.set(phase, Number((await redis.get(keys.coldRuns(phase))) ?? 0))
    }
    const verdict = check({ logs, initial, final, coldRuns })
    const tier = tierTotals(logs)
    const durationMs = Date.now() - started
    const { counts, totals } = verdict
    const summary =
      `[torture ${options.label}] seed ${seed}, ${options.workers} processes x ${options.fibers} fibers x ${options.ops} ops, ${(durationMs / 1000).toFixed(1)} s: ` +
      `${totals.reads} reads (${totals.served} served from the store, ${totals.readbacks} read-your-writes), ${totals.writes} writes (${totals.committed} committed, ${totals.rolledback} rolled back, ${totals.failed} refused by the database), ` +
      `${totals.invalidations} invalidations, ${totals.probes} membership probes, ${totals.coldPhases} cold phases (loader runs ${[...coldRuns.values()].join("/")}); ` +
      `final pass: ${final.cached} of ${final.checked} entries cached, ${final.mismatches.length} mismatches, ${final.unknownKeys.length} unknown keys; ` +
      tierLine(tier) +
      `violations: ${Object.entries(counts)
        .map(([name, count]) => `${name} ${count}`)
        .join(", ")}`
    const failure =
      verdict.violations.length === 0 ? "" : report({ label: options.label, seed, verdict, logs, initial })
    return {
      verdict,
      final,
      coldRuns,
      durationMs,
      tier,
      summary,
      failure,
      errors: logs.flatMap((log) => log.errors)
    }
  } finally {
    await db.run(`drop table if exists ${table}`).catch(() => undefined)
    await db.close().catch(() => undefined)
    redis.disconnect()
    await deleteRedisPrefix(prefix).catch(() => 0)
    await deleteRedisPrefix(aux).catch(() => 0)
    rmSync(dir, { recursive: true, force: true })
  }
}
