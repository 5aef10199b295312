/**
 * Which SQL family a Kysely instance speaks, read from its adapter: the history table's DDL and the way it
 * stores times differ a little between them.
 */
import { type Kysely, MysqlAdapter, PostgresAdapter, SqliteAdapter } from "kysely"

export type SqlFamily = "postgres" | "mysql" | "sqlite"

export const sqlFamily = (db: Kysely<any>): SqlFamily => {
  const adapter = db.getExecutor().adapter
  if (adapter instanceof MysqlAdapter) return "mysql"
  if (adapter instanceof SqliteAdapter) return "sqlite"
  if (adapter instanceof PostgresAdapter) return "postgres"
  // Another copy of Kysely, or a custom adapter: go by its name.
  const name = adapter.constructor.name.toLowerCase()
  if (name.includes("mysql") || name.includes("maria")) return "mysql"
  if (name.includes("sqlite") || name.includes("libsql") || name.includes("d1")) return "sqlite"
  return "postgres"
}

/** A table or index name the admin accepts in its options: plain identifiers only, never SQL. */
export const isIdentifier = (name: string): boolean => /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)
