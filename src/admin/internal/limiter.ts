/**
 * The admin's brake on password guessing: a budget of failed authentications per client address and per user,
 * counted in Redis when the admin runs on the Redis store (so it holds across every admin process sharing that
 * Redis) and in process otherwise.
 *
 * Each budget is a GCRA (generic cell rate algorithm) over one key: `attempts` in a burst, then one more every
 * `window / attempts`. An attempt **takes** one unit *before* the credentials are compared, atomically, so any
 * number of parallel guesses gets at most the budget compared; an attempt whose credentials were right **gives**
 * it back, so a correct login costs nothing. The state of a key is one number, its "theoretical arrival time"
 * (`tat`): a take moves it `interval` later and is refused when it would land more than `window` ahead of now.
 *
 * Effect's `RateLimiter` (`effect/persistence`) is not used: it has no way to give a unit back (so every
 * successful Basic/Bearer request of a script would count against its budget), its in-memory store never forgets
 * a key (an attacker who varies the user name or address grows it without bound), and its Redis store speaks to
 * `effect/persistence`'s node-redis service rather than the ioredis client the store holds.
 */
import { createHash } from "node:crypto"
import { Clock, Duration, Effect, Option, Result, Schema } from "effect"
import { IpNetwork, NetAddress } from "effect/net"
import type { Cluster, Redis } from "ioredis"

/** A budget, resolved: `attempts` failures in a burst, then one every `intervalMillis`. */
export interface Budget {
  readonly attempts: number
  readonly windowMillis: number
}

/** The outcome of a take: allowed, or refused until `retryAfterMillis` from now. */
export type Take = { readonly _tag: "Allowed" } | { readonly _tag: "Refused"; readonly retryAfterMillis: number }

/** Where the budgets are counted. */
export interface Backend {
  readonly kind: "memory" | "redis"
  readonly take: (key: string, budget: Budget) => Effect.Effect<Take, LimiterUnavailable>
  readonly give: (key: string, budget: Budget) => Effect.Effect<void, LimiterUnavailable>
}

/** The backing store did not answer (Redis down or slow). */
export class LimiterUnavailable extends Schema.TaggedError<LimiterUnavailable>()("LimiterUnavailable", {
  message: Schema.String
}) {}

const intervalOf = (budget: Budget) => Math.max(1, Math.ceil(budget.windowMillis / budget.attempts))

/**
 * An in-process backend. At most `maxKeys` keys are kept: each take or give moves its key to the back, and the
 * key at the front (the one untouched the longest) goes first when the map is full; keys whose state has run
 * out are dropped as they are met, two per call.
 */
export const makeMemory = (maxKeys = 100_000): Backend => {
  const tats = new Map<string, number>()
  const sweep = (now: number) => {
    let checked = 0
    for (const [key, tat] of tats) {
      if (checked++ >= 2) break
      if (tat <= now) tats.delete(key)
      else break
    }
  }
  const put = (key: string, tat: number) => {
    tats.delete(key)
    if (tats.size >= maxKeys) {
      const oldest = tats.keys().next()
      if (oldest.done !== true) tats.delete(oldest.value)
    }
    tats.set(key, tat)
  }
  return {
    kind: "memory",
    take: (key, budget) =>
      Effect.map(Clock.currentTimeMillis, (now): Take => {
        sweep(now)
        const interval = intervalOf(budget)
        const next = Math.max(tats.get(key) ?? now, now) + interval
        if (next - now > budget.windowMillis)
          return { _tag: "Refused", retryAfterMillis: next - now - budget.windowMillis }
        put(key, next)
        return { _tag: "Allowed" }
      }),
    give: (key, budget) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const tat = tats.get(key)
        if (tat === undefined) return
        const next = tat - intervalOf(budget)
        if (next <= now) tats.delete(key)
        else put(key, next)
      })
  }
}

/**
 * One key, one script, so it runs on a Redis Cluster as on a single Redis. The time is the server's (`TIME`), so
 * admin processes with skewed clocks share one budget.
 */
const limitScript = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call("GET", KEYS[1]) or "0") or 0
if tat < now then tat = now end
if ARGV[1] == "take" then
  local next = tat + interval
  if next - now > window then return next - now - window end
  redis.call("SET", KEYS[1], string.format("%d", next), "PX", next - now)
  return 0
end
local next = tat - interval
if next <= now then
  redis.call("DEL", KEYS[1])
else
  redis.call("SET", KEYS[1], string.format("%d", next), "PX", next - now)
