/**
 * Helpers of the attack suite: stores under `attack:<pid>:` prefixes (deleted when the layer closes), a seed
 * that can be replayed, and raw access to the shared Redis.
 */
import { it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { deleteRedisPrefix, Redis } from "../support/services.ts"

export const redisUrl = Redis.url

let counter = 0
export const attackPrefix = () => `attack:${process.pid}:${Date.now().toString(36)}:${counter++}:`

/** Deletes every key under a prefix, by SCAN (the shared test helper). */
export const deletePrefix = (prefix: string, url = redisUrl): Promise<number> => deleteRedisPrefix(prefix, url)

export interface Backend {
  readonly name: "memory" | "redis"
  readonly test: typeof it.effect
  readonly layer: (settings?: CachemeConfig.Input, prefix?: string) => Layer.Layer<CacheStore.CacheStore>
  readonly advance: (millis: number) => Effect.Effect<void>
}

const withSettings = (store: Layer.Layer<CacheStore.CacheStore>, settings: CachemeConfig.Input | undefined) =>
  store.pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)

export const memory: Backend = {
  name: "memory",
  test: it.effect,
  layer: (settings) => withSettings(CacheStore.layerMemory(), settings),
  advance: (millis) =>
    Effect.gen(function* () {
      for (let elapsed = 0; elapsed < millis; elapsed += 5) yield* TestClock.adjust(Math.min(5, millis - elapsed))
    })
}

export const redis: Backend = {
  name: "redis",
  test: it.live,
  layer: (settings, given) => {
    const prefix = given ?? attackPrefix()
    const cleanup = Layer.effectDiscard(
      Effect.acquireRelease(Effect.void, () => Effect.promise(() => deletePrefix(prefix).catch(() => 0)))
    )
    return Layer.merge(withSettings(CacheStore.layerRedis({ url: redisUrl, prefix }), settings), cleanup)
  },
  advance: (millis) => Effect.sleep(millis)
}

export const backends: ReadonlyArray<Backend> = [memory, redis]

/** The seed of a test: `ATTACK_SEED` when set, else a fresh one (printed by the tests). */
export const seedOf = (): number => {
  const fixed = process.env.ATTACK_SEED
  return fixed !== undefined && fixed !== "" ? Number(fixed) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0
}

/** mulberry32 */
export const random = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** A raw client of the shared Redis, closed with the scope. */
export const rawRedis = (url = redisUrl) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const client = new IORedis(url)
      client.on("error", () => {})
      return client
    }),
    (client) => Effect.sync(() => client.disconnect())
  )
