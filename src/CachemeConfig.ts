/**
 * Settings shared by every cache node: the enable flag, the key prefix, herd waiting, default stale and ttl,
 * the Redis URL, the store command timeout and the lease lifetime. They are the successor of django-cacheme's
 * `CACHEME` settings dict.
 *
 * `CachemeConfig` is a `Context.Reference`, so programs run with the defaults when nothing is provided.
 * Provide {@link layer} to set them in code, or {@link layerConfig} to read them from `CACHEME_*` environment
 * variables (through Effect's `Config`, so any `ConfigProvider` works). A bad value fails the layer with a
 * {@link CachemeConfigError} that names the setting.
 *
 * @since 0.1.0
 */
import { Config, Context, Duration, Effect, Layer, Option, Schema } from "effect"

/**
 * The resolved settings.
 *
 * @category models
 * @since 0.1.0
 */
export interface Settings {
  /** `false` turns `Memo.cached` into a pass-through (`CACHEME_ENABLE`). */
  readonly enabled: boolean
  /** Prepended to every Redis key the library writes (`CACHEME_PREFIX`, default `CM:`). */
  readonly prefix: string
  /** How many times a caller re-reads a key whose lease another caller holds (`CACHEME_HERD_RETRY_COUNT`, 5). */
  readonly herdRetryCount: number
  /** The pause between those re-reads (`CACHEME_HERD_RETRY_INTERVAL`, 20 millis). */
  readonly herdRetryInterval: Duration.Duration
  /**
   * How long a caller waits, at most, for a load another caller holds a live lease for (`CACHEME_HERD_MAX_WAIT`,
   * 30 seconds). After the `herdRetryCount` quick re-reads, it keeps re-reading (backing off to every 100 ms)
   * while the lease is live, so a slow load runs once however long it takes; a lease whose holder died
   * lapses within `leaseTtl` and the next re-read takes it. A re-read that cannot reach the store is tried again;
   * `herdRetryCount` failed re-reads in a row make the caller run its effect without the cache.
   */
  readonly herdMaxWait: Duration.Duration
  /** Whether nodes serve a stale value while one caller refreshes it (`CACHEME_STALE`, true). */
  readonly stale: boolean
  /** The default time to live of an entry; `undefined` keeps entries until invalidated (`CACHEME_TTL`). */
  readonly ttl: Duration.Duration | undefined
  /** Where `CacheStore.layerRedisConfig` connects (`CACHEME_REDIS_URL`, `redis://127.0.0.1:6379`). */
  readonly redisUrl: string
  /** Store commands slower than this fail (open) instead of holding the caller (`CACHEME_COMMAND_TIMEOUT`, 500 millis). */
  readonly commandTimeout: Duration.Duration
  /**
   * How long a loader's lease lasts unless renewed (`CACHEME_LEASE_TTL`, 5 seconds). The holder renews it every
   * third of that while its load runs, so a slow load keeps it and a holder that died frees the key within it.
   */
  readonly leaseTtl: Duration.Duration
  /**
   * The largest encoded value stored, in bytes (`CACHEME_MAX_VALUE_BYTES`, 8 MB): a larger value is returned to
   * its caller, not stored, logged and counted (`cacheme_oversized`).
   */
  readonly maxValueBytes: number
  /**
   * How often the Redis store takes one bounded step of its index sweep (`CACHEME_SWEEP_INTERVAL`, 1 second;
   * `none` or `off`: no sweep). A step checks up to a batch of index members (500 by default) against the entries
   * they name and removes the members whose entry is gone (evicted, deleted outside the library, expired): see
   * `docs/concepts.md`, "The store protocol". `undefined`: the sweep is off.
   */
  readonly sweepInterval: Duration.Duration | undefined
}

/**
 * The same settings as written by a user: durations in any `Duration.Input` form, every field optional.
 *
 * @category models
 * @since 0.1.0
 */
export interface Input {
  readonly enabled?: boolean | undefined
  readonly prefix?: string | undefined
  readonly herdRetryCount?: number | undefined
  readonly herdRetryInterval?: Duration.Input | undefined
  readonly herdMaxWait?: Duration.Input | undefined
  readonly stale?: boolean | undefined
  readonly ttl?: Duration.Input | null | undefined
  readonly redisUrl?: string | undefined
  readonly commandTimeout?: Duration.Input | undefined
  readonly leaseTtl?: Duration.Input | undefined
  readonly maxValueBytes?: number | undefined
  /** `null` turns the sweep off. */
  readonly sweepInterval?: Duration.Input | null | undefined
}

/**
 * The default settings.
 *
 * @category constructors
 * @since 0.1.0
 */