end
return 0
`

const commandName = "cachemeAdminLimit"

/**
 * A backend in the Redis (or Redis Cluster) the store uses, under `keyPrefix`. Each command waits at most
 * `timeoutMillis`.
 */
export const makeRedis = (client: Redis | Cluster, keyPrefix: string, timeoutMillis = 1000): Backend => {
  if (typeof (client as any)[commandName] !== "function") {
    client.defineCommand(commandName, { numberOfKeys: 1, lua: limitScript })
  }
  const run = (operation: "take" | "give", key: string, budget: Budget) =>
    Effect.tryPromise({
      try: () =>
        (client as any)[commandName](
          keyPrefix + key,
          operation,
          intervalOf(budget),
          budget.windowMillis
        ) as Promise<number>,
      catch: (cause) =>
        new LimiterUnavailable({
          message: `Redis ${operation} failed: ${cause instanceof Error ? cause.message : String(cause)}`
        })
    }).pipe(
      Effect.timeoutOrElse({
        duration: Duration.millis(timeoutMillis),
        orElse: () =>
          Effect.fail(new LimiterUnavailable({ message: `Redis ${operation} took longer than ${timeoutMillis} ms` }))
      })
    )
  return {
    kind: "redis",
    take: (key, budget) =>
      Effect.map(
        run("take", key, budget),
        (wait): Take => (wait > 0 ? { _tag: "Refused", retryAfterMillis: wait } : { _tag: "Allowed" })
      ),
    give: (key, budget) => Effect.asVoid(run("give", key, budget))
  }
}

/** The budgets of one admin. */
export interface Budgets {
  readonly perClient: Budget
  readonly perUser: Budget
}

/**
 * An attempt that passed the brake: `settle(true)` when the credentials were right (the units are given back),
 * `settle(false)` when they were wrong (they stay spent).
 */
export type Gate =
  | { readonly _tag: "Open"; readonly settle: (succeeded: boolean) => Effect.Effect<void> }
  | { readonly _tag: "Shut"; readonly retryAfterSeconds: number }

export interface Limiter {
  /** Takes one unit of the client's budget and of the user's (when the attempt names one). */
  readonly gate: (client: string, user: string | undefined) => Effect.Effect<Gate>
  readonly kind: "memory" | "redis"
}

const hashed = (text: string) => createHash("sha256").update(text, "utf8").digest("base64url").slice(0, 32)

/**
 * Binds backends to budgets. When the primary backend fails, the attempt is counted in process instead (and that
 * is logged, at most once a minute): a Redis outage never opens the door to unlimited guessing, nor locks
 * everyone out.
 */
export const make = (primary: Backend, budgets: Budgets): Limiter => {
  const fallback = primary.kind === "memory" ? primary : makeMemory()
  let lastWarning = Number.NEGATIVE_INFINITY
  const warn = (error: LimiterUnavailable) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) => {
      if (now - lastWarning < 60_000) return Effect.void
      lastWarning = now
      return Effect.logWarning(
        `effect-cacheme admin: login attempts are counted in this process only for now (${error.message})`
      )
    })

  /** Takes from the primary backend, or from the fallback when the primary fails; says which one took. */
  const take = (key: string, budget: Budget): Effect.Effect<readonly [Take, Backend]> =>
    primary.take(key, budget).pipe(
      Effect.map((outcome) => [outcome, primary] as const),
      Effect.catch((error) =>
        Effect.andThen(
          warn(error),
          Effect.map(fallback.take(key, budget), (outcome) => [outcome, fallback] as const)
        ).pipe(Effect.orDie)
      )
    )
  const give = (backend: Backend, key: string, budget: Budget) =>
    backend.give(key, budget).pipe(Effect.catch((error) => warn(error)))

  return {
    kind: primary.kind,
    gate: (client, user) =>
      Effect.gen(function* () {
        const wanted: Array<readonly [string, Budget]> = [[`c:${client}`, budgets.perClient]]
        if (user !== undefined) wanted.push([`u:${hashed(user)}`, budgets.perUser])
        const taken: Array<readonly [string, Budget, Backend]> = []
        for (const [key, budget] of wanted) {
          const [outcome, backend] = yield* take(key, budget)
          if (outcome._tag === "Refused") {
            // The units already taken for this attempt go back: a refused attempt compares nothing.
            yield* Effect.forEach(taken, ([k, b, on]) => give(on, k, b), { discard: true })
            return { _tag: "Shut", retryAfterSeconds: Math.max(1, Math.ceil(outcome.retryAfterMillis / 1000)) }
          }
          taken.push([key, budget, backend])
        }
        const gate: Gate = {
          _tag: "Open",
          settle: (succeeded) =>
            succeeded ? Effect.forEach(taken, ([k, b, on]) => give(on, k, b), { discard: true }) : Effect.void
        }
        return gate
      })
  }
}

/**
 * The budget key of a client: its address, an IPv6 address cut to its /64 (what one subscriber usually holds),
 * IPv4-mapped IPv6 addresses read as IPv4. `unknown` when the server does not know the address.
 */
export const clientKey = (remoteAddress: Option.Option<string>): string => {
  if (Option.isNone(remoteAddress)) return "unknown"
  const raw = remoteAddress.value
  const parsed = NetAddress.ipFromString(raw.startsWith("[") && raw.endsWith("]") ? raw.slice(1, -1) : raw)
  if (Result.isFailure(parsed)) return `raw:${hashed(raw)}`
  const address = NetAddress.toCanonical(parsed.success)
  if (NetAddress.isIpv4Address(address)) return NetAddress.formatIp(address)
  return IpNetwork.format(IpNetwork.fromAddressUnsafe(address, 64))
}
