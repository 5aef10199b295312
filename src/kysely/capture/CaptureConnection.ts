/**
 * A connection of the wrapped driver with write capture around every statement.
 *
 * Each statement is planned from its operation tree (`StatementAnalysis.ts`): reads run untouched; writes run
 * through their capture strategy and their events are recorded once the statement succeeded (a failing
 * statement records nothing). Recorded events go to the connection's transaction buffer while a transaction is
 * open, and are published at once otherwise (autocommit). Transactions opened through Kysely reach the buffer
 * from the driver (`CaptureDriver.ts`); those opened with SQL text (`sql\`begin\``) from the statement's own
 * transaction-control steps.
 *
 * Statements on one connection run one at a time, so a capture's reads, its write and its short transaction (see
 * `WriteContext.lockingRead`) are never interleaved with another statement of the same connection. Statements on
 * different connections share nothing: each connection has its own buffer.
 *
 * @internal
 */
import { CompiledQuery, SelectQueryNode } from "kysely"
import type {
  AbortableOperationOptions,
  ControlConnectionProvider,
  DatabaseConnection,
  Driver,
  QueryCompiler,
  QueryResult
} from "kysely"
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import type { Capabilities } from "./Capabilities.ts"
import { captureDelete } from "./CaptureDelete.ts"
import { captureInsert } from "./CaptureInsert.ts"
import { captureMerge } from "./CaptureMerge.ts"
import { captureUpdate } from "./CaptureUpdate.ts"
import { wholeTableEvent } from "./Events.ts"
import { hasIntegerKeys, isCertain, pinsOnly, predictEvents } from "./Prediction.ts"
import type { PendingHold, Publisher } from "./Publisher.ts"
import {
  type ExactWrite,
  operationOf,
  type PlannedStep,
  planStatement,
  type StatementPlan
} from "./StatementAnalysis.ts"
import type { TableKeysCache } from "./TableKeys.ts"
import { TransactionBuffer } from "./TransactionBuffer.ts"
import type { WatchedTables } from "./Watched.ts"
import type { CapturedWrite, WriteContext } from "./WriteContext.ts"

/** What every connection of one capturing driver shares. */
export interface CaptureRuntime {
  /** The wrapped driver, for the short transactions around autocommit writes. */
  readonly driver: Driver
  readonly compiler: QueryCompiler
  readonly capabilities: Capabilities
  readonly keys: TableKeysCache
  readonly publisher: Publisher
  readonly watched: () => WatchedTables
  readonly serverVersion: (
    connection: DatabaseConnection,
    options: AbortableOperationOptions | undefined
  ) => Promise<number | undefined>
}

export class CaptureConnection implements DatabaseConnection {
  /** The wrapped driver's connection. */
  readonly inner: DatabaseConnection
  /** The events of the transaction open on this connection. */
  readonly buffer = new TransactionBuffer()
  readonly cancelQuery?: (controlConnectionProvider: ControlConnectionProvider) => Promise<void>
  readonly killSession?: (controlConnectionProvider: ControlConnectionProvider) => Promise<void>
  readonly collectSessionInfo?: () => Promise<void>
  readonly #runtime: CaptureRuntime
  #queue: Promise<unknown> = Promise.resolve()

  constructor(inner: DatabaseConnection, runtime: CaptureRuntime) {
    this.inner = inner
    this.#runtime = runtime
    // Kysely reads these optional members to learn what the connection supports: mirror the wrapped one.
    if (inner.cancelQuery !== undefined) this.cancelQuery = (provider) => inner.cancelQuery!(provider)
    if (inner.killSession !== undefined) this.killSession = (provider) => inner.killSession!(provider)
    if (inner.collectSessionInfo !== undefined) this.collectSessionInfo = () => inner.collectSessionInfo!()
  }

  executeQuery<R>(compiledQuery: CompiledQuery, options?: AbortableOperationOptions): Promise<QueryResult<R>> {
    const run = this.#queue.then(() => this.#execute<R>(compiledQuery, options))
    this.#queue = run.catch(() => undefined)
    return run
  }

