/**
 * The admin web app: a dashboard of the cache nodes (hits, misses, stale serves, loads, hit ratio, mean load
 * time, key counts, store health), key search with SCAN paging, decoded values, invalidation by key, node, group,
 * tag and pattern (each confirmed, each recorded in the history), and the same operations as a JSON API.
 *
 * {@link layer} registers the routes on the `HttpRouter` of your own Effect HTTP app, under a path prefix;
 * {@link layerServer} runs them on their own Node HTTP server. Both need a `CacheStore` and a `History`, and
 * both refuse to start without credentials (see `Auth`).
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
import { Effect, Layer } from "effect"
import { HttpRouter, type HttpServer, type HttpServerError } from "effect/http"
import { CacheStore } from "../CacheStore.ts"
import * as Invalidation from "../Invalidation.ts"
import * as Auth from "./Auth.ts"
import { History, withRecorder } from "./History.ts"
import * as Routes from "./internal/routes.ts"

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
      const history = yield* History
      const listener = withRecorder(yield* Invalidation.Listener, history)
      const routes = Routes.make({ base, auth, store, history, listener, scanBudget, maxBodyBytes })
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
  HttpRouter.serve(layer(options), {
    disableLogger: options.logRequests === false,
    disableListenLog: options.logRequests === false
  }).pipe(
    Layer.provideMerge(
      NodeHttpServer.layerServer(createServer, { port: options.port ?? 8787, host: options.host ?? "127.0.0.1" })
    )
  )
