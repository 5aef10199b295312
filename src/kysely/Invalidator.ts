/**
 * From committed writes to invalidated groups. Captured writes arrive as batches of `InvalidationEvent`s (one
 * batch per committed unit of work); each event's rows are mapped to the `TableInvalidNode` groups of its table
 * and those groups are invalidated. A whole-table event (rows unknown) invalidates the table's tag, which every
 * entry of every group of the table carries.
 *
 * Three ways in:
 * - `publish` (async mode): the batch goes on a queue; a resolver fiber, scoped to the layer, takes it and
 *   invalidates what it reaches in a fiber of its own. Nothing waits.
 * - `publishAndWait`: after COMMIT, invalidate what the batch reaches, in the caller's fiber (no hop through the
 *   resolver: a sync write waits for it). The write waits one store round trip after its COMMIT.
 * - `hold`, concurrently with the COMMIT (or with an autocommit write, from the rows its WHERE pins): the store
 *   invalidates the groups and holds them, so that no load that may have read pre-commit rows is stored, until
 *   the hold's `commit` (after COMMIT: invalidates whatever the committed rows reach beyond the held groups, then
 *   lets fills in again) or `abort` (ROLLBACK or a failed write). The store's round trip then overlaps the
 *   database's, and a write whose groups were all held does not wait for the store after its COMMIT.
 *
 * A cache outage never fails the write: each invalidation after COMMIT is retried a few times, then logged with
 * the keys it could not reach. A hold that fails is not retried: the batch then goes the `publishAndWait` way.
 *
 * @since 0.1.0
 */
import * as Protocol from "../internal/protocol.ts"
import { Context, Duration, Effect, FiberSet, Layer, PubSub, Queue, Schedule } from "effect"
import { CacheStore } from "../CacheStore.ts"
import * as Invalidation from "../Invalidation.ts"
import { groupSet, tagSet } from "../internal/keys.ts"
import type { InvalidationEvent } from "./InvalidationEvent.ts"
import * as TableInvalidNode from "./TableInvalidNode.ts"

/**
 * The events of one committed unit of work, and what they invalidated.
 *
 * @category models
 * @since 0.1.0
 */
export interface Batch {
  readonly events: ReadonlyArray<InvalidationEvent>
  readonly resolution: Resolution
}

/**
 * What the resolver makes of a batch: the group keys and the whole tables it reaches.
 *
 * @category models
 * @since 0.1.0
 */
export interface Resolution {
  readonly groups: ReadonlyArray<string>
  readonly tables: ReadonlyArray<string>
}

/**
 * Groups held while a write commits (see the module's documentation).
 *
 * @category models
 * @since 0.1.0
 */
export interface Hold {
  /** After COMMIT: invalidates what `events` reach beyond the held groups, then lets fills in again. */
  readonly commit: (events: ReadonlyArray<InvalidationEvent>) => Effect.Effect<void>
  /** After ROLLBACK or a failed write: lets fills in again. */
  readonly abort: Effect.Effect<void>
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
    /** Every committed batch, once its invalidations are done: subscribe to observe writes. */
    readonly batches: PubSub.PubSub<Batch>
    /** Hands a committed batch to the resolver fiber and returns at once (async mode). */
    readonly publish: (events: ReadonlyArray<InvalidationEvent>) => Effect.Effect<void>
    /** Invalidates what a committed batch reaches; resolves once done (never fails: failures are logged). */
    readonly publishAndWait: (events: ReadonlyArray<InvalidationEvent>) => Effect.Effect<void>
    /**
     * Holds the groups that `predicted` (the rows a unit of work is about to commit) reaches. Undefined when
     * they reach no group, or when the store could not be reached.
     */
    readonly hold: (predicted: ReadonlyArray<InvalidationEvent>) => Effect.Effect<Hold | undefined>
  }
>()("effect-cacheme/kysely/Invalidator") {}

/**
 * The group keys and whole tables a batch reaches. Rows that do not decode with a group's fields (a NULL
 * foreign key, a type the fields do not expect) fall back to the whole table: never to nothing.
 *
 * @category resolution
 * @since 0.1.0
 */
export const resolve = (events: ReadonlyArray<InvalidationEvent>): Resolution => resolveWith(events, true)