  async *streamQuery<R>(
    compiledQuery: CompiledQuery,
    chunkSize: number,
    options?: AbortableOperationOptions
  ): AsyncIterableIterator<QueryResult<R>> {
    const plan = this.#plan(compiledQuery)
    if (plan._tag === "Read") {
      yield* this.inner.streamQuery<R>(compiledQuery, chunkSize, options)
      return
    }
    // A streamed write is not captured row by row: what it writes is recorded whole-table once it completed.
    let failed = false
    try {
      yield* this.inner.streamQuery<R>(compiledQuery, chunkSize, options)
    } catch (error) {
      failed = true
      throw error
    } finally {
      if (!failed) {
        if (plan._tag === "Script") await this.#applySteps(plan.steps, undefined)
        else await this.#record([...plan.events, ...(plan.exact === undefined ? [] : [wholeTableOf(plan.exact)])])
      }
    }
  }

  #plan(compiledQuery: CompiledQuery): StatementPlan {
    // A hand-made compiled query may lack its tree: read it as SQL text.
    const query = compiledQuery.query ?? CompiledQuery.raw(compiledQuery.sql).query
    // Plain selects are the common case: no need to read the watched map for them.
    if (SelectQueryNode.is(query) && query.with === undefined) return { _tag: "Read" }
    return planStatement(query, compiledQuery.sql, this.#runtime.capabilities.flavor, this.#runtime.watched())
  }

  async #execute<R>(compiledQuery: CompiledQuery, options: AbortableOperationOptions | undefined) {
    const plan = this.#plan(compiledQuery)
    switch (plan._tag) {
      case "Read":
        return this.inner.executeQuery<R>(compiledQuery, options)
      case "Script":
        return this.#executeScript<R>(compiledQuery, plan.steps, options)
      case "Write": {
        const exact = plan.exact
        const predicted = exact === undefined ? [] : predictEvents(exact)
        // The statement goes out first: the hold's work then overlaps the database's. A certain prediction is the
        // write's events: no RETURNING, no reads around the write.
        const { flavor } = this.#runtime.capabilities
        const certain =
          exact !== undefined &&
          (flavor === "mysql" ? await this.#isCertainOnMysql(exact, predicted, options) : isCertain(predicted, flavor))
        const capturing =
          exact === undefined || certain
            ? this.inner
                .executeQuery<R>(compiledQuery, options)
                .then((result) => ({ result, events: result.numAffectedRows === 0n ? [] : predicted }))
            : this.#captureExact<R>(exact, compiledQuery, options)
        // An autocommit write whose rows its statement pins is held while it runs (see `Publisher.hold`).
        const held = predicted.length === 0 || this.buffer.active ? undefined : this.#runtime.publisher.hold(predicted)
        let captured: CapturedWrite<R>
        try {
          captured = await capturing
        } catch (error) {
          this.#runtime.publisher.abort(held)
          throw error
        }
        await this.#record([...captured.events, ...plan.events], held)
        return captured.result
      }
    }
  }

