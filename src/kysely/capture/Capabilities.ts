/**
 * What the wrapped dialect's SQL can do for write capture, read from its query compiler.
 *
 * - PostgreSQL (and PGlite, which compiles with `PostgresQueryCompiler`): `RETURNING` on insert, update and
 *   delete (and on `MERGE` from server version 17), locking reads (`FOR UPDATE`).
 * - SQLite: `RETURNING` (SQLite 3.35+), no locking reads: the database has a single writer.
 * - MySQL / MariaDB: no `RETURNING` that keeps Kysely's results intact (a MariaDB `INSERT ... RETURNING` answers
 *   with rows instead of the OK packet, losing `insertId`), locking reads.
 * - anything else: `RETURNING` as the dialect adapter reports it, no locking reads.
 *
 * @internal
 */
import { MysqlQueryCompiler, PostgresQueryCompiler, SqliteQueryCompiler } from "kysely"
import type { DialectAdapter, QueryCompiler } from "kysely"

export type SqlFlavor = "postgres" | "mysql" | "sqlite" | "generic"

export interface Capabilities {
  readonly flavor: SqlFlavor
  /** Insert, update and delete accept a `RETURNING` clause. */
  readonly returning: boolean
  /**
   * `SELECT ... FOR UPDATE` is available. Outside a transaction, a write that needs to read rows first then runs
   * in a short transaction of its own, so the rows it read stay locked until it wrote them.
   */
  readonly lockingReads: boolean
}

export const detectCapabilities = (compiler: QueryCompiler, adapter: DialectAdapter): Capabilities => {
  if (compiler instanceof PostgresQueryCompiler) return { flavor: "postgres", returning: true, lockingReads: true }
  if (compiler instanceof SqliteQueryCompiler) return { flavor: "sqlite", returning: true, lockingReads: false }
  if (compiler instanceof MysqlQueryCompiler) return { flavor: "mysql", returning: false, lockingReads: true }
  return { flavor: "generic", returning: adapter.supportsReturning === true, lockingReads: false }
}
