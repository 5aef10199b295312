/**
 * A private `redis-server` for fault tests: started on a port of its own (6395-6399, one per test file, never the
 * shared 6379), with persistence off and `DEBUG` allowed from localhost, plus any extra arguments (`--maxmemory`,
 * ...). It is killed (SIGKILL) by the finalizer of the scope that started it. The admin client pauses clients
 * (`CLIENT PAUSE`), stalls the server (`DEBUG SLEEP`), changes settings (`CONFIG SET`) and reads `INFO`.
 *
 * In CI (`CI` set) a missing `redis-server` binary fails the run; elsewhere the tests that need it are skipped.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { Effect, Layer, type Scope } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { inCI } from "./services.ts"

const binaryAnswers = (): boolean => {
  const result = spawnSync("redis-server", ["--version"], { stdio: "ignore" })
  return result.error === undefined && result.status === 0
}

/** `describe.skipIf` helper: true when `redis-server` is not on PATH (outside CI; in CI that throws). */
export const redisServerMissing = (): boolean => {
  if (binaryAnswers()) return false
  const message = "redis-server is not on PATH"
  if (inCI) throw new Error(`${message}: CI needs it for the private-Redis fault tests`)
  console.warn(`[skip] ${message}: the private-Redis fault tests are skipped`)
  return true
}

export interface PrivateRedis {
  readonly port: number
  readonly url: string
  /** A client of our own, for CLIENT PAUSE, DEBUG SLEEP, CONFIG SET, INFO, SCAN and planting raw keys. */
  readonly admin: IORedis
  /** One `INFO` section as numbers and strings by field. */
  readonly info: (section: string) => Effect.Effect<Record<string, string>>
  /** One numeric field of an `INFO` section. */
  readonly infoNumber: (section: string, field: string) => Effect.Effect<number>
}

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const parseInfo = (text: string): Record<string, string> => {
  const fields: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(":")
    if (line.startsWith("#") || colon === -1) continue
    fields[line.slice(0, colon)] = line.slice(colon + 1)
  }
  return fields
}

/** Waits until the server we spawned answers (its `process_id` is our child's, not a leftover's on the port). */
const waitUntilAnswering = async (server: ChildProcess, port: number, exited: () => string | undefined) => {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const why = exited()
    if (why !== undefined) throw new Error(`redis-server on port ${port} exited before answering: ${why}`)
    const client = new IORedis({ port, host: "127.0.0.1", lazyConnect: true, retryStrategy: () => null })
    client.on("error", () => {})
    try {
      await client.connect()
      const info = parseInfo(await client.info("server"))
      if (info.process_id !== String(server.pid)) {
        throw new Error(`port ${port} is taken by another redis-server (pid ${info.process_id})`)
      }
      return
    } catch (error) {
      if (error instanceof Error && error.message.includes("taken by another")) throw error
    } finally {
      client.disconnect()
    }
    await sleep(25)
  }
  throw new Error(`redis-server on port ${port} did not answer within 30 s`)
}

const kill = (server: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) return resolve()
    server.once("exit", () => resolve())
    server.kill("SIGKILL")
  })

/**
 * Starts a private `redis-server` on `port` with `extraArgs`, waits until it answers, and kills it when the
 * scope closes.
 */
export const startRedis = (
  port: number,
  extraArgs: ReadonlyArray<string> = []
): Effect.Effect<PrivateRedis, never, Scope.Scope> =>
  Effect.gen(function* () {
    yield* Effect.acquireRelease(
      Effect.promise(async () => {
        const args = [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--save",
          "",
          "--appendonly",
          "no",
          "--enable-debug-command",
          "local",
          ...extraArgs
        ]
        const child = spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] })
        // The server logs to stdout; the last few KB say why it exited, when it does.
        let output = ""
        const keep = (chunk: unknown) => {
          output = (output + String(chunk)).slice(-4000)
        }
        child.stdout?.on("data", keep)
        child.stderr?.on("data", keep)
        let exit: string | undefined
        child.once("exit", (code, signal) => {
          exit = `code ${code} signal ${signal}: ${output.trim()}`
        })
        child.once("error", (error) => {
          exit = String(error)
        })
        try {
          await waitUntilAnswering(child, port, () => exit)
        } catch (error) {
          await kill(child)
          throw error
        }
        return child
      }),
      (child) => Effect.promise(() => kill(child))
    )
    const admin = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const client = new IORedis({ port, host: "127.0.0.1", maxRetriesPerRequest: null })
        client.on("error", () => {})
        return client
      }),
      (client) => Effect.sync(() => client.disconnect())
    )
    const info = (section: string) => Effect.promise(() => admin.info(section)).pipe(Effect.map(parseInfo))
    return {
      port,
      url: `redis://127.0.0.1:${port}`,
      admin,
      info,
      infoNumber: (section: string, field: string) =>
        Effect.map(info(section), (fields) => {
          const value = Number(fields[field])
          if (!Number.isFinite(value)) throw new Error(`INFO ${section} has no number ${field}`)
          return value
        })
    }
  })

/** A Redis store on `url` under `prefix`, with `settings`. */
export const storeLayer = (
  url: string,
  prefix: string,
  settings?: CachemeConfig.Input
): Layer.Layer<CacheStore.CacheStore> =>
  CacheStore.layerRedis({ url, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)

/** Escapes a literal for a Redis glob. */
export const escapeGlob = (literal: string): string => literal.replace(/[*?[\]\\]/g, "\\$&")

/** Every key whose name starts with `prefix` (SCAN), optionally followed by the glob `pattern`. */
export const scanKeys = (client: IORedis, prefix: string, pattern = "*"): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const keys = new Set<string>()
    let cursor = "0"
    do {
      const [next, page] = await client.scan(cursor, "MATCH", escapeGlob(prefix) + pattern, "COUNT", 1000)
      cursor = next
      for (const key of page) keys.add(key)
    } while (cursor !== "0")
    return [...keys]
  })

/**
 * The size of a key whatever its type: ZCARD, SCARD, HLEN, LLEN (or XLEN) for collections, 1 for a string, 0
 * for a key that is gone.
 */
export const keySize = async (client: IORedis, key: string): Promise<number> => {
  const type = await client.type(key)
  switch (type) {
    case "none":
      return 0
    case "string":
      return 1
    case "zset":
      return client.zcard(key)
    case "set":
      return client.scard(key)
    case "hash":
      return client.hlen(key)
    case "list":
      return client.llen(key)
    case "stream":
      return client.xlen(key)
    default:
      return 1
  }
}

/** How many keys live under `prefix`, and the total of their sizes (see {@link keySize}). */
export const measurePrefix = (
  client: IORedis,
  prefix: string
): Effect.Effect<{ readonly keys: number; readonly sizes: number; readonly types: Record<string, number> }> =>
  Effect.flatMap(scanKeys(client, prefix), (keys) =>
    Effect.promise(async () => {
      let sizes = 0
      let present = 0
      const types: Record<string, number> = {}
      for (let i = 0; i < keys.length; i += 200) {
        const slice = keys.slice(i, i + 200)
        const [kinds, counts] = await Promise.all([
          Promise.all(slice.map((key) => client.type(key))),
          Promise.all(slice.map((key) => keySize(client, key)))
        ])
        kinds.forEach((kind, j) => {
          if (kind === "none") return
          present++
          types[kind] = (types[kind] ?? 0) + 1
          sizes += counts[j]!
        })
      }
      return { keys: present, sizes, types }
    })
  )
