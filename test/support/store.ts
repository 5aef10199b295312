/**
 * Store steps below `Memo`, for tests that plant entries or leases the way another process would.
 */
import { assert } from "@effect/vitest"
import { Effect } from "effect"
import { CacheStore } from "../../src/index.ts"

type Store = CacheStore.CacheStore["Service"]

/** A lookup without the cell of the copy it came from (a store's own detail, see `CacheStore.ValueCell`). */
export const plain = (lookup: CacheStore.Lookup): CacheStore.Lookup => {
  if (lookup._tag === "Miss" || !("cell" in lookup)) return lookup
  const { cell: _, ...rest } = lookup
  return rest
}

/** Looks `key` up and asks for its lease as `token`: what another process's miss does first. */
export const leaseAs = (
  store: Store,
  key: string,
  token: string,
  names: ReadonlyArray<string> = [],
  leaseMillis = 10_000
): Effect.Effect<CacheStore.Leasing, CacheStore.CacheStoreError> =>
  Effect.gen(function* () {
    const sets = CacheStore.sets(names)
    const found = yield* store.lookup(key, sets)
    if (found._tag === "Hit") return { _tag: "Changed" } as const
    return yield* store.lease(key, token, sets, found.view, "replace", leaseMillis)
  })

/** Stores `value` (raw, as encoded) at `key` under `names`, through a lease. */
export const putRaw = (
  store: Store,
  key: string,
  value: string,
  options: {
    readonly names?: ReadonlyArray<string>
    readonly freshMillis?: number | undefined
    readonly lifeMillis?: number | undefined
  } = {}
): Effect.Effect<void, CacheStore.CacheStoreError> =>
  Effect.gen(function* () {
    const names = options.names ?? []
    const leasing = yield* leaseAs(store, key, "test-put", names)
    assert.strictEqual(leasing._tag, "Leased", `${key}: ${leasing._tag}`)
    if (leasing._tag !== "Leased") return
    const stored = yield* store.fill(key, "test-put", CacheStore.sets(names), leasing.stamps, {
      value,
      freshMillis: options.freshMillis,
      lifeMillis: options.lifeMillis
    })
    assert.isTrue(stored, `${key} stored`)
  })
