/**
 * Captures an INSERT (plain, upsert or replace) into a watched table with the values of the rows it left behind
 * and of the existing rows it may have changed.
 *
 * Rows written: from RETURNING where the dialect has it. Without RETURNING (MySQL, MariaDB):
 * - a plain insert takes them from its VALUES when every watched column is given there as a plain value;
 *   otherwise, when the auto-increment column is not given, it selects the ids the insert generated
 *   (`insertId` to `insertId + rows - 1`: consecutive for one statement with InnoDB's default "consecutive"
 *   auto-increment lock mode); otherwise the write is whole-table;
 * - an upsert or a replace selects them afterwards by the unique-key values of its VALUES.
 *
 * Rows overwritten: an upsert whose update assigns a watched column, and every replace (which deletes the
 * conflicting rows), first selects the existing rows matching the unique-key values of its VALUES (the conflict
 * target's columns when the statement names them, else every unique key of the table), locked where the dialect
 * can. An insert whose conflicting rows cannot be located this way (values from a SELECT, keys given as
 * expressions) is whole-table; so is a MySQL upsert that assigns a key column.
 *
 * @internal
 */
import { DefaultInsertValueNode, PrimitiveValueListNode, ValueNode, ValuesNode } from "kysely"
import type { CompiledQuery, InsertQueryNode, OperationNode, QueryResult } from "kysely"
import { assignments, mayAssign } from "./Assignments.ts"
import { type CapturedRow, MAX_EVENT_ROWS, projectRow, rowEvents, wholeTableEvent } from "./Events.ts"
import { between, type KeyMatch } from "./QueryNodes.ts"
import { operationOf, type WriteTarget } from "./StatementAnalysis.ts"
import {
  type CapturedWrite,
  executeAsIs,
  executeReturning,
  executeWholeTable,
  readRows,
  readRowsByKeys,
  type WriteContext
} from "./WriteContext.ts"

export const captureInsert = async <R>(
  node: InsertQueryNode,
  target: WriteTarget,
  compiled: CompiledQuery,
  context: WriteContext
): Promise<CapturedWrite<R>> => {
  const operation = operationOf(node)
  const conflict = conflictHandling(node)
  const wholeTable = () => executeWholeTable<R>(context, compiled, target.table, operation)

  const overwritesWatched =
    conflict.replaces || (conflict.updates && target.columns.some((column) => mayAssign(conflict.assigned, column)))
  const overwrites = conflict.replaces || conflict.updates
  // Without RETURNING, the rows an upsert leaves behind are found again by their keys after the write.
  const locate = overwritesWatched || (overwrites && !context.capabilities.returning)
  let matches: ReadonlyArray<KeyMatch> = []
  if (locate) {
    const located = await conflictMatches(node, conflict, target, context)
    if (located === undefined) return wholeTable()
    const movesKeys = located.keyColumns.some((column) => mayAssign(conflict.assigned, column))
    if (conflict.updates && movesKeys && !context.capabilities.returning) return wholeTable()
    matches = located.matches
  }
  const before =
    overwritesWatched && matches.length > 0
      ? await readRowsByKeys(context, target, matches, target.columns, await context.lockingRead())
      : []

  if (context.capabilities.returning) {
    const { result, rows } = await executeReturning<R, InsertQueryNode>(context, node, compiled, target)
    return { result, events: rowEvents(target.table, operation, [...before, ...rows]) }
  }
  const result = await executeAsIs<R>(context, compiled)
  const after = locate
    ? await readRowsByKeys(context, target, matches, target.columns)
    : await insertedRows(node, target, result, context)
  if (after === undefined) return { result, events: [wholeTableEvent(target.table, operation)] }
  return { result, events: rowEvents(target.table, operation, [...before, ...after]) }
}

interface ConflictHandling {
  /** Conflicting rows are deleted and replaced (`replace into`, `insert or replace`). */
  readonly replaces: boolean
  /** Conflicting rows are updated (`on conflict do update`, `on duplicate key update`). */
  readonly updates: boolean
  readonly assigned: ReadonlyMap<string, OperationNode> | undefined
  /** The conflict target's columns, when the statement names them. */
  readonly keyColumns: ReadonlyArray<string> | undefined
}

const conflictHandling = (node: InsertQueryNode): ConflictHandling => {
  const replaces = node.replace === true || node.orAction?.action.toLowerCase() === "replace"
  const onConflict = node.onConflict
  if (onConflict !== undefined && !onConflict.doNothing) {
    const named = onConflict.indexExpression === undefined && onConflict.columns !== undefined
    return {
      replaces,
      updates: true,
      assigned: assignments(onConflict.updates),
      keyColumns: named ? onConflict.columns!.map((column) => column.column.name) : undefined
    }
  }
  if (node.onDuplicateKey !== undefined) {
    return { replaces, updates: true, assigned: assignments(node.onDuplicateKey.updates), keyColumns: undefined }
  }
  return { replaces, updates: false, assigned: new Map(), keyColumns: undefined }
}

