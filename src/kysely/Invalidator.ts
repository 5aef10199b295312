/**
 * From committed writes to invalidated groups. Captured writes arrive as batches of `InvalidationEvent`s (one
 * batch per committed unit of work) on a `PubSub`; a resolver fiber, scoped to the layer, maps each event's rows
 * to the `TableInvalidNode` groups of its table and invalidates them. A whole-table event (rows unknown)
 * invalidates the table's tag, which every entry of every group of the table carries.
 *
 * A cache outage never fails the write: each invalidation is retried a few times, then logged with the keys it
 * could not reach. The batch's `done` signal lets the writer wait for all of this (read-your-writes).
 *
 * @since 0.1.0
 */
import { Context, Deferred, Effect, FiberSet, Layer, PubSub, Schedule } from "effect"
import type { CacheStore } from "../CacheStore.ts"
import * as Invalidation from "../Invalidation.ts"
import type { InvalidationEvent } from "./InvalidationEvent.ts"
import * as TableInvalidNode from "./TableInvalidNode.ts"

/**
 * The events of one committed unit of work.
 *
 * @category models
 * @since 0.1.0
 */
export interface Batch {
  readonly events: ReadonlyArray<InvalidationEvent>
  /** Completed once every invalidation of the batch was done (or given up on and logged). */
  readonly done: Deferred.Deferred<void>
}

/**
 * What the resolver did with a batch.
 *
 * @category models
 * @since 0.1.0
 */
export interface Resolution {
  readonly groups: ReadonlyArray<string>
  readonly tables: ReadonlyArray<string>
}

/**
 * The invalidation pipeline of a captured database.
 *
 * @category services
 * @since 0.1.0
 */
export class Invalidator extends Context.Service<
  Invalidator,
  {
    /** Every committed batch; subscribe to observe writes (the resolver is one subscriber). */
    readonly batches: PubSub.PubSub<Batch>
    /** Publishes a batch and waits until its invalidations are done. */
    readonly publishAndWait: (events: ReadonlyArray<InvalidationEvent>) => Effect.Effect<void>
  }
>()("effect-cacheme/kysely/Invalidator") {}

/**
 * The group keys and whole tables a batch reaches. Rows that do not decode with a group's fields (a NULL
 * foreign key, a type the fields do not expect) fall back to the whole table: never to nothing.
 *
 * @category resolution
 * @since 0.1.0
 */
export const resolve = (events: ReadonlyArray<InvalidationEvent>): Resolution => {
  const groups = new Set<string>()
  const tables = new Set<string>()
  const registry = TableInvalidNode.byTable()
  for (const event of events) {
    const nodes = registry.get(event.table) ?? []
    if (event.wholeTable) {
      tables.add(event.table)
      continue
    }
    for (const row of event.rows) {
      for (const node of nodes) {
        const exit = node.fromRow(row)
        if (exit._tag === "Success") for (const group of exit.value) groups.add(group.key)
        else tables.add(event.table)
      }
    }
  }
  return { groups: [...groups], tables: [...tables] }
}

const retry = Schedule.exponential("20 millis", 2)

/** Runs one invalidation with retries; a final failure is logged with its key and swallowed. */
const invalidateOrLog = (what: "group" | "table", key: string) =>
  (what === "group"
    ? Invalidation.group(key, { source: "kysely" })
    : Invalidation.tag(TableInvalidNode.tableTag(key), { source: "kysely" })
  ).pipe(
    Effect.retry({ schedule: retry, times: 4 }),
    Effect.catch((error) =>
      Effect.logError("effect-cacheme/kysely: invalidation failed after retries; the entries may be stale").pipe(
        Effect.annotateLogs({ [what]: key, reason: error.message })
      )
    )
  )

/**
 * Invalidates what a batch reaches. Never fails.
 *
 * @category resolution
 * @since 0.1.0
 */
export const invalidate = (events: ReadonlyArray<InvalidationEvent>): Effect.Effect<void, never, CacheStore> => {
  const { groups, tables } = resolve(events)
  return Effect.forEach(
    [...groups.map((key) => ["group", key] as const), ...tables.map((table) => ["table", table] as const)],
    ([what, key]) => invalidateOrLog(what, key),
    { concurrency: 16, discard: true }
  )
}

/**
 * How long closing the layer waits for listener calls still under way.
 *
 * @category layers
 * @since 0.1.0
 */
export const listenerGrace = "5 seconds"

/**
 * The PubSub and its resolver fiber, which lives as long as the layer.
 *
 * The resolver calls the `Invalidation.Listener` of the layer's context (the admin's history, say) in a fiber of
 * its own for each invalidation: a write waits for the cache, not for what observes it. A listener that writes
 * to the database would otherwise wait, on a single-connection database (PGlite, SQLite), for the connection the
 * committing write still holds while it waits for its invalidation: a deadlock. Closing the layer waits (up to
 * {@link listenerGrace}) for the listener calls under way, so the last writes' history is not lost.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer: Layer.Layer<Invalidator, never, CacheStore> = Layer.effect(
  Invalidator,
  Effect.gen(function* () {
    const batches = yield* Effect.acquireRelease(PubSub.unbounded<Batch>(), PubSub.shutdown)
    const subscription = yield* PubSub.subscribe(batches)
    const scope = yield* Effect.scope
    const context = yield* Effect.context<CacheStore>()
    const listener = yield* Invalidation.Listener
    const listening = yield* FiberSet.make<void>()
    // Registered after the set: runs before the set interrupts what is left.
    yield* Effect.addFinalizer(() => FiberSet.awaitEmpty(listening).pipe(Effect.timeout(listenerGrace), Effect.ignore))
    const detached = (event: Invalidation.Event) => Effect.asVoid(FiberSet.run(listening, listener(event)))
    // One fiber takes batches; each batch is resolved in its own fiber so that writes do not queue behind
    // one another's invalidations.
    yield* Effect.forkIn(
      Effect.forever(
        Effect.flatMap(PubSub.take(subscription), (batch) =>
          Effect.forkIn(
            invalidate(batch.events).pipe(
              Effect.provideService(Invalidation.Listener, detached),
              Effect.provideContext(context),
              Effect.ensuring(Deferred.succeed(batch.done, undefined))
            ),
            scope
          )
        )
      ),
      scope
    )
    return Invalidator.of({
      batches,
      publishAndWait: (events) =>
        Effect.gen(function* () {
          if (events.length === 0) return
          const done = yield* Deferred.make<void>()
          yield* PubSub.publish(batches, { events, done })
          yield* Deferred.await(done)
        })
    })
  })
)
