/**
 * Operation nodes the capture builds around a write: selects of the target's rows (by the write's own WHERE, or
 * by key values) and key-match conditions. Nodes are built new, never mutated, and compiled with the wrapped
 * dialect's own query compiler, so quoting and placeholders are the dialect's.
 *
 * @internal
 */
import {
  AliasNode,
  AndNode,
  BinaryOperationNode,
  ColumnNode,
  FromNode,
  IdentifierNode,
  LimitNode,
  OperatorNode,
  OrNode,
  ParensNode,
  PrimitiveValueListNode,
  ReferenceNode,
  SelectionNode,
  SelectModifierNode,
  type SelectQueryNode,
  TableNode,
  ValueNode,
  WhereNode
} from "kysely"
import type { JoinNode, OperationNode, WithNode } from "kysely"

/** `"qualifier"."column"`, or `"column"` without a qualifier. */
export const columnReference = (column: string, qualifier?: string): ReferenceNode =>
  ReferenceNode.create(ColumnNode.create(column), qualifier === undefined ? undefined : TableNode.create(qualifier))

export interface RowSelect {
  /** The FROM item: the write's target as written (`table` or `table as alias`). */
  readonly source: OperationNode
  /** The name the target's columns are qualified with. */
  readonly qualifier: string
  readonly columns: ReadonlyArray<string>
  readonly where?: OperationNode | undefined
  readonly with?: WithNode | undefined
  readonly joins?: ReadonlyArray<JoinNode> | undefined
  /** Lock the selected rows of the target (`FOR UPDATE`, of the target only when there are joins). */
  readonly lock?: boolean
  readonly limit?: number
}

/** `select "q"."c1" as "c1", ... from <source> [joins] [where ...] [for update]`, with the write's WITH if any. */
export const selectRows = (spec: RowSelect): SelectQueryNode => {
  const selections = spec.columns.map((column) =>
    SelectionNode.create(AliasNode.create(columnReference(column, spec.qualifier), IdentifierNode.create(column)))
  )
  const lock =
    spec.lock === true
      ? [
          SelectModifierNode.create(
            "ForUpdate",
            (spec.joins?.length ?? 0) > 0 ? [TableNode.create(spec.qualifier)] : undefined
          )
        ]
      : undefined
  return Object.freeze({
    kind: "SelectQueryNode",
    from: FromNode.create([spec.source]),
    selections: Object.freeze(selections),
    ...(spec.with !== undefined && { with: spec.with }),
    ...(spec.joins !== undefined && spec.joins.length > 0 && { joins: spec.joins }),
    ...(spec.where !== undefined && { where: WhereNode.create(spec.where) }),
    ...(spec.limit !== undefined && { limit: LimitNode.create(ValueNode.create(spec.limit)) }),
    ...(lock !== undefined && { endModifiers: Object.freeze(lock) })
  })
}

/** One row's values for a set of key columns, in the columns' order. */
export interface KeyMatch {
  readonly columns: ReadonlyArray<string>
  readonly values: ReadonlyArray<unknown>
}

/**
 * A condition true for the rows matching any of `matches`: `k in (...)` for single-column keys, OR-ed
 * `(k1 = ? and k2 = ?)` for composite ones.
 */
export const matchAny = (matches: ReadonlyArray<KeyMatch>, qualifier: string): OperationNode | undefined => {
  const byColumns = new Map<string, Array<KeyMatch>>()
  for (const match of matches) {
    const signature = JSON.stringify(match.columns)
    const group = byColumns.get(signature)
    if (group === undefined) byColumns.set(signature, [match])
    else group.push(match)
  }
  const conditions: Array<OperationNode> = []
  for (const group of byColumns.values()) {
    const columns = group[0]!.columns
    if (columns.length === 1) {
      conditions.push(
        BinaryOperationNode.create(
          columnReference(columns[0]!, qualifier),
          OperatorNode.create("in"),
          PrimitiveValueListNode.create(group.map((match) => match.values[0]))
        )
      )
      continue
    }
    for (const match of group) {
      const equalities = columns.map(
        (column, index): OperationNode =>
          BinaryOperationNode.create(
            columnReference(column, qualifier),
            OperatorNode.create("="),
            ValueNode.create(match.values[index])
          )
      )
      conditions.push(ParensNode.create(equalities.reduce((left, right) => AndNode.create(left, right))))
    }
  }
  if (conditions.length === 0) return undefined
  return conditions.reduce((left, right) => OrNode.create(left, right))
}

/** `column >= low and column <= high`. */
export const between = (column: string, qualifier: string, low: unknown, high: unknown): OperationNode =>
  AndNode.create(
    BinaryOperationNode.create(columnReference(column, qualifier), OperatorNode.create(">="), ValueNode.create(low)),
    BinaryOperationNode.create(columnReference(column, qualifier), OperatorNode.create("<="), ValueNode.create(high))
  )
