/**
 * A Kysely database whose writes invalidate the cache by themselves, used from Effect: queries and
 * transactions are Effects with a typed {@link DatabaseError}, so `Memo.cached(Database.query(...), node)`
 * reads naturally.
 *
 * The layer wraps the dialect with `captureWrites` (every insert, update, delete, upsert, merge and raw SQL
 * write becomes an invalidation event, published after COMMIT) and runs the resolver that invalidates the
 * `TableInvalidNode` groups of the written rows. By default a write resolves only after its invalidation is
 * done (read-your-writes); `mode: "async"` does not wait.
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import { CacheStore, Memo, Node } from "effect-cacheme"
 * import { Database, TableInvalidNode } from "effect-cacheme/kysely"
 * import { PGliteDialect } from "effect-cacheme/kysely/pglite"
 *
 * interface DB { book: { id: number; title: string } }
 * const Db = Database.typed<DB>()
 *
 * const BookGroup = TableInvalidNode.make("book", { table: "book", fields: { id: Schema.Number } })
 * const BookTitle = Node.make("book-title", {
 *   fields: { id: Schema.Number },
 *   value: Schema.NullOr(Schema.String),
 *   invalidatedBy: ({ id }) => [BookGroup.make({ id })]
 * })
 *
 * const title = (id: number) =>
 *   Db.query((db) => db.selectFrom("book").select("title").where("id", "=", id).executeTakeFirst()).pipe(
 *     Effect.map((row) => row?.title ?? null),
 *     Memo.cached(BookTitle.make({ id }))
 *   )
 *
 * const rename = (id: number, title: string) =>
 *   Db.query((db) => db.updateTable("book").set({ title }).where("id", "=", id).execute()) // invalidates book:{id}
 *
 * const Live = Database.layer({ dialect: new PGliteDialect() }).pipe(Layer.provideMerge(CacheStore.layerMemory()))
 * ```
 *
 * @since 0.1.0
 */
import { Context, type Duration, Effect, Exit, Layer, Schema } from "effect"
import { type ControlledTransaction, type Dialect, Kysely, type KyselyPlugin } from "kysely"
import { CachemeConfig } from "../CachemeConfig.ts"
import type { CacheStore } from "../CacheStore.ts"
import { captureWrites, type WriteHold } from "./capture/CaptureDialect.ts"
import type { InvalidationEvent } from "./InvalidationEvent.ts"
import * as Invalidator from "./Invalidator.ts"
import * as TableInvalidNode from "./TableInvalidNode.ts"

/**
 * A query or transaction statement that failed.
 *
 * @category errors
 * @since 0.1.0
 */
