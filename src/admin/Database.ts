/**
 * A Kysely instance from a database URL, for the CLI and the standalone admin:
 *
 * | URL                                   | dialect                                   | needs         |
 * |---------------------------------------|-------------------------------------------|---------------|
 * | `postgres://user@host:5432/db`        | Kysely's `PostgresDialect` over a pool    | `pg`          |
 * | `mysql://root@host:3306/db`, `mariadb://...` | Kysely's `MysqlDialect` over a pool | `mysql2`      |
 * | `pglite:./data/dir`, `pglite:memory`  | `PGliteDialect` (effect-cacheme/kysely/pglite) | `@electric-sql/pglite` |
 * | `sqlite:./file.db`, `sqlite::memory:` | `NodeSqliteDialect` (`node:sqlite`)       | nothing       |
 *
 * Drivers are loaded only when their URL is used. The instance is destroyed with the scope.
 *
 * @since 0.1.0
 */
import { Effect, Schema, type Scope } from "effect"
import { type Dialect, Kysely, MysqlDialect, PostgresDialect } from "kysely"

/**
 * A URL that names no supported database, or a driver that could not be loaded.
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/** Hides the password of a URL for messages. */
export const redactUrl = (url: string): string => url.replace(/(\/\/[^:/@]*:)[^@]*@/, "$1***@")

const load = <A>(name: string, f: () => Promise<A>) =>
  Effect.tryPromise({
    try: f,
    catch: (cause) =>
      new DatabaseError({ message: `this database URL needs the ${name} package (npm install ${name})`, cause })
  })

/**
 * The Kysely dialect a URL names.
 *
 * @category constructors
 * @since 0.1.0
 */
export const dialectFromUrl = (url: string): Effect.Effect<Dialect, DatabaseError> =>
  Effect.gen(function* () {
    const scheme = url.slice(0, Math.max(0, url.indexOf(":"))).toLowerCase()
    switch (scheme) {
      case "postgres":
      case "postgresql": {
        const { Pool } = yield* load("pg", () => import("pg").then((module) => module.default ?? module))
        return new PostgresDialect({ pool: new Pool({ connectionString: url, max: 4 }) })
      }
      case "mysql":
      case "mariadb": {
        const { createPool } = yield* load("mysql2", () => import("mysql2"))
        return new MysqlDialect({ pool: createPool({ uri: url.replace(/^mariadb:/i, "mysql:"), connectionLimit: 4 }) })
      }
      case "pglite": {
        const location = url.slice("pglite:".length).replace(/^\/\//, "")
        // The dialect loads PGlite only at its first query: import it here so that a missing package is this error.
        const { PGliteDialect } = yield* load("@electric-sql/pglite", () =>
          import("@electric-sql/pglite").then(() => import("../kysely/dialects/PGliteDialect.ts"))
        )
        return location === "" || location === "memory" ? new PGliteDialect() : new PGliteDialect({ dataDir: location })
      }
      case "sqlite": {
        const location = url.slice("sqlite:".length).replace(/^\/\//, "")
        const { NodeSqliteDialect } = yield* load(
          "node:sqlite",
          () => import("../kysely/dialects/NodeSqliteDialect.ts")
        )
        return new NodeSqliteDialect({ database: location === "" ? ":memory:" : location })
      }
      default:
        return yield* new DatabaseError({
          message: `unsupported database URL ${JSON.stringify(redactUrl(url))}: expected postgres://, mysql://, mariadb://, pglite: or sqlite:`
        })
    }
  })

/**
 * A Kysely instance for a URL, destroyed when the scope closes.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromUrl = (url: string): Effect.Effect<Kysely<any>, DatabaseError, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.map(dialectFromUrl(url), (dialect) => new Kysely<any>({ dialect })),
    (db) => Effect.promise(() => db.destroy().catch(() => undefined))
  )
