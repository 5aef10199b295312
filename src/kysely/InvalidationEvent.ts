/**
 * What a database write made through Kysely tells the cache: which table was written, how, and the values of the
 * watched columns of the rows it touched.
 *
 * Events are produced by the driver wrapper of `captureWrites` (see `capture/CaptureDialect.ts`) and published
 * once per committed unit of work: an autocommit statement right after it succeeded, a transaction's writes after
 * its COMMIT. A resolver maps the rows to the cache groups of the table (`TableInvalidNode`). When the rows of a
 * write cannot be known (raw SQL, a bulk write the analysis cannot follow), the event says so with `wholeTable`
 * and every group of the table must be invalidated: a write to a watched table never goes unreported.
 *
 * @since 0.1.0
 */

/**
 * The kind of statement that wrote the rows.
 *
 * - `insert`: a plain insert, including `on conflict do nothing` / `insert ignore` / `insert or ignore`.
 * - `upsert`: an insert that may update or replace existing rows (`on conflict do update`, `on duplicate key
 *   update`, `replace into`, `insert or replace`).
 * - `merge`: a `MERGE` statement.
 * - `raw`: SQL text Kysely did not build (`sql\`...\``, `CompiledQuery.raw`), always `wholeTable`.
 *
 * @since 0.1.0
 */
export type WriteOperation = "insert" | "update" | "delete" | "upsert" | "merge" | "raw"

/**
 * The writes one statement (or one transaction, coalesced) made to one table with one operation.
 *
 * @since 0.1.0
 */
export interface InvalidationEvent {
  /** Table name as the watched map names it (no schema prefix). */
  readonly table: string
  readonly operation: WriteOperation
  /**
   * Values of the watched columns of every affected row, each distinct row once. For an update: the old AND the
   * new row of each; for an upsert, the rows it replaced or updated as well as the rows it left behind. Empty when
   * `wholeTable` is true.
   */
  readonly rows: ReadonlyArray<Readonly<Record<string, unknown>>>
  /** true when the affected rows could not be known: every group of `table` must be invalidated. */
  readonly wholeTable: boolean
}