export class DatabaseError extends Schema.TaggedError<DatabaseError>()("DatabaseError", {
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * A `TableInvalidNode` whose fields are not columns of its table.
 *
 * @category errors
 * @since 0.1.0
 */
export class TableMismatch extends Schema.TaggedError<TableMismatch>()("TableMismatch", {
  node: Schema.String,
  table: Schema.String,
  column: Schema.String,
  message: Schema.String
}) {}

/**
 * The captured database. `db` is the current transaction inside {@link transaction}.
 *
 * @category services
 * @since 0.1.0
 */
export class Database extends Context.Service<
  Database,
  {
    readonly db: Kysely<any>
    /** Savepoint depth inside a transaction (0 outside one). */
    readonly depth: number
  }
>()("effect-cacheme/kysely/Database") {}

const toDatabaseError = (cause: unknown) =>
  new DatabaseError({ message: cause instanceof Error ? cause.message : String(cause), cause })

/**
 * Runs a Kysely query (or any promise made from the database) as an Effect.
 *
 * @category queries
 * @since 0.1.0
 */
export const query = <A, DB = any>(f: (db: Kysely<DB>) => Promise<A>): Effect.Effect<A, DatabaseError, Database> =>
  Effect.flatMap(Database, ({ db }) => Effect.tryPromise({ try: () => f(db as Kysely<DB>), catch: toDatabaseError }))

let savepoints = 0

/**
 * Runs `use` between `begin` and its end: `commit` when `use` succeeded, `rollback` when it failed or was
 * interrupted. A failed `commit` is a {@link DatabaseError} (after a `rollback`, which gives the connection back:
 * Kysely keeps it after a COMMIT that failed); a failed `rollback` never hides the failure that caused it.
 */
const bracket = <T, A, E, R>(
  begin: Effect.Effect<T, DatabaseError>,
  use: (handle: T) => Effect.Effect<A, E, R>,
  commit: (handle: T) => Promise<unknown>,
  rollback: (handle: T) => Promise<unknown>
): Effect.Effect<A, E | DatabaseError, R> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(begin, (handle) => {
      const undo = Effect.ignore(Effect.tryPromise({ try: () => rollback(handle), catch: toDatabaseError }))
      return Effect.flatMap(
        Effect.exit(restore(use(handle))),
        (exit): Effect.Effect<A, E | DatabaseError> =>
          Exit.isSuccess(exit)
            ? Effect.tryPromise({ try: () => commit(handle), catch: toDatabaseError }).pipe(
                Effect.catch((error) => Effect.andThen(undo, Effect.fail(error))),
                Effect.as(exit.value)
              )
            : Effect.andThen(undo, exit)
      )
    })
  )

/**
 * Inside a transaction `Memo.cached` reads the database directly: the transaction sees its own uncommitted
 * writes (a rollback would leave them cached, with nothing to invalidate them) and, under REPEATABLE READ
 * (MySQL / MariaDB's default), a snapshot that may predate writes other connections committed and invalidated
 * already. Caching either could keep data that is no longer (or never was) in the database.
 */
const withoutCache = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
  Effect.flatMap(CachemeConfig, (settings) =>
    settings.enabled ? Effect.provideService(effect, CachemeConfig, { ...settings, enabled: false }) : effect
  )

/**
 * Runs an effect in a transaction: committed when it succeeds, rolled back when it fails or is interrupted.
 * Nested, it runs in a savepoint (released when it succeeds, rolled back to when it fails). Invalidations are
 * published after the outermost COMMIT (and, in `sync` mode, done when this effect completes); a rollback
 * publishes nothing. A COMMIT that fails is a {@link DatabaseError}.
 *
 * Inside the transaction `Memo.cached` neither reads nor fills the cache: see the Kysely guide.
 * Fibers forked inside it use the transaction's connection too.
 *
 * @category queries
 * @since 0.1.0
 */
export const transaction = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | DatabaseError, R | Database> =>
  Effect.flatMap(Database, (current) => {
    const body = withoutCache(effect)
    if (current.depth === 0) {
      return bracket(
        Effect.tryPromise({ try: () => current.db.startTransaction().execute(), catch: toDatabaseError }),
        (trx) => Effect.provideService(body, Database, { db: trx, depth: 1 }),
        (trx) => trx.commit().execute(),
        (trx) => trx.rollback().execute()
      )
    }
    const name = `cacheme_sp_${savepoints++}`
    // Inside a transaction, `db` is the ControlledTransaction `transaction` provided.
    const trx = current.db as ControlledTransaction<any, Array<string>>
    return bracket(
      Effect.tryPromise({ try: () => trx.savepoint(name).execute(), catch: toDatabaseError }),
      (sp) => Effect.provideService(body, Database, { db: sp, depth: current.depth + 1 }),
      (sp) => sp.releaseSavepoint(name).execute(),
      (sp) => sp.rollbackToSavepoint(name).execute()
    )
  })

/**
 * `query` and `transaction` typed with your database interface.
 *
 * @category constructors
 * @since 0.1.0
 */
export const typed = <DB>() => ({
  query: <A>(f: (db: Kysely<DB>) => Promise<A>): Effect.Effect<A, DatabaseError, Database> => query<A, DB>(f),
  transaction
})

/**
 * Checks that every `TableInvalidNode` reads columns its table has. Tables that do not exist yet are skipped
 * (call it again after your migrations); the layer calls it at startup.
 *
 * @category validation
 * @since 0.1.0
 */
export const verify: Effect.Effect<void, TableMismatch | DatabaseError, Database> = Effect.gen(function* () {
  const { db } = yield* Database
  const tables = yield* Effect.tryPromise({
    try: () => db.introspection.getTables(),
    catch: toDatabaseError
  })
  const columnsOf = new Map(tables.map((table) => [table.name, new Set(table.columns.map((column) => column.name))]))
  for (const [table, nodes] of TableInvalidNode.byTable()) {
    const columns = columnsOf.get(table)
    if (columns === undefined) continue
    for (const node of nodes) {
      for (const column of node.columns) {
        if (!columns.has(column)) {
          return yield* new TableMismatch({
            node: node.name,
            table,
            column,
            message: `TableInvalidNode ${node.name}: "${column}" is not a column of table ${table} (it has ${[...columns].join(", ")})`
          })
        }
      }
    }
  }
})

/**
 * Options of the captured database.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  readonly dialect: Dialect
  /** `sync` (default): a write resolves after its invalidation; `async`: it does not wait. */
  readonly mode?: "sync" | "async" | undefined
  readonly plugins?: ReadonlyArray<KyselyPlugin> | undefined
  /**
   * Sync mode: how long the groups a write is about to commit stay held at most (default
   * {@link Invalidator.holdTtl}). A write that outlasts it invalidates its groups again before it resolves.
   */
  readonly holdTtl?: Duration.Input | undefined
}

