/**
 * Invalidation in one place: by key, by group (an `InvalidNode`'s set), by tag (every node name is a tag) and by
 * glob pattern under the prefix. `Memo.invalidate*` and `InvalidNode.invalidate` are these functions under the
 * names users reach for. Every call returns how many keys held a value, and reports an {@link Event} to the
 * current {@link Listener} (the admin package records them as invalidation history).
 *
 * `hard` (the default) removes values; `soft` keeps them as stale values for nodes that serve stale while one
 * caller refreshes. Both void the leases of loads under way, so a value loaded before the invalidation is
 * returned to its caller but never stored.
 *
 * @since 0.1.0
 */
import { Context, Effect } from "effect"
import { CachemeConfig } from "./CachemeConfig.ts"
import { CacheStore, type CacheStoreError, checkPrefix, type Mode } from "./CacheStore.ts"
import { groupSet, tagSet } from "./internal/keys.ts"

export type { Mode }

/**
 * Options of an invalidation.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly mode?: Mode | undefined
  /** Who or what asked, for the history (`admin:alice`, `kysely`, ...). */
  readonly source?: string | undefined
}

/**
 * What was invalidated.
 *
 * @category models
 * @since 0.1.0
 */
export interface Event {
  readonly target: "key" | "group" | "tag" | "pattern"
  readonly value: string
  readonly mode: Mode
  readonly count: number
  readonly source: string | undefined
}

/**
 * The default {@link Listener}: does nothing (callers may skip building events for it).
 *
 * @category services
 * @since 0.1.0
 */
export const noListener = (_event: Event): Effect.Effect<void> => Effect.void

/**
 * Called after every invalidation; the default is {@link noListener}.
 *
 * @category services
 * @since 0.1.0
 */
export const Listener = Context.Reference<(event: Event) => Effect.Effect<void>>(
  "effect-cacheme/Invalidation/Listener",
  {
    defaultValue: () => noListener
  }
)

const report = (
  target: Event["target"],
  value: string,
  options: Options | undefined,
  run: (store: CacheStore["Service"], mode: Mode) => Effect.Effect<number, CacheStoreError>
): Effect.Effect<number, CacheStoreError, CacheStore> =>
  Effect.gen(function* () {
    const store = yield* CacheStore
    yield* checkPrefix(store, yield* CachemeConfig)
    const mode = options?.mode ?? "hard"
    const count = yield* run(store, mode)
    yield* Effect.annotateCurrentSpan("cacheme.count", count)
    const listener = yield* Listener
    yield* listener({ target, value, mode, count, source: options?.source })
    return count
  }).pipe(
    Effect.withSpan("cacheme.invalidate", {
      attributes: {
        "cacheme.target": target,
        "cacheme.value": value,
        "cacheme.mode": options?.mode ?? "hard",
        ...(options?.source === undefined ? {} : { "cacheme.source": options.source })
      }
    })
  )

/**
 * Invalidates one entry key (prefix excluded).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const key = (entryKey: string, options?: Options) =>
  report("key", entryKey, options, (store, mode) => store.invalidate([entryKey], mode))

/**
 * Invalidates every entry registered under a group key (an `InvalidNode` instance's `key`).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const group = (groupKey: string, options?: Options) =>
  report("group", groupKey, options, (store, mode) => store.invalidateSet(groupSet(groupKey), mode))

/**
 * Invalidates every entry carrying a tag (a node's name is one of its tags).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const tag = (name: string, options?: Options) =>
  report("tag", name, options, (store, mode) => store.invalidateSet(tagSet(name), mode))

/**
 * Invalidates the entry keys matching a Redis glob pattern; the pattern is anchored under the prefix, so it
 * can never reach keys outside it.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const pattern = (glob: string, options?: Options) =>
  report("pattern", glob, options, (store, mode) => store.invalidatePattern(glob, mode))
