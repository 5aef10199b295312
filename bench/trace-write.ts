/**
 * Where the time of one captured write goes, on the real PostgreSQL and Redis: every Redis command and every
 * PostgreSQL query of a single-row update is timestamped (sent, answered) relative to the call, and the median of
 * each mark over a few hundred updates is printed, for bare Kysely and for `Database.layer` in sync mode.
 *
 * Rows: bare Kysely, `captureWrites` alone, `Database.layer` in sync mode on Redis and on the memory store, and
 * with `BESIDE=1` a bare update with the store's hold script sent to Redis beside it (and its release after): how
 * much Redis work alone slows the database on this machine. `ROUNDS` (default 2) repeats the whole set.
 *
 * Run: `node bench/trace-write.ts` (PostgreSQL on 127.0.0.1:5432, Redis on 6379).
 */
import { Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { Kysely, PostgresDialect } from "kysely"
import pg from "pg"
import { CachemeConfig, CacheStore } from "../src/index.ts"
import { captureWrites, Database } from "../src/kysely/index.ts"
import { redisUrl } from "./environment.ts"
import { createRows, pgUrl, rowNodes, updateRow } from "./write-fixture.ts"

const table = `trace_write_${process.pid}`
const prefix = `bench:trace:${process.pid}:`
const pool = () => new pg.Pool({ connectionString: pgUrl, max: 2 })

const marks: Array<[string, number]> = []
const counts: Record<string, number> = {}
const mark = (what: string) => marks.push([what, performance.now()])
const numbered = (name: string) => {
  counts[name] = (counts[name] ?? 0) + 1
  return `${name}#${counts[name]}`
}

const pgQuery = pg.Client.prototype.query
pg.Client.prototype.query = function (this: pg.Client, ...args: Array<unknown>) {
  const name = numbered("pg")
  mark(`pg> ${name}`)
  const result = (pgQuery as (...args: Array<unknown>) => unknown).apply(this, args)
  if (result instanceof Promise)
    result.then(
      () => mark(`pg< ${name}`),
      () => {}
    )
  return result
} as typeof pg.Client.prototype.query

const redis = new Redis(redisUrl, { autoResendUnfulfilledCommands: false })
const sendCommand = redis.sendCommand.bind(redis)
redis.sendCommand = ((command: { name: string; promise: Promise<unknown> }, stream?: unknown) => {
  const name = numbered(command.name)
  mark(`redis> ${name}`)
  command.promise.then(
    () => mark(`redis< ${name}`),
    () => {}
  )
  return (sendCommand as (command: unknown, stream?: unknown) => unknown)(command, stream)
}) as typeof redis.sendCommand

const setup = new Kysely<any>({ dialect: new PostgresDialect({ pool: pool() }) })
await createRows(setup, table, 100)
rowNodes(table)

const runtime = ManagedRuntime.make(
  Database.layer({ dialect: new PostgresDialect({ pool: pool() }) }).pipe(
    Layer.provideMerge(CacheStore.layerRedis({ client: redis, prefix })),
    Layer.provideMerge(CachemeConfig.layer({ prefix })),
    Layer.orDie
  )
)
const wrapped = (await runtime.runPromise(Database.Database)).db
const memoryRuntime = ManagedRuntime.make(
  Database.layer({ dialect: new PostgresDialect({ pool: pool() }) }).pipe(
    Layer.provideMerge(CacheStore.layerMemory()),
    Layer.provideMerge(CachemeConfig.layer({ prefix })),
    Layer.orDie
  )
)
const wrappedMemory = (await memoryRuntime.runPromise(Database.Database)).db
const bare = new Kysely<any>({ dialect: new PostgresDialect({ pool: pool() }) })
const captureOnly = new Kysely<any>({
  dialect: captureWrites(new PostgresDialect({ pool: pool() }), {
    watched: () => new Map([[table, ["id"]]]),
    publish: async () => {}
  })
})

const median = (xs: Array<number>) => xs.sort((a, b) => a - b)[xs.length >> 1]!

const trace = async (label: string, db: Kysely<any>, beside?: (i: number) => Promise<unknown>) => {
  const update = (i: number) => updateRow(db, table, (i % 100) + 1)
  const write = beside === undefined ? update : (i: number) => Promise.all([update(i), beside(i)])
  for (let i = 0; i < 300; i++) await write(i)
  const samples = new Map<string, Array<number>>()
  const cpuBefore = process.cpuUsage()
  for (let i = 0; i < 300; i++) {
    marks.length = 0
    for (const name of Object.keys(counts)) delete counts[name]
    const start = performance.now()
    await write(i)
    mark("resolved")
    for (const [what, at] of marks) {
      const list = samples.get(what)
      if (list === undefined) samples.set(what, [at - start])
      else list.push(at - start)
    }
  }
  const cpu = process.cpuUsage(cpuBefore)
  console.log(
    `--- ${label} (Node CPU per update: user ${(cpu.user / 300).toFixed(0)} us, system ${(cpu.system / 300).toFixed(0)} us)`
  )
  for (const [what, xs] of [...samples].sort((a, b) => median(a[1]) - median(b[1]))) {
    if (xs.length < 150) continue
    console.log(`${what.padEnd(18)} ${(median(xs) * 1000).toFixed(0).padStart(6)} us`)
  }
}

for (let round = 0; round < Number(process.env.ROUNDS ?? 2); round++) {
  if (process.env.ONLY !== "wrapped") await trace("bare", bare)
  if (process.env.ONLY !== "wrapped") await trace("capture only", captureOnly)
  if (process.env.BESIDE === "1") {
    const client = redis as unknown as Record<string, (...args: Array<unknown>) => Promise<unknown>>
    await trace("bare, a hold script beside", bare, (i) =>
      Promise.all([
        client.call!("SET", `${prefix}~g:beside:${i % 100}`, `!30000:\u0000hold:${i}`, "PX", 30000, "GET"),
        // The family's epoch bump, pipelined after the hold (a group with value groups: one more command).
        client.call!("SET", `${prefix}~e:beside`, String(i), "XX")
      ]).then(() => {
        setImmediate(
          () =>
            void client.cachemeReleaseHold!(
              2,
              `${prefix}~g:beside:${i % 100}`,
              `${prefix}~e:beside`,
              `\u0000hold:${i}`,
              String(i)
            )
        )
      })
    )
  }
  await trace("wrapped sync", wrapped)
  if (process.env.ONLY !== "wrapped") await trace("wrapped sync, memory store", wrappedMemory)
}
await runtime.dispose()
await memoryRuntime.dispose()
await setup.schema.dropTable(table).execute()
await Promise.all([setup.destroy(), bare.destroy(), captureOnly.destroy()])
redis.disconnect()