/** A VALUES cell: a plain value, the column's default (column not given, or DEFAULT), or an expression. */
type Cell =
  | { readonly _tag: "Value"; readonly value: unknown }
  | { readonly _tag: "Default" }
  | { readonly _tag: "Expression" }

const DEFAULT: Cell = { _tag: "Default" }
const EXPRESSION: Cell = { _tag: "Expression" }

/** The insert's VALUES rows, cell by column name; undefined when the rows come from elsewhere (a SELECT). */
const valuesRows = (node: InsertQueryNode): ReadonlyArray<ReadonlyMap<string, Cell>> | undefined => {
  if (node.values === undefined || !ValuesNode.is(node.values) || node.columns === undefined) return undefined
  const columns = node.columns.map((column) => column.column.name)
  return node.values.values.map((item) => {
    const row = new Map<string, Cell>()
    item.values.forEach((value: unknown, index) => {
      row.set(
        columns[index]!,
        PrimitiveValueListNode.is(item) ? { _tag: "Value", value } : cellOf(value as OperationNode)
      )
    })
    return row
  })
}

const cellOf = (value: OperationNode): Cell => {
  if (ValueNode.is(value)) return { _tag: "Value", value: value.value }
  if (DefaultInsertValueNode.is(value)) return DEFAULT
  return EXPRESSION
}

/**
 * Key matches locating the existing rows each VALUES row may conflict with, over the candidate unique keys.
 * A row whose keys are all defaulted (or null, which never conflicts) cannot conflict and needs none; undefined
 * when some row may conflict through a key whose value is an expression, or the rows come from a SELECT.
 */
const conflictMatches = async (
  node: InsertQueryNode,
  conflict: ConflictHandling,
  target: WriteTarget,
  context: WriteContext
): Promise<{ readonly matches: ReadonlyArray<KeyMatch>; readonly keyColumns: ReadonlyArray<string> } | undefined> => {
  const rows = valuesRows(node)
  if (rows === undefined || rows.length > MAX_EVENT_ROWS) return undefined
  const keys =
    conflict.keyColumns !== undefined
      ? [conflict.keyColumns]
      : (await context.keys.get(context.connection, target.tableNode, context.options)).uniqueKeys
  if (keys.length === 0) return undefined
  const matches: Array<KeyMatch> = []
  for (const row of rows) {
    for (const key of keys) {
      const cells = key.map((column) => row.get(column) ?? DEFAULT)
      if (cells.some((cell) => cell._tag === "Expression")) return undefined
      const values = cells.map((cell) => (cell._tag === "Value" ? cell.value : null))
      if (values.some((value) => value === null || value === undefined)) continue
      matches.push({ columns: key, values })
    }
  }
  return { matches, keyColumns: [...new Set(keys.flat())] }
}

/**
 * The rows a plain insert wrote, without RETURNING: from its VALUES, or by the auto-increment ids it generated;
 * undefined when neither is possible.
 */
const insertedRows = async <R>(
  node: InsertQueryNode,
  target: WriteTarget,
  result: QueryResult<R>,
  context: WriteContext
): Promise<ReadonlyArray<CapturedRow> | undefined> => {
  const rows = valuesRows(node)
  if (rows !== undefined) {
    const cells = rows.map((row) => target.columns.map((column) => row.get(column) ?? DEFAULT))
    if (cells.every((row) => row.every((cell) => cell._tag === "Value"))) {
      return cells.map((row) =>
        projectRow(
          Object.fromEntries(target.columns.map((column, index) => [column, (row[index] as { value: unknown }).value])),
          target.columns
        )
      )
    }
  }
  const { autoIncrement } = await context.keys.get(context.connection, target.tableNode, context.options)
  const firstId = result.insertId
  if (autoIncrement === undefined || firstId === undefined) return undefined
  if (node.columns?.some((column) => column.column.name === autoIncrement)) return undefined
  const count = BigInt(rows?.length ?? Number(result.numAffectedRows ?? 0n))
  if (count === 0n) return []
  if (count > BigInt(MAX_EVENT_ROWS)) return undefined
  return readRows(context, {
    source: target.source,
    qualifier: target.qualifier,
    columns: target.columns,
    where: between(autoIncrement, target.qualifier, asParameter(firstId), asParameter(firstId + count - 1n))
  })
}

/** A bigint as a driver parameter: a number when exact, else its decimal string. */
const asParameter = (value: bigint): number | string =>
  value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value.toString()
