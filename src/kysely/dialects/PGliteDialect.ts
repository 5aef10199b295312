/**
 * A Kysely dialect over PGlite (`@electric-sql/pglite`), PostgreSQL compiled to WebAssembly and run in process.
 *
 * PGlite is one database session, so the driver hands out a single connection and serializes its use with a
 * FIFO mutex shared by every driver over the same PGlite instance: a caller that acquires the connection while
 * another holds it waits, so its statements can never land inside somebody else's transaction. Transactions are
 * plain `BEGIN` / `COMMIT` / `ROLLBACK` statements on that session, savepoints are `SAVEPOINT` / `ROLLBACK TO` /
 * `RELEASE`, and a `COMMIT` that PostgreSQL turns into a rollback (the transaction had failed) raises Kysely's
 * `AbortedTransactionError`, as Kysely's `PostgresDriver` does.
 *
 * Queries with parameters run through `PGlite.query` (extended protocol); queries without parameters run through
 * `PGlite.exec` (simple protocol), which, like node-postgres, accepts several statements in one string and returns
 * the result of the last one. `numAffectedRows` is set for INSERT, UPDATE, DELETE and MERGE, with or without
 * RETURNING. `streamQuery` reads SELECTs through a server-side cursor (`DECLARE` / `FETCH`), opening a transaction
 * for the cursor's lifetime when none is open; other statements are run once and their rows yielded in chunks.
 *
 * The adapter, query compiler and introspector are Kysely's own (`PGliteAdapter`, `PostgresQueryCompiler`,
 * `PostgresIntrospector`). Kysely 0.29 also ships a `PGliteDialect` of its own; this one differs in that it streams,
 * keeps an instance it did not create open on `destroy`, can create the instance from a data directory, shares the
 * instance between every driver the dialect creates, and holds its own lock so it stays correct under a driver
 * wrapper. `@electric-sql/pglite` is loaded lazily, only when the dialect has to create the instance itself. It is
 * published as `effect-cacheme/kysely/pglite`, apart from `effect-cacheme/kysely`, because its types need PGlite's.
 *
 * @since 0.1.0
 */
import type { PGlite, PGliteOptions, Results } from "@electric-sql/pglite"
import {
  AbortedTransactionError,
  CompiledQuery,
  PGliteAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  SelectQueryNode
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
  QueryResult,
  TransactionSettings
} from "kysely"
import { SingleConnectionDriver } from "./SingleConnectionDriver.ts"
import { type OpenedHandle, SharedHandle } from "./SharedHandle.ts"

/**
 * The part of a PGlite instance the driver uses. `PGlite` satisfies it; so does anything with the same `query`,
 * `exec`, `close` and readiness members. `isInTransaction` (present on `PGlite`) tells `streamQuery` whether it must
 * open a transaction for its cursor; without it, `streamQuery` runs the query at once and yields its rows in chunks.
 *
 * @since 0.1.0
 */
export interface PGliteClient {
  readonly waitReady: Promise<void>
  readonly closed: boolean
  query<T>(query: string, params?: Array<unknown>, options?: { rowMode?: "object" | "array" }): Promise<Results<T>>
  exec(query: string, options?: { rowMode?: "object" | "array" }): Promise<Array<Results>>
  close(): Promise<void>
  isInTransaction?(): boolean
}

/**
 * Where the dialect's PGlite instance comes from.
 *
 * - `pglite`: an instance (kept open by `destroy` unless `closeOnDestroy` is true) or a factory called once, on
 *   first use (its instance is closed by `destroy` unless `closeOnDestroy` is false).
 * - `dataDir`: the dialect creates `new PGlite(dataDir, options)` on first use and closes it on `destroy`.
 * - neither: the dialect creates an in-memory PGlite and closes it on `destroy`.
 *
 * @since 0.1.0
 */
export interface PGliteDialectConfig {
  /** An instance, or a factory called once when the first query runs. Mutually exclusive with `dataDir`. */
  readonly pglite?: PGliteClient | (() => PGliteClient | Promise<PGliteClient>)
  /** Directory (or PGlite URL such as `memory://`, `idb://name`) for an instance the dialect creates itself. */
  readonly dataDir?: string
  /** Options for an instance the dialect creates itself (`dataDir` or neither option given). */
  readonly options?: PGliteOptions
  /** Whether `destroy` closes the instance. Defaults to true exactly when the dialect obtained it itself. */
  readonly closeOnDestroy?: boolean
  /** Called once with the connection after the instance is ready, before the first query. */
  readonly onCreateConnection?: (connection: DatabaseConnection) => Promise<void>
}

