/**
 * The `effect-cacheme` command line, built with `effect/cli`:
 *
 * ```text
 * effect-cacheme [--redis-url URL] [--prefix P] [--database-url URL] [--history-table T] [--import MODULE]... <command>
 *   migrate     create or upgrade the cacheme_invalidation table        (--status, --rollback)
 *   admin       serve the admin page and JSON API                        (--port, --host, --path, --migrate)
 *   invalidate  invalidate by --key, --node, --group, --tag or --pattern (--soft, --actor, --json)
 *   stats       store health and key counts per node; with --url, the counters of a running admin
 * ```
 *
 * Every flag falls back to an environment variable (`CACHEME_REDIS_URL`, `CACHEME_PREFIX`,
 * `CACHEME_DATABASE_URL`); credentials of the admin are read from `CACHEME_ADMIN_TOKEN` or `CACHEME_ADMIN_USER` and
 * `CACHEME_ADMIN_PASSWORD` only, never from flags (which other users of the machine can read). `--import` loads
 * the modules that define your nodes (`Node.make`), so that `stats` and `admin` know them.
 *
 * @since 0.1.0
 */
import { userInfo } from "node:os"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Config, Console, Effect, Layer, Option, Redacted, Result, Schema } from "effect"
import { CliError, Command, Flag } from "effect/cli"
import { HttpServer } from "effect/http"
import { NetAddress } from "effect/net"
import * as CacheStore from "../CacheStore.ts"
import * as CachemeConfig from "../CachemeConfig.ts"
import * as Invalidation from "../Invalidation.ts"
import * as Admin from "./Admin.ts"
import { type InvalidateResponse, type NodeStats, StatsResponse, type StoreInfo } from "./Api.ts"
import * as Auth from "./Auth.ts"
import * as Database from "./Database.ts"
import * as History from "./History.ts"
import { allNodeStats, storeInfo } from "./internal/inspect.ts"
import { invalidateTarget, type TargetProblem, targetProblem } from "./internal/targets.ts"
import * as Migration from "./Migration.ts"

/**
 * The version the CLI reports.
 *
 * @category constants
 * @since 0.1.0
 */
export const version = "0.1.0"

/**
 * A command that cannot do its work; the message is printed, the exit code is 1.
 *
 * @category errors
 * @since 0.1.0
 */
export class CliFailure extends Schema.TaggedError<CliFailure>()("CliFailure", {
  message: Schema.String
}) {
  override get [CliError.userMessage](): string {
    return this.message
  }
}

const fail = (message: string) => Effect.fail(new CliFailure({ message }))

const optionalFromEnv = (name: string, env: string, description: string) =>
  Flag.String(name).pipe(
    Flag.withDescription(`${description} (env ${env})`),
    Flag.withFallbackConfig(Config.String(env)),
    Flag.optional
  )

/**
 * The root command and its shared flags.
 *
 * @category commands
 * @since 0.1.0
 */
export const root = Command.make("effect-cacheme").pipe(
  Command.withSharedFlags({
    redisUrl: Flag.String("redis-url").pipe(
      Flag.withDescription(
        "The Redis of the cache (env CACHEME_REDIS_URL; default redis://127.0.0.1:6379). memory:// is an empty in-process store, to try the admin out"
      ),
      Flag.withFallbackConfig(Config.String("CACHEME_REDIS_URL")),
      Flag.withDefault("redis://127.0.0.1:6379")
    ),
    prefix: optionalFromEnv("prefix", "CACHEME_PREFIX", "The key prefix (default CM:)"),
    databaseUrl: optionalFromEnv(
      "database-url",
      "CACHEME_DATABASE_URL",
      "The history database: postgres://, mysql://, mariadb://, pglite:<dir>, sqlite:<file>"
    ),
    historyTable: Flag.String("history-table").pipe(
      Flag.withDescription("The history table"),
      Flag.withDefault(Migration.defaultTable)
    ),
    imports: Flag.String("import").pipe(
      Flag.withDescription("A module to load first, one that defines your nodes (Node.make); repeatable"),
      Flag.atLeast(0)
    )
  }),
  Command.withDescription("See and purge an effect-cacheme cache, and keep its invalidation history")
)

