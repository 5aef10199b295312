/**
 * Write capture for Kysely: wrap a dialect with `captureWrites` and every write made through it (query builder
 * or SQL text, in or out of transactions, on any connection of the pool) is turned into invalidation events,
 * published once the unit of work is committed. This is the engine of `effect-cacheme/kysely`'s table-bound
 * invalidation, the successor of django-cacheme's `post_save` / `post_delete` / `m2m_changed` signals, without
 * their window where a cache is refilled from data a later rollback undoes.
 *
 * ```ts
 * import { captureWrites } from "effect-cacheme/kysely"
 * import { Kysely, PostgresDialect } from "kysely"
 * import { Pool } from "pg"
 *
 * interface DB {
 *   user: { id: number; email: string; name: string }
 * }
 *
 * const db = new Kysely<DB>({
 *   dialect: captureWrites(new PostgresDialect({ pool: new Pool() }), {
 *     watched: () => new Map([["user", ["id", "email"]]]),
 *     // After COMMIT: invalidate what the events reach (`Invalidator.invalidate(events)` does it for a CacheStore).
 *     publish: async (events) => {
 *       for (const event of events) console.log(event.operation, event.table, event.rows)
 *     }
 *   })
 * })
 * ```
 *
 * Guarantees:
 * - events are published only after a COMMIT succeeded; ROLLBACK drops them; RELEASE SAVEPOINT keeps the
 *   savepoint's events for the enclosing transaction, ROLLBACK TO SAVEPOINT drops them; a statement that fails
 *   records nothing; an autocommit statement publishes right after it succeeded;
 * - inserts, updates (old and new values), deletes, upserts and merges report the watched columns of the rows
 *   they touched (see the `Capture*.ts` strategies for how each dialect gets them); where the rows cannot be
 *   known (SQL text, writes with joins, TRUNCATE, ...) the event is whole-table: a write to a watched table is
 *   never left unreported;
 * - the caller's results are what the statement without capture would give: rows, `numAffectedRows`,
 *   `insertId`;
 * - each pooled connection has its own transaction buffer.
 *
 * Not seen: rows changed by the database itself (ON DELETE CASCADE / SET NULL, triggers, generated columns), and
 * statements run on a connection outside Kysely (the driver's `onCreateConnection` / `onReserveConnection`
 * hooks). In `sync` mode `publish` runs while the write still holds its connection, so it must not query a
 * single-connection database (PGlite, SQLite) through the same Kysely instance.
 *
 * @since 0.1.0
 */
import type { DatabaseIntrospector, Dialect, DialectAdapter, Driver, Kysely, QueryCompiler } from "kysely"
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import { detectCapabilities } from "./Capabilities.ts"
import { CaptureDriver } from "./CaptureDriver.ts"
import { Publisher, type WriteHold } from "./Publisher.ts"
import { TableKeysCache } from "./TableKeys.ts"

export type { WriteHold }

/**
 * How `captureWrites` reports writes.
 *
 * @since 0.1.0
 */
export interface CaptureOptions {
  /** table -> the columns whose values are needed from written rows. Tables not in the map emit nothing. Read on every write (it can change at runtime). */
  readonly watched: () => ReadonlyMap<string, ReadonlyArray<string>>
  /** Receives the events of one committed unit of work (an autocommit statement, or a whole transaction after COMMIT). */
  readonly publish: (events: ReadonlyArray<InvalidationEvent>) => Promise<void>
  /** "sync" (default): the write / COMMIT resolves only after publish resolved (read-your-writes). "async": do not wait. */
  readonly mode?: "sync" | "async"
  /** publish failures never fail the write; they are reported here (default: console.error with the events). */
  readonly onPublishError?: (error: unknown, events: ReadonlyArray<InvalidationEvent>) => void
  /**
   * Sync mode only, optional: called with the events a unit of work is about to commit, concurrently with its
   * COMMIT (a transaction's buffered events) or with the write itself (an autocommit write, the rows its WHERE or
   * VALUES pin). Once the unit of work committed, the hold's `commit` is called with its events instead of
   * `publish`; after a ROLLBACK or a failed write, its `abort`. Resolving to undefined (or rejecting) falls back
   * to `publish`.
   */
  readonly hold?: (events: ReadonlyArray<InvalidationEvent>) => Promise<WriteHold | undefined>
}

/**
 * Wraps `dialect` so that the writes made through it are published as invalidation events.
 *
 * @since 0.1.0
 */
export const captureWrites = (dialect: Dialect, options: CaptureOptions): Dialect =>
  new CaptureDialect(dialect, options)

class CaptureDialect implements Dialect {
  readonly #dialect: Dialect
  readonly #options: CaptureOptions

  constructor(dialect: Dialect, options: CaptureOptions) {
    this.#dialect = dialect
    this.#options = options
  }

  createDriver(): Driver {
    const compiler = this.#dialect.createQueryCompiler()
    const capabilities = detectCapabilities(compiler, this.#dialect.createAdapter())
    return new CaptureDriver(this.#dialect.createDriver(), {
      compiler,
      capabilities,
      keys: new TableKeysCache(capabilities.flavor),
      publisher: new Publisher(this.#options),
      watched: this.#options.watched
    })
  }

  createQueryCompiler(): QueryCompiler {
    return this.#dialect.createQueryCompiler()
  }

  createAdapter(): DialectAdapter {
    return this.#dialect.createAdapter()
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return this.#dialect.createIntrospector(db)
  }
}
