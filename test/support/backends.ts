/**
 * The stores every shared suite runs against: the in-process store (time moved by TestClock), Redis and the
 * tiered store (real time, a fresh key prefix per layer so tests never see each other's keys).
 */
import { it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { deleteRedisPrefix, missing, Redis } from "./services.ts"

export interface Backend {
  readonly name: "memory" | "redis" | "tiered"
  /** True when the backend's service is missing (never in CI, where that fails instead). */
  readonly skip: boolean
  /** `it.effect` (TestClock) for the memory store, `it.live` for Redis. */
  readonly test: typeof it.effect
  /** A store plus settings; each call gets keys of its own. */
  readonly layer: (settings?: CachemeConfig.Input) => Layer.Layer<CacheStore.CacheStore>
  /** Lets time pass: TestClock for memory, a real sleep for Redis. */
  readonly advance: (millis: number) => Effect.Effect<void>
}

let counter = 0
export const uniquePrefix = () => `test:${process.pid}:${Date.now().toString(36)}:${counter++}:`

const withSettings = (store: Layer.Layer<CacheStore.CacheStore>, settings: CachemeConfig.Input | undefined) =>
  store.pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)

export const memory: Backend = {
  name: "memory",
  skip: false,
  test: it.effect,
  layer: (settings) => withSettings(CacheStore.layerMemory(), settings),
  // Small steps, so that timers set while time moves (a schedule's next delay) fire within the same advance.
  advance: (millis) =>
    Effect.gen(function* () {
      for (let elapsed = 0; elapsed < millis; elapsed += 5) yield* TestClock.adjust(Math.min(5, millis - elapsed))
    })
}

export const redis: Backend = {
  name: "redis",
  skip: await missing(Redis),
  test: it.live,
  layer: (settings) => {
    const prefix = settings?.prefix ?? uniquePrefix()
    // The shared Redis keeps nothing a test wrote: the prefix goes with the layer.
    const cleanup = Layer.effectDiscard(
      Effect.acquireRelease(Effect.void, () => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
    )
    return Layer.merge(withSettings(CacheStore.layerRedis({ url: Redis.url, prefix }), settings), cleanup)
  },
  advance: (millis) => Effect.sleep(millis)
}

/**
 * The tiered store on the shared Redis: the Redis store with its in-process tier (a generous staleness bound, so
 * that a busy machine does not keep emptying the tier; the bound itself is tested with a private Redis).
 */
export const tiered: Backend = {
  ...redis,
  name: "tiered",
  layer: (settings) => {
    const prefix = settings?.prefix ?? uniquePrefix()
    const cleanup = Layer.effectDiscard(
      Effect.acquireRelease(Effect.void, () => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
    )
    return Layer.merge(
      withSettings(CacheStore.layerTiered({ url: Redis.url, prefix, local: { bound: "5 seconds" } }), settings),
      cleanup
    )
  }
}

export const backends: ReadonlyArray<Backend> = [memory, redis, tiered]