export const defaults: Settings = {
  enabled: true,
  prefix: "CM:",
  herdRetryCount: 5,
  herdRetryInterval: Duration.millis(20),
  herdMaxWait: Duration.seconds(30),
  stale: true,
  ttl: undefined,
  redisUrl: "redis://127.0.0.1:6379",
  commandTimeout: Duration.millis(500),
  leaseTtl: Duration.seconds(5),
  maxValueBytes: 8 * 1024 * 1024,
  sweepInterval: Duration.seconds(1)
}

/**
 * The current settings; {@link defaults} unless a layer provides others.
 *
 * @category services
 * @since 0.1.0
 */
export const CachemeConfig = Context.Reference<Settings>("effect-cacheme/CachemeConfig", {
  defaultValue: () => defaults
})

/**
 * A setting with a value it cannot take.
 *
 * @category errors
 * @since 0.1.0
 */
export class CachemeConfigError extends Schema.TaggedError<CachemeConfigError>()("CachemeConfigError", {
  setting: Schema.String,
  message: Schema.String
}) {}

/** The environment variable behind each setting. */
export const environmentVariables: { readonly [K in keyof Settings]: string } = {
  enabled: "CACHEME_ENABLE",
  prefix: "CACHEME_PREFIX",
  herdRetryCount: "CACHEME_HERD_RETRY_COUNT",
  herdRetryInterval: "CACHEME_HERD_RETRY_INTERVAL",
  herdMaxWait: "CACHEME_HERD_MAX_WAIT",
  stale: "CACHEME_STALE",
  ttl: "CACHEME_TTL",
  redisUrl: "CACHEME_REDIS_URL",
  commandTimeout: "CACHEME_COMMAND_TIMEOUT",
  leaseTtl: "CACHEME_LEASE_TTL",
  maxValueBytes: "CACHEME_MAX_VALUE_BYTES",
  sweepInterval: "CACHEME_SWEEP_INTERVAL"
}

const invalid = (setting: keyof Settings, message: string) => new CachemeConfigError({ setting, message })

/** The longest delay Node's timers keep (2^31 - 1 ms, about 24.8 days); a longer one fires at once. */
const maxTimerMillis = 2 ** 31 - 1

/** The longest ttl: ten years (entries record their end in 13-digit millis). */
const maxTtlMillis = 10 * 365 * 24 * 3600 * 1000

/**
 * A duration above zero, in whole milliseconds (a fraction is rounded up: Redis takes whole milliseconds), at most
 * `maxMillis`.
 */
const positiveDuration = (setting: keyof Settings, input: Duration.Input, maxMillis = maxTimerMillis) => {
  const duration = Duration.fromInput(input)
  if (Option.isNone(duration)) {
    return Effect.fail(invalid(setting, `expected a duration, got ${JSON.stringify(String(input))}`))
  }
  const millis = Duration.toMillis(duration.value)
  if (!Number.isFinite(millis) || millis <= 0) {
    return Effect.fail(
      invalid(setting, `expected a finite duration above zero, got ${Duration.format(duration.value)}`)
    )
  }
  if (millis > maxMillis) {
    return Effect.fail(
      invalid(
        setting,
        `expected at most ${Duration.format(Duration.millis(maxMillis))}, got ${Duration.format(duration.value)}`
      )
    )
  }
  return Effect.succeed(Number.isInteger(millis) ? duration.value : Duration.millis(Math.ceil(millis)))
}

const checkString = (setting: keyof Settings, value: unknown, nonEmpty: boolean) =>
  typeof value === "string" && (!nonEmpty || value.length > 0)
    ? Effect.succeed(value)
    : Effect.fail(invalid(setting, `expected a ${nonEmpty ? "non-empty " : ""}string, got ${JSON.stringify(value)}`))

const checkBoolean = (setting: keyof Settings, value: unknown) =>
  typeof value === "boolean"
    ? Effect.succeed(value)
    : Effect.fail(invalid(setting, `expected a boolean, got ${JSON.stringify(value)}`))

