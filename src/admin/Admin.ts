/**
 * The admin web app: a dashboard of the cache nodes (hits, misses, stale serves, loads, hit ratio, mean load
 * time, key counts, store health), key search with SCAN paging, decoded values, invalidation by key, node, group,
 * tag and pattern (each confirmed, each recorded in the history), and the same operations as a JSON API.
 *
 * {@link layer} registers the routes on the `HttpRouter` of your own Effect HTTP app, under a path prefix;
 * {@link layerServer} runs them on their own Node HTTP server. Both need a `CacheStore` and a `History`, and
 * both refuse to start without credentials (see `Auth`). Failed authentications are limited per client and per
 * user ({@link RateLimitOptions}: counted in the store's Redis when it is a Redis store, so that every admin process
 * shares the budgets), and every answer, errors and unknown paths included, carries the security headers.
 *
 * **Example** (mounting the admin under `/admin` in an existing app)
 *
 * ```ts
 * import { NodeHttpServer } from "@effect/platform-node"
 * import { Layer, Redacted } from "effect"
 * import { HttpRouter } from "effect/http"
 * import { CacheStore } from "effect-cacheme"
 * import { Admin, History } from "effect-cacheme/admin"
 * import { createServer } from "node:http"
 *
 * const AdminRoutes = Admin.layer({ path: "/admin", token: Redacted.make("a-long-random-admin-token") })
 *
 * const Server = HttpRouter.serve(AdminRoutes).pipe(
 *   Layer.provide(History.layerMemory()),
 *   Layer.provide(CacheStore.layerMemory()),
 *   Layer.provide(NodeHttpServer.layer(createServer, { port: 3000 }))
 * )
 * ```
 *
 * @since 0.1.0
 */
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { Duration, Effect, Layer, Option } from "effect"
import { type HttpMiddleware, HttpRouter, type HttpServer, type HttpServerError } from "effect/http"
import { CacheStore } from "../CacheStore.ts"
import * as Invalidation from "../Invalidation.ts"
import { setMarker } from "../internal/protocol.ts"
import { clientOf } from "../store/Redis.ts"
import * as Auth from "./Auth.ts"
import { History, withRecorder } from "./History.ts"
import * as Limiter from "./internal/limiter.ts"
import * as Routes from "./internal/routes.ts"

/**
 * A budget of failed authentications: `attempts` at once, then one more every `window / attempts`.
 *
 * @category models
 * @since 0.2.0
 */
export interface Budget {
  readonly attempts: number
  readonly window: Duration.Input
}

/**
 * How failed authentications are limited (see "Rate limiting" in `docs/admin.md`).
 *
 * @category models
 * @since 0.2.0
 */
export interface RateLimitOptions {
  /** Failures one client address (an IPv6 /64) may make (default 10 per minute). */
  readonly perClient?: Budget | undefined
  /** Failures against one user name, or the token, from all addresses together (default 20 per 15 minutes). */
  readonly perUser?: Budget | undefined
  /**
   * Where failures are counted: `"auto"` (the default) in the Redis of a Redis store, so that every admin process
   * on that Redis shares the budgets, and in process otherwise; `"memory"`: in process always.
   */
  readonly store?: "auto" | "memory" | undefined
}

/**
 * What the admin takes: credentials (at least one of `token` and `users`) and where it lives.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options extends Auth.Options {
  /** The path prefix the admin is mounted under, e.g. `/admin` (default: the root). */
  readonly path?: string | undefined
  /** The most SCAN calls one request may make when listing keys (default 10). */
  readonly scanBudget?: number | undefined
  /** The largest request body accepted, in bytes (default 64 KiB). */
  readonly maxBodyBytes?: number | undefined
  /** Budgets of failed authentications (Basic, Bearer and the login form), per client and per user. */
  readonly rateLimit?: RateLimitOptions | undefined
  /**
   * Reverse proxies in front of the admin whose `X-Forwarded-For` tells the client's address (networks, or a
   * predicate; see `HttpMiddleware.xForwardedHeaders`). Without them the client is the socket's peer: behind a
   * proxy, every client would then share one budget.
   */
  readonly trustedProxies?: HttpMiddleware.TrustedProxyOptions["trustedProxies"] | undefined
}

/**
 * Options of the standalone server.
 *
 * @category models
 * @since 0.1.0
 */
export interface ServerOptions extends Options {
  /** Default 8787; 0 picks a free port. */
  readonly port?: number | undefined
  /** Default `127.0.0.1` (loopback only): set `0.0.0.0` deliberately, behind TLS. */
  readonly host?: string | undefined
  /** Log one line per request (default true). */
  readonly logRequests?: boolean | undefined
}

/**
 * The mount path, normalized: `""` for the root, otherwise `/segment(/segment)*` without a trailing slash.
 *
 * @category utils
 * @since 0.1.0
 */
export const normalizePath = (path: string | undefined): Effect.Effect<string, Auth.AdminConfigError> => {
  const trimmed = (path ?? "").replace(/\/+$/, "")
  if (trimmed === "") return Effect.succeed("")
  return /^(\/[A-Za-z0-9._~-]+)+$/.test(trimmed)
    ? Effect.succeed(trimmed)
    : Effect.fail(
        new Auth.AdminConfigError({
          setting: "path",
          message: `the admin path must look like /admin (letters, digits, . _ ~ -), got ${JSON.stringify(path)}`
        })
      )
}