type Shared = Command.Command.Config.Infer<{
  readonly redisUrl: Flag.Flag<string>
  readonly prefix: Flag.Flag<Option.Option<string>>
  readonly databaseUrl: Flag.Flag<Option.Option<string>>
  readonly historyTable: Flag.Flag<string>
  readonly imports: Flag.Flag<ReadonlyArray<string>>
}>

const importModules = (specifiers: ReadonlyArray<string>) =>
  Effect.forEach(
    specifiers,
    (specifier) =>
      Effect.tryPromise({
        try: () =>
          import(
            specifier.startsWith(".") || specifier.startsWith("/")
              ? pathToFileURL(resolve(process.cwd(), specifier)).href
              : specifier
          ),
        catch: (cause) =>
          new CliFailure({
            message: `cannot import ${specifier}: ${cause instanceof Error ? cause.message : String(cause)}`
          })
      }),
    { discard: true }
  )

/** The store the shared flags name, checked with a ping so that a wrong URL is one clear message. */
const storeLayer = (shared: Shared): Layer.Layer<CacheStore.CacheStore, CliFailure> =>
  Layer.unwrap(
    Effect.gen(function* () {
      const prefix = Option.getOrUndefined(shared.prefix)
      const settings = yield* CachemeConfig.make({ prefix }).pipe(
        Effect.mapError((error) => new CliFailure({ message: `--prefix: ${error.message}` }))
      )
      const store = shared.redisUrl.startsWith("memory:")
        ? CacheStore.layerMemory().pipe(Layer.provide(Layer.succeed(CachemeConfig.CachemeConfig, settings)))
        : CacheStore.layerRedis({ url: shared.redisUrl, prefix: settings.prefix })
      const checked = Layer.effectDiscard(
        Effect.gen(function* () {
          const service = yield* CacheStore.CacheStore
          yield* service.ping.pipe(
            Effect.timeout("5 seconds"),
            Effect.mapError(
              (error) =>
                new CliFailure({
                  message: `cannot reach the store at ${Database.redactUrl(shared.redisUrl)}: ${error.message}`
                })
            )
          )
        })
      )
      return Layer.provideMerge(checked, store)
    })
  )

const databaseUrlOf = (shared: Shared) =>
  Option.match(shared.databaseUrl, {
    onNone: () => fail("no history database: pass --database-url or set CACHEME_DATABASE_URL"),
    onSome: Effect.succeed
  })

const openDatabase = (url: string) =>
  Database.fromUrl(url).pipe(Effect.mapError((error) => new CliFailure({ message: error.message })))

const migrationFailure = (error: Migration.MigrationError) => new CliFailure({ message: error.message })

/** A History on the database of the shared flags, or undefined without one. */
const historyLayer = (shared: Shared, options: { readonly migrate: boolean }) =>
  Option.match(shared.databaseUrl, {
    onNone: () => Effect.succeed(undefined),
    onSome: (url) =>
      Effect.gen(function* () {
        const db = yield* openDatabase(url)
        if (options.migrate) {
          yield* Migration.migrate(db, { table: shared.historyTable }).pipe(Effect.mapError(migrationFailure))
        }
        return History.layerKysely({ db, table: shared.historyTable })
      })
  })

