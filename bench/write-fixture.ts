/**
 * What the write benchmarks share: the PostgreSQL they write to, a table of rows keyed by `id`, the one group
 * bound to it (on `id`) with a node that reads a row's name, and the single-row update they time.
 */
import { Schema } from "effect"
import type { Kysely } from "kysely"
import { Node } from "../src/index.ts"
import { TableInvalidNode } from "../src/kysely/index.ts"

/** The PostgreSQL every write benchmark uses (`CACHEME_BENCH_PG_URL`, else the local one). */
export const pgUrl = process.env.CACHEME_BENCH_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

/** `table`'s group on `id` and a node whose entries it invalidates. */
export const rowNodes = (table: string) => {
  const RowGroup = TableInvalidNode.make("bench-row", { table, fields: { id: Schema.Number } })
  const RowName = Node.make("bench-row-name", {
    fields: { id: Schema.Number },
    value: Schema.String,
    invalidatedBy: ({ id }) => [RowGroup.make({ id })]
  })
  return { RowGroup, RowName }
}

/** Creates `table` (id, name, team) with rows 1 to `rows`. */
export const createRows = async (db: Kysely<any>, table: string, rows: number) => {
  await db.schema.dropTable(table).ifExists().execute()
  await db.schema
    .createTable(table)
    .addColumn("id", "integer", (c) => c.primaryKey())
    .addColumn("name", "varchar(100)", (c) => c.notNull())
    .addColumn("team", "integer", (c) => c.notNull())
    .execute()
  await db
    .insertInto(table)
    .values(Array.from({ length: rows }, (_, i) => ({ id: i + 1, name: `row ${i + 1}`, team: i % 10 })))
    .execute()
}

let version = 0

/** The timed write: `update <table> set name = ? where id = ?`, a new name each time. */
export const updateRow = (db: Kysely<any>, table: string, id: number) =>
  db
    .updateTable(table)
    .set({ name: `v${version++}` })
    .where("id", "=", id)
    .execute()
