/**
 * The invalidation history: who invalidated what, when, and how many keys it removed. Rows live in the
 * `cacheme_invalidation` table ({@link layerKysely}, created by `Migration.migrate`) or, for tests and
 * throw-away setups, in process ({@link layerMemory}).
 *
 * {@link layerListener} records **every** invalidation of the process, not only the admin's: it provides
 * `Invalidation.Listener`, which `Invalidation.key/group/tag/pattern` call after each invalidation (and so do
 * `Memo.invalidate*`, `InvalidNode.invalidate` and the invalidations that Kysely writes trigger). The `actor`
 * column is the invalidation's `source` (`admin:alice`, `kysely`, ...), or `app` when none was given.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Schema } from "effect"
import * as Invalidation from "../Invalidation.ts"
import type { Kysely } from "kysely"
import type { HistoryTarget } from "./Api.ts"
import { isIdentifier, sqlFamily } from "./internal/dialect.ts"
import { defaultTable } from "./Migration.ts"

/**
 * One row.
 *
 * @category models
 * @since 0.1.0
 */
export interface Entry extends NewEntry {
  readonly id: number
}

/**
 * A row to add.
 *
 * @category models
 * @since 0.1.0
 */
export interface NewEntry {
  readonly createdAt: Date
  readonly actor: string
  readonly target: HistoryTarget
  readonly value: string
  readonly mode: Invalidation.Mode
  readonly count: number
}

/**
 * Which rows to read: newest first, at most `limit` (default 50), older than the row `before` when given.
 *
 * @category models
 * @since 0.1.0
 */
export interface Query {
  readonly limit?: number | undefined
  readonly before?: number | undefined
  readonly target?: HistoryTarget | undefined
}

/**
 * The history database failed.
 *
 * @category errors
 * @since 0.1.0
 */
export class HistoryError extends Schema.TaggedError<HistoryError>()("HistoryError", {
  operation: Schema.Literals(["record", "list"]),
  message: Schema.String,
  cause: Schema.optional(Schema.Defect())
}) {}

/**
 * The history service.
 *
 * @category services
 * @since 0.1.0
 */
export class History extends Context.Service<
  History,
  {
    readonly record: (entry: NewEntry) => Effect.Effect<void, HistoryError>
    readonly list: (query?: Query) => Effect.Effect<ReadonlyArray<Entry>, HistoryError>
  }
>()("effect-cacheme/admin/History") {}

/** The longest value stored; longer keys or patterns are cut (with a trailing `…`). */
const maxStoredValue = 16_384

/** The actor of an invalidation event. */
export const actorOf = (event: Invalidation.Event): string =>
  event.source === undefined || event.source === "" ? "app" : event.source.slice(0, 255)

/**
 * The row that records an invalidation event.
 *
 * @category constructors
 * @since 0.1.0
 */
export const entryOf = (event: Invalidation.Event, createdAt: Date): NewEntry => ({
  createdAt,
  actor: actorOf(event),
  target: event.target,
  value: event.value.length > maxStoredValue ? `${event.value.slice(0, maxStoredValue - 1)}…` : event.value,
  mode: event.mode,
  count: event.count
})

const clampLimit = (limit: number | undefined) => Math.max(1, Math.min(Math.trunc(limit ?? 50), 500))

/**
 * Rows in process, newest kept (default 1,000). Not shared between processes and lost on exit: meant for tests,
 * demos, and admins without a database.
 *
 * @category layers
 * @since 0.1.0
 */
export const layerMemory = (options?: { readonly maxEntries?: number | undefined }): Layer.Layer<History> =>
  Layer.sync(History, () => {
    const maxEntries = options?.maxEntries ?? 1000
    const rows: Array<Entry> = []
    let nextId = 1
    return History.of({
      record: (entry) =>
        Effect.sync(() => {
          rows.push({ ...entry, id: nextId++ })
          if (rows.length > maxEntries) rows.splice(0, rows.length - maxEntries)
        }),
      list: (query) =>
        Effect.sync(() => {
          const out: Array<Entry> = []
          const limit = clampLimit(query?.limit)
          for (let i = rows.length - 1; i >= 0 && out.length < limit; i--) {
            const row = rows[i]!
            if (query?.before !== undefined && row.id >= query.before) continue
            if (query?.target !== undefined && row.target !== query.target) continue
            out.push(row)
          }
          return out
        })
    })
  })

interface Row {
  readonly id: number | string | bigint
  readonly created_at: Date | string | number
  readonly actor: string
  readonly target: string
  readonly value: string
  readonly mode: string
  readonly count: number | string
}

