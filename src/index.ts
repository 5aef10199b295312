/**
 * effect-cacheme: memoized caching for Effect programs.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as CachemeConfig from "./CachemeConfig.ts"
/** @since 0.1.0 */
export * as CacheStore from "./CacheStore.ts"
/** @since 0.1.0 */
export * as Invalidation from "./Invalidation.ts"
/** @since 0.1.0 */
export * as InvalidNode from "./InvalidNode.ts"
/** @since 0.1.0 */
export * as Memo from "./Memo.ts"
/** @since 0.1.0 */
export * as Metrics from "./Metrics.ts"
/** @since 0.1.0 */
export * as Node from "./Node.ts"