/**
 * Validates settings written in code, filling the missing ones from {@link defaults}.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function* (input: Input = {}) {
  const enabled = input.enabled === undefined ? defaults.enabled : yield* checkBoolean("enabled", input.enabled)
  const stale = input.stale === undefined ? defaults.stale : yield* checkBoolean("stale", input.stale)
  const prefix = input.prefix === undefined ? defaults.prefix : yield* checkString("prefix", input.prefix, true)
  if (prefix.includes("*") || prefix.includes("?") || prefix.includes("[")) {
    return yield* invalid("prefix", `a prefix cannot hold glob characters (* ? [), got ${JSON.stringify(prefix)}`)
  }
  const redisUrl =
    input.redisUrl === undefined ? defaults.redisUrl : yield* checkString("redisUrl", input.redisUrl, true)
  if (!/^rediss?:\/\//.test(redisUrl) || !URL.canParse(redisUrl)) {
    return yield* invalid("redisUrl", `expected a redis:// or rediss:// URL, got ${JSON.stringify(redisUrl)}`)
  }
  const herdRetryCount = input.herdRetryCount ?? defaults.herdRetryCount
  if (!Number.isInteger(herdRetryCount) || herdRetryCount < 0) {
    return yield* invalid("herdRetryCount", `expected a whole number >= 0, got ${JSON.stringify(herdRetryCount)}`)
  }
  const maxValueBytes = input.maxValueBytes ?? defaults.maxValueBytes
  if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes < 1) {
    return yield* invalid(
      "maxValueBytes",
      `expected a whole number of bytes above 0, got ${JSON.stringify(maxValueBytes)}`
    )
  }
  const settings: Settings = {
    enabled,
    maxValueBytes,
    prefix,
    herdRetryCount,
    herdRetryInterval:
      input.herdRetryInterval === undefined
        ? defaults.herdRetryInterval
        : yield* positiveDuration("herdRetryInterval", input.herdRetryInterval),
    herdMaxWait:
      input.herdMaxWait === undefined
        ? defaults.herdMaxWait
        : yield* positiveDuration("herdMaxWait", input.herdMaxWait),
    stale,
    ttl:
      input.ttl === undefined || input.ttl === null
        ? defaults.ttl
        : yield* positiveDuration("ttl", input.ttl, maxTtlMillis),
    redisUrl,
    commandTimeout:
      input.commandTimeout === undefined
        ? defaults.commandTimeout
        : yield* positiveDuration("commandTimeout", input.commandTimeout),
    leaseTtl: input.leaseTtl === undefined ? defaults.leaseTtl : yield* positiveDuration("leaseTtl", input.leaseTtl),
    sweepInterval:
      input.sweepInterval === undefined
        ? defaults.sweepInterval
        : input.sweepInterval === null
          ? undefined
          : yield* positiveDuration("sweepInterval", input.sweepInterval)
  }
  return settings
})

/**
 * Provides settings written in code.
 *
 * **Example**
 *
 * ```ts
 * import { CachemeConfig } from "effect-cacheme"
 *
 * const Settings = CachemeConfig.layer({ prefix: "app:", ttl: "10 minutes", herdRetryCount: 10 })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (input: Input = {}): Layer.Layer<never, CachemeConfigError> =>
  Layer.effect(CachemeConfig, make(input))

const fromEnv = <A>(setting: keyof Settings, config: (name: string) => Config.Config<A>) =>
  Effect.mapError(Config.option(config(environmentVariables[setting])), (error: Config.ConfigError) =>
    invalid(setting, `${environmentVariables[setting]}: ${error.message}`)
  ).pipe(Effect.map((value: Option.Option<A>) => Option.getOrUndefined(value)))

/**
 * Reads every setting from `CACHEME_*` variables of the current `ConfigProvider` (the environment by default);
 * durations are written like `20 millis` or `10 minutes`, `CACHEME_TTL=none` means no expiry,
 * `CACHEME_SWEEP_INTERVAL=none` (or `off`) no index sweep.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromConfig: Effect.Effect<Settings, CachemeConfigError> = Effect.gen(function* () {
  const ttl = yield* fromEnv("ttl", Config.String)
  const sweepInterval = yield* fromEnv("sweepInterval", Config.String)
  return yield* make({
    enabled: yield* fromEnv("enabled", Config.Boolean),
    prefix: yield* fromEnv("prefix", Config.String),
    herdRetryCount: yield* fromEnv("herdRetryCount", Config.Int),
    herdRetryInterval: yield* fromEnv("herdRetryInterval", Config.Duration),
    herdMaxWait: yield* fromEnv("herdMaxWait", Config.Duration),
    stale: yield* fromEnv("stale", Config.Boolean),
    ttl: ttl === undefined || ttl.trim().toLowerCase() === "none" ? undefined : (ttl as Duration.Input),
    redisUrl: yield* fromEnv("redisUrl", Config.String),
    commandTimeout: yield* fromEnv("commandTimeout", Config.Duration),
    leaseTtl: yield* fromEnv("leaseTtl", Config.Duration),
    maxValueBytes: yield* fromEnv("maxValueBytes", Config.Int),
    sweepInterval:
      sweepInterval === undefined
        ? undefined
        : ["none", "off"].includes(sweepInterval.trim().toLowerCase())
          ? null
          : (sweepInterval as Duration.Input)
  })
})

/**
 * Provides the settings read by {@link fromConfig}.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerConfig: Layer.Layer<never, CachemeConfigError> = Layer.effect(CachemeConfig, fromConfig)
