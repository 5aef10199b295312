/**
 * The dialects every Kysely test runs against: PGlite and SQLite in process, PostgreSQL and MariaDB on the shared
 * servers (see `test/support/services.ts`). A test file loops over {@link DIALECTS}:
 *
 * ```ts
 * for (const d of DIALECTS) {
 *   describe.skipIf(await isMissing(d))(d.name, () => {
 *     const items = uniqueTableName("items")
 *     let db: Kysely<any>
 *     beforeAll(async () => {
 *       db = new Kysely({ dialect: wrapDialect(d.dialect()) }) // a fresh raw dialect, wrapped by the test
 *       await createTestTable(db, d, items, (t) => t.addColumn("name", "varchar(100)"))
 *     })
 *     afterAll(async () => { await dropTestTables(db, items); await db.destroy() })
 *     it("...", async () => { ... })
 *   })
 * }
 * ```
 *
 * Every `dialect()` call opens its own resources (a fresh in-memory PGlite or SQLite database, or a fresh pool on
 * the shared server) and `Kysely#destroy` releases them all. PostgreSQL and MariaDB are shared by every test file,
 * so tables must be named with {@link uniqueTableName}, which adds a suffix unique to the importing file's run.
 */
import type { CreateTableBuilder, Dialect } from "kysely"
import { Kysely, MysqlDialect, PostgresDialect } from "kysely"
import type { PostgresCursorConstructor } from "kysely"
import { createPool } from "mysql2"
import { Pool } from "pg"
import { NodeSqliteDialect } from "../../src/kysely/dialects/NodeSqliteDialect.ts"
import { PGliteDialect } from "../../src/kysely/dialects/PGliteDialect.ts"
import { MariaDB, missing, Postgres } from "../support/services.ts"
import type { Service } from "../support/services.ts"

/** The dialects under test. */
export type DialectName = "pglite" | "postgres" | "mariadb" | "sqlite"

/** What a dialect can do, for tests that must branch (keep branches rare: prefer portable SQL). */
export interface DialectSupport {
  /** `INSERT / UPDATE / DELETE ... RETURNING` through Kysely (Kysely's MySQL adapter says no, even on MariaDB). */
  readonly returning: boolean
  /**
   * DDL inside a transaction rolls back with it (not on MySQL / MariaDB, where DDL commits implicitly). Kysely's
   * `Migrator` wraps migrations in a transaction only where its adapter says so, which excludes SQLite.
   */
  readonly transactionalDdl: boolean
  /** `.stream()` works (PostgreSQL needs the `pg-cursor` package, which is not installed). */
  readonly stream: boolean
  /** One connection: concurrent transactions run one after the other (PGlite, SQLite). */
  readonly singleConnection: boolean
}

/** A database handle a test made with {@link TestDialect.make}. */
export interface TestDatabase {
  readonly db: Kysely<any>
  /** The raw dialect `db` was built from. */
  readonly dialect: Dialect
  /** Destroys `db`, which closes the pool or the in-memory database behind it. */
  close(): Promise<void>
}

/** One dialect under test. */
export interface TestDialect {
  readonly name: DialectName
  /** The server it needs; undefined for in-process databases. Skip with {@link isMissing}. */
  readonly service?: Service
  readonly supports: DialectSupport
  /**
   * A fresh raw dialect over its own pool or in-memory database, to wrap (a driver wrapper) and build a `Kysely`
   * from. Every `Kysely` built from the same dialect object sees the same database; `destroy` releases it.
   */
  dialect(): Dialect
  /** `new Kysely({ dialect: this.dialect() })`, with the dialect and a `close`. */
  make(): Promise<TestDatabase>
  /** Adds an auto-incrementing integer primary key named `column` (default `id`), spelled for this dialect. */
  addIdColumn<T extends string, C extends string>(
    table: CreateTableBuilder<T, C>,
    column?: string
  ): CreateTableBuilder<T, C | string>
}

const HOST = "127.0.0.1"

