/**
 * The migration that creates the invalidation history table, `cacheme_invalidation`:
 *
 * | column       | type                                                        |
 * |--------------|-------------------------------------------------------------|
 * | `id`         | auto-incrementing primary key (`bigserial`, `bigint auto_increment`, `integer`) |
 * | `created_at` | `timestamptz` (PostgreSQL, PGlite), `datetime(3)` (MySQL, MariaDB), ISO text (SQLite) |
 * | `actor`      | `varchar(255)`: `admin:<user>`, `cli:<user>`, `kysely`, `app`, ...     |
 * | `target`     | `varchar(16)`: `key`, `group`, `tag` or `pattern`          |
 * | `value`      | `text`: the key, group key, tag or pattern                  |
 * | `mode`       | `varchar(8)`: `hard` or `soft`                             |
 * | `count`      | `integer`: how many keys held a value                       |
 *
 * plus an index on `created_at`. It runs through Kysely's `Migrator` with its own bookkeeping table,
 * `cacheme_migration` (and `cacheme_migration_lock`), so it never mixes with the application's own migrations.
 * Applications that prefer a single migration list can add {@link migrations} to their own provider instead.
 *
 * @since 0.1.0
 */
import { Effect, Schema } from "effect"
import { type Kysely, sql } from "kysely"
import { type Migration, type MigrationProvider, type MigrationResult, Migrator, NO_MIGRATIONS } from "kysely/migration"
import { isIdentifier, sqlFamily } from "./internal/dialect.ts"

/**
 * The default name of the history table.
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultTable = "cacheme_invalidation"

/**
 * The default name of the migration bookkeeping table (its lock table adds `_lock`).
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultMigrationTable = "cacheme_migration"

/**
 * Table names, for databases that hold several admins or tests that must not collide.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** The history table (default `cacheme_invalidation`). */
  readonly table?: string | undefined
  /** The migration bookkeeping table (default `cacheme_migration`). */
  readonly migrationTable?: string | undefined
}

/**
 * A migration that failed, or a table name that is not a plain identifier.
 *
 * @category errors
 * @since 0.1.0
 */
