/**
 * Reads a compiled query's operation tree and decides how its writes are captured.
 *
 * - A statement that writes nothing to a watched table is a `Read`: it runs untouched, at no cost.
 * - SQL text (a `RawNode` root) is a `Script`: its transaction-control statements and blind writes, in order
 *   (see `RawSqlAnalysis.ts`).
 * - An insert, update, delete or merge of a watched table whose shape the capture strategies can follow is an
 *   `exact` write: its rows will be read (RETURNING, or selects around it). Shapes they cannot follow become
 *   whole-table events: updates with FROM / joins / LIMIT, deletes with USING / joins / LIMIT, multi-table
 *   targets, targets that are not plain tables, EXPLAIN, raw end modifiers, and any statement whose WITH clause
 *   holds a data-modifying CTE (whose own writes are whole-table events too).
 * - DROP TABLE built with the schema builder empties the table: a whole-table event.
 *
 * @internal
 */
import {
  AliasNode,
  ColumnUpdateNode,
  DeleteQueryNode,
  IdentifierNode,
  InsertQueryNode,
  ListNode,
  MergeQueryNode,
  RawNode,
  ReferenceNode,
  SelectQueryNode,
  TableNode,
  UpdateQueryNode
} from "kysely"
import type { OperationNode, RootOperationNode, WithNode } from "kysely"
import type { InvalidationEvent, WriteOperation } from "../InvalidationEvent.ts"
import type { SqlFlavor } from "./Capabilities.ts"
import { analyzeSql, type BlindWrite, type TransactionControl } from "./RawSqlAnalysis.ts"
import { blindEvents, findWatched, type WatchedTables } from "./Watched.ts"

/** The watched table a write targets, and how the statement refers to it. */
export interface WriteTarget {
  /** Name as the watched map spells it (the event's table). */
  readonly table: string
  readonly columns: ReadonlyArray<string>
  /** The table node as written (schema included), for selects and introspection. */
  readonly tableNode: TableNode
  /** The target as it appears in the statement: the table node, or `table as alias`. */
  readonly source: TableNode | AliasNode
  /** The name column references are qualified with: the alias, else the table name. */
  readonly qualifier: string
}

export type ExactWrite =
  | { readonly _tag: "Insert"; readonly node: InsertQueryNode; readonly target: WriteTarget }
  | { readonly _tag: "Update"; readonly node: UpdateQueryNode; readonly target: WriteTarget }
  | { readonly _tag: "Delete"; readonly node: DeleteQueryNode; readonly target: WriteTarget }
  | { readonly _tag: "Merge"; readonly node: MergeQueryNode; readonly target: WriteTarget }

/** A script step with its whole-table events already resolved against the watched map. */
export type PlannedStep =
  | { readonly _tag: "Control"; readonly control: TransactionControl }
  | { readonly _tag: "Record"; readonly events: ReadonlyArray<InvalidationEvent> }

export type StatementPlan =
  | { readonly _tag: "Read" }
  | { readonly _tag: "Script"; readonly steps: ReadonlyArray<PlannedStep> }
  | {
      readonly _tag: "Write"
      /** The statement's own write, captured with its rows; undefined when all of it is whole-table. */
      readonly exact: ExactWrite | undefined
      /** Whole-table events of the writes that cannot be followed. */
      readonly events: ReadonlyArray<InvalidationEvent>
    }

const READ: StatementPlan = { _tag: "Read" }

export const planStatement = (
  query: RootOperationNode,
  sql: string,
  flavor: SqlFlavor,
  watched: WatchedTables
): StatementPlan => {
  switch (query.kind) {
    case "SelectQueryNode":
      return writePlan(undefined, nestedWrites(query.with, flavor), watched)
    case "RawNode":
      return scriptPlan(sql, flavor, watched)
    case "DropTableNode":
      return writePlan(undefined, [{ operation: "delete", tables: [query.table.table.identifier.name] }], watched)
    case "InsertQueryNode":
    case "UpdateQueryNode":
    case "DeleteQueryNode":
    case "MergeQueryNode":
      return planWrite(query, flavor, watched)
    default:
      return READ
  }
}

const scriptPlan = (sql: string, flavor: SqlFlavor, watched: WatchedTables): StatementPlan => {
  const steps: Array<PlannedStep> = []
  for (const step of analyzeSql(sql, flavor)) {
    if (step._tag === "Control") {
      steps.push(step)
    } else {
      const events = blindEvents(step.write, watched)
      if (events.length > 0) steps.push({ _tag: "Record", events })
    }
  }
  return steps.length === 0 ? READ : { _tag: "Script", steps }
}

const writePlan = (
  exact: ExactWrite | undefined,
  blind: ReadonlyArray<BlindWrite>,
  watched: WatchedTables
): StatementPlan => {
  const events = blind.flatMap((write) => blindEvents(write, watched))
  return exact === undefined && events.length === 0 ? READ : { _tag: "Write", exact, events }
}

type WriteNode = InsertQueryNode | UpdateQueryNode | DeleteQueryNode | MergeQueryNode

const planWrite = (node: WriteNode, flavor: SqlFlavor, watched: WatchedTables): StatementPlan => {
  const nested = nestedWrites(node.with, flavor)
  const exact = nested.length === 0 ? exactWrite(node, watched) : undefined
  if (exact !== undefined) return writePlan(exact, [], watched)
  return writePlan(undefined, [...nested, { operation: operationOf(node), tables: writtenTables(node) }], watched)
}

export const operationOf = (node: WriteNode): WriteOperation => {
  switch (node.kind) {
    case "InsertQueryNode": {
      const replaces = node.replace === true || node.orAction?.action.toLowerCase() === "replace"
      const updates = node.onDuplicateKey !== undefined || (node.onConflict !== undefined && !node.onConflict.doNothing)
      return replaces || updates ? "upsert" : "insert"
    }
    case "UpdateQueryNode":
      return "update"
    case "DeleteQueryNode":
      return "delete"
    case "MergeQueryNode":
      return "merge"
  }
}

