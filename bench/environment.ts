/**
 * What a result file records about the machine it was measured on, and where results are written.
 */
import { mkdir, writeFile } from "node:fs/promises"
import { cpus, loadavg } from "node:os"
import { dirname } from "node:path"

/** The Redis every benchmark uses (`CACHEME_BENCH_REDIS_URL`, else the local one). */
export const redisUrl = process.env.CACHEME_BENCH_REDIS_URL ?? "redis://127.0.0.1:6379"

/** Reads `redis_version` from an `INFO server` reply. */
export const redisVersionOf = (info: string): string => /redis_version:([^\r\n]+)/.exec(info)?.[1] ?? "unknown"

export const environment = (redisVersion: string, extra: Record<string, unknown> = {}) => ({
  date: new Date().toISOString(),
  node: process.version,
  redis: redisVersion,
  redisUrl,
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? "unknown",
  platform: `${process.platform} ${process.arch}`,
  /** 1, 5 and 15 minute load averages when the results were written: above the CPU count, others were busy too. */
  loadAverage: loadavg().map((load) => Math.round(load * 100) / 100),
  ...extra
})

export const writeJson = async (path: string, data: unknown) => {
  await mkdir(dirname(path), { recursive: true })
  const rounded = (_key: string, value: unknown) =>
    typeof value === "number" && !Number.isInteger(value) ? Math.round(value * 1000) / 1000 : value
  await writeFile(path, `${JSON.stringify(data, rounded, 2)}\n`)
  console.log(`\nwrote ${path}`)
}

/** `INFO commandstats` as calls and microseconds per command (the server's own time, whichever client sent it). */
export const commandStats = (info: string): Record<string, { calls: number; usec: number }> => {
  const stats: Record<string, { calls: number; usec: number }> = {}
  for (const match of info.matchAll(/cmdstat_([^:]+):calls=(\d+),usec=(\d+)/g)) {
    stats[match[1]!] = { calls: Number(match[2]), usec: Number(match[3]) }
  }
  return stats
}

/** Server microseconds per call of `commands` between two `commandStats` readings. */
export const serverUsPerCall = (
  before: ReturnType<typeof commandStats>,
  after: ReturnType<typeof commandStats>,
  commands: ReadonlyArray<string>
): Record<string, number> =>
  Object.fromEntries(
    commands.map((command) => {
      const a = after[command] ?? { calls: 0, usec: 0 }
      const b = before[command] ?? { calls: 0, usec: 0 }
      const calls = a.calls - b.calls
      return [command, calls === 0 ? 0 : Math.round(((a.usec - b.usec) / calls) * 100) / 100]
    })
  )

/** The two commands {@link deleteByPrefix} needs, as ioredis 5 and 6 both type them. */
interface ScanDel {
  scan(cursor: string, match: "MATCH", pattern: string, count: "COUNT", n: number): Promise<[string, Array<string>]>
  del(...keys: Array<string>): Promise<number>
}

/** Deletes every key under `prefix` (SCAN, in batches): entries, and the tag and group sets the library keeps. */
export const deleteByPrefix = async (client: ScanDel, prefix: string) => {
  let cursor = "0"
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000)
    cursor = next
    if (keys.length > 0) await client.del(...keys)
  } while (cursor !== "0")
}