/**
 * The captured database and its invalidation pipeline. Needs a `CacheStore`; fails with `TableMismatch` when a
 * group names a column its table lacks.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: Options
): Layer.Layer<Database | Invalidator.Invalidator, TableMismatch | DatabaseError, CacheStore> =>
  Layer.effect(
    Database,
    Effect.gen(function* () {
      const invalidator = yield* Invalidator.Invalidator
      const context = yield* Effect.context<never>()
      const run = Effect.runPromiseWith(context)
      // Sync writes invalidate in their own fiber; async ones hand their batch to the resolver fiber.
      const publish =
        options.mode === "async"
          ? (events: ReadonlyArray<InvalidationEvent>) => run(invalidator.publish(events))
          : (events: ReadonlyArray<InvalidationEvent>) => run(invalidator.publishAndWait(events))
      const hold = (events: ReadonlyArray<InvalidationEvent>): Promise<WriteHold | undefined> =>
        run(
          Effect.map(
            invalidator.hold(events),
            (held): WriteHold | undefined =>
              held && {
                commit: (committed) => run(held.commit(committed)),
                abort: () => void run(held.abort)
              }
          )
        )
      const db = yield* Effect.acquireRelease(
        Effect.sync(
          () =>
            new Kysely<any>({
              dialect: captureWrites(options.dialect, {
                watched: TableInvalidNode.watchedColumns,
                publish,
                hold,
                mode: options.mode ?? "sync",
                onPublishError: (error, events) =>
                  Effect.runFork(
                    Effect.logError("effect-cacheme/kysely: publishing invalidations failed").pipe(
                      Effect.annotateLogs({
                        error: String(error),
                        events: JSON.stringify(events, (_, value) =>
                          typeof value === "bigint" ? value.toString() : value
                        )
                      })
                    )
                  )
              }),
              plugins: options.plugins ? [...options.plugins] : []
            })
        ),
        (db) => Effect.promise(() => db.destroy())
      )
      const service = Database.of({ db, depth: 0 })
      yield* Effect.provideService(verify, Database, service)
      return service
    })
  ).pipe(Layer.provideMerge(Invalidator.layer({ holdTtl: options.holdTtl })))