/** The write's target when it is a watched plain table and the statement has a shape the strategies follow. */
const exactWrite = (node: WriteNode, watched: WatchedTables): ExactWrite | undefined => {
  // EXPLAIN ANALYZE runs the write; any EXPLAIN is taken as a write whose rows are unknown.
  if (("explain" in node && node.explain !== undefined) || (node.endModifiers?.length ?? 0) > 0) return undefined
  if (node.top !== undefined || node.output !== undefined) return undefined
  switch (node.kind) {
    case "InsertQueryNode": {
      const target = writeTarget(node.into, watched)
      return target && { _tag: "Insert", node, target }
    }
    case "UpdateQueryNode": {
      if (node.from !== undefined || (node.joins?.length ?? 0) > 0 || node.limit !== undefined) return undefined
      const target = writeTarget(node.table, watched)
      return target && { _tag: "Update", node, target }
    }
    case "DeleteQueryNode": {
      if (node.using !== undefined || (node.joins?.length ?? 0) > 0 || node.limit !== undefined) return undefined
      if (node.from.froms.length !== 1) return undefined
      const target = writeTarget(node.from.froms[0], watched)
      return target && { _tag: "Delete", node, target }
    }
    case "MergeQueryNode": {
      if (node.using === undefined) return undefined
      const target = writeTarget(node.into, watched)
      return target && { _tag: "Merge", node, target }
    }
  }
}

interface TableReference {
  readonly tableNode: TableNode
  readonly alias: string | undefined
  readonly source: TableNode | AliasNode
}

/** `table` or `table as alias`; undefined for anything else (a subquery, a list of tables, raw SQL). */
const tableReference = (node: OperationNode | undefined): TableReference | undefined => {
  if (node === undefined) return undefined
  if (TableNode.is(node)) return { tableNode: node, alias: undefined, source: node }
  if (AliasNode.is(node) && TableNode.is(node.node) && IdentifierNode.is(node.alias)) {
    return { tableNode: node.node, alias: node.alias.name, source: node }
  }
  return undefined
}

const writeTarget = (node: OperationNode | undefined, watched: WatchedTables): WriteTarget | undefined => {
  const reference = tableReference(node)
  if (reference === undefined) return undefined
  const name = reference.tableNode.table.identifier.name
  const found = findWatched(watched, name)
  // A table watched without columns has no rows to report: its writes are whole-table.
  if (found === undefined || found.columns.length === 0) return undefined
  return {
    table: found.table,
    columns: found.columns,
    tableNode: reference.tableNode,
    source: reference.source,
    qualifier: reference.alias ?? name
  }
}

/** The tables a write may change, for whole-table events; "every" when one of them cannot be named. */
const writtenTables = (node: WriteNode): ReadonlyArray<string> | "every" => {
  const named = (nodes: ReadonlyArray<OperationNode | undefined>): ReadonlyArray<string> | "every" => {
    const names: Array<string> = []
    for (const item of nodes) {
      const reference = tableReference(item)
      if (reference === undefined) return "every"
      names.push(reference.tableNode.table.identifier.name)
    }
    return names
  }
  switch (node.kind) {
    case "InsertQueryNode":
      return named([node.into])
    case "MergeQueryNode":
      return named([node.into])
    case "DeleteQueryNode":
      return named(node.from.froms)
    case "UpdateQueryNode": {
      const targets = node.table !== undefined && ListNode.is(node.table) ? node.table.items : [node.table]
      const names = named(targets)
      if (names === "every" || (node.joins === undefined && node.from === undefined)) return names
      // MySQL's `update a join b set b.x = ...` writes joined tables too: follow SET's table qualifiers.
      const sources = [...targets, ...(node.from?.froms ?? []), ...(node.joins ?? []).map((join) => join.table)]
      const byName = new Map<string, string>()
      for (const source of sources) {
        const reference = tableReference(source)
        if (reference === undefined) continue
        const name = reference.tableNode.table.identifier.name
        byName.set(reference.alias ?? name, name)
        byName.set(name, name)
      }
      const written = new Set(names)
      for (const update of node.updates ?? []) {
        if (!ColumnUpdateNode.is(update) || !ReferenceNode.is(update.column)) continue
        const qualifier = update.column.table?.table.identifier.name
        if (qualifier === undefined) continue
        const name = byName.get(qualifier)
        if (name === undefined) return "every"
        written.add(name)
      }
      return [...written]
    }
  }
}

/** The writes of data-modifying CTEs (PostgreSQL's `with d as (delete ...)`), as whole-table writes. */
const nestedWrites = (withNode: WithNode | undefined, flavor: SqlFlavor): ReadonlyArray<BlindWrite> => {
  if (withNode === undefined) return []
  return withNode.expressions.flatMap((cte): ReadonlyArray<BlindWrite> => {
    const expression = cte.expression
    if (
      InsertQueryNode.is(expression) ||
      UpdateQueryNode.is(expression) ||
      DeleteQueryNode.is(expression) ||
      MergeQueryNode.is(expression)
    ) {
      return [
        ...nestedWrites(expression.with, flavor),
        { operation: operationOf(expression), tables: writtenTables(expression) }
      ]
    }
    if (SelectQueryNode.is(expression)) return nestedWrites(expression.with, flavor)
    if (RawNode.is(expression)) {
      return analyzeSql(expression.sqlFragments.join(" ? "), flavor).flatMap((step) =>
        step._tag === "Write" ? [step.write] : []
      )
    }
    return []
  })
}
