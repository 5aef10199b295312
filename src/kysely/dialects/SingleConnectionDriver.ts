/**
 * The driver of an embedded database that has one session (PGlite, `node:sqlite`): the single connection is
 * handed out under the database's mutex, so two callers never interleave statements inside one another's
 * transaction. Subclasses say how a handle becomes a connection and, where the database needs it, how
 * transactions begin and commit.
 *
 * @internal
 */
import { CompiledQuery } from "kysely"
import type { DatabaseConnection, Driver, QueryCompiler, TransactionSettings } from "kysely"
import { ConnectionMutex } from "./ConnectionMutex.ts"
import { executeSavepointCommand } from "./savepointCommand.ts"
import type { SharedHandle } from "./SharedHandle.ts"

export abstract class SingleConnectionDriver<H extends object, C extends DatabaseConnection> implements Driver {
  readonly #handle: SharedHandle<H>
  readonly #onCreateConnection: ((connection: DatabaseConnection) => Promise<void>) | undefined
  #connection: C | undefined
  #mutex: ConnectionMutex | undefined
  #holdsLock = false

  constructor(handle: SharedHandle<H>, onCreateConnection?: (connection: DatabaseConnection) => Promise<void>) {
    this.#handle = handle
    this.#onCreateConnection = onCreateConnection
  }

  /** The connection over an opened handle. */
  protected abstract connect(handle: H): C

  /** The statement that begins a transaction with these settings. */
  protected beginStatement(_settings: TransactionSettings): string {
    return "begin"
  }

  async init(): Promise<void> {
    const handle = await this.#handle.acquire()
    const mutex = ConnectionMutex.for(handle)
    const connection = this.connect(handle)
    this.#mutex = mutex
    this.#connection = connection
    const onCreateConnection = this.#onCreateConnection
    if (onCreateConnection !== undefined) await mutex.withLock(() => onCreateConnection(connection))
  }

  async acquireConnection(): Promise<DatabaseConnection> {
    const connection = this.#connection
    const mutex = this.#mutex
    if (connection === undefined || mutex === undefined) {
      throw new Error(`${this.constructor.name}: not initialized or destroyed`)
    }
    await mutex.lock()
    this.#holdsLock = true
    return connection
  }

  async releaseConnection(): Promise<void> {
    if (!this.#holdsLock) return
    this.#holdsLock = false
    this.#mutex?.unlock()
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(this.beginStatement(settings)))
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("commit"))
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw("rollback"))
  }

  async savepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    await executeSavepointCommand(connection, "savepoint", savepointName, compileQuery)
  }

  async rollbackToSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    await executeSavepointCommand(connection, "rollback to", savepointName, compileQuery)
  }

  async releaseSavepoint(
    connection: DatabaseConnection,
    savepointName: string,
    compileQuery: QueryCompiler["compileQuery"]
  ): Promise<void> {
    await executeSavepointCommand(connection, "release", savepointName, compileQuery)
  }

  async destroy(): Promise<void> {
    if (this.#connection === undefined) return
    this.#connection = undefined
    await this.#handle.release()
  }
}