/** `pg-cursor` makes PostgreSQL streaming work; it is optional, so it is looked up rather than imported. */
const pgCursor: PostgresCursorConstructor | undefined = await import("pg-cursor" as string).then(
  (module: { default: PostgresCursorConstructor }) => module.default,
  () => undefined
)

const makeWith = (dialect: () => Dialect) => async (): Promise<TestDatabase> => {
  const raw = dialect()
  const db = new Kysely<any>({ dialect: raw })
  return { db, dialect: raw, close: () => db.destroy() }
}

const serialId = <T extends string, C extends string>(table: CreateTableBuilder<T, C>, column = "id") =>
  table.addColumn(column, "serial", (col) => col.primaryKey())

const autoIncrementId = <T extends string, C extends string>(table: CreateTableBuilder<T, C>, column = "id") =>
  table.addColumn(column, "integer", (col) => col.primaryKey().autoIncrement())

export const pglite: TestDialect = {
  name: "pglite",
  supports: { returning: true, transactionalDdl: true, stream: true, singleConnection: true },
  dialect: () => new PGliteDialect(),
  make: makeWith(() => new PGliteDialect()),
  addIdColumn: serialId
}

const postgresDialect = (): Dialect =>
  new PostgresDialect({
    pool: new Pool({ host: HOST, port: Postgres.port, user: "postgres", database: "test", max: 4 }),
    ...(pgCursor === undefined ? {} : { cursor: pgCursor })
  })

export const postgres: TestDialect = {
  name: "postgres",
  service: Postgres,
  supports: { returning: true, transactionalDdl: true, stream: pgCursor !== undefined, singleConnection: false },
  dialect: postgresDialect,
  make: makeWith(postgresDialect),
  addIdColumn: serialId
}

const mariadbDialect = (): Dialect =>
  new MysqlDialect({
    pool: createPool({ host: HOST, port: MariaDB.port, user: "root", database: "test", connectionLimit: 4 })
  })

export const mariadb: TestDialect = {
  name: "mariadb",
  service: MariaDB,
  supports: { returning: false, transactionalDdl: false, stream: true, singleConnection: false },
  dialect: mariadbDialect,
  make: makeWith(mariadbDialect),
  addIdColumn: autoIncrementId
}

export const sqlite: TestDialect = {
  name: "sqlite",
  supports: { returning: true, transactionalDdl: true, stream: true, singleConnection: true },
  dialect: () => new NodeSqliteDialect({ database: ":memory:" }),
  make: makeWith(() => new NodeSqliteDialect({ database: ":memory:" })),
  addIdColumn: autoIncrementId
}

/** Every dialect, in-process ones first. */
export const DIALECTS: ReadonlyArray<TestDialect> = [pglite, sqlite, postgres, mariadb]

/** True when the dialect's server is not answering and its tests must be skipped (never in CI: it throws there). */
export const isMissing = async (dialect: TestDialect): Promise<boolean> =>
  dialect.service === undefined ? false : missing(dialect.service)

const fileSuffix = Math.random().toString(36).slice(2, 8)
let tableCount = 0

/**
 * `base` plus a suffix unique to this test file's run (and to this call), lower case, well under the 63-character
 * identifier limit, so test files never collide on the shared servers.
 */
export const uniqueTableName = (base: string): string => {
  tableCount += 1
  return `${base}_${fileSuffix}_${tableCount}`.toLowerCase()
}

/**
 * Creates `table` with an auto-incrementing `id` primary key plus the columns `columns` adds, dropping any leftover
 * table of that name first.
 */
export const createTestTable = async (
  db: Kysely<any>,
  dialect: TestDialect,
  table: string,
  columns: (builder: CreateTableBuilder<string, string>) => CreateTableBuilder<string, string>
): Promise<void> => {
  await db.schema.dropTable(table).ifExists().execute()
  await columns(dialect.addIdColumn(db.schema.createTable(table))).execute()
}

/** Drops the given tables if they exist. */
export const dropTestTables = async (db: Kysely<any>, ...tables: ReadonlyArray<string>): Promise<void> => {
  for (const table of tables) await db.schema.dropTable(table).ifExists().execute()
}