/** With `fallBack` false, rows that do not decode reach nothing (for predictions, which only have to be cheap). */
const resolveWith = (events: ReadonlyArray<InvalidationEvent>, fallBack: boolean): Resolution => {
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
        else if (fallBack) tables.add(event.table)
      }
    }
  }
  return { groups: [...groups], tables: [...tables] }
}

/** One store set a resolution reaches, and how the history names it. */
interface Target {
  readonly target: "group" | "tag"
  readonly value: string
  readonly set: string
}

const targetsOf = ({ groups, tables }: Resolution): ReadonlyArray<Target> => [
  ...groups.map((key): Target => ({ target: "group", value: key, set: groupSet(key) })),
  ...tables.map((table): Target => {
    const tag = TableInvalidNode.tableTag(table)
    return { target: "tag", value: tag, set: tagSet(tag) }
  })
]

const retry = Schedule.exponential("20 millis", 2)

/** Runs one invalidation with retries; a final failure is logged with its key and swallowed. */
const invalidateOrLog = ({ target, value }: Target) =>
  (target === "group"
    ? Invalidation.group(value, { source: "kysely" })
    : Invalidation.tag(value, { source: "kysely" })
  ).pipe(
    Effect.retry({ schedule: retry, times: 4 }),
    Effect.catch((error) =>
      Effect.logError("effect-cacheme/kysely: invalidation failed after retries; the entries may be stale").pipe(
        Effect.annotateLogs({ [target === "group" ? "group" : "table"]: value, reason: error.message })
      )
    )
  )

const invalidateTargets = (targets: ReadonlyArray<Target>) =>
  targets.length === 1
    ? invalidateOrLog(targets[0]!)
    : Effect.forEach(targets, invalidateOrLog, { concurrency: 16, discard: true })

/**
 * Invalidates what a batch reaches. Never fails.
 *
 * @category resolution
 * @since 0.1.0
 */
export const invalidate = (events: ReadonlyArray<InvalidationEvent>): Effect.Effect<void, never, CacheStore> =>
  invalidateTargets(targetsOf(resolve(events)))

/**
 * How long closing the layer waits for listener calls still under way.
 *
 * @category layers
 * @since 0.1.0
 */
export const listenerGrace = "5 seconds"

/**
 * How long a hold lasts at most: a write that takes longer (a statement waiting on row locks, say) finds its
 * hold lapsed, and its `commit` then invalidates the groups again before the write resolves.
 *
 * @category layers
 * @since 0.1.0
 */
export const holdTtl = "30 seconds"

/** Hold tokens: unique per process start, then a counter. */
const tokenPrefix = `${process.pid}.${Date.now().toString(36)}.${Math.random().toString(36).slice(2, 8)}.`
let holds = 0
const holdToken = () => tokenPrefix + (holds++).toString(36)