const toDate = (value: Date | string | number): Date => {
  if (value instanceof Date) return value
  if (typeof value === "number") return new Date(value)
  // SQLite keeps ISO text; a driver returning a timestamp without a zone is read as UTC.
  return new Date(/[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : `${value.replace(" ", "T")}Z`)
}

const fromRow = (row: Row): Entry => ({
  id: Number(row.id),
  createdAt: toDate(row.created_at),
  actor: row.actor,
  target: row.target as HistoryTarget,
  value: row.value,
  mode: row.mode as Invalidation.Mode,
  count: Number(row.count)
})

/**
 * Rows in the `cacheme_invalidation` table through Kysely (PostgreSQL, PGlite, MySQL / MariaDB, SQLite). The
 * table must exist: run `Migration.migrate(db)` first (the CLI's `migrate` does).
 *
 * @category layers
 * @since 0.1.0
 */
export const layerKysely = (options: {
  readonly db: Kysely<any>
  /** The table name (default `cacheme_invalidation`). */
  readonly table?: string | undefined
}): Layer.Layer<History> =>
  Layer.sync(History, () => {
    const { db } = options
    const table = options.table ?? defaultTable
    if (!isIdentifier(table)) throw new TypeError(`History table must be a plain SQL identifier, got ${table}`)
    const family = sqlFamily(db)
    return History.of({
      record: (entry) =>
        Effect.tryPromise({
          try: () =>
            db
              .insertInto(table)
              .values({
                created_at: family === "sqlite" ? entry.createdAt.toISOString() : entry.createdAt,
                actor: entry.actor,
                target: entry.target,
                value: entry.value,
                mode: entry.mode,
                count: entry.count
              })
              .execute(),
          catch: (cause) =>
            new HistoryError({ operation: "record", message: `recording an invalidation failed: ${cause}`, cause })
        }),
      list: (query) =>
        Effect.tryPromise({
          try: async () => {
            let select = db.selectFrom(table).selectAll()
            if (query?.before !== undefined) select = select.where("id", "<", query.before)
            if (query?.target !== undefined) select = select.where("target", "=", query.target)
            const rows = await select.orderBy("id", "desc").limit(clampLimit(query?.limit)).execute()
            return (rows as Array<Row>).map(fromRow)
          },
          catch: (cause) =>
            new HistoryError({ operation: "list", message: `reading the history failed: ${cause}`, cause })
        })
    })
  })

const recorders = new WeakMap<(event: Invalidation.Event) => Effect.Effect<void>, History["Service"]>()

/**
 * A listener that records events into `history`; a failure to record is logged, never raised (the invalidation
 * itself has happened).
 *
 * @category constructors
 * @since 0.1.0
 */
export const recorder = (history: History["Service"]): ((event: Invalidation.Event) => Effect.Effect<void>) => {
  const record = (event: Invalidation.Event) =>
    Clock.currentTimeMillis.pipe(
      Effect.flatMap((now) => history.record(entryOf(event, new Date(now)))),
      Effect.catch((error) =>
        Effect.logWarning("effect-cacheme/admin: the invalidation was not recorded in the history", error.message)
      )
    )
  recorders.set(record, history)
  return record
}

/**
 * Whether `listener` already records into `history` (directly or as part of a chain made by
 * {@link withRecorder}).
 *
 * @category guards
 * @since 0.1.0
 */
export const records = (listener: (event: Invalidation.Event) => Effect.Effect<void>, history: History["Service"]) =>
  recorders.get(listener) === history

/**
 * `previous` followed by a recorder into `history`, unless `previous` already records there.
 *
 * @category constructors
 * @since 0.1.0
 */
export const withRecorder = (
  previous: (event: Invalidation.Event) => Effect.Effect<void>,
  history: History["Service"]
): ((event: Invalidation.Event) => Effect.Effect<void>) => {
  if (records(previous, history)) return previous
  const record = recorder(history)
  const chained = (event: Invalidation.Event) => Effect.andThen(previous(event), record(event))
  recorders.set(chained, history)
  return chained
}

/**
 * Provides `Invalidation.Listener` recording every invalidation into {@link History} (after the listener
 * already in place, if any). Provide it to the whole program so that invalidations made by application code and
 * by Kysely writes are in the history too.
 *
 * **Example**
 *
 * ```ts
 * import { Layer } from "effect"
 * import { History } from "effect-cacheme/admin"
 * import type { Kysely } from "kysely"
 *
 * declare const db: Kysely<any>
 * const HistoryLive = History.layerListener.pipe(Layer.provideMerge(History.layerKysely({ db })))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layerListener: Layer.Layer<never, never, History> = Layer.effectContext(
  Effect.gen(function* () {
    const history = yield* History
    const previous = yield* Invalidation.Listener
    return Context.make(Invalidation.Listener, withRecorder(previous, history))
  })
)

/**
 * Converts a row for the JSON API.
 *
 * @category converting
 * @since 0.1.0
 */
export const toJson = (entry: Entry) => ({
  id: entry.id,
  createdAt: entry.createdAt.toISOString(),
  actor: entry.actor,
  target: entry.target,
  value: entry.value,
  mode: entry.mode,
  count: entry.count
})