  /** Whether `predicted` are the write's events on MySQL (see `Prediction.isCertain`): the catalog says. */
  async #isCertainOnMysql(
    exact: ExactWrite,
    predicted: ReadonlyArray<InvalidationEvent>,
    options: AbortableOperationOptions | undefined
  ): Promise<boolean> {
    // Outside strict mode MySQL clamps an out-of-range value it stores: only keys the WHERE pins are certain there.
    if (!hasIntegerKeys(predicted) || !pinsOnly(exact)) return false
    const keys = await this.#runtime.keys.get(this.inner, exact.target.tableNode, options)
    return isCertain(predicted, "mysql", keys.integerColumns)
  }

  /** Runs SQL text, then applies its transaction-control and write steps in order. */
  async #executeScript<R>(
    compiledQuery: CompiledQuery,
    steps: ReadonlyArray<PlannedStep>,
    options: AbortableOperationOptions | undefined
  ): Promise<QueryResult<R>> {
    let result: QueryResult<R>
    try {
      result = await this.inner.executeQuery<R>(compiledQuery, options)
    } catch (error) {
      // A failed COMMIT or ROLLBACK ends the transaction (PostgreSQL rolls it back): its events must go.
      if (steps.some((step) => step._tag === "Control" && isEnd(step.control._tag))) this.buffer.discard()
      throw error
    }
    await this.#applySteps(steps, result)
    return result
  }

  async #applySteps(steps: ReadonlyArray<PlannedStep>, result: QueryResult<unknown> | undefined): Promise<void> {
    const committed: Array<InvalidationEvent> = []
    steps.forEach((step, index) => {
      if (step._tag === "Record") {
        if (this.buffer.active) this.buffer.record(step.events)
        else committed.push(...step.events)
        return
      }
      const control = step.control
      switch (control._tag) {
        case "Begin":
          if (this.buffer.active) {
            // MySQL commits the open transaction at BEGIN; PostgreSQL and SQLite keep it (or refuse).
            if (this.#runtime.capabilities.flavor !== "mysql") return
            committed.push(...this.buffer.commit())
          }
          this.buffer.begin()
          return
        case "Commit": {
          // PostgreSQL answers COMMIT of a failed transaction with ROLLBACK (the drivers report the command).
          const last = index === steps.length - 1
          const rolledBack = last && (result?.rows[0] as { command?: unknown } | undefined)?.command === "ROLLBACK"
          if (rolledBack) this.buffer.discard()
          else committed.push(...this.buffer.commit())
          return
        }
        case "Rollback":
          this.buffer.discard()
          return
        case "Savepoint":
          this.buffer.savepoint(control.name)
          return
        case "ReleaseSavepoint":
          this.buffer.releaseSavepoint(control.name)
          return
        case "RollbackToSavepoint":
          this.buffer.rollbackToSavepoint(control.name)
          return
      }
    })
    await this.#runtime.publisher.publish(committed)
  }

  /**
   * Events of a successful statement: into the open transaction, or published now (autocommit), through the
   * statement's hold when it has one.
   */
  async #record(events: ReadonlyArray<InvalidationEvent>, held?: PendingHold): Promise<void> {
    if (this.buffer.active) {
      if (events.length > 0) this.buffer.record(events)
    } else await this.#runtime.publisher.publish(events, held)
  }

  /**
   * Runs a write through its strategy. A strategy that must read rows before writing them asks `lockingRead`
   * first; outside a transaction, on dialects with row locks, that opens a short transaction around the reads and
   * the write, committed (or rolled back) here.
   */
  async #captureExact<R>(
    exact: ExactWrite,
    compiledQuery: CompiledQuery,
    options: AbortableOperationOptions | undefined
  ): Promise<CapturedWrite<R>> {
    const runtime = this.#runtime
    let opened = false
    const context: WriteContext = {
      connection: this.inner,
      compiler: runtime.compiler,
      capabilities: runtime.capabilities,
      keys: runtime.keys,
      options,
      lockingRead: async () => {
        if (!runtime.capabilities.lockingReads) return false
        if (!this.buffer.active && !opened) {
          await runtime.driver.beginTransaction(this.inner, {})
          opened = true
        }
        return true
      },
      serverVersion: () => runtime.serverVersion(this.inner, options)
    }
    try {
      const captured = await captureExact<R>(exact, compiledQuery, context)
      if (opened) await runtime.driver.commitTransaction(this.inner)
      return captured
    } catch (error) {
      if (opened) await runtime.driver.rollbackTransaction(this.inner).catch(() => undefined)
      throw error
    }
  }
}

const captureExact = <R>(exact: ExactWrite, compiledQuery: CompiledQuery, context: WriteContext) => {
  switch (exact._tag) {
    case "Insert":
      return captureInsert<R>(exact.node, exact.target, compiledQuery, context)
    case "Update":
      return captureUpdate<R>(exact.node, exact.target, compiledQuery, context)
    case "Delete":
      return captureDelete<R>(exact.node, exact.target, compiledQuery, context)
    case "Merge":
      return captureMerge<R>(exact.node, exact.target, compiledQuery, context)
  }
}

const wholeTableOf = (exact: ExactWrite): InvalidationEvent =>
  wholeTableEvent(exact.target.table, operationOf(exact.node))

const isEnd = (tag: string): boolean => tag === "Commit" || tag === "Rollback"
