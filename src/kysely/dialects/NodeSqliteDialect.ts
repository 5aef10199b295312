/**
 * A Kysely dialect over Node's built-in SQLite (`node:sqlite`, `DatabaseSync`), so SQLite needs no native addon.
 *
 * It reuses Kysely's `SqliteAdapter`, `SqliteQueryCompiler` and `SqliteIntrospector` and behaves like Kysely's own
 * `SqliteDialect` over better-sqlite3, with these differences:
 *
 * - The single connection is handed out under a FIFO mutex shared by every driver over the same `DatabaseSync`, so
 *   the dialect stays correct under a driver wrapper and when several dialects share one database handle.
 * - INSERT / UPDATE / DELETE with RETURNING report `numAffectedRows` too (read with `changes()`).
 * - Rows are plain objects (node:sqlite returns null-prototype objects).
 * - Parameters: booleans bind as 1 / 0; any value SQLite cannot bind (a `Date`, an object, `undefined`) throws a
 *   `TypeError` instead of node:sqlite's silent NULL.
 * - A parameterless string holding several statements runs them all (`DatabaseSync.exec`); with parameters, a
 *   second statement is an error instead of being silently dropped.
 * - `streamQuery` works for any statement that returns rows and honours `chunkSize`.
 * - `destroy` closes the database only when the dialect opened it (it was given a path), unless told otherwise.
 *
 * Transactions are `BEGIN` / `COMMIT` / `ROLLBACK`, savepoints `SAVEPOINT` / `ROLLBACK TO` / `RELEASE`. SQLite
 * transactions are serializable; isolation level and access mode settings are ignored, as in Kysely's SqliteDriver.
 *
 * @since 0.1.0
 */
import type { DatabaseSync, SQLInputValue, StatementSync } from "node:sqlite"
import {
  type CompiledQuery,
  DeleteQueryNode,
  InsertQueryNode,
  MergeQueryNode,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler,
  UpdateQueryNode
} from "kysely"
import type {
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  OperationNode,
  QueryCompiler,
  QueryResult
} from "kysely"
import { SingleConnectionDriver } from "./SingleConnectionDriver.ts"
import { type OpenedHandle, SharedHandle } from "./SharedHandle.ts"

/**
 * Options of {@link NodeSqliteDialect}.
 *
 * @since 0.1.0
 */
export interface NodeSqliteDialectConfig {
  /** An open `DatabaseSync`, or a path (`":memory:"` for an in-memory database) the dialect opens on first use. */
  readonly database: DatabaseSync | string
  /** Whether `destroy` closes the database. Defaults to true exactly when the dialect opened it (a path). */
  readonly closeOnDestroy?: boolean
  /** Called once with the connection after the database is open, before the first query. */
  readonly onCreateConnection?: (connection: DatabaseConnection) => Promise<void>
}

/**
 * Kysely dialect for `node:sqlite`.
 *
 * ```ts
 * import { Kysely } from "kysely"
 * import { NodeSqliteDialect } from "effect-cacheme/kysely"
 *
 * interface DB {
 *   book: { id: number; title: string }
 * }
 *
 * const db = new Kysely<DB>({ dialect: new NodeSqliteDialect({ database: ":memory:" }) })
 * ```
 *
 * Every driver the dialect creates (one per `Kysely` built from it) shares one `DatabaseSync`; a database the
 * dialect opened is closed when the last of those drivers is destroyed.
 *
 * @since 0.1.0
 */
export class NodeSqliteDialect implements Dialect {
  readonly #config: NodeSqliteDialectConfig
  readonly #database: SharedHandle<DatabaseSync>

  constructor(config: NodeSqliteDialectConfig) {
    this.#config = config
    this.#database = new SharedHandle(() => openDatabase(config))
  }

  createAdapter(): DialectAdapter {
    return new SqliteAdapter()
  }

  createDriver(): Driver {
    return new NodeSqliteDriver(this.#database, this.#config.onCreateConnection)
  }

  createQueryCompiler(): QueryCompiler {
    return new SqliteQueryCompiler()
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db)
  }
}

