/**
 * `effect-cacheme/admin`: a web page, a JSON API and a CLI to see and purge the cache, with the invalidation
 * history kept in a database table.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Admin from "./Admin.ts"
/** @since 0.1.0 */
export * as Api from "./Api.ts"
/** @since 0.1.0 */
export * as Auth from "./Auth.ts"
/** @since 0.1.0 */
export * as Cli from "./Cli.ts"
/** @since 0.1.0 */
export * as Database from "./Database.ts"
/** @since 0.1.0 */
export * as History from "./History.ts"
/** @since 0.1.0 */
export * as Migration from "./Migration.ts"
