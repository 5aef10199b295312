/**
 * Captures a DELETE from a watched table with the values of every row it removed: from RETURNING where the
 * dialect has it, otherwise from a select of the matched rows just before (same WHERE and WITH, same connection,
 * `FOR UPDATE`, so the rows read are the rows deleted).
 *
 * @internal
 */
import type { CompiledQuery, DeleteQueryNode } from "kysely"
import { rowEvents, wholeTableEvent } from "./Events.ts"
import type { WriteTarget } from "./StatementAnalysis.ts"
import {
  type CapturedWrite,
  executeAsIs,
  executeReturning,
  readRowsWithinBudget,
  type WriteContext
} from "./WriteContext.ts"

export const captureDelete = async <R>(
  node: DeleteQueryNode,
  target: WriteTarget,
  compiled: CompiledQuery,
  context: WriteContext
): Promise<CapturedWrite<R>> => {
  if (context.capabilities.returning) {
    const { result, rows } = await executeReturning<R, DeleteQueryNode>(context, node, compiled, target)
    return { result, events: rowEvents(target.table, "delete", rows) }
  }
  const lock = await context.lockingRead()
  const before = await readRowsWithinBudget(context, {
    source: target.source,
    qualifier: target.qualifier,
    columns: target.columns,
    where: node.where?.where,
    with: node.with,
    lock
  })
  const result = await executeAsIs<R>(context, compiled)
  return {
    result,
    events: before === undefined ? [wholeTableEvent(target.table, "delete")] : rowEvents(target.table, "delete", before)
  }
}
