/**
 * What a capture strategy works with (the write's connection, the dialect's compiler and capabilities, the key
 * cache) and the steps the strategies share: reading the target's rows, running the write with the watched
 * columns added to its RETURNING, and finding rows by key values.
 *
 * Every query here runs on the connection of the write, so it sees the write's transaction. A read that must
 * see the rows exactly as the write will find them goes through `lockingRead` first, which takes row locks where
 * the dialect has them (opening a short transaction around an autocommit write when needed).
 *
 * @internal
 */
import { CompiledQuery, createQueryId } from "kysely"
import type {
  AbortableOperationOptions,
  DatabaseConnection,
  QueryCompiler,
  QueryResult,
  ReturningNode,
  RootOperationNode
} from "kysely"
import type { InvalidationEvent, WriteOperation } from "../InvalidationEvent.ts"
import type { Capabilities } from "./Capabilities.ts"
import { type CapturedRow, MAX_EVENT_ROWS, projectRow, wholeTableEvent } from "./Events.ts"
import { type KeyMatch, matchAny, type RowSelect, selectRows } from "./QueryNodes.ts"
import { addCaptureReturning, splitReturning } from "./Returning.ts"
import type { WriteTarget } from "./StatementAnalysis.ts"
import type { TableKeysCache } from "./TableKeys.ts"

export interface WriteContext {
  /** The wrapped driver's connection the write runs on. */
  readonly connection: DatabaseConnection
  readonly compiler: QueryCompiler
  readonly capabilities: Capabilities
  readonly keys: TableKeysCache
  readonly options: AbortableOperationOptions | undefined
  /**
   * Call before reading rows the write is about to change. Resolves to whether the read should lock them
   * (`FOR UPDATE`); where the dialect has row locks a transaction is then guaranteed to be open.
   */
  readonly lockingRead: () => Promise<boolean>
  /** PostgreSQL's `server_version_num` (undefined elsewhere), for features that depend on the version. */
  readonly serverVersion: () => Promise<number | undefined>
}

/** The caller's result of a write, and the events it produced. */
export interface CapturedWrite<R> {
  readonly result: QueryResult<R>
  readonly events: ReadonlyArray<InvalidationEvent>
}

/** Kysely's placeholders and quoting for `node`, under the query id of the caller's statement. */
export const compile = (context: WriteContext, node: RootOperationNode, like: CompiledQuery): CompiledQuery =>
  context.compiler.compileQuery(node, like.queryId)

/** Runs the caller's statement as compiled. */
export const executeAsIs = <R>(context: WriteContext, compiled: CompiledQuery): Promise<QueryResult<R>> =>
  context.connection.executeQuery<R>(compiled, context.options)

/** Runs the caller's statement as compiled, its rows unknown: the write is a whole-table event of `table`. */
export const executeWholeTable = async <R>(
  context: WriteContext,
  compiled: CompiledQuery,
  table: string,
  operation: WriteOperation
): Promise<CapturedWrite<R>> => ({
  result: await executeAsIs<R>(context, compiled),
  events: [wholeTableEvent(table, operation)]
})

/** Rows of a select built by `selectRows`, projected onto `columns`. */
export const readRows = async (context: WriteContext, select: RowSelect): Promise<ReadonlyArray<CapturedRow>> => {
  const compiled = context.compiler.compileQuery(selectRows(select), createQueryId())
  const { rows } = await context.connection.executeQuery<Record<string, unknown>>(compiled, context.options)
  return rows.map((row) => projectRow(row, select.columns))
}

/**
 * The rows a write is about to change, read with a limit one past {@link MAX_EVENT_ROWS}: undefined when there
 * are more (the write is then whole-table, see `rowEvents`).
 */
export const readRowsWithinBudget = async (
  context: WriteContext,
  select: RowSelect
): Promise<ReadonlyArray<CapturedRow> | undefined> => {
  const rows = await readRows(context, { ...select, limit: MAX_EVENT_ROWS + 1 })
  return rows.length > MAX_EVENT_ROWS ? undefined : rows
}

/** Most keys per select, far below every dialect's parameter limit. */
const KEYS_PER_SELECT = 500

/** The target's rows matching any of `matches`, projected onto `columns`, a few hundred keys per query. */
export const readRowsByKeys = async (
  context: WriteContext,
  target: WriteTarget,
  matches: ReadonlyArray<KeyMatch>,
  columns: ReadonlyArray<string>,
  lock = false
): Promise<ReadonlyArray<CapturedRow>> => {
  const rows: Array<CapturedRow> = []
  for (let start = 0; start < matches.length; start += KEYS_PER_SELECT) {
    const where = matchAny(matches.slice(start, start + KEYS_PER_SELECT), target.qualifier)
    if (where === undefined) continue
    rows.push(
      ...(await readRows(context, { source: target.source, qualifier: target.qualifier, columns, where, lock }))
    )
  }
  return rows
}

/**
 * Runs `node` (the caller's statement, possibly rebuilt) with the target's watched columns added to its
 * RETURNING; gives the caller's result unchanged and the returned rows.
 */
export const executeReturning = async <R, N extends RootOperationNode & { readonly returning?: ReturningNode }>(
  context: WriteContext,
  node: N,
  compiled: CompiledQuery,
  target: WriteTarget,
  qualifier?: string
): Promise<{ readonly result: QueryResult<R>; readonly rows: ReadonlyArray<CapturedRow> }> => {
  const injected = addCaptureReturning(node, target.columns, qualifier)
  const raw = await context.connection.executeQuery<R>(compile(context, injected.node, compiled), context.options)
  const { result, rows } = splitReturning(raw, injected, target.columns)
  return { result: injected.callerReturning ? result : await completeCounts(context, result), rows }
}

/**
 * SQLite drivers read `numAffectedRows` / `insertId` from the statement's run, which they skip for statements that
 * return rows (some then report `changes()`, none `insertId`). A statement the capture gave a RETURNING gets what
 * is missing from `changes()` / `last_insert_rowid()`, which is what the run would have said.
 */
const completeCounts = async <R>(context: WriteContext, result: QueryResult<R>): Promise<QueryResult<R>> => {
  if (context.capabilities.flavor !== "sqlite") return result
  if (result.numAffectedRows !== undefined && result.insertId !== undefined) return result
  const { rows } = await context.connection.executeQuery<{ changes: unknown; id: unknown }>(
    CompiledQuery.raw("select changes() as changes, last_insert_rowid() as id"),
    context.options
  )
  const counts = rows[0]
  if (counts === undefined) return result
  return {
    ...result,
    numAffectedRows: result.numAffectedRows ?? BigInt(counts.changes as number | bigint),
    insertId: result.insertId ?? BigInt(counts.id as number | bigint)
  }
}
