/**
 * Adds the watched columns to a write's RETURNING clause, and takes them back out of the result, so the caller
 * gets exactly what the unmodified statement would have given.
 *
 * Each added column is aliased `__cacheme_capture_<i>`, a name no caller column clashes with, so the caller's own
 * RETURNING (`*`, aliases, expressions) is left as it is and the extra keys can be removed from each row. When the
 * caller had no RETURNING the rows are emptied again; `numAffectedRows` and `insertId` are kept as the driver
 * reported them (what SQLite drivers leave out for statements that return rows is filled in by
 * `WriteContext.executeReturning`).
 *
 * @internal
 */
import { AliasNode, IdentifierNode, QueryNode, SelectionNode } from "kysely"
import type { QueryResult, ReturningNode } from "kysely"
import { type CapturedRow, projectRow } from "./Events.ts"
import { columnReference } from "./QueryNodes.ts"

const ALIAS_PREFIX = "__cacheme_capture_"

interface HasReturning {
  readonly returning?: ReturningNode
}

/** A write with the watched columns appended to its RETURNING, and the aliases they come back under. */
export interface CaptureReturning<N> {
  readonly node: N
  readonly aliases: ReadonlyArray<string>
  /** Whether the caller asked for rows itself. */
  readonly callerReturning: boolean
}

export const addCaptureReturning = <N extends HasReturning>(
  node: N,
  columns: ReadonlyArray<string>,
  qualifier?: string
): CaptureReturning<N> => {
  const aliases = columns.map((_, index) => `${ALIAS_PREFIX}${index}`)
  const selections = columns.map((column, index) =>
    SelectionNode.create(AliasNode.create(columnReference(column, qualifier), IdentifierNode.create(aliases[index]!)))
  )
  return {
    node: QueryNode.cloneWithReturning(node, selections),
    aliases,
    callerReturning: node.returning !== undefined
  }
}

/** The caller's result (extra columns removed, or no rows) and the captured rows keyed by the watched columns. */
export const splitReturning = <R>(
  result: QueryResult<R>,
  injected: CaptureReturning<unknown>,
  columns: ReadonlyArray<string>
): { readonly result: QueryResult<R>; readonly rows: ReadonlyArray<CapturedRow> } => {
  const rows: Array<CapturedRow> = []
  const callerRows: Array<R> = []
  for (const row of result.rows as ReadonlyArray<Record<string, unknown>>) {
    const captured: Record<string, unknown> = {}
    columns.forEach((column, index) => {
      captured[column] = row[injected.aliases[index]!]
    })
    rows.push(projectRow(captured, columns))
    if (injected.callerReturning) callerRows.push(withoutKeys(row, injected.aliases) as R)
  }
  return { result: { ...result, rows: callerRows }, rows }
}

/** A copy of `row` without `keys`, with the same prototype (some drivers give null-prototype rows). */
const withoutKeys = (row: Record<string, unknown>, keys: ReadonlyArray<string>): Record<string, unknown> => {
  const copy = Object.create(Object.getPrototypeOf(row)) as Record<string, unknown>
  for (const key of Object.keys(row)) {
    if (!keys.includes(key)) copy[key] = row[key]
  }
  return copy
}