export class MigrationError extends Schema.TaggedError<MigrationError>()("MigrationError", {
  message: Schema.String,
  /** The migration that failed, when one did. */
  migration: Schema.optional(Schema.String),
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * What one migration did.
 *
 * @category models
 * @since 0.1.0
 */
export interface Result {
  readonly migration: string
  readonly direction: "Up" | "Down"
  readonly status: "Success" | "Error" | "NotExecuted"
}

const names = (options: Options | undefined) => {
  const table = options?.table ?? defaultTable
  const migrationTable = options?.migrationTable ?? defaultMigrationTable
  for (const [setting, name] of [
    ["table", table],
    ["migrationTable", migrationTable]
  ] as const) {
    if (!isIdentifier(name)) {
      return Effect.fail(
        new MigrationError({
          message: `${setting} must be a plain SQL identifier (letters, digits, _; at most 63), got ${JSON.stringify(name)}`
        })
      )
    }
  }
  return Effect.succeed({ table, migrationTable })
}

/** The first migration's name; later ones sort after it. */
export const createTableMigration = "2026_11_25_0001_create_cacheme_invalidation"

/**
 * The migrations, by name, for a history table called `table`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const migrations = (options?: { readonly table?: string | undefined }): Record<string, Migration> => {
  const table = options?.table ?? defaultTable
  const index = `${table.slice(0, 48)}_created_at_idx`
  return {
    [createTableMigration]: {
      up: async (db) => {
        const family = sqlFamily(db)
        let create = db.schema.createTable(table)
        create =
          family === "postgres"
            ? create.addColumn("id", "bigserial", (column) => column.primaryKey())
            : family === "mysql"
              ? create.addColumn("id", "bigint", (column) => column.primaryKey().autoIncrement())
              : create.addColumn("id", "integer", (column) => column.primaryKey().autoIncrement().notNull())
        await create
          .addColumn(
            "created_at",
            family === "postgres" ? "timestamptz" : family === "mysql" ? sql`datetime(3)` : "text",
            (column) => column.notNull()
          )
          .addColumn("actor", "varchar(255)", (column) => column.notNull())
          .addColumn("target", "varchar(16)", (column) => column.notNull())
          .addColumn("value", "text", (column) => column.notNull())
          .addColumn("mode", "varchar(8)", (column) => column.notNull())
          .addColumn("count", "integer", (column) => column.notNull())
          .execute()
        await db.schema.createIndex(index).on(table).column("created_at").execute()
      },
      down: async (db) => {
        await db.schema.dropTable(table).ifExists().execute()
      }
    }
  }
}

/**
 * A Kysely `MigrationProvider` over {@link migrations}.
 *
 * @category constructors
 * @since 0.1.0
 */
export const provider = (options?: { readonly table?: string | undefined }): MigrationProvider => ({
  getMigrations: async () => migrations(options)
})

const migrator = (db: Kysely<any>, table: string, migrationTable: string) =>
  new Migrator({
    db,
    provider: provider({ table }),
    migrationTableName: migrationTable,
    migrationLockTableName: `${migrationTable}_lock`
  })

const run = (operation: (migrator: Migrator) => Promise<{ error?: unknown; results?: Array<MigrationResult> }>) =>
  Effect.fnUntraced(function* (db: Kysely<any>, options?: Options) {
    const { table, migrationTable } = yield* names(options)
    const { error, results } = yield* Effect.tryPromise({
      try: () => operation(migrator(db, table, migrationTable)),
      catch: (cause) => new MigrationError({ message: `migration failed: ${String(cause)}`, cause })
    })
    const done: ReadonlyArray<Result> = (results ?? []).map((result) => ({
      migration: result.migrationName,
      direction: result.direction,
      status: result.status
    }))
    if (error !== undefined) {
      const failed = done.find((result) => result.status === "Error")
      return yield* new MigrationError({
        message: `migration ${failed?.migration ?? ""} failed: ${error instanceof Error ? error.message : String(error)}`,
        migration: failed?.migration,
        cause: error
      })
    }
    return done
  })

/**
 * Creates or upgrades the history table; returns what ran (nothing when it is up to date).
 *
 * **Example**
 *
 * ```ts
 * import { Effect } from "effect"
 * import { Kysely, PostgresDialect } from "kysely"
 * import { Pool } from "pg"
 * import { Migration } from "effect-cacheme/admin"
 *
 * const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new Pool({ database: "app" }) }) })
 * const program = Migration.migrate(db)
 * ```
 *
 * @category migrations
 * @since 0.1.0
 */
export const migrate = run((migrator) => migrator.migrateToLatest())

/**
 * Undoes every migration of the admin: drops the history table (the bookkeeping tables stay, empty).
 *
 * @category migrations
 * @since 0.1.0
 */
export const rollback = run((migrator) => migrator.migrateTo(NO_MIGRATIONS))

/**
 * The admin's migrations and when each ran (`undefined`: pending).
 *
 * @category migrations
 * @since 0.1.0
 */
export const status = Effect.fnUntraced(function* (db: Kysely<any>, options?: Options) {
  const { table, migrationTable } = yield* names(options)
  const infos = yield* Effect.tryPromise({
    try: () => migrator(db, table, migrationTable).getMigrations(),
    catch: (cause) => new MigrationError({ message: `reading migrations failed: ${String(cause)}`, cause })
  })
  return infos.map((info) => ({ migration: info.name, executedAt: info.executedAt }))
})

/**
 * Drops the bookkeeping tables too, after {@link rollback} (tests, uninstalling).
 *
 * @category migrations
 * @since 0.1.0
 */
export const dropBookkeeping = Effect.fnUntraced(function* (db: Kysely<any>, options?: Options) {
  const { migrationTable } = yield* names(options)
  yield* Effect.tryPromise({
    try: async () => {
      await db.schema.dropTable(migrationTable).ifExists().execute()
      await db.schema.dropTable(`${migrationTable}_lock`).ifExists().execute()
    },
    catch: (cause) => new MigrationError({ message: `dropping the migration tables failed: ${String(cause)}`, cause })
  })
})