const openDatabase = async (config: NodeSqliteDialectConfig): Promise<OpenedHandle<DatabaseSync>> => {
  let database: DatabaseSync
  let openedHere: boolean
  if (typeof config.database === "string") {
    const sqlite = await import("node:sqlite")
    database = new sqlite.DatabaseSync(config.database)
    openedHere = true
  } else {
    database = config.database
    openedHere = false
  }
  if (!database.isOpen) throw new Error("NodeSqliteDialect: the database is closed")
  const close = () => {
    if (database.isOpen) database.close()
  }
  return { handle: database, close: (config.closeOnDestroy ?? openedHere) ? close : () => undefined }
}

/**
 * The driver behind {@link NodeSqliteDialect}: one connection, handed out under the database's mutex.
 *
 * @since 0.1.0
 */
export class NodeSqliteDriver extends SingleConnectionDriver<DatabaseSync, NodeSqliteConnection> {
  protected connect(database: DatabaseSync): NodeSqliteConnection {
    return new NodeSqliteConnection(database)
  }
}

/** The `DatabaseSync` as a Kysely connection. */
class NodeSqliteConnection implements DatabaseConnection {
  readonly #database: DatabaseSync

  constructor(database: DatabaseSync) {
    this.#database = database
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const { sql, query } = compiledQuery
    const parameters = compiledQuery.parameters.map(toSqliteValue)
    const statement = this.#database.prepare(sql)
    if (hasMoreStatements(sql, statement)) {
      if (parameters.length > 0) {
        throw new Error("NodeSqliteDialect: a query with parameters must hold a single statement")
      }
      this.#database.exec(sql)
      return { rows: [] }
    }
    if (statement.columns().length > 0) {
      const rows = statement.all(...parameters).map(toPlainRow<R>)
      if (!isWrite(query)) return { rows }
      return { numAffectedRows: BigInt(this.#changes()), rows }
    }
    const { changes, lastInsertRowid } = statement.run(...parameters)
    return { insertId: BigInt(lastInsertRowid), numAffectedRows: BigInt(changes), rows: [] }
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
      throw new RangeError(`NodeSqliteDialect: chunkSize must be a positive integer, got ${chunkSize}`)
    }
    const statement = this.#database.prepare(compiledQuery.sql)
    if (hasMoreStatements(compiledQuery.sql, statement) || statement.columns().length === 0) {
      const result = await this.executeQuery<R>(compiledQuery)
      if (result.rows.length > 0) yield result
      return
    }
    let chunk: Array<R> = []
    for (const row of statement.iterate(...compiledQuery.parameters.map(toSqliteValue))) {
      chunk.push(toPlainRow<R>(row))
      if (chunk.length === chunkSize) {
        yield { rows: chunk }
        chunk = []
      }
    }
    if (chunk.length > 0) yield { rows: chunk }
  }

  #changes(): number | bigint {
    const row = this.#database.prepare("select changes() as changes").get()
    const changes = row?.changes
    return typeof changes === "number" || typeof changes === "bigint" ? changes : 0
  }
}

const toPlainRow = <R>(row: object): R => ({ ...row }) as R

const isWrite = (node: OperationNode): boolean =>
  InsertQueryNode.is(node) || UpdateQueryNode.is(node) || DeleteQueryNode.is(node) || MergeQueryNode.is(node)

/** Converts a Kysely parameter to a value SQLite binds, refusing what node:sqlite would bind as NULL or reject. */
const toSqliteValue = (value: unknown, index: number): SQLInputValue => {
  switch (typeof value) {
    case "boolean":
      return value ? 1 : 0
    case "number":
    case "bigint":
    case "string":
      return value
    case "object":
      if (value === null) return null
      if (ArrayBuffer.isView(value)) return value as NodeJS.ArrayBufferView
  }
  const shown = value instanceof Date ? "a Date (bind value.toISOString() or value.getTime())" : typeof value
  throw new TypeError(`NodeSqliteDialect: cannot bind parameter ${index + 1}: ${shown}`)
}

/**
 * node:sqlite's `prepare` compiles only the first statement of a string and drops the rest silently. True when
 * something other than whitespace, comments and semicolons follows the statement it compiled.
 */
const hasMoreStatements = (sql: string, statement: StatementSync): boolean => {
  const first = statement.sourceSQL
  if (!sql.startsWith(first)) return false
  const rest = sql.slice(first.length)
  return rest.replace(/--[^\n]*|\/\*[\s\S]*?(\*\/|$)|[\s;]+/g, "") !== ""
}
