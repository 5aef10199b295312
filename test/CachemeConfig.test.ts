import { assert, describe, it } from "@effect/vitest"
import { Cause, ConfigProvider, Duration, Effect, Exit, Layer, Schema } from "effect"
import { CachemeConfig, CacheStore, Memo, Node } from "../src/index.ts"

const fromEnv = (env: Record<string, string>) =>
  CachemeConfig.fromConfig.pipe(Effect.provideService(ConfigProvider.ConfigProvider, ConfigProvider.fromEnv({ env })))

describe("CachemeConfig", () => {
  it.effect("defaults follow the seed", () =>
    Effect.gen(function* () {
      const settings = yield* CachemeConfig.CachemeConfig
      assert.strictEqual(settings.prefix, "CM:")
      assert.strictEqual(settings.herdRetryCount, 5)
      assert.strictEqual(Duration.toMillis(settings.herdRetryInterval), 20)
      assert.isTrue(settings.stale)
      assert.isTrue(settings.enabled)
      assert.isUndefined(settings.ttl)
    })
  )

  it.effect("reads CACHEME_* variables", () =>
    Effect.gen(function* () {
      const settings = yield* fromEnv({
        CACHEME_ENABLE: "false",
        CACHEME_PREFIX: "app:",
        CACHEME_HERD_RETRY_COUNT: "9",
        CACHEME_HERD_RETRY_INTERVAL: "50 millis",
        CACHEME_STALE: "false",
        CACHEME_TTL: "10 minutes",
        CACHEME_REDIS_URL: "redis://cache:6380/2",
        CACHEME_COMMAND_TIMEOUT: "2 seconds",
        CACHEME_LEASE_TTL: "1 minute"
      })
      assert.isFalse(settings.enabled)
      assert.strictEqual(settings.prefix, "app:")
      assert.strictEqual(settings.herdRetryCount, 9)
      assert.strictEqual(Duration.toMillis(settings.herdRetryInterval), 50)
      assert.isFalse(settings.stale)
      assert.strictEqual(Duration.toMillis(settings.ttl!), 600_000)
      assert.strictEqual(settings.redisUrl, "redis://cache:6380/2")
      assert.strictEqual(Duration.toMillis(settings.commandTimeout), 2000)
      assert.strictEqual(Duration.toMillis(settings.leaseTtl), 60_000)
    })
  )

  it.effect("the index sweep runs every second by default; CACHEME_SWEEP_INTERVAL sets it, none or off stops it", () =>
    Effect.gen(function* () {
      assert.strictEqual(Duration.toMillis((yield* fromEnv({})).sweepInterval!), 1000)
      assert.strictEqual(
        Duration.toMillis((yield* fromEnv({ CACHEME_SWEEP_INTERVAL: "250 millis" })).sweepInterval!),
        250
      )
      assert.isUndefined((yield* fromEnv({ CACHEME_SWEEP_INTERVAL: "none" })).sweepInterval)
      assert.isUndefined((yield* fromEnv({ CACHEME_SWEEP_INTERVAL: "Off" })).sweepInterval)
      assert.isUndefined((yield* CachemeConfig.make({ sweepInterval: null })).sweepInterval)
    })
  )

  it.effect("missing variables keep their defaults; CACHEME_TTL=none means no expiry", () =>
    Effect.gen(function* () {
      const settings = yield* fromEnv({ CACHEME_TTL: "none" })
      assert.isUndefined(settings.ttl)
      assert.strictEqual(settings.prefix, "CM:")
    })
  )

  it.effect.each([
    [{ CACHEME_HERD_RETRY_COUNT: "many" }, "herdRetryCount"],
    [{ CACHEME_HERD_RETRY_COUNT: "-1" }, "herdRetryCount"],
    [{ CACHEME_ENABLE: "perhaps" }, "enabled"],
    [{ CACHEME_TTL: "soon" }, "ttl"],
    [{ CACHEME_HERD_RETRY_INTERVAL: "0 millis" }, "herdRetryInterval"],
    [{ CACHEME_REDIS_URL: "http://nope" }, "redisUrl"],
    [{ CACHEME_REDIS_URL: "redis://[::1" }, "redisUrl"],
    [{ CACHEME_COMMAND_TIMEOUT: "25 days" }, "commandTimeout"],
    [{ CACHEME_LEASE_TTL: "30 days" }, "leaseTtl"],
    [{ CACHEME_TTL: "20000 days" }, "ttl"],
    [{ CACHEME_MAX_VALUE_BYTES: "0" }, "maxValueBytes"],
    [{ CACHEME_PREFIX: "a*" }, "prefix"],
    [{ CACHEME_SWEEP_INTERVAL: "0 millis" }, "sweepInterval"],
    [{ CACHEME_SWEEP_INTERVAL: "sometimes" }, "sweepInterval"]
  ] as const)("a bad value fails with a typed error naming the setting: %j", ([env, setting]) =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(fromEnv(env))
      assert.strictEqual(error._tag, "CachemeConfigError")
      assert.strictEqual(error.setting, setting)
    })
  )

  it.effect("settings written in code are validated too", () =>
    Effect.gen(function* () {
      const settings = yield* CachemeConfig.make({ ttl: "5 minutes", herdRetryCount: 0 })
      assert.strictEqual(Duration.toMillis(settings.ttl!), 300_000)
      assert.strictEqual(settings.herdRetryCount, 0)
      const error = yield* Effect.flip(CachemeConfig.make({ herdRetryCount: 1.5 }))
      assert.strictEqual(error.setting, "herdRetryCount")
      const prefixError = yield* Effect.flip(CachemeConfig.make({ prefix: "" }))
      assert.strictEqual(prefixError.setting, "prefix")
      // Redis takes whole milliseconds: a fraction is rounded up, never sent as is.
      const rounded = yield* CachemeConfig.make({ leaseTtl: Duration.micros(1500n), commandTimeout: "0.2 millis" })
      assert.strictEqual(Duration.toMillis(rounded.leaseTtl), 2)
      assert.strictEqual(Duration.toMillis(rounded.commandTimeout), 1)
    })
  )

  it.effect("the layer provides the settings", () =>
    Effect.gen(function* () {
      const settings = yield* CachemeConfig.CachemeConfig
      assert.strictEqual(settings.prefix, "x:")
    }).pipe(Effect.provide(CachemeConfig.layer({ prefix: "x:" })))
  )

  it.effect("a store whose layer never saw the settings in effect refuses to work, instead of writing elsewhere", () =>
    Effect.gen(function* () {
      const Probe = Node.make("config-test-prefix", { fields: { id: Schema.Number }, value: Schema.Number })
      const read = Effect.succeed(1).pipe(Memo.cached(Probe.make({ id: 1 })))
      // Merged side by side: the store was built with the default prefix, the program runs with "APP:".
      const wrong = Layer.mergeAll(CacheStore.layerMemory(), CachemeConfig.layer({ prefix: "APP:" }))
      const exit = yield* Effect.exit(read.pipe(Effect.provide(wrong)))
      assert.isTrue(Exit.isFailure(exit) && Cause.hasDies(exit.cause), "a defect, not a silent write")
      const defect = Exit.isFailure(exit) ? Cause.squash(exit.cause) : undefined
      assert.strictEqual((defect as CachemeConfig.CachemeConfigError)._tag, "CachemeConfigError")
      const invalidation = yield* Effect.exit(Memo.invalidateNode(Probe).pipe(Effect.provide(wrong)))
      assert.isTrue(Exit.isFailure(invalidation))
      // Composed with provideMerge, the store has the prefix of the settings in effect.
      const right = CacheStore.layerMemory().pipe(Layer.provideMerge(CachemeConfig.layer({ prefix: "APP:" })))
      assert.strictEqual(yield* read.pipe(Effect.provide(right)), 1)
    })
  )
})
