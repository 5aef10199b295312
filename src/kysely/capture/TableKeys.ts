/**
 * Primary key, unique keys and auto-increment column of a table, read from the database catalog on the write's
 * own connection and cached per table (a failed lookup is retried next time).
 *
 * They are needed where RETURNING is missing or not enough: MySQL / MariaDB find the new values of updated rows
 * by primary key and inserted rows by auto-increment range, and upserts on every dialect find the rows they may
 * replace by the conflicting unique keys.
 *
 * - PostgreSQL: `pg_index` (unique, non-partial, non-expression indexes) of `to_regclass(table)`, so the search
 *   path applies to unqualified names.
 * - MySQL / MariaDB: `information_schema.statistics` and `.columns` in the table's schema or `database()`; the
 *   integer columns too (see `Prediction.isCertain`).
 * - SQLite: `pragma_table_info` and `pragma_index_list` / `pragma_index_info`.
 *
 * @internal
 */
import { CompiledQuery } from "kysely"
import type { AbortableOperationOptions, DatabaseConnection, TableNode } from "kysely"
import type { SqlFlavor } from "./Capabilities.ts"

export interface TableKeys {
  /** Primary key columns in key order; empty when the table has none (or the dialect is unknown). */
  readonly primaryKey: ReadonlyArray<string>
  /** Every unique key, the primary key included, each in key order. */
  readonly uniqueKeys: ReadonlyArray<ReadonlyArray<string>>
  readonly autoIncrement: string | undefined
  /** MySQL / MariaDB: the columns of an integer type (empty elsewhere: only MySQL needs them). */
  readonly integerColumns: ReadonlyArray<string>
}

const NO_KEYS: TableKeys = { primaryKey: [], uniqueKeys: [], autoIncrement: undefined, integerColumns: [] }

type Row = Record<string, unknown>

export class TableKeysCache {
  readonly #flavor: SqlFlavor
  readonly #cache = new Map<string, Promise<TableKeys>>()

  constructor(flavor: SqlFlavor) {
    this.#flavor = flavor
  }

  get(connection: DatabaseConnection, table: TableNode, options?: AbortableOperationOptions): Promise<TableKeys> {
    const schema = table.table.schema?.name
    const name = table.table.identifier.name
    const cacheKey = JSON.stringify([schema ?? null, name])
    let keys = this.#cache.get(cacheKey)
    if (keys === undefined) {
      const query = (sql: string, parameters: ReadonlyArray<unknown>) =>
        connection.executeQuery<Row>(CompiledQuery.raw(sql, [...parameters]), options).then((result) => result.rows)
      keys = this.#introspect(query, schema, name)
      this.#cache.set(cacheKey, keys)
      keys.catch(() => this.#cache.delete(cacheKey))
    }
    return keys
  }

  #introspect(query: Query, schema: string | undefined, name: string): Promise<TableKeys> {
    switch (this.#flavor) {
      case "postgres":
        return postgresKeys(query, schema, name)
      case "mysql":
        return mysqlKeys(query, schema, name)
      case "sqlite":
        return sqliteKeys(query, schema, name)
      case "generic":
        return Promise.resolve(NO_KEYS)
    }
  }
}

type Query = (sql: string, parameters: ReadonlyArray<unknown>) => Promise<ReadonlyArray<Row>>

/** Groups (key id, column) rows, already in key order, into column lists. */
const groupKeys = (rows: ReadonlyArray<Row>, keyOf: (row: Row) => string, columnOf: (row: Row) => string) => {
  const keys = new Map<string, Array<string>>()
  for (const row of rows) {
    const key = keyOf(row)
    const columns = keys.get(key)
    if (columns === undefined) keys.set(key, [columnOf(row)])
    else columns.push(columnOf(row))
  }
  return keys
}

const quotePostgres = (identifier: string) => `"${identifier.replaceAll('"', '""')}"`

const postgresKeys = async (query: Query, schema: string | undefined, name: string): Promise<TableKeys> => {
  const regclass = schema === undefined ? quotePostgres(name) : `${quotePostgres(schema)}.${quotePostgres(name)}`
  const rows = await query(
    `select i.indexrelid::text as key_id, i.indisprimary as is_primary, a.attname as column_name
       from pg_index i
       cross join lateral unnest(i.indkey::int2[]) with ordinality as k(attnum, ord)
       join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
      where i.indrelid = to_regclass($1) and i.indisunique and i.indpred is null and i.indexprs is null
      order by i.indisprimary desc, i.indexrelid, k.ord`,
    [regclass]
  )
  const keys = groupKeys(
    rows,
    (row) => String(row.key_id),
    (row) => String(row.column_name)
  )
  const primary = rows.find((row) => row.is_primary === true)
  const primaryKey = primary === undefined ? [] : (keys.get(String(primary.key_id)) ?? [])
  return { primaryKey, uniqueKeys: [...keys.values()], autoIncrement: undefined, integerColumns: [] }
}

const mysqlKeys = async (query: Query, schema: string | undefined, name: string): Promise<TableKeys> => {
  const indexRows = await query(
    `select index_name as key_id, column_name as column_name
       from information_schema.statistics
      where table_schema = coalesce(?, database()) and table_name = ? and non_unique = 0
      order by index_name = 'PRIMARY' desc, index_name, seq_in_index`,
    [schema ?? null, name]
  )
  const columnRows = await query(
    `select column_name as column_name, data_type as data_type, extra as extra
       from information_schema.columns
      where table_schema = coalesce(?, database()) and table_name = ?`,
    [schema ?? null, name]
  )
  const keys = groupKeys(
    indexRows,
    (row) => String(row.key_id),
    (row) => String(row.column_name)
  )
  const autoIncrement = columnRows.find((row) => String(row.extra).includes("auto_increment"))?.column_name
  return {
    primaryKey: keys.get("PRIMARY") ?? [],
    uniqueKeys: [...keys.values()],
    autoIncrement: autoIncrement === undefined ? undefined : String(autoIncrement),
    integerColumns: columnRows
      .filter((row) => INTEGER_TYPES.has(String(row.data_type).toLowerCase()))
      .map((row) => String(row.column_name))
  }
}

const INTEGER_TYPES = new Set(["tinyint", "smallint", "mediumint", "int", "integer", "bigint"])

const sqliteKeys = async (query: Query, schema: string | undefined, name: string): Promise<TableKeys> => {
  const database = schema ?? "main"
  const columns = await query("select name, pk from pragma_table_info(?, ?) where pk > 0 order by pk", [name, database])
  const indexRows = await query(
    `select il.name as key_id, ii.name as column_name
       from pragma_index_list(?, ?) as il, pragma_index_info(il.name, ?) as ii
      where il."unique" = 1 and il.partial = 0 and ii.name is not null
      order by il.name, ii.seqno`,
    [name, database, database]
  )
  const primaryKey = columns.map((row) => String(row.name))
  const keys = groupKeys(
    indexRows,
    (row) => String(row.key_id),
    (row) => String(row.column_name)
  )
  const uniqueKeys = [...keys.values()]
  // A rowid table's INTEGER PRIMARY KEY has no index of its own.
  if (primaryKey.length > 0 && !uniqueKeys.some((key) => sameColumns(key, primaryKey))) uniqueKeys.unshift(primaryKey)
  return { primaryKey, uniqueKeys, autoIncrement: undefined, integerColumns: [] }
}

const sameColumns = (left: ReadonlyArray<string>, right: ReadonlyArray<string>) =>
  left.length === right.length && left.every((column, index) => column === right[index])