/**
 * Creates a ready PGlite instance, loading `@electric-sql/pglite` on demand. Without `dataDir` the database lives in
 * memory. Fits the factory form of {@link PGliteDialectConfig.pglite}:
 *
 * ```ts
 * import { Kysely } from "kysely"
 * import { makePGlite, PGliteDialect } from "effect-cacheme/kysely/pglite"
 *
 * interface DB {
 *   book: { id: number; title: string }
 * }
 *
 * const db = new Kysely<DB>({ dialect: new PGliteDialect({ pglite: () => makePGlite("./data/pg") }) })
 * ```
 *
 * @since 0.1.0
 */
export const makePGlite = async (dataDir?: string, options?: PGliteOptions): Promise<PGlite> => {
  const { PGlite } = await import("@electric-sql/pglite")
  return PGlite.create(dataDir, options)
}

/**
 * Kysely dialect for PGlite. See the module documentation for the guarantees.
 *
 * ```ts
 * import { Kysely } from "kysely"
 * import { PGliteDialect } from "effect-cacheme/kysely/pglite"
 *
 * interface DB {
 *   book: { id: number; title: string }
 * }
 *
 * const db = new Kysely<DB>({ dialect: new PGliteDialect({ dataDir: "./data/pg" }) })
 * ```
 *
 * Every driver the dialect creates (one per `Kysely` built from it) shares one PGlite instance; an instance the
 * dialect owns is closed when the last of those drivers is destroyed.
 *
 * @since 0.1.0
 */
export class PGliteDialect implements Dialect {
  readonly #config: PGliteDialectConfig
  readonly #pglite: SharedHandle<PGliteClient>

  constructor(config: PGliteDialectConfig = {}) {
    if (config.pglite !== undefined && config.dataDir !== undefined) {
      throw new TypeError("PGliteDialect: give either `pglite` or `dataDir`, not both")
    }
    this.#config = config
    this.#pglite = new SharedHandle(() => openPGlite(config))
  }

  createAdapter(): DialectAdapter {
    return new PGliteAdapter()
  }

  createDriver(): Driver {
    return new PGliteDriver(this.#pglite, this.#config.onCreateConnection)
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler()
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db)
  }
}

const openPGlite = async (config: PGliteDialectConfig): Promise<OpenedHandle<PGliteClient>> => {
  const { pglite, dataDir, options, closeOnDestroy } = config
  let client: PGliteClient
  let obtainedHere: boolean
  if (pglite === undefined) {
    const { PGlite } = await import("@electric-sql/pglite")
    client = new PGlite(dataDir, options)
    obtainedHere = true
  } else if (typeof pglite === "function") {
    client = await pglite()
    obtainedHere = true
  } else {
    client = pglite
    obtainedHere = false
  }
  if (client.closed) throw new Error("PGliteDialect: the PGlite instance is already closed")
  await client.waitReady
  const close = async () => {
    if (!client.closed) await client.close()
  }
  return { handle: client, close: (closeOnDestroy ?? obtainedHere) ? close : () => undefined }
}

/**
 * The driver behind {@link PGliteDialect}: one connection, handed out under the instance's mutex.
 *
 * @since 0.1.0
 */
export class PGliteDriver extends SingleConnectionDriver<PGliteClient, PGliteConnection> {
  protected connect(pglite: PGliteClient): PGliteConnection {
    return new PGliteConnection(pglite)
  }

  protected override beginStatement(settings: TransactionSettings): string {
    return beginStatement(settings)
  }

  override async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await commit(connection)
  }
}

/** The single session of a PGlite instance as a Kysely connection. */
class PGliteConnection implements DatabaseConnection {
  readonly #pglite: PGliteClient
  #cursorCount = 0

  constructor(pglite: PGliteClient) {
    this.#pglite = pglite
  }

