/**
 * Captures a MERGE into a watched table.
 *
 * PostgreSQL 17 and later (PGlite included) return rows from MERGE: the target rows matched by the source are
 * selected first (`FOR UPDATE OF` the target), and RETURNING gives the rows inserted and updated (new values) and
 * deleted (old values). The old rows are every matched target row, a superset of the rows the WHEN clauses
 * changed. Without RETURNING on MERGE (PostgreSQL before 17, other dialects) the write is whole-table.
 *
 * @internal
 */
import { JoinNode } from "kysely"
import type { CompiledQuery, MergeQueryNode } from "kysely"
import { rowEvents } from "./Events.ts"
import type { WriteTarget } from "./StatementAnalysis.ts"
import {
  type CapturedWrite,
  executeReturning,
  executeWholeTable,
  readRowsWithinBudget,
  type WriteContext
} from "./WriteContext.ts"

/** `server_version_num` of the first PostgreSQL release with `MERGE ... RETURNING`. */
const MERGE_RETURNING_SINCE = 170000

export const captureMerge = async <R>(
  node: MergeQueryNode,
  target: WriteTarget,
  compiled: CompiledQuery,
  context: WriteContext
): Promise<CapturedWrite<R>> => {
  const using = node.using
  const version = context.capabilities.flavor === "postgres" ? await context.serverVersion() : undefined
  const wholeTable = () => executeWholeTable<R>(context, compiled, target.table, "merge")
  if (using?.on === undefined || version === undefined || version < MERGE_RETURNING_SINCE) return wholeTable()
  const lock = await context.lockingRead()
  const before = await readRowsWithinBudget(context, {
    source: target.source,
    qualifier: target.qualifier,
    columns: target.columns,
    joins: [JoinNode.createWithOn("InnerJoin", using.table, using.on.on)],
    with: node.with,
    lock
  })
  if (before === undefined) return wholeTable()
  // Source columns may share the target's names: qualify the added RETURNING columns.
  const { result, rows } = await executeReturning<R, MergeQueryNode>(context, node, compiled, target, target.qualifier)
  return { result, events: rowEvents(target.table, "merge", [...before, ...rows]) }
}
