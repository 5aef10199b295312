/**
 * The JavaScript cost of a captured write, without a database or Redis: Kysely runs over a fake PostgreSQL
 * driver whose connection answers at once, so what is measured is Kysely's own work, write capture and the
 * invalidation pipeline (memory store), per single-row update. It barely moves with other load on the machine,
 * which makes it the figure to compare before and after a change to src/kysely/.
 *
 * `STORE=redis` uses the Redis store over a client whose scripts answer at once (no socket), for the store's own
 * JavaScript.
 *
 * Run: `node bench/profile-write.ts [seconds]`, or with a profile:
 * `node --cpu-prof --cpu-prof-dir=/tmp/cacheme-prof bench/profile-write.ts 6`.
 */
import { Layer, ManagedRuntime } from "effect"
import type { Redis } from "ioredis"
import {
  type CompiledQuery,
  type DatabaseConnection,
  type Dialect,
  type Driver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryResult
} from "kysely"
import { CachemeConfig, CacheStore } from "../src/index.ts"
import { captureWrites, Database } from "../src/kysely/index.ts"
import { rowNodes, updateRow } from "./write-fixture.ts"

const seconds = Number(process.argv[2] ?? 3)
const table = "profile_write"

/** Answers every statement at once; an UPDATE ... RETURNING gets one row per injected column. */
const connection: DatabaseConnection = {
  executeQuery: <R>(query: CompiledQuery): Promise<QueryResult<R>> => {
    if (query.sql.startsWith("select current_setting") || query.sql.includes("server_version_num"))
      return Promise.resolve({ rows: [{ server_version_num: "150000", version: "150000" }] as R[] })
    const returning = query.sql.includes("returning")
    const id = query.parameters[1]
    return Promise.resolve({
      rows: (returning ? [{ __cacheme_capture_0: id }] : []) as R[],
      numAffectedRows: 1n
    })
  },
  // biome-ignore lint/correctness/useYield: never streamed here
  streamQuery: async function* () {
    throw new Error("not streamed")
  }
}
const driver: Driver = {
  init: async () => {},
  acquireConnection: async () => connection,
  beginTransaction: async () => {},
  commitTransaction: async () => {},
  rollbackTransaction: async () => {},
  releaseConnection: async () => {},
  destroy: async () => {}
}
const fakeDialect: Dialect = {
  createAdapter: () => new PostgresAdapter(),
  createDriver: () => driver,
  createIntrospector: (db) => new PostgresIntrospector(db),
  createQueryCompiler: () => new PostgresQueryCompiler()
}

rowNodes(table)

const bare = new Kysely<any>({ dialect: fakeDialect })
const captureOnly = new Kysely<any>({
  dialect: captureWrites(fakeDialect, { watched: () => new Map([[table, ["id"]]]), publish: async () => {} })
})
/** A Redis client whose scripts answer at once: the Redis store's own JavaScript without a socket. */
const fakeRedis = {
  defineCommand: () => {},
  call: () => Promise.resolve(null),
  cachemeReleaseHold: () => Promise.resolve(1),
  cachemePop: () => Promise.resolve([])
} as unknown as Redis
const store =
  process.env.STORE === "redis"
    ? CacheStore.layerRedis({ client: fakeRedis, prefix: "profile:", sweepInterval: null })
    : CacheStore.layerMemory()
const runtime = ManagedRuntime.make(
  Database.layer({ dialect: fakeDialect }).pipe(
    Layer.provideMerge(store),
    Layer.provideMerge(CachemeConfig.layer({})),
    Layer.orDie
  )
)
const wrapped = (await runtime.runPromise(Database.Database)).db
const asyncRuntime = ManagedRuntime.make(
  Database.layer({ dialect: fakeDialect, mode: "async" }).pipe(
    Layer.provideMerge(CacheStore.layerMemory()),
    Layer.provideMerge(CachemeConfig.layer({})),
    Layer.orDie
  )
)
const wrappedAsync = (await asyncRuntime.runPromise(Database.Database)).db

const update = (db: Kysely<any>, id: number) => updateRow(db, table, id)

const measure = async (label: string, db: Kysely<any>) => {
  const until = performance.now() + seconds * 1000
  let ops = 0
  while (performance.now() < until) {
    for (let i = 0; i < 200; i++) await update(db, (ops++ % 1000) + 1)
    // Lets what waits for the next turn of the event loop run (the Redis store's hold releases).
    await new Promise((resolve) => setImmediate(resolve))
  }
  const us = (seconds * 1e6) / ops
  console.log(`${label.padEnd(14)} ${us.toFixed(2).padStart(7)} us per update`)
  return us
}

const onlyArg = process.argv[3]
const variants: Array<[string, Kysely<any>]> = [
  ["bare", bare],
  ["capture only", captureOnly],
  ["wrapped sync", wrapped],
  ["wrapped async", wrappedAsync]
]
for (const [label, db] of variants) if (onlyArg === undefined || onlyArg === label) await measure(label, db)
await runtime.dispose()
await asyncRuntime.dispose()
