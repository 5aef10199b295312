/**
 * Captures an UPDATE of a watched table with the old and the new values of every row it matched.
 *
 * - With RETURNING (PostgreSQL, PGlite, SQLite): the new values come from RETURNING. When the update assigns a
 *   watched column, the old values are selected first (same WHERE and WITH, same connection, `FOR UPDATE` where
 *   the dialect has it); otherwise the old values of the watched columns are the new ones.
 * - Without RETURNING (MySQL, MariaDB): the matched rows are selected first, with their primary key. When the
 *   update assigns a watched column, the new values are selected by primary key afterwards (a primary key
 *   assigned a plain value is followed to its new value). A table without primary key gets its new values from
 *   the assigned plain values; an expression assigned to a watched column of such a table, or to a primary key
 *   column, makes the write whole-table.
 *
 * Assigned columns are compared with the watched ones by name: a trigger or a generated column that changes a
 * watched column behind the update's back is not seen.
 *
 * @internal
 */
import type { CompiledQuery, UpdateQueryNode } from "kysely"
import { assignments, keepsPlainValue, mayAssign, valueAfter } from "./Assignments.ts"
import { type CapturedRow, projectRow, rowEvents, wholeTableEvent } from "./Events.ts"
import type { WriteTarget } from "./StatementAnalysis.ts"
import {
  type CapturedWrite,
  executeAsIs,
  executeReturning,
  executeWholeTable,
  readRowsByKeys,
  readRowsWithinBudget,
  type WriteContext
} from "./WriteContext.ts"

export const captureUpdate = async <R>(
  node: UpdateQueryNode,
  target: WriteTarget,
  compiled: CompiledQuery,
  context: WriteContext
): Promise<CapturedWrite<R>> => {
  const assigned = assignments(node.updates)
  const plain = (column: string) => keepsPlainValue(assigned, column)
  const changesWatched = target.columns.some((column) => mayAssign(assigned, column))
  const matched = (columns: ReadonlyArray<string>, lock: boolean) =>
    readRowsWithinBudget(context, {
      source: target.source,
      qualifier: target.qualifier,
      columns,
      where: node.where?.where,
      with: node.with,
      lock
    })
  const wholeTable = () => executeWholeTable<R>(context, compiled, target.table, "update")

  if (context.capabilities.returning) {
    const before = changesWatched ? await matched(target.columns, await context.lockingRead()) : []
    if (before === undefined) return wholeTable()
    const { result, rows } = await executeReturning<R, UpdateQueryNode>(context, node, compiled, target)
    return { result, events: rowEvents(target.table, "update", [...before, ...rows]) }
  }

  const primaryKey = changesWatched
    ? (await context.keys.get(context.connection, target.tableNode, context.options)).primaryKey
    : []
  const followKeys = primaryKey.length > 0 && primaryKey.every(plain)
  const selected = [...new Set([...target.columns, ...(followKeys ? primaryKey : [])])]
  const before = await matched(selected, await context.lockingRead())
  if (before === undefined) return wholeTable()
  const result = await executeAsIs<R>(context, compiled)
  const old = before.map((row) => projectRow(row, target.columns))
  if (!changesWatched) return { result, events: rowEvents(target.table, "update", old) }

  if (followKeys) {
    const matches = before.map((row) => ({
      columns: primaryKey,
      values: primaryKey.map((column) => valueAfter(assigned, column, row[column]))
    }))
    const after = await readRowsByKeys(context, target, matches, target.columns)
    return { result, events: rowEvents(target.table, "update", [...old, ...after]) }
  }
  if (target.columns.every(plain)) {
    const after = old.map(
      (row): CapturedRow =>
        projectRow(
          Object.fromEntries(target.columns.map((column) => [column, valueAfter(assigned, column, row[column])])),
          target.columns
        )
    )
    return { result, events: rowEvents(target.table, "update", [...old, ...after]) }
  }
  return { result, events: [wholeTableEvent(target.table, "update")] }
}
