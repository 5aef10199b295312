/**
 * Helpers for tests of the tiered store: stores built side by side in one scope (each with connections of its
 * own, as two processes would have), waiting on the tier's own events rather than on durations, and the one
 * assertion every coherence test makes: once the bound has passed since a write resolved, the old value is never
 * served again.
 */
import { assert } from "@effect/vitest"
import { Context, Effect, Layer, type Scope } from "effect"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { type TierHandle, type TieredOptions, tierOf } from "../../src/store/Tiered.ts"

type Store = CacheStore.CacheStore["Service"]

/** A store of its own (connections included) in the current scope. */
export const buildStore = <E>(layer: Layer.Layer<CacheStore.CacheStore, E>): Effect.Effect<Store, E, Scope.Scope> =>
  Effect.map(Layer.build(layer), (context) => Context.get(context, CacheStore.CacheStore))

/** A tiered store on `url` under `prefix`. */
export const tieredStore = (
  url: string,
  prefix: string,
  local: TieredOptions["local"] = {},
  settings: CachemeConfig.Input = { commandTimeout: "5 seconds" }
) =>
  buildStore(
    CacheStore.layerTiered({ url, prefix, local }).pipe(Layer.provide(CachemeConfig.layer(settings)), Layer.orDie)
  )

/** A plain Redis store on `url` under `prefix` (another process's writes). */
export const redisStore = (
  url: string,
  prefix: string,
  settings: CachemeConfig.Input = { commandTimeout: "5 seconds" }
) => buildStore(CacheStore.layerRedis({ url, prefix }).pipe(Layer.provide(CachemeConfig.layer(settings)), Layer.orDie))

export const tier = (store: Store): TierHandle => {
  const handle = tierOf(store)
  if (handle === undefined) throw new Error("not a tiered store")
  return handle
}

/** Polls `condition` every 10 ms until it holds; fails after `deadlineMillis` (generous: a busy machine). */
export const until = (what: string, condition: () => boolean, deadlineMillis = 30_000): Effect.Effect<void> =>
  Effect.gen(function* () {
    const deadline = performance.now() + deadlineMillis
    while (!condition()) {
      if (performance.now() > deadline) return yield* Effect.die(new Error(`timed out waiting until ${what}`))
      yield* Effect.sleep(10)
    }
  })

/**
 * Looks `key` up until a lookup is answered from the tier with `value` (the first lookup after a change reads
 * Redis and keeps the copies; the tier serves once its channel has proven itself).
 */
export const untilLocal = (store: Store, key: string, sets: CacheStore.Sets, value: string) =>
  Effect.gen(function* () {
    const handle = tier(store)
    const deadline = performance.now() + 30_000
    while (true) {
      const before = handle.stats.localHits
      const found = yield* store.lookup(key, sets)
      if (found._tag === "Hit" && found.value === value && handle.stats.localHits > before) return
      if (performance.now() > deadline) {
        return yield* Effect.die(new Error(`${key} was never served from the tier (last: ${JSON.stringify(found)})`))
      }
      yield* Effect.sleep(10)
    }
  })

/**
 * Looks `key` up over and over from just after `since` (when a write that replaced or removed `old` resolved)
 * until `boundMillis` and a margin have passed: every lookup that *started* `boundMillis` or more after `since`
 * must not answer `old`. Lookups that fail (a paused or restarting Redis) are fine. Returns how long after `since`
 * `old` was first not served (undefined: it was served until the end, which is only allowed before the bound).
 */
export const neverStaleAfter = (
  store: Store,
  key: string,
  sets: CacheStore.Sets,
  old: string,
  since: number,
  boundMillis: number
): Effect.Effect<number | undefined> =>
  Effect.gen(function* () {
    let gone: number | undefined
    while (true) {
      const start = performance.now()
      const found = yield* Effect.orElseSucceed(store.lookup(key, sets), () => undefined)
      const servedOld = found !== undefined && found._tag === "Hit" && found.value === old
      if (servedOld && start - since >= boundMillis) {
        assert.fail(
          `${key}: the old value was served ${Math.round(start - since)} ms after the write (bound ${boundMillis} ms)`
        )
      }
      if (!servedOld && found !== undefined) gone ??= start - since
      if (start - since > boundMillis + 300) return gone
      yield* Effect.sleep(5)
    }
  })