/**
 * The pipeline, which lives as long as the layer.
 *
 * The `Invalidation.Listener` of the layer's context (the admin's history, say) is called in a fiber of its own
 * for each invalidation: a write waits for the cache, not for what observes it. A listener that writes to the
 * database would otherwise wait, on a single-connection database (PGlite, SQLite), for the connection the
 * committing write still holds while it waits for its invalidation: a deadlock. Closing the layer waits (up to
 * {@link listenerGrace}) for the listener calls and hold releases under way, so the last writes' history is not
 * lost.
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (
  options: { readonly holdTtl?: Duration.Input | undefined } = {}
): Layer.Layer<Invalidator, never, CacheStore> =>
  Layer.effect(
    Invalidator,
    Effect.gen(function* () {
      // A store keeps a hold at most `maxHoldMillis` (an hour): a write that outlasts it invalidates again.
      const holdMillis = Math.min(Duration.toMillis(options.holdTtl ?? holdTtl), Protocol.maxHoldMillis)
      const batches = yield* Effect.acquireRelease(PubSub.unbounded<Batch>(), PubSub.shutdown)
      const store = yield* CacheStore
      const listener = yield* Invalidation.Listener
      const background = yield* FiberSet.make<void>()
      // Registered after the set: runs before the set interrupts what is left.
      yield* Effect.addFinalizer(() =>
        FiberSet.awaitEmpty(background).pipe(Effect.timeout(listenerGrace), Effect.ignore)
      )
      const detached =
        listener === Invalidation.noListener
          ? Invalidation.noListener
          : (event: Invalidation.Event) => Effect.asVoid(FiberSet.run(background, listener(event)))
      const inBackground = <A, E>(effect: Effect.Effect<A, E>) => Effect.asVoid(FiberSet.run(background, effect))

      const published = (events: ReadonlyArray<InvalidationEvent>, resolution: Resolution) =>
        Effect.asVoid(PubSub.publish(batches, { events, resolution }))

      const afterCommit = (events: ReadonlyArray<InvalidationEvent>, held: ReadonlySet<string>) => {
        const resolution = resolve(events)
        const targets = targetsOf(resolution).filter((target) => !held.has(target.set))
        // A write whose groups were all held has nothing left to wait for.
        if (targets.length === 0) return published(events, resolution)
        return Effect.andThen(
          invalidateTargets(targets).pipe(
            Effect.provideService(Invalidation.Listener, detached),
            Effect.provideService(CacheStore, store)
          ),
          published(events, resolution)
        )
      }

      const publishAndWait = (events: ReadonlyArray<InvalidationEvent>) =>
        events.length === 0 ? Effect.void : afterCommit(events, new Set())

      // The resolver of async batches. Each batch is invalidated in a fiber of its own, so batches do not queue
      // behind one another's store round trips; closing the layer first hands what is still queued to such
      // fibers, which then get the listener grace to finish.
      const queued = yield* Effect.acquireRelease(Queue.unbounded<ReadonlyArray<InvalidationEvent>>(), Queue.shutdown)
      yield* Effect.forkScoped(
        Effect.forever(Effect.flatMap(Queue.take(queued), (events) => inBackground(publishAndWait(events))))
      )
      yield* Effect.addFinalizer(() =>
        Effect.flatMap(
          Effect.orElseSucceed(Queue.clear(queued), () => []),
          (left) => Effect.forEach(left, (events) => inBackground(publishAndWait(events)), { discard: true })
        )
      )
      const publish = (events: ReadonlyArray<InvalidationEvent>) =>
        events.length === 0 ? Effect.void : Effect.asVoid(Queue.offer(queued, events))

      const release = (sets: ReadonlyArray<string>, token: string) =>
        store
          .releaseHold(sets, token)
          .pipe(
            Effect.catch((error) =>
              Effect.logWarning(
                "effect-cacheme/kysely: releasing a hold failed; its groups are not cached until it lapses"
              ).pipe(Effect.annotateLogs({ sets: sets.join(" "), reason: error.message }))
            )
          )

      const hold = (predicted: ReadonlyArray<InvalidationEvent>): Effect.Effect<Hold | undefined> => {
        const targets = targetsOf(resolveWith(predicted, false))
        if (targets.length === 0) return Effect.succeed(undefined)
        const sets = targets.map((target) => target.set)
        const token = holdToken()
        const startedAt = performance.now()
        const held = store.hold(sets, token, holdMillis).pipe(
          Effect.tap((counts) =>
            Effect.annotateCurrentSpan(
              "cacheme.count",
              counts.reduce((sum, count) => sum + count, 0)
            )
          ),
          Effect.withSpan(
            "cacheme.hold",
            { attributes: { "cacheme.sets": sets.join(" "), "cacheme.source": "kysely" } },
            { captureStackTrace: false }
          )
        )
        return held.pipe(
          Effect.flatMap((counts) =>
            Effect.as(
              detached === Invalidation.noListener
                ? Effect.void
                : Effect.forEach(targets, (target, i) =>
                    detached({ ...target, mode: "hard", count: counts[i] ?? 0, source: "kysely" })
                  ),
              {
                commit: (events) =>
                  Effect.andThen(
                    afterCommit(events, new Set(sets)),
                    // Lets fills in again without waiting; a write that outlasted half its hold waits, since
                    // a lapsed hold must be followed by a new invalidation before the write resolves.
                    performance.now() - startedAt < holdMillis / 2
                      ? inBackground(release(sets, token))
                      : release(sets, token)
                  ),
                abort: inBackground(release(sets, token))
              } satisfies Hold
            )
          ),
          Effect.catch((error) =>
            // The hold may have reached the store before the failure: release it, whatever happened.
            Effect.as(
              Effect.andThen(
                Effect.logWarning("effect-cacheme/kysely: holding groups failed; invalidating after COMMIT").pipe(
                  Effect.annotateLogs({ sets: sets.join(" "), reason: error.message })
                ),
                inBackground(release(sets, token))
              ),
              undefined
            )
          )
        )
      }

      return Invalidator.of({ batches, publish, publishAndWait, hold })
    })
  )
