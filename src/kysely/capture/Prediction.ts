/**
 * The rows a write is about to touch, read off the statement before it runs, where the statement pins them:
 *
 * - an UPDATE or DELETE whose WHERE is a conjunction that gives every watched column with `=` or `in` and plain
 *   values (`where id = 5`, `where team = 1 and id in (2, 3)`); an UPDATE must leave the watched columns alone or
 *   assign them plain values (the row is then predicted before and after);
 * - an INSERT of plain values that gives every watched column (no `on conflict do update`, `on duplicate key
 *   update` or REPLACE: those may change a row the values do not name).
 *
 * A prediction lets the cache hold the groups concurrently with the write. The rows the write reports once it
 * ran still decide what is invalidated (what the prediction missed is invalidated after the commit), so a
 * prediction only has to be cheap: anything unusual predicts nothing. A prediction that {@link isCertain} is
 * the write's events: the write then runs as it is, without RETURNING or reads around it.
 *
 * @internal
 */
import {
  AndNode,
  BinaryOperationNode,
  ColumnNode,
  OperatorNode,
  ParensNode,
  PrimitiveValueListNode,
  ReferenceNode,
  ValueListNode,
  ValueNode,
  ValuesNode
} from "kysely"
import type { OperationNode } from "kysely"
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import { assignments, keepsPlainValue, mayAssign, valueAfter } from "./Assignments.ts"
import { type CapturedRow, projectRow, rowEvents } from "./Events.ts"
import type { SqlFlavor } from "./Capabilities.ts"
import type { ExactWrite, WriteTarget } from "./StatementAnalysis.ts"

/** Most rows a prediction lists (the product of the `in` lists): past it, predicting is not worth it. */
const MAX_PREDICTED_ROWS = 100

const NOTHING: ReadonlyArray<InvalidationEvent> = []

export const predictEvents = (exact: ExactWrite): ReadonlyArray<InvalidationEvent> => {
  switch (exact._tag) {
    case "Update": {
      const pinned = pinnedRows(exact.node.where?.where, exact.target)
      if (pinned === undefined) return NOTHING
      const assigned = assignments(exact.node.updates)
      const { columns } = exact.target
      if (!columns.every((column) => keepsPlainValue(assigned, column))) return NOTHING
      const after = pinned.map((row) =>
        projectRow(
          Object.fromEntries(columns.map((column) => [column, valueAfter(assigned, column, row[column])])),
          columns
        )
      )
      return rowEvents(exact.target.table, "update", [...pinned, ...after])
    }
    case "Delete": {
      const pinned = pinnedRows(exact.node.where?.where, exact.target)
      return pinned === undefined ? NOTHING : rowEvents(exact.target.table, "delete", pinned)
    }
    case "Insert": {
      const { node, target } = exact
      if (node.onConflict?.updates !== undefined || node.onDuplicateKey !== undefined || node.replace) return NOTHING
      if (node.orAction !== undefined || node.columns === undefined || node.values === undefined) return NOTHING
      if (!ValuesNode.is(node.values) || node.values.values.length > MAX_PREDICTED_ROWS) return NOTHING
      const positions = target.columns.map((column) => node.columns!.findIndex((c) => c.column.name === column))
      if (positions.some((position) => position === -1)) return NOTHING
      const rows: Array<CapturedRow> = []
      for (const item of node.values.values) {
        const values = PrimitiveValueListNode.is(item) ? item.values : plainValues(item.values)
        if (values === undefined) return NOTHING
        rows.push(
          projectRow(
            Object.fromEntries(target.columns.map((column, i) => [column, values[positions[i]!]])),
            target.columns
          )
        )
      }
      return rowEvents(target.table, "insert", rows)
    }
    case "Merge":
      return NOTHING
  }
}

/**
 * Whether predicted events name the keys exactly as the database stores them, so that they can stand for the
 * rows the write reports. Only integers (numbers or bigints) qualify: a string may meet a case-insensitive
 * collation, a fraction a rounding column. On PostgreSQL and SQLite an integer equals a column's value only when
 * it is that value, whatever the column's type (a text column compares the number's text); MySQL compares `'05'`
 * and `5` as equal, so there every column must be of an integer type (`integerColumns`, from the catalog). The
 * predicted rows may include rows that do not exist: invalidating their groups costs a reload, never a stale
 * value.
 */
