/**
 * Which real services the tests may use. In CI (`CI` set) a missing service fails the run loudly; on a laptop
 * the tests that need it are skipped with a message saying why.
 */
import { Socket } from "node:net"
import { Redis as IORedis } from "ioredis"

export const inCI = process.env.CI !== undefined && process.env.CI !== "" && process.env.CI !== "false"

const probe = (port: number, host = "127.0.0.1", timeoutMs = 500): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = new Socket()
    const done = (ok: boolean) => {
      socket.destroy()
      resolve(ok)
    }
    socket.setTimeout(timeoutMs)
    socket.once("connect", () => done(true))
    socket.once("timeout", () => done(false))
    socket.once("error", () => done(false))
    socket.connect(port, host)
  })

export interface Service {
  readonly name: string
  readonly port: number
  readonly url: string
}

export const Redis: Service = {
  name: "Redis",
  port: 6379,
  url: process.env.CACHEME_TEST_REDIS_URL ?? "redis://127.0.0.1:6379"
}
export const Postgres: Service = { name: "PostgreSQL", port: 5432, url: "postgres://postgres@127.0.0.1:5432/test" }
export const MariaDB: Service = { name: "MariaDB", port: 3306, url: "mysql://root@127.0.0.1:3306/test" }

const cache = new Map<string, Promise<boolean>>()

/**
 * Resolves to true when the service answers. In CI a missing service throws, so the suite fails instead of
 * skipping; elsewhere it warns once and resolves to false so the caller can skip.
 */
export const available = (service: Service): Promise<boolean> => {
  let result = cache.get(service.name)
  if (result === undefined) {
    result = probe(service.port).then((ok) => {
      if (ok) return true
      const message = `${service.name} is not answering on 127.0.0.1:${service.port}`
      if (inCI) throw new Error(`${message}: CI needs it (start it, see .ci/run)`)
      console.warn(`[skip] ${message}: tests that need it are skipped`)
      return false
    })
    cache.set(service.name, result)
  }
  return result
}

/** `describe.skipIf` helper: true when the tests for `service` must be skipped (never in CI). */
export const missing = async (service: Service): Promise<boolean> => !(await available(service))

/** Deletes every key under a prefix (entries and sets) of a Redis, by SCAN. */
export const deleteRedisPrefix = async (prefix: string, url = Redis.url): Promise<number> => {
  const client = new IORedis(url, { lazyConnect: true, retryStrategy: () => null })
  client.on("error", () => {})
  let deleted = 0
  try {
    await client.connect()
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`, "COUNT", 1000)
      cursor = next
      if (keys.length > 0) deleted += await client.unlink(...keys)
    } while (cursor !== "0")
  } finally {
    client.disconnect()
  }
  return deleted
}

/**
 * The JSON a worker process printed as its last line: logs (a warning written to stdout under a loaded machine)
 * may come before it.
 */
export const lastJson = <A>(stdout: string): A => {
  const lines = stdout.trim().split("\n")
  return JSON.parse(lines[lines.length - 1] ?? "") as A
}