const budget = (
  setting: string,
  value: Budget | undefined,
  fallback: Budget
): Effect.Effect<Limiter.Budget, Auth.AdminConfigError> => {
  const { attempts, window } = value ?? fallback
  const duration = Duration.fromInput(window)
  const windowMillis = Option.isSome(duration) ? Duration.toMillis(duration.value) : Number.NaN
  if (!Number.isInteger(attempts) || attempts < 1 || attempts > 1_000_000) {
    return Effect.fail(
      new Auth.AdminConfigError({
        setting,
        message: `${setting}.attempts: expected a whole number from 1 to 1000000, got ${attempts}`
      })
    )
  }
  if (!Number.isFinite(windowMillis) || windowMillis < 1 || windowMillis > 7 * 24 * 3600 * 1000) {
    return Effect.fail(
      new Auth.AdminConfigError({
        setting,
        message: `${setting}.window: expected a duration from 1 millisecond to 7 days`
      })
    )
  }
  return Effect.succeed({ attempts, windowMillis })
}

/**
 * The attempt limiter of an admin over `store`: in its Redis (under the store's prefix, beside the protocol's
 * reserved keys, which scans and patterns never reach) when it is a Redis store and `store` is `"auto"`.
 */
const makeLimiter = (options: RateLimitOptions | undefined, store: CacheStore["Service"]) =>
  Effect.gen(function* () {
    const perClient = yield* budget("rateLimit.perClient", options?.perClient, { attempts: 10, window: "1 minute" })
    const perUser = yield* budget("rateLimit.perUser", options?.perUser, { attempts: 20, window: "15 minutes" })
    const where = options?.store ?? "auto"
    if (where !== "auto" && where !== "memory") {
      return yield* new Auth.AdminConfigError({
        setting: "rateLimit.store",
        message: `rateLimit.store: expected "auto" or "memory", got ${JSON.stringify(where)}`
      })
    }
    const client = where === "auto" ? clientOf(store) : undefined
    const backend =
      client === undefined ? Limiter.makeMemory() : Limiter.makeRedis(client, `${store.prefix}${setMarker}admin:`)
    return Limiter.make(backend, { perClient, perUser })
  })

const positive = (setting: string, value: number | undefined, fallback: number, max: number) => {
  const n = value ?? fallback
  return Number.isInteger(n) && n >= 1 && n <= max
    ? Effect.succeed(n)
    : Effect.fail(new Auth.AdminConfigError({ setting, message: `expected a whole number from 1 to ${max}, got ${n}` }))
}

/**
 * Registers the admin's pages and JSON API on the current `HttpRouter`, under `options.path`. The admin's own
 * invalidations are recorded in `History` (and still reach the `Invalidation.Listener` already in place).
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options
): Layer.Layer<never, Auth.AdminConfigError, HttpRouter.HttpRouter | CacheStore | History> =>
  HttpRouter.use((router) =>
    Effect.gen(function* () {
      const auth = yield* Auth.make(options)
      const base = yield* normalizePath(options.path)
      const scanBudget = yield* positive("scanBudget", options.scanBudget, 10, 1000)
      const maxBodyBytes = yield* positive("maxBodyBytes", options.maxBodyBytes, 64 * 1024, 16 * 1024 * 1024)
      const store = yield* CacheStore
      const limiter = yield* makeLimiter(options.rateLimit, store)
      const history = yield* History
      const listener = withRecorder(yield* Invalidation.Listener, history)
      const routes = Routes.make({
        base,
        auth,
        store,
        history,
        listener,
        scanBudget,
        maxBodyBytes,
        limiter,
        trustedProxies: options.trustedProxies
      })
      yield* routes.register(router)
    })
  )

/**
 * {@link layer} with credentials read from the environment (`CACHEME_ADMIN_TOKEN`, `CACHEME_ADMIN_USER` +
 * `CACHEME_ADMIN_PASSWORD`, `CACHEME_ADMIN_SESSION_SECRET`); fields given in `options` win.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerConfig = (
  options: Options = {}
): Layer.Layer<never, Auth.AdminConfigError, HttpRouter.HttpRouter | CacheStore | History> =>
  Layer.unwrap(
    Effect.map(Auth.fromConfig, (fromEnv) =>
      layer({
        ...options,
        token: options.token ?? fromEnv.token,
        users: options.users ?? fromEnv.users,
        sessionSecret: options.sessionSecret ?? fromEnv.sessionSecret
      })
    )
  )

/** On the standalone server, paths outside the admin's are answered `404` with the security headers too. */
const outside = (path: string | undefined): Layer.Layer<never, Auth.AdminConfigError, HttpRouter.HttpRouter> =>
  HttpRouter.use((router) =>
    Effect.flatMap(normalizePath(path), (base) => (base === "" ? Effect.void : router.add("*", "/*", Routes.outside)))
  )

/**
 * The admin on its own Node HTTP server (default `127.0.0.1:8787`). The `HttpServer` service it provides tells
 * the address it listens on.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerServer = (
  options: ServerOptions
): Layer.Layer<HttpServer.HttpServer, Auth.AdminConfigError | HttpServerError.ServeError, CacheStore | History> =>
  HttpRouter.serve(Layer.merge(layer(options), outside(options.path)), {
    disableLogger: options.logRequests === false,
    disableListenLog: options.logRequests === false
  }).pipe(
    Layer.provideMerge(
      NodeHttpServer.layerServer(createServer, { port: options.port ?? 8787, host: options.host ?? "127.0.0.1" })
    )
  )