export const isCertain = (
  events: ReadonlyArray<InvalidationEvent>,
  flavor: SqlFlavor,
  integerColumns?: ReadonlyArray<string>
): boolean => {
  if (!hasIntegerKeys(events)) return false
  if (flavor === "postgres" || flavor === "sqlite") return true
  return (
    flavor === "mysql" &&
    integerColumns !== undefined &&
    events.every((event) =>
      event.rows.every((row) => Object.keys(row).every((column) => integerColumns.includes(column)))
    )
  )
}

/** Whether a write's predicted rows come from its WHERE alone (a delete, or an update leaving watched columns). */
export const pinsOnly = (exact: ExactWrite): boolean =>
  exact._tag === "Delete" ||
  (exact._tag === "Update" &&
    !exact.target.columns.some((column) => mayAssign(assignments(exact.node.updates), column)))

/** Whether there are events and every value of their rows is an integer (number or bigint). */
export const hasIntegerKeys = (events: ReadonlyArray<InvalidationEvent>): boolean =>
  events.length > 0 && events.every((event) => event.rows.every((row) => Object.values(row).every(isExactKey)))

const isExactKey = (value: unknown): boolean =>
  typeof value === "bigint" || (typeof value === "number" && Number.isSafeInteger(value))

/** The values of a list of plain value nodes; undefined when one is an expression. */
const plainValues = (nodes: ReadonlyArray<OperationNode>): ReadonlyArray<unknown> | undefined => {
  const values: Array<unknown> = []
  for (const node of nodes) {
    if (!ValueNode.is(node)) return undefined
    values.push(node.value)
  }
  return values
}

/** Every combination of the values the WHERE pins the watched columns to; undefined when one is not pinned. */
const pinnedRows = (where: OperationNode | undefined, target: WriteTarget): ReadonlyArray<CapturedRow> | undefined => {
  if (where === undefined) return undefined
  const pins = new Map<string, ReadonlyArray<unknown>>()
  collectPins(where, target, pins)
  let rows: Array<Record<string, unknown>> = [{}]
  for (const column of target.columns) {
    const values = pins.get(column)
    if (values === undefined || values.length === 0) return undefined
    if (rows.length * values.length > MAX_PREDICTED_ROWS) return undefined
    rows = rows.flatMap((row) => values.map((value) => ({ ...row, [column]: value })))
  }
  return rows.map((row) => projectRow(row, target.columns))
}

/**
 * Walks a conjunction, recording its `column = value` and `column in (values)` terms on the target's columns.
 * Every row the write touches satisfies each term of the conjunction, so the other terms (ORs included) only
 * narrow it further and are skipped.
 */
const collectPins = (node: OperationNode, target: WriteTarget, pins: Map<string, ReadonlyArray<unknown>>): void => {
  if (ParensNode.is(node)) {
    collectPins(node.node, target, pins)
    return
  }
  if (AndNode.is(node)) {
    collectPins(node.left, target, pins)
    collectPins(node.right, target, pins)
    return
  }
  if (!BinaryOperationNode.is(node) || !OperatorNode.is(node.operator)) return
  const column = columnOf(node.leftOperand, target)
  if (column === undefined) return
  const operator = node.operator.operator
  const values =
    operator === "=" && ValueNode.is(node.rightOperand)
      ? [node.rightOperand.value]
      : operator === "in" && PrimitiveValueListNode.is(node.rightOperand)
        ? node.rightOperand.values
        : operator === "in" && ValueListNode.is(node.rightOperand)
          ? plainValues(node.rightOperand.values)
          : undefined
  if (values === undefined) return
  // Two pins of one column: the rows satisfy both, so either lists them all; keep the shorter.
  const known = pins.get(column)
  if (known === undefined || values.length < known.length) pins.set(column, values)
}

/** The target column a term's left side names (unqualified, or qualified with the target's name). */
const columnOf = (node: OperationNode, target: WriteTarget): string | undefined => {
  if (ColumnNode.is(node)) return node.column.name
  if (!ReferenceNode.is(node) || !ColumnNode.is(node.column)) return undefined
  if (node.table !== undefined && node.table.table.identifier.name !== target.qualifier) return undefined
  return node.column.column.name
}