  async executeQuery<R>(compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const { sql, parameters } = compiledQuery
    let result: Results<R> | undefined
    if (parameters.length === 0) {
      const results = await this.#pglite.exec(sql, { rowMode: "object" })
      result = results.at(-1) as Results<R> | undefined
    } else {
      result = await this.#pglite.query<R>(sql, [...parameters], { rowMode: "object" })
    }
    if (result === undefined) return { rows: [] }
    return toQueryResult(result)
  }

  async *streamQuery<R>(compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) {
      throw new RangeError(`PGliteDialect: chunkSize must be a positive integer, got ${chunkSize}`)
    }
    const inTransaction = this.#pglite.isInTransaction?.()
    if (inTransaction === undefined || !isCursorSafe(compiledQuery.query)) {
      const { rows } = await this.executeQuery<R>(compiledQuery)
      for (let start = 0; start < rows.length; start += chunkSize) {
        yield { rows: rows.slice(start, start + chunkSize) }
      }
      return
    }
    if (inTransaction) {
      yield* this.#cursor<R>(compiledQuery, chunkSize)
      return
    }
    await this.executeQuery(CompiledQuery.raw("begin"))
    let failed = false
    try {
      yield* this.#cursor<R>(compiledQuery, chunkSize)
    } catch (error) {
      failed = true
      throw error
    } finally {
      if (failed) {
        await this.executeQuery(CompiledQuery.raw("rollback")).catch(() => undefined)
      } else {
        await commit(this)
      }
    }
  }

  /** Reads `compiledQuery` through a server-side cursor inside the open transaction, `chunkSize` rows at a time. */
  async *#cursor<R>(compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    this.#cursorCount += 1
    const cursor = `"kysely_pglite_cursor_${this.#cursorCount}"`
    await this.#pglite.query(`declare ${cursor} no scroll cursor for ${compiledQuery.sql}`, [
      ...compiledQuery.parameters
    ])
    let failed = false
    try {
      while (true) {
        const { rows } = await this.#pglite.query<R>(`fetch forward ${chunkSize} from ${cursor}`, [], {
          rowMode: "object"
        })
        if (rows.length === 0) break
        yield { rows }
        if (rows.length < chunkSize) break
      }
    } catch (error) {
      failed = true
      throw error
    } finally {
      // In a failed transaction CLOSE fails too; the cursor goes away with the transaction.
      const closing = this.#pglite.query(`close ${cursor}`)
      await (failed ? closing.catch(() => undefined) : closing)
    }
  }
}

const writeCommands: ReadonlySet<string> = new Set(["INSERT", "UPDATE", "DELETE", "MERGE"])

const toQueryResult = <R>(result: Results<R>): QueryResult<R> => {
  const command = result.command?.toUpperCase()
  if (command !== undefined && writeCommands.has(command)) {
    return { numAffectedRows: BigInt(result.rowCount ?? result.affectedRows ?? 0), rows: result.rows }
  }
  if (command === "COMMIT" || command === "ROLLBACK") {
    // Lets `commit` tell a real commit from a COMMIT that PostgreSQL completed as a rollback.
    return { rows: [{ command } as R] }
  }
  return { rows: result.rows }
}

/** COMMIT, raising `AbortedTransactionError` when PostgreSQL answers it with ROLLBACK (the transaction had failed). */
const commit = async (connection: DatabaseConnection): Promise<void> => {
  const { rows } = await connection.executeQuery<{ readonly command?: string }>(CompiledQuery.raw("commit"))
  if (rows[0]?.command === "ROLLBACK") throw new AbortedTransactionError()
}

const beginStatement = ({ isolationLevel, accessMode }: TransactionSettings): string => {
  if (isolationLevel === undefined && accessMode === undefined) return "begin"
  let statement = "start transaction"
  if (isolationLevel !== undefined) statement += ` isolation level ${isolationLevel}`
  if (accessMode !== undefined) statement += ` ${accessMode}`
  return statement
}

/** A SELECT whose CTEs are SELECTs too: PostgreSQL refuses data-modifying statements in a cursor. */
const isCursorSafe = (node: OperationNode): boolean => {
  if (!SelectQueryNode.is(node)) return false
  return (node.with?.expressions ?? []).every((cte) => isCursorSafe(cte.expression))
}
