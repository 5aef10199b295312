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
 * A group without fields (`fields: {}`) is table-wide: it has one instance, and every write to the table
 * invalidates it, which is what a cached list of the table's rows (or a count) depends on.
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
 * const AllBooks = TableInvalidNode.make("books", { table: "book", fields: {} }) // key "books"
 * ```
 *
 * @since 0.1.0
 */
import { Effect, Exit, Schema } from "effect"
import type { CacheStore, CacheStoreError } from "../CacheStore.ts"
import { InvalidFields, makeValidator } from "../internal/fields.ts"
import * as Invalidation from "../Invalidation.ts"
import * as InvalidNode from "../InvalidNode.ts"

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
  /** One group from its fields; for m2m any field may be left out (it reads as `all`). Throws {@link InvalidFields}. */
  make(fields: M2MFields<F> | Schema.Struct.Type<F>): InvalidNode.Instance
  /** Like {@link make} with the typed error in an Exit. */
  makeExit(fields: M2MFields<F> | Schema.Struct.Type<F>): Exit.Exit<InvalidNode.Instance, InvalidFields>
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

/** Built from the registry when first asked for after a change (every write asks). */
let columnsByTable: ReadonlyMap<string, ReadonlyArray<string>> | undefined

/**
 * Table -> the union of the columns its groups read: what write capture must report of each written row.
 *
 * @category getters
 * @since 0.1.0
 */
export const watchedColumns = (): ReadonlyMap<string, ReadonlyArray<string>> => {
  if (columnsByTable === undefined) {
    const map = new Map<string, ReadonlyArray<string>>()
    for (const [table, nodes] of registry) map.set(table, [...new Set(nodes.flatMap((node) => node.columns))])
    columnsByTable = map
  }
  return columnsByTable
}

/**
 * Defines a group bound to `table`. Without `key`, the key is the name and the field values joined by `:`.
 * With no fields the group is table-wide (its one key is the name). Defining a group again under the same name
 * and table replaces the earlier definition.
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
  const m2m = options.m2m ?? false
  if (m2m && columns.length < 2) throw new Error(`TableInvalidNode ${name}: an m2m group needs two fields or more`)
  // m2m fields may hold `all`, so each field Schema also accepts that literal.
  const fields = m2m
    ? Object.fromEntries(
        columns.map((column) => [column, Schema.Union([options.fields[column]!, Schema.Literal(ALL)])])
      )
    : options.fields
  const group: InvalidNode.InvalidNode<any> = InvalidNode.make(name, {
    fields: fields as Schema.Struct.Fields,
    // Without a key of its own, the group's default key (name and columns in order) is the table node's.
    key: options.key as ((values: Record<string, unknown>) => string) | undefined,
    tags: [tableTag(options.table)]
  })
  // Rows come from the driver in the fields' encoded form; a mismatch names the column at fault.
  const rowValidator = makeValidator(name, Schema.Struct(options.fields) as any)

  const withAll = (values: Record<string, unknown>) =>
    Object.fromEntries(columns.map((column) => [column, values[column] === undefined ? ALL : values[column]]))

  const node: TableInvalidNode<F> = {
    name,
    table: options.table,
    columns,
    m2m,
    group,
    make: (values) => group.make(m2m ? withAll(values as Record<string, unknown>) : values),
    makeExit: (values) => group.makeExit(m2m ? withAll(values as Record<string, unknown>) : values),
    fromRow: (row) => {
      const picked = Object.fromEntries(columns.map((column) => [column, row[column]]))
      const decoded = rowValidator.decode(picked)
      if (Exit.isFailure(decoded)) {
        return Exit.mapError(
          decoded,
          (error) =>
            new InvalidFields({
              node: name,
              field: error.field,
              message: `${error.message} (a row of ${options.table}: ${safeJson(picked)})`,
              issues: error.issues
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
  columnsByTable = undefined
  return node
}

/** JSON for an error message (bigints written as their digits). */
const safeJson = (value: unknown): string => {
  try {
    return JSON.stringify(value, (_key, nested: unknown) => (typeof nested === "bigint" ? nested.toString() : nested))
  } catch {
    return String(value)
  }
}

/**
 * Invalidates a table-bound group by hand, from its fields (for m2m, fields left out read as `all`). Fields that
 * do not match their Schema fail with {@link InvalidFields}. Returns how many entries held a value.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidate = <F extends Schema.Struct.Fields>(
  node: TableInvalidNode<F>,
  fields: M2MFields<F> | Schema.Struct.Type<F>,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError | InvalidFields, CacheStore> =>
  Effect.flatMap(node.makeExit(fields), (group) => Invalidation.group(group.key, options))

/**
 * Invalidates the groups a row belongs to, as a write of that row would (for m2m: the pair and both sides). The
 * row holds column values as the driver returns them; a value that does not decode fails with
 * {@link InvalidFields}. Returns how many entries held a value.
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

export {
  /**
   * Fields (or a row's column values) that do not match the group's Schemas.
   *
   * @category errors
   * @since 0.1.0
   */
  InvalidFields
}
