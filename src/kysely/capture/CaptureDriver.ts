/**
 * The driver of a capturing dialect: the wrapped driver, with every connection it hands out wrapped in a
 * `CaptureConnection` (one wrapper per underlying connection, kept in a `WeakMap`, so a pooled connection keeps
 * its transaction buffer and Kysely sees the same object each time), and the transaction calls forwarded to the
 * wrapped driver with the buffer kept in step:
 *
 * - `beginTransaction` opens the connection's buffer once BEGIN succeeded;
 * - `commitTransaction` holds the buffer's events while COMMIT runs (see `Publisher.hold`), publishes them once
 *   COMMIT succeeded, and drops them when COMMIT failed (PostgreSQL's `AbortedTransactionError` included);
 * - `rollbackTransaction` drops it;
 * - savepoints open, fold and drop the buffer's frames once the savepoint command succeeded.
 *
 * @internal
 */
import { CompiledQuery } from "kysely"
import type { AbortableOperationOptions, DatabaseConnection, Driver, QueryCompiler, TransactionSettings } from "kysely"
import { CaptureConnection, type CaptureRuntime } from "./CaptureConnection.ts"

/** The parts of the runtime the driver builds itself. */
export type CaptureDriverRuntime = Omit<CaptureRuntime, "driver" | "serverVersion">

export class CaptureDriver implements Driver {
  readonly #driver: Driver
  readonly #runtime: CaptureRuntime
  readonly #connections = new WeakMap<DatabaseConnection, CaptureConnection>()
  #serverVersion: Promise<number | undefined> | undefined

  constructor(driver: Driver, runtime: CaptureDriverRuntime) {
    this.#driver = driver
    this.#runtime = {
      ...runtime,
      driver,
      serverVersion: (connection, options) => this.#readServerVersion(connection, options)
    }
  }

  init(options?: AbortableOperationOptions): Promise<void> {
    return this.#driver.init(options)
  }

  async acquireConnection(options?: AbortableOperationOptions): Promise<DatabaseConnection> {
    const inner = await this.#driver.acquireConnection(options)
    let connection = this.#connections.get(inner)
    if (connection === undefined) {
      connection = new CaptureConnection(inner, this.#runtime)
      this.#connections.set(inner, connection)
    }
    return connection
  }

  releaseConnection(connection: DatabaseConnection, options?: AbortableOperationOptions): Promise<void> {
    return this.#driver.releaseConnection(unwrap(connection).inner, options)
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    const capture = unwrap(connection)
    await this.#driver.beginTransaction(capture.inner, settings)
    capture.buffer.begin()
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    const capture = unwrap(connection)
    // What the transaction wrote is known before COMMIT: hold it while COMMIT runs.
    const held = this.#runtime.publisher.hold(capture.buffer.pending())
    try {
      await this.#driver.commitTransaction(capture.inner)
    } catch (error) {
      capture.buffer.discard()
      this.#runtime.publisher.abort(held)
      throw error
    }
    await this.#runtime.publisher.publish(capture.buffer.commit(), held)
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    const capture = unwrap(connection)
    try {
      await this.#driver.rollbackTransaction(capture.inner)
    } finally {
      capture.buffer.discard()
    }
  }

  savepoint(connection: DatabaseConnection, name: string, compileQuery: QueryCompiler["compileQuery"]): Promise<void> {
    return this.#savepointCommand("savepoint", connection, name, compileQuery)
  }

  rollbackToSavepoint(
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    return this.#savepointCommand("rollbackToSavepoint", connection, name, compileQuery)
  }

  releaseSavepoint(
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    return this.#savepointCommand("releaseSavepoint", connection, name, compileQuery)
  }

  /** Runs a savepoint command on the wrapped driver, then applies it to the buffer (the buffer's method of the same name). */
  async #savepointCommand(
    command: "savepoint" | "rollbackToSavepoint" | "releaseSavepoint",
    connection: DatabaseConnection,
    name: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    const capture = unwrap(connection)
    await supported(this.#driver[command], command).call(this.#driver, capture.inner, name, compileQuery)
    capture.buffer[command](name)
  }

  destroy(options?: AbortableOperationOptions): Promise<void> {
    return this.#driver.destroy(options)
  }

  /** PostgreSQL's `server_version_num`, read once per driver (undefined when the server does not say). */
  #readServerVersion(
    connection: DatabaseConnection,
    options: AbortableOperationOptions | undefined
  ): Promise<number | undefined> {
    if (this.#serverVersion === undefined) {
      const reading = connection
        .executeQuery<{ server_version_num?: unknown }>(CompiledQuery.raw("show server_version_num"), options)
        .then(({ rows }) => {
          const version = Number(rows[0]?.server_version_num)
          return Number.isFinite(version) ? version : undefined
        })
      this.#serverVersion = reading
      reading.catch(() => {
        this.#serverVersion = undefined
      })
    }
    return this.#serverVersion
  }
}

const unwrap = (connection: DatabaseConnection): CaptureConnection => {
  if (connection instanceof CaptureConnection) return connection
  throw new TypeError("effect-cacheme: a capturing driver was handed a connection it did not create")
}

/** The wrapped driver's optional savepoint method, or the error Kysely gives for a driver without it. */
const supported = <F>(method: F | undefined, name: string): F => {
  if (method === undefined) throw new Error(`The \`${name}\` method is not supported by this driver`)
  return method
}
