/**
 * A dependency group bound to a table (django-cacheme's `ModelInvalidNode`): its fields are columns of the
 * table, so every write to the table through a captured Kysely invalidates the groups of the rows it touched,
 * by itself. It is an `InvalidNode` like any other: nodes list its instances in `invalidatedBy`, and it can be
 * invalidated by hand from fields or from a row.
 *
 * With `m2m: true` the table is a join table: a row `{ user_id: 1, book_id: 2 }` invalidates the pair
 * `user_book:1:2` and both sides, `user_book:1:all` and `user_book:all:2` (fields left out read as `all`), so
 * "the books of user 1" and "the readers of book 2" are both reached by add, remove and clear.
 *
 * Every entry in any group of a table also carries the tag `kysely:table:<table>`, which is how a write whose
 * rows cannot be known invalidates every group of that table.
 *
 * **Example**
 *
 * ```ts
 * import { Schema } from "effect"
 * import { TableInvalidNode } from "effect-cacheme/kysely"
 *
 * const BookGroup = TableInvalidNode.make("book", { table: "book", fields: { id: Schema.Number } })
 * const ShelfGroup = TableInvalidNode.make("shelf", {
 *   table: "user_book",
 *   fields: { user_id: Schema.Number, book_id: Schema.Number },
 *   m2m: true
 * })
 * const booksOfUser = ShelfGroup.make({ user_id: 1 }) // key "shelf:1:all"
 * ```
 *
 * @since 0.1.0
 */
import { Effect, Exit, Schema } from "effect"
import type { CacheStore, CacheStoreError } from "../CacheStore.ts"
import { InvalidFields } from "../internal/fields.ts"
import * as Invalidation from "../Invalidation.ts"
import * as InvalidNode from "../InvalidNode.ts"
import { keyPart } from "../Node.ts"

/** What an m2m field left out reads as. */
export const ALL = "all"

/**
 * The tag every entry of a table's groups carries.
 *
 * @category getters
 * @since 0.1.0
 */
export const tableTag = (table: string): string => `kysely:table:${table}`

/**
 * A table-bound group definition.
 *
 * @category models
 * @since 0.1.0
 */
export interface TableInvalidNode<F extends Schema.Struct.Fields = any> {
  readonly name: string
  readonly table: string
  /** The column names the group reads from written rows. */
  readonly columns: ReadonlyArray<string>
  readonly m2m: boolean
  /** The plain group underneath (its instances are what nodes list in `invalidatedBy`). */
  readonly group: InvalidNode.InvalidNode<any>
  /** One group from its fields; for m2m any field may be left out (it reads as `all`). */
  make(fields: M2MFields<F> | Schema.Struct.Type<F>): InvalidNode.Instance
  /** The groups a written row belongs to, its column values decoded with the fields' Schemas. */
  fromRow(row: Readonly<Record<string, unknown>>): Exit.Exit<ReadonlyArray<InvalidNode.Instance>, InvalidFields>
}

/** The fields of an m2m group: each one optional. */
export type M2MFields<F extends Schema.Struct.Fields> = {
  readonly [K in keyof Schema.Struct.Type<F>]?: Schema.Struct.Type<F>[K]
}

const registry = new Map<string, Array<TableInvalidNode>>()

/**
 * The table-bound groups defined so far, by table.
 *
 * @category getters
 * @since 0.1.0
 */
export const byTable = (): ReadonlyMap<string, ReadonlyArray<TableInvalidNode>> => registry

/**
 * Defines a group bound to `table`. Without `key`, the key is the name and the field values joined by `:`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <const F extends Schema.Struct.Fields>(
  name: string,
  options: {
    readonly table: string
    readonly fields: F
    readonly key?: ((fields: Schema.Struct.Type<F>) => string) | undefined
    readonly m2m?: boolean | undefined
  }
): TableInvalidNode<F> => {
  const columns = Object.keys(options.fields)
  if (columns.length === 0) throw new Error(`TableInvalidNode ${name}: fields cannot be empty`)
  const m2m = options.m2m ?? false
  if (m2m && columns.length < 2) throw new Error(`TableInvalidNode ${name}: an m2m group needs two fields or more`)
  const defaultKey = (values: Record<string, unknown>) =>
    [name, ...columns.map((column) => keyPart(values[column]))].join(":")
  const keyOf = (options.key as ((values: Record<string, unknown>) => string) | undefined) ?? defaultKey
  // m2m fields may hold `all`, so each field Schema also accepts that literal.
  const fields = m2m
    ? Object.fromEntries(
        columns.map((column) => [column, Schema.Union([options.fields[column]!, Schema.Literal(ALL)])])
      )
    : options.fields
  const group: InvalidNode.InvalidNode<any> = InvalidNode.make(name, {
    fields: fields as Schema.Struct.Fields,
    key: keyOf,
    tags: [tableTag(options.table)]
  })
  const rowDecoder = Schema.decodeUnknownExit(Schema.Struct(options.fields) as unknown as Schema.Codec<any, unknown>)

  const withAll = (values: Record<string, unknown>) =>
    Object.fromEntries(columns.map((column) => [column, values[column] === undefined ? ALL : values[column]]))

  const node: TableInvalidNode<F> = {
    name,
    table: options.table,
    columns,
    m2m,
    group,
    make: (values) => group.make(m2m ? withAll(values as Record<string, unknown>) : values),
    fromRow: (row) => {
      const picked = Object.fromEntries(columns.map((column) => [column, row[column]]))
      const decoded = rowDecoder(picked)
      if (Exit.isFailure(decoded)) {
        return Exit.fail(
          new InvalidFields({
            node: name,
            field: "",
            message: `${name}: a row of ${options.table} does not match the group's fields: ${JSON.stringify(picked)}`,
            issues: []
          })
        )
      }
      const values = decoded.value as Record<string, unknown>
      if (!m2m) return Exit.succeed([group.make(values)])
      // The pair itself, then each side with the others left out.
      return Exit.succeed([
        group.make(values),
        ...columns.map((column) => group.make(withAll({ [column]: values[column] })))
      ])
    }
  }
  const forTable = registry.get(options.table) ?? []
  registry.set(options.table, [...forTable.filter((other) => other.name !== name), node])
  return node
}

/**
 * Invalidates a table-bound group by hand, from its fields.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidate = (
  node: TableInvalidNode,
  fields: Record<string, unknown>,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.group(node.make(fields as never).key, options)

/**
 * Invalidates the groups a row belongs to, as a write of that row would.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidateRow = (
  node: TableInvalidNode,
  row: Readonly<Record<string, unknown>>,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError | InvalidFields, CacheStore> =>
  Effect.flatMap(node.fromRow(row), (groups) =>
    Effect.map(
      Effect.forEach(groups, (group) => Invalidation.group(group.key, options)),
      (counts) => counts.reduce((sum, count) => sum + count, 0)
    )
  )