const table = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  right: ReadonlySet<number>
) => {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells
      .map((cell, i) => (right.has(i) ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

// ------------------------------------------------------------------------------------------------- migrate

const migrate = Command.make(
  "migrate",
  {
    status: Flag.Boolean("status").pipe(
      Flag.withDescription("Only list the migrations and when they ran"),
      Flag.withDefault(false)
    ),
    rollback: Flag.Boolean("rollback").pipe(
      Flag.withDescription("Undo the migrations: drops the history table"),
      Flag.withDefault(false)
    )
  },
  Effect.fnUntraced(function* (input) {
    const shared = yield* root
    const url = yield* databaseUrlOf(shared)
    const db = yield* openDatabase(url)
    const options = { table: shared.historyTable }
    if (input.status) {
      const infos = yield* Migration.status(db, options).pipe(Effect.mapError(migrationFailure))
      for (const info of infos) {
        yield* Console.log(
          `${info.migration}  ${info.executedAt === undefined ? "pending" : `ran ${info.executedAt.toISOString()}`}`
        )
      }
      return
    }
    const results = yield* (input.rollback ? Migration.rollback : Migration.migrate)(db, options).pipe(
      Effect.mapError(migrationFailure)
    )
    if (results.length === 0) {
      yield* Console.log(input.rollback ? "nothing to roll back" : "the history table is up to date")
      return
    }
    for (const result of results) {
      yield* Console.log(`${result.direction === "Up" ? "applied" : "rolled back"} ${result.migration}`)
    }
  }, Effect.scoped)
).pipe(
  Command.withDescription(
    `Create or upgrade the invalidation history table (${Migration.defaultTable}), bookkept in ${Migration.defaultMigrationTable}`
  ),
  Command.withExamples([
    { command: "effect-cacheme --database-url postgres://app@db/app migrate", description: "Create the table" },
    { command: "effect-cacheme --database-url sqlite:./app.db migrate --status", description: "List migrations" }
  ])
)

// --------------------------------------------------------------------------------------------------- admin

const admin = Command.make(
  "admin",
  {
    port: Flag.Int("port").pipe(
      Flag.withDescription("The port to listen on (0: any free port)"),
      Flag.withDefault(8787)
    ),
    host: Flag.String("host").pipe(
      Flag.withDescription("The address to listen on (loopback by default; expose it only behind TLS)"),
      Flag.withDefault("127.0.0.1")
    ),
    path: Flag.String("path").pipe(Flag.withDescription("The path prefix, e.g. /admin"), Flag.withDefault("")),
    migrate: Flag.Boolean("migrate").pipe(
      Flag.withDescription("Run the history migration before serving"),
      Flag.withDefault(false)
    )
  },
  Effect.fnUntraced(function* (input) {
    const shared = yield* root
    yield* importModules(shared.imports)
    const credentials = yield* Auth.fromConfig.pipe(
      Effect.tap(Auth.make),
      Effect.mapError((error) => new CliFailure({ message: error.message }))
    )
    const historyFromDb = yield* historyLayer(shared, { migrate: input.migrate })
    if (historyFromDb === undefined) {
      yield* Console.error(
        "warning: no --database-url: the invalidation history is kept in memory and lost when the admin stops"
      )
    }
    const server = Admin.layerServer({
      ...credentials,
      port: input.port,
      host: input.host,
      path: input.path,
      logRequests: false
    }).pipe(Layer.provide(storeLayer(shared)), Layer.provide(historyFromDb ?? History.layerMemory()))
    yield* Effect.gen(function* () {
      const http = yield* HttpServer.HttpServer
      const where = NetAddress.formatUrl(http.address).pipe(Result.getOrElse(() => String(http.address)))
      yield* Console.log(`effect-cacheme admin listening on ${where}${input.path.replace(/\/+$/, "")}/`)
      return yield* Effect.never
    }).pipe(
      Effect.provide(server),
      Effect.mapError((error) =>
        error._tag === "CliFailure"
          ? error
          : new CliFailure({
              message:
                error._tag === "AdminConfigError" ? error.message : `cannot serve: ${String(error.cause ?? error)}`
            })
      )
    )
  }, Effect.scoped)
).pipe(
  Command.withDescription(
    "Serve the admin page and JSON API. Credentials come from CACHEME_ADMIN_TOKEN, or CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD; it refuses to start without"
  ),
  Command.withExamples([
    {
      command:
        "CACHEME_ADMIN_TOKEN=... effect-cacheme --import ./src/cache.ts --database-url postgres://app@db/app admin --migrate",
      description: "Serve on 127.0.0.1:8787 with the history in PostgreSQL"
    }
  ])
)

// ---------------------------------------------------------------------------------------------- invalidate

const targetFlag = (name: string, description: string) =>
  Flag.String(name).pipe(Flag.withDescription(description), Flag.optional)

const invalidate = Command.make(
  "invalidate",
  {
    key: targetFlag("key", "An entry key (without the prefix)"),
    node: targetFlag("node", "Every entry of a node (defined by an --import module)"),
    group: targetFlag("group", "Every entry of a dependency group (an InvalidNode instance's key)"),
    tag: targetFlag("tag", "Every entry carrying a tag"),
    pattern: targetFlag("pattern", "Every key matching a glob pattern, relative to the prefix (e.g. user:*)"),
    soft: Flag.Boolean("soft").pipe(
      Flag.withDescription("Keep the values as stale values instead of removing them"),
      Flag.withDefault(false)
    ),
    actor: Flag.String("actor").pipe(
      Flag.withDescription("Who is invalidating, for the history (default: the OS user)"),
      Flag.optional
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the result as JSON"), Flag.withDefault(false))
  },
  Effect.fnUntraced(function* (input) {
    const shared = yield* root
    yield* importModules(shared.imports)
    const given = (["key", "node", "group", "tag", "pattern"] as const).flatMap((target) =>
      Option.match(input[target], { onNone: () => [], onSome: (value) => [{ target, value }] })
    )
    if (given.length !== 1) {
      return yield* fail("give exactly one of --key, --node, --group, --tag, --pattern")
    }
    const { target, value } = given[0]!
    if (value === "") return yield* fail(`--${target} cannot be empty`)
    const mode = input.soft ? "soft" : "hard"
    const actor = `cli:${Option.getOrElse(input.actor, () => {
      try {
        return userInfo().username
      } catch {
        return "unknown"
      }
    })}`
    const options = { mode, source: actor } as const
    const historyFromDb = yield* historyLayer(shared, { migrate: false })
    const run = Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const problem =
        targetProblem(target, value, store.prefix) ??
        // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
        (target === "pattern" && /[\u0000-\u001f\u007f]/.test(value)
          ? ({ _tag: "Invalid", message: "a pattern cannot hold control characters" } satisfies TargetProblem)
          : undefined)
      if (problem !== undefined) {
        return yield* fail(
          problem._tag === "UnknownNode"
            ? `${problem.message}: --import the module that defines it, or use --tag`
            : problem.message
        )
      }
      return yield* invalidateTarget(target, value, options)
    }).pipe(
      Effect.mapError((error) => (error._tag === "CliFailure" ? error : new CliFailure({ message: error.message })))
    )
    const count = yield* (
      historyFromDb === undefined
        ? run
        : Effect.gen(function* () {
            const history = yield* History.History
            const listener = History.withRecorder(yield* Invalidation.Listener, history)
            return yield* Effect.provideService(run, Invalidation.Listener, listener)
          }).pipe(Effect.provide(historyFromDb))
    ).pipe(Effect.provide(storeLayer(shared)))
    const result: InvalidateResponse = { target, value, mode, count }
    yield* Console.log(
      input.json
        ? JSON.stringify(result)
        : `${mode === "hard" ? "invalidated" : "marked stale"} ${count} key${count === 1 ? "" : "s"} (${target} ${value})${
            historyFromDb === undefined ? "" : ", recorded in the history"
          }`
    )
  }, Effect.scoped)
).pipe(
  Command.withDescription(
    "Invalidate cache entries by key, node, group, tag or pattern; recorded in the history when a database is given"
  ),
  Command.withExamples([
    { command: "effect-cacheme invalidate --key user:42", description: "One key" },
    { command: "effect-cacheme invalidate --pattern 'user:*' --soft", description: "Keys matching a pattern, as stale" }
  ])
)

// --------------------------------------------------------------------------------------------------- stats

const adminCredentials = Effect.gen(function* () {
  const options = yield* Auth.fromConfig.pipe(Effect.mapError((error) => new CliFailure({ message: error.message })))
  if (options.token !== undefined) return `Bearer ${Redacted.value(options.token as Redacted.Redacted<string>)}`
  const user = options.users?.[0]
  if (user === undefined) {
    return yield* fail("--url needs CACHEME_ADMIN_TOKEN, or CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD")
  }
  const password = typeof user.password === "string" ? user.password : Redacted.value(user.password)
  return `Basic ${Buffer.from(`${user.username}:${password}`).toString("base64")}`
})

const fetchStats = (url: string) =>
  Effect.gen(function* () {
    const authorization = yield* adminCredentials
    const endpoint = `${url.replace(/\/+$/, "")}/api/stats`
    const response = yield* Effect.tryPromise({
      try: () => fetch(endpoint, { headers: { authorization, accept: "application/json" } }),
      catch: (cause) => new CliFailure({ message: `cannot reach ${endpoint}: ${String(cause)}` })
    })
    const body = yield* Effect.tryPromise({
      try: () => response.json() as Promise<unknown>,
      catch: () => new CliFailure({ message: `${endpoint} answered ${response.status} without JSON` })
    })
    if (!response.ok) {
      const message = typeof body === "object" && body !== null && "message" in body ? String(body.message) : ""
      return yield* fail(`${endpoint} answered ${response.status}: ${message}`)
    }
    return yield* Schema.decodeUnknownEffect(StatsResponse)(body).pipe(
      Effect.mapError((error) => new CliFailure({ message: `unexpected answer from ${endpoint}: ${error.message}` }))
    )
  })

const printStats = (store: StoreInfo, nodes: ReadonlyArray<NodeStats>, counters: boolean) =>
  Effect.gen(function* () {
    yield* Console.log(
      `store ${store.kind} (prefix ${store.prefix}): ${
        store.healthy ? `up, ${store.latencyMillis?.toFixed(2)} ms` : `DOWN: ${store.error ?? ""}`
      }`
    )
    if (nodes.length === 0) {
      yield* Console.log("no node defined: --import the module that defines your nodes")
      return
    }
    const rows = nodes.map((node) => [
      node.name,
      node.keys === null ? "-" : String(node.keys),
      ...(counters
        ? [
            String(node.hits),
            String(node.misses),
            String(node.staleServed),
            String(node.loads),
            node.hits + node.misses + node.staleServed === 0 ? "-" : `${(node.hitRatio * 100).toFixed(1)}%`,
            node.loads === 0 ? "-" : `${node.meanLoadMillis.toFixed(1)} ms`
          ]
        : [])
    ])
    const header = ["node", "keys", ...(counters ? ["hits", "misses", "stale", "loads", "hit ratio", "mean load"] : [])]
    yield* Console.log(table(header, rows, new Set(header.map((_, i) => i).filter((i) => i > 0))))
  })

const stats = Command.make(
  "stats",
  {
    url: Flag.String("url").pipe(
      Flag.withDescription(
        "A running admin (e.g. http://127.0.0.1:8787/admin): show the hit and miss counters of the process serving it"
      ),
      Flag.optional
    ),
    json: Flag.Boolean("json").pipe(Flag.withDescription("Print the statistics as JSON"), Flag.withDefault(false))
  },
  Effect.fnUntraced(function* (input) {
    const shared = yield* root
    if (Option.isSome(input.url)) {
      const response = yield* fetchStats(input.url.value)
      if (input.json) yield* Console.log(JSON.stringify(response))
      else yield* printStats(response.store, response.nodes, true)
      return
    }
    yield* importModules(shared.imports)
    const response = yield* Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const [info, nodes] = yield* Effect.all([storeInfo(store), allNodeStats(store)])
      return { store: info, nodes }
    }).pipe(Effect.provide(storeLayer(shared)))
    if (input.json) yield* Console.log(JSON.stringify(response))
    else yield* printStats(response.store, response.nodes, false)
  }, Effect.scoped)
).pipe(
  Command.withDescription(
    "Store health and approximate key counts per node; hit and miss counters live in the application process, so read them from a running admin with --url"
  ),
  Command.withExamples([
    { command: "effect-cacheme --import ./src/cache.ts stats", description: "Key counts from Redis" },
    { command: "CACHEME_ADMIN_TOKEN=... effect-cacheme stats --url http://127.0.0.1:8787", description: "Counters" }
  ])
)

/**
 * The whole command tree.
 *
 * @category commands
 * @since 0.1.0
 */
export const command = root.pipe(Command.withSubcommands([migrate, admin, invalidate, stats]))

/**
 * Runs the CLI on arguments (without `node` and the script path); needs the platform services
 * (`NodeServices.layer` from `@effect/platform-node`).
 *
 * @category running
 * @since 0.1.0
 */
export const run = Command.runWith(command, { version })
