/**
 * Reading the `set column = value` items of an UPDATE, `on conflict do update` or `on duplicate key update`:
 * which columns they assign, and whether the value is a plain value (whose result is known without asking the
 * database) or an expression.
 *
 * @internal
 */
import { ColumnNode, ReferenceNode, ValueNode } from "kysely"
import type { ColumnUpdateNode, OperationNode } from "kysely"

/** Column name -> assigned value node; undefined when a column cannot be named (it may then be any column). */
export const assignments = (
  updates: ReadonlyArray<ColumnUpdateNode> | undefined
): ReadonlyMap<string, OperationNode> | undefined => {
  const assigned = new Map<string, OperationNode>()
  for (const update of updates ?? []) {
    const column = ColumnNode.is(update.column)
      ? update.column.column.name
      : ReferenceNode.is(update.column) && ColumnNode.is(update.column.column)
        ? update.column.column.column.name
        : undefined
    if (column === undefined) return undefined
    assigned.set(column, update.value)
  }
  return assigned
}

/** Whether the assignments may change `column` (always, when a column could not be named). */
export const mayAssign = (assigned: ReadonlyMap<string, OperationNode> | undefined, column: string): boolean =>
  assigned === undefined || assigned.has(column)

/** True for a column left alone or assigned a plain value (not an expression). */
export const keepsPlainValue = (assigned: ReadonlyMap<string, OperationNode> | undefined, column: string): boolean => {
  if (assigned === undefined) return false
  const value = assigned.get(column)
  return value === undefined || ValueNode.is(value)
}

/** The value `column` has after the assignments, when `keepsPlainValue`: the value assigned, else `previous`. */
export const valueAfter = (
  assigned: ReadonlyMap<string, OperationNode> | undefined,
  column: string,
  previous: unknown
): unknown => {
  const value = assigned?.get(column)
  return value !== undefined && ValueNode.is(value) ? value.value : previous
}
