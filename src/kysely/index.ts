/**
 * effect-cacheme/kysely: database writes made through Kysely invalidate the cache by themselves.
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
export { PGliteDialect, makePGlite } from "./dialects/PGliteDialect.ts"
/** @since 0.1.0 */
export { NodeSqliteDialect } from "./dialects/NodeSqliteDialect.ts"
