/**
 * effect-cacheme/kysely: database writes made through Kysely invalidate the cache by themselves.
 *
 * Needs `kysely` (and the driver of your database). The PGlite dialect is in `effect-cacheme/kysely/pglite`, so
 * that this entry needs neither PGlite nor its types.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Database from "./Database.ts"
/** @since 0.1.0 */
export * as Invalidator from "./Invalidator.ts"
/** @since 0.1.0 */
export * as TableInvalidNode from "./TableInvalidNode.ts"
/** @since 0.1.0 */
export type { InvalidationEvent, WriteOperation } from "./InvalidationEvent.ts"
/** @since 0.1.0 */
export { type CaptureOptions, captureWrites } from "./capture/CaptureDialect.ts"
/** @since 0.1.0 */
export { NodeSqliteDialect, type NodeSqliteDialectConfig } from "./dialects/NodeSqliteDialect.ts"
