/**
 * Batched reads: `Memo.cachedMany` (DataLoader style). The instances of one node are looked up in one round trip
 * (the store's `lookupMany`); the misses are leased together, each key its own lease; one call of the caller's
 * loader loads them; each value is stored under its own lease, through the checks a `Memo.cached` load goes
 * through (the node's Schema, `maxValueBytes`, `cacheWhen`, the ttl function, holds).
 *
 * Keys whose lease another caller holds are waited for as `Memo.cached` waits (looked up again on the herd
 * cadence, up to `herdMaxWait`), all together: a value found is served; keys whose holder gave up are leased and
 * loaded by one more loader call; keys still busy when the wait is over are loaded without storing. Inside one
 * process a batch does not join `Memo.cached` flights (nor they its loads): they meet at the store's lease, where
 * one loads and the other waits.
 *
 * Everything a `Memo.cached` read guarantees holds per key, because each key goes through the same store steps:
 * stamps recorded before the loader runs, a fill refused once an invalidation voided its lease, nothing stored
 * under a hold, a read that starts after an invalidation never answered with a value loaded before it.
 */
import { Cause, Clock, Duration, Effect, Exit, Tracer } from "effect"
import * as CacheStore from "../CacheStore.ts"
import { CachemeConfig, type Settings } from "../CachemeConfig.ts"
import * as Memo from "../Memo.ts"
import * as Metrics from "../Metrics.ts"
import type * as Node from "../Node.ts"
import * as Codec from "./codec.ts"
import * as LeaseKeeper from "./leaseKeeper.ts"
import { newToken } from "./protocol.ts"

type Store = CacheStore.CacheStore["Service"]
type CacheStoreError = CacheStore.CacheStoreError
type Leased = Extract<CacheStore.Leasing, { readonly _tag: "Leased" }>

/** The loader of a batch: the fields of the keys to load, in order; their values, in the same order. */
export type Loader<A, E, R> = (fields: ReadonlyArray<any>) => Effect.Effect<ReadonlyArray<A>, E, R>

/** One distinct key of a batch. */
interface Entry {
  readonly instance: Node.Instance
  readonly sets: CacheStore.Sets
  /** Its position among the distinct keys, in order of first appearance. */
  readonly index: number
}

/** A key that was not served, with what its lookup saw. */
interface Missed {
  readonly entry: Entry
  readonly view: CacheStore.View
}

/** A lease this batch holds. */
interface Held {
  readonly entry: Entry
  readonly token: string
  readonly leased: Leased
}

interface Batch<A, E, R> {
  readonly node: Node.Node
  readonly loader: Loader<A, E, R>
  readonly store: Store
  readonly settings: Settings
  readonly timing: Memo.Timing
  readonly metrics: Metrics.NodeMetrics
  readonly strict: boolean
  /** Whether the program has a tracer: spans of loads and fills are made only then. */
  readonly traced: boolean
  /** Per distinct key: its value, once known. */
  readonly values: Array<A>
  /** Per distinct key: how its value was obtained. */
  readonly outcomes: Array<Memo.Outcome | undefined>
  /** Per distinct key: a value past its life kept for a fail-safe answer. */
  readonly fallbacks: Map<number, A>
  /** Leases taken and neither filled nor released yet: released when the batch ends (or is interrupted) first. */
  readonly open: Set<Held>
}

type Failure<E> = E | Memo.InvalidBatch | CacheStoreError

/** One batched lookup of `entries` (one round trip), with the node's hint about the in-process tier. */
const lookup = <A, E, R>(
  batch: Batch<A, E, R>,
  entries: ReadonlyArray<Entry>
): Effect.Effect<ReadonlyArray<CacheStore.Lookup>, CacheStoreError> =>
  batch.store.lookupMany(
    entries.map((entry) => ({ key: entry.instance.key, sets: entry.sets })),
    batch.timing.leaseMillis,
    batch.node.options.local
  )

/** A store failure: counted and logged; fails the batch only in strict mode. */
const storeFailed = <A, E, R>(batch: Batch<A, E, R>, error: CacheStoreError): Effect.Effect<void, CacheStoreError> =>
  Effect.andThen(
    batch.metrics.storeError,
    Effect.logWarning(`effect-cacheme: store ${error.operation} failed, serving without cache`).pipe(
      Effect.annotateLogs({ node: batch.node.name, reason: error.message }),
      Effect.andThen(batch.strict ? Effect.fail(error) : Effect.void)
    )
  )

/** Runs a store command; on failure (fail open), answers `orElse`. */
const attempt = <A, E, R, B>(
  batch: Batch<A, E, R>,
  command: Effect.Effect<B, CacheStoreError>,
  orElse: B
): Effect.Effect<B, CacheStoreError> => Effect.catch(command, (error) => Effect.as(storeFailed(batch, error), orElse))

const served = <A, E, R>(batch: Batch<A, E, R>, entry: Entry, value: A, outcome: Memo.Outcome) => {
  batch.values[entry.index] = value
  batch.outcomes[entry.index] = outcome
}

/** What a batch of lookups found: values are served at once; the rest is sorted by what must happen next. */
interface Sorted {
  readonly misses: Array<Missed>
  /** Values that cannot be decoded (another Schema or version, or corrupt). */
  readonly unreadable: Array<Entry>
  /** Stale values served, to refresh in the background (nobody else is refreshing them). */
  readonly refresh: Array<Missed>
}

const sort = <A, E, R>(
  batch: Batch<A, E, R>,
  entries: ReadonlyArray<Entry>,
  lookups: ReadonlyArray<CacheStore.Lookup>
): Effect.Effect<Sorted> =>
  Effect.gen(function* () {
    const sorted: Sorted = { misses: [], unreadable: [], refresh: [] }
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!
      const lookup = lookups[i]!
      switch (lookup._tag) {
        case "Hit": {
          const decoded = Codec.decodeIn<A>(batch.node, lookup)
          if (decoded._tag === "Value") {
            served(batch, entry, decoded.value, "hit")
            yield* batch.metrics.hit
          } else {
            yield* Memo.logUnreadable(entry.instance, decoded)
            sorted.unreadable.push(entry)
          }
          break
        }
        case "Stale": {
          const decoded = Codec.decodeIn<A>(batch.node, lookup)
          if (decoded._tag === "Value" && Memo.servesStale(batch.timing, lookup.staleFor)) {
            served(batch, entry, decoded.value, "stale")
            yield* batch.metrics.stale
            if (lookup.view.holder === undefined) sorted.refresh.push({ entry, view: lookup.view })
            break
          }
          // Kept in place (under a "keep" lease) for a fail-safe answer if the loader fails.
          if (
            decoded._tag === "Value" &&
            batch.timing.failSafeMillis !== undefined &&
            lookup.staleFor < batch.timing.failSafeMillis
          )
            batch.fallbacks.set(entry.index, decoded.value)
          if (decoded._tag !== "Value") yield* Memo.logUnreadable(entry.instance, decoded)
          sorted.misses.push({ entry, view: lookup.view })
          break
        }
        case "Miss":
          sorted.misses.push({ entry, view: lookup.view })
      }
    }
    return sorted
  })

/** What asking for the leases of a list of misses came to. */
interface Leasings {
  readonly held: Array<Held>
  readonly busy: Array<Entry>
  readonly changed: Array<Entry>
  /** The store failed: load without storing. */
  readonly failed: Array<Entry>
}

/**
 * Asks for the lease of each miss, all at once (the requests of one turn share a round trip). A lease granted is
 * registered before anything can interrupt the batch, so that it is always filled or released.
 */
const leaseAll = <A, E, R>(
  batch: Batch<A, E, R>,
  misses: ReadonlyArray<Missed>,
  intent: "keep" | "replace"
): Effect.Effect<Leasings, CacheStoreError> => {
  const leasings: Leasings = { held: [], busy: [], changed: [], failed: [] }
  if (misses.length === 0) return Effect.succeed(leasings)
  const { store, timing } = batch
  return Effect.as(
    Effect.forEach(
      misses,
      ({ entry, view }) =>
        Effect.uninterruptible(
          Effect.suspend(() => {
            const token = newToken()
            return Effect.map(
              attempt(
                batch,
                store.lease(
                  entry.instance.key,
                  token,
                  entry.sets,
                  view,
                  // A load that may end in a fail-safe answer leaves the value seen in place.
                  batch.fallbacks.has(entry.index) ? "keep" : intent,
                  timing.leaseMillis,
                  timing.lifeMillis
                ),
                undefined
              ),
              (leasing) => {
                if (leasing === undefined) leasings.failed.push(entry)
                else if (leasing._tag === "Leased") {
                  const held: Held = { entry, token, leased: leasing }
                  batch.open.add(held)
                  leasings.held.push(held)
                } else if (leasing._tag === "Busy") leasings.busy.push(entry)
                else leasings.changed.push(entry)
              }
            )
          })
        ),
      { concurrency: "unbounded", discard: true }
    ),
    leasings
  )
}

/** Gives a lease up (a failed load, or a value not to store), dropping the stamps it made. */
const release = <A, E, R>(batch: Batch<A, E, R>, held: Held): Effect.Effect<void> =>
  Effect.suspend(() => {
    if (!batch.open.delete(held)) return Effect.void
    const { entry, token, leased } = held
    return Effect.ignore(batch.store.release(entry.instance.key, token, entry.sets, leased.stamps, leased.created))
  })

const releaseAll = <A, E, R>(batch: Batch<A, E, R>, held: Iterable<Held>): Effect.Effect<void> =>
  Effect.forEach([...held], (one) => release(batch, one), { concurrency: "unbounded", discard: true })

/** The loader's answer, checked: an array with one value per key asked for, else a typed error. */
const checkLength = <A>(
  node: Node.Node,
  asked: number,
  values: unknown
): Effect.Effect<ReadonlyArray<A>, Memo.InvalidBatch> =>
  Array.isArray(values) && values.length === asked
    ? Effect.succeed(values as ReadonlyArray<A>)
    : Effect.fail(
        new Memo.InvalidBatch({
          node: node.name,
          reason: "WrongLength",
          message: `the loader was given ${asked} fields and returned ${
            Array.isArray(values)
              ? `${values.length} values`
              : `${values === null ? "null" : typeof values}, not an array`
          }: nothing was stored`
        })
      )

/**
 * The fail-safe answers of a failed loader call: the values the store holds for its keys *now* (looked up again,
 * never taken from the batch's first lookup: a value invalidated hard or aged out of its window meanwhile is never
 * served), if every key still has one; else `undefined` and the failure stands.
 */
const failSafeAnswers = <A, E, R>(
  batch: Batch<A, E, R>,
  entries: ReadonlyArray<Entry>
): Effect.Effect<ReadonlyArray<A> | undefined> =>
  Effect.map(
    Effect.option(
      batch.store.lookupMany(
        entries.map((entry) => ({ key: entry.instance.key, sets: entry.sets })),
        batch.timing.leaseMillis,
        false
      )
    ),
    (found) => {
      if (found._tag === "None") return undefined
      const windowMillis = batch.timing.failSafeMillis ?? 0
      const answers: Array<A> = []
      for (const lookup of found.value) {
        if (lookup._tag === "Miss" || (lookup._tag === "Stale" && lookup.staleFor >= windowMillis)) return undefined
        const decoded = Codec.decodeIn<A>(batch.node, lookup)
        if (decoded._tag !== "Value") return undefined
        answers.push(decoded.value)
      }
      return answers
    }
  )

/**
 * One loader call for the keys leased (`held`) and the keys to load without storing (`plain`), in the order of
 * the batch; then each leased value is stored under its own lease. A failed loader (or a wrong number of values)
 * stores nothing and releases every lease; with a fail-safe value for every key asked for, the failure is
 * answered with those.
 */
const load = <A, E, R>(
  batch: Batch<A, E, R>,
  held: ReadonlyArray<Held>,
  plain: ReadonlyArray<Entry>
): Effect.Effect<void, Failure<E>, R> => {
  const all = [...held.map((one) => one.entry), ...plain].sort((a, b) => a.index - b.index)
  if (all.length === 0) return Effect.void
  return Effect.gen(function* () {
    for (let i = 0; i < all.length; i++) yield* batch.metrics.load
    const start = performance.now()
    const exit = yield* Effect.exit(
      LeaseKeeper.keeping(
        batch.store,
        held.map(({ entry, token }) => ({ key: entry.instance.key, token })),
        batch.timing.leaseMillis,
        Effect.suspend(() => batch.loader(all.map((entry) => entry.instance.fields))).pipe((loading) =>
          batch.traced
            ? Effect.withSpan(loading, "cacheme.load", {
                attributes: { "cacheme.node": batch.node.name, "cacheme.count": all.length },
                captureStackTrace: false
              })
            : loading
        )
      )
    )
    yield* batch.metrics.loadDuration(performance.now() - start)
    if (Exit.isFailure(exit)) {
      yield* releaseAll(batch, held)
      if (
        !Cause.hasInterruptsOnly(exit.cause) &&
        batch.node.failSafe !== undefined &&
        all.every((entry) => batch.fallbacks.has(entry.index))
      ) {
        const answers = yield* failSafeAnswers(batch, all)
        if (answers !== undefined) {
          for (let i = 0; i < all.length; i++) {
            served(batch, all[i]!, answers[i]!, "failSafe")
            yield* batch.metrics.failSafe
          }
          return yield* Effect.logWarning(
            `effect-cacheme: the load failed (${Cause.pretty(exit.cause).split("\n")[0]}); serving the fail-safe values`
          ).pipe(Effect.annotateLogs({ node: batch.node.name, keys: all.length }))
        }
      }
      return yield* exit
    }
    const values = yield* Effect.onError(checkLength<A>(batch.node, all.length, exit.value), () =>
      releaseAll(batch, held)
    )
    const positions = new Map<Entry, number>()
    all.forEach((entry, i) => {
      positions.set(entry, i)
      batch.values[entry.index] = values[i]!
      batch.outcomes[entry.index] ??= "miss"
    })
    yield* Effect.forEach(held, (one) => storeValue(batch, one, values[positions.get(one.entry)!]!), {
      concurrency: "unbounded",
      discard: true
    })
  })
}

/** Stores one loaded value under its lease, as a `Memo.cached` load does; else gives the lease up. */
const storeValue = <A, E, R>(batch: Batch<A, E, R>, held: Held, value: A): Effect.Effect<void, CacheStoreError> =>
  Effect.gen(function* () {
    const { instance, sets } = held.entry
    if (held.leased.held) return yield* release(batch, held)
    const decision = Memo.storable(instance, batch.settings, batch.timing, batch.metrics, value)
    if (decision._tag === "Skip") {
      yield* release(batch, held)
      return yield* decision.log
    }
    const fill = Memo.tracedFill(
      batch.traced,
      instance,
      batch.store.fill(instance.key, held.token, sets, held.leased.stamps, decision.fill)
    )
    // Stored or not, the lease is spent once the fill answered (a fill that was refused had lost it already). An
    // interrupted or failed fill leaves it open: the batch's final release gives it up.
    yield* Effect.tap(attempt(batch, fill, false), () => Effect.sync(() => batch.open.delete(held)))
  })

/** Refreshes stale values in the store's scope; their readers have been answered already. */
const refreshInBackground = <A, E, R>(
  batch: Batch<A, E, R>,
  stale: ReadonlyArray<Missed>
): Effect.Effect<void, never, R> =>
  stale.length === 0
    ? Effect.void
    : Effect.asVoid(
        Effect.forkIn(
          Effect.suspend(() => {
            const background: Batch<A, E, R> = {
              ...batch,
              strict: false,
              values: [],
              outcomes: [],
              fallbacks: new Map(),
              open: new Set()
            }
            return Effect.flatMap(leaseAll(background, stale, "keep"), (leasings) =>
              load(background, leasings.held, [])
            ).pipe(Effect.ensuring(Effect.suspend(() => releaseAll(background, background.open))))
          }).pipe(
            Effect.catchCause((cause) =>
              Effect.logWarning("effect-cacheme: background refresh failed").pipe(
                Effect.annotateLogs({ node: batch.node.name, keys: stale.length, cause: Cause.pretty(cause) })
              )
            )
          ),
          batch.store.scope
        )
      )

/**
 * Leases the misses nobody else is loading and loads them in one loader call (with `plain`, the keys to load
 * without storing); meanwhile looks again at the keys that changed under the lease request, and waits for those
 * another caller is loading.
 */
const settle = <A, E, R>(
  batch: Batch<A, E, R>,
  misses: ReadonlyArray<Missed>,
  plain: ReadonlyArray<Entry>,
  changes: number
): Effect.Effect<void, Failure<E>, R> =>
  Effect.gen(function* () {
    const free = misses.filter((miss) => miss.view.holder === undefined)
    const busy = misses.filter((miss) => miss.view.holder !== undefined).map((miss) => miss.entry)
    const leasings = yield* leaseAll(batch, free, "replace")
    for (let i = 0; i < leasings.held.length; i++) yield* batch.metrics.miss
    yield* Effect.all(
      [
        load(batch, leasings.held, [...plain, ...leasings.failed]),
        relook(batch, leasings.changed, changes),
        waitFor(batch, [...busy, ...leasings.busy])
      ],
      { concurrency: "unbounded", discard: true }
    )
  })

/** Looks again at keys that changed under a lease request (a value landed meanwhile); twice at most. */
const relook = <A, E, R>(
  batch: Batch<A, E, R>,
  entries: ReadonlyArray<Entry>,
  changes: number
): Effect.Effect<void, Failure<E>, R> =>
  entries.length === 0
    ? Effect.void
    : changes >= 2
      ? load(batch, [], entries)
      : Effect.gen(function* () {
          const lookups = yield* attempt(batch, lookup(batch, entries), undefined)
          if (lookups === undefined) return yield* load(batch, [], entries)
          const sorted = yield* sort(batch, entries, lookups)
          yield* refreshInBackground(batch, sorted.refresh)
          yield* settle(batch, sorted.misses, sorted.unreadable, changes + 1)
        })

/**
 * Waits for keys another caller is loading, all together, as `Memo.cached` waits for one: looks them up again
 * `herdRetryCount` times `herdRetryInterval` apart, then less and less often (every 100 ms at most, a quarter of
 * the lease at least), up to `herdMaxWait`. Values found are served; keys with no live lease left (the holder
 * failed or died), or all keys once the wait is over, are leased and loaded in one loader call; a key still
 * busy when the wait is over is loaded without storing.
 */
const waitFor = <A, E, R>(batch: Batch<A, E, R>, entries: ReadonlyArray<Entry>): Effect.Effect<void, Failure<E>, R> =>
  entries.length === 0
    ? Effect.void
    : Effect.acquireUseRelease(
        // Completion notices, where the store has them: a holder's fill or release ends the wait early.
        Effect.sync(() => {
          const watch = batch.store.watch
          return new Map<Entry, CacheStore.Watch>(
            watch === undefined ? [] : entries.map((entry) => [entry, watch(entry.instance.key)])
          )
        }),
        (watches) =>
          Effect.gen(function* () {
            for (let i = 0; i < entries.length; i++) yield* batch.metrics.herdWait
            const { herdRetryCount, herdRetryInterval, herdMaxWait } = batch.settings
            const quick = Duration.toMillis(herdRetryInterval)
            const slowest = Math.max(quick, Math.min(100, Math.floor(batch.timing.leaseMillis / 4)))
            const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(herdMaxWait)
            let delay = quick
            let waiting = entries
            // Store failures in a row (a re-read, or a lease request): a passing fault does not make the batch load
            // a key beside its holder; `herdRetryCount` of them in a row (or `herdMaxWait`) do, without storing.
            let failures = 0
            const tolerated = Math.max(1, herdRetryCount)
            for (let polls = 1; waiting.length > 0; polls++) {
              yield* waitAny(watches, waiting, delay)
              for (const watch of watches.values()) watch.arm()
              if (polls >= herdRetryCount) delay = Math.min(slowest, delay * 2)
              const lookups = yield* attempt(batch, lookup(batch, waiting), undefined)
              if (lookups === undefined) {
                if (++failures < tolerated && (yield* Clock.currentTimeMillis) < deadline) continue
                return yield* load(batch, [], waiting)
              }
              const sorted = yield* sort(batch, waiting, lookups)
              yield* refreshInBackground(batch, sorted.refresh)
              const over = (yield* Clock.currentTimeMillis) >= deadline
              const still = over ? [] : sorted.misses.filter((miss) => miss.view.holder !== undefined)
              const free = over ? sorted.misses : sorted.misses.filter((miss) => miss.view.holder === undefined)
              const leasings = yield* leaseAll(batch, free, "replace")
              for (let i = 0; i < leasings.held.length; i++) yield* batch.metrics.miss
              const gaveUp = over ? [...leasings.busy, ...leasings.changed] : []
              const retried = !over && leasings.failed.length > 0 && ++failures < tolerated ? leasings.failed : []
              if (leasings.failed.length === 0) failures = 0
              const unstored = retried.length === 0 ? leasings.failed : []
              yield* load(batch, leasings.held, [...sorted.unreadable, ...unstored, ...gaveUp])
              waiting = over
                ? []
                : [...still.map((miss) => miss.entry), ...leasings.busy, ...leasings.changed, ...retried]
              // Keys no longer waited for stop being watched.
              const left = new Set(waiting)
              for (const [entry, watch] of watches) {
                if (left.has(entry)) continue
                watch.close()
                watches.delete(entry)
              }
            }
          }),
        (watches) =>
          Effect.sync(() => {
            for (const watch of watches.values()) watch.close()
          })
      )

/** Waits `millis`, or less: until a completion notice for one of the keys waited for. */
const waitAny = (
  watches: ReadonlyMap<Entry, CacheStore.Watch>,
  waiting: ReadonlyArray<Entry>,
  millis: number
): Effect.Effect<void> => {
  const live: Array<CacheStore.Watch> = []
  for (const entry of waiting) {
    const watch = watches.get(entry)
    if (watch !== undefined) live.push(watch)
  }
  return live.length === 0
    ? Effect.sleep(millis)
    : Effect.asVoid(Effect.raceAll(live.map((watch) => watch.wait(millis))))
}

/** Looks the batch up and serves it. */
const serveAll = <A, E, R>(batch: Batch<A, E, R>, entries: ReadonlyArray<Entry>): Effect.Effect<void, Failure<E>, R> =>
  Effect.gen(function* () {
    const bypassed = entries.filter((entry) => entry.instance.skip)
    for (const entry of bypassed) batch.outcomes[entry.index] = "bypassed"
    const cached = bypassed.length === 0 ? entries : entries.filter((entry) => !entry.instance.skip)
    if (cached.length === 0) return yield* load(batch, [], bypassed)
    const { store } = batch
    const lookups = yield* attempt(batch, lookup(batch, cached), undefined)
    if (lookups === undefined) return yield* load(batch, [], entries)
    const sorted = yield* sort(batch, cached, lookups)
    yield* refreshInBackground(batch, sorted.refresh)
    const misses = sorted.misses
    const plain = [...bypassed]
    if (sorted.unreadable.length > 0) {
      // Drop the unreadable entries, then read them again to lease and overwrite them; unreadable again, they are
      // loaded without storing.
      yield* attempt(
        batch,
        store.invalidate(
          sorted.unreadable.map((entry) => entry.instance.key),
          "hard"
        ),
        0
      )
      const again = yield* attempt(batch, lookup(batch, sorted.unreadable), undefined)
      if (again === undefined) plain.push(...sorted.unreadable)
      else {
        const resorted = yield* sort(batch, sorted.unreadable, again)
        yield* refreshInBackground(batch, resorted.refresh)
        misses.push(...resorted.misses)
        plain.push(...resorted.unreadable)
      }
    }
    yield* settle(batch, misses, plain, 0)
  })

/** After the batch: the node's hook for each distinct key (`onHit` for values found, `onMiss` for values loaded). */
const afterRead = <A, E, R>(batch: Batch<A, E, R>, entries: ReadonlyArray<Entry>): Effect.Effect<void> => {
  const { onHit, onMiss } = batch.node.options
  if (onHit === undefined && onMiss === undefined) return Effect.void
  return Effect.forEach(
    entries,
    (entry) => {
      switch (batch.outcomes[entry.index]) {
        case "hit":
        case "stale":
          return Memo.runHook(entry.instance, onHit, batch.values[entry.index])
        case "miss":
          return Memo.runHook(entry.instance, onMiss, batch.values[entry.index])
        default:
          return Effect.void
      }
    },
    { discard: true }
  )
}

/** Outcome counts on the batch's span. */
const annotateOutcomes = <A, E, R>(batch: Batch<A, E, R>, entries: ReadonlyArray<Entry>): Effect.Effect<void> =>
  Effect.suspend(() => {
    const counts: Record<string, number> = {}
    for (const entry of entries) {
      const outcome = batch.outcomes[entry.index] ?? "miss"
      counts[outcome] = (counts[outcome] ?? 0) + 1
    }
    return Effect.annotateCurrentSpan(
      Object.fromEntries(Object.entries(counts).map(([outcome, count]) => [`cacheme.${outcome}`, count]))
    )
  })

/**
 * `Memo.cachedMany`: checks the batch (one node), reads each distinct key once, answers in input order.
 */
export const run = <A, E, R>(
  instances: ReadonlyArray<Node.Instance>,
  loader: Loader<A, E, R>,
  strict: boolean
): Effect.Effect<Array<A>, Failure<E>, R | CacheStore.CacheStore> =>
  Effect.suspend(() => {
    if (instances.length === 0) return Effect.succeed([])
    const node = instances[0]!.node
    const entries: Array<Entry> = []
    const byKey = new Map<string, Entry>()
    const positions: Array<number> = []
    for (const instance of instances) {
      if (instance.node !== node) {
        return Effect.fail(
          new Memo.InvalidBatch({
            node: node.name,
            reason: "MixedNodes",
            message: `a batch is made of instances of one node: ${JSON.stringify(node.name)} and ${JSON.stringify(instance.node.name)} were given`
          })
        )
      }
      let entry = byKey.get(instance.key)
      if (entry === undefined) {
        entry = { instance, sets: Memo.setsOf(instance), index: entries.length }
        entries.push(entry)
        byKey.set(instance.key, entry)
      }
      positions.push(entry.index)
    }
    const answer = (values: ReadonlyArray<A>) => positions.map((position) => values[position]!)
    const body = (traced: boolean): Effect.Effect<Array<A>, Failure<E>, R | CacheStore.CacheStore> =>
      Effect.flatMap(CachemeConfig, (settings) => {
        if (!settings.enabled) {
          return Effect.suspend(() => loader(entries.map((entry) => entry.instance.fields))).pipe(
            Effect.flatMap((values) => checkLength<A>(node, entries.length, values)),
            Effect.map(answer)
          )
        }
        return Effect.flatMap(CacheStore.CacheStore, (store) => {
          if (store.prefixSource === "settings" && store.prefix !== settings.prefix)
            return Effect.andThen(CacheStore.checkPrefix(store, settings), Effect.never)
          const batch: Batch<A, E, R> = {
            node,
            loader,
            store,
            settings,
            timing: Memo.timingOf(node, settings),
            metrics: Metrics.forNode(node.name),
            strict,
            traced,
            values: [],
            outcomes: [],
            fallbacks: new Map(),
            open: new Set()
          }
          return serveAll(batch, entries).pipe(
            Effect.ensuring(Effect.suspend(() => releaseAll(batch, batch.open))),
            Effect.andThen(traced ? annotateOutcomes(batch, entries) : Effect.void),
            Effect.andThen(afterRead(batch, entries)),
            Effect.andThen(Effect.sync(() => answer(batch.values)))
          )
        })
      })
    return Effect.flatMap(Effect.tracer, (tracer) =>
      tracer === Tracer.nativeTracer
        ? body(false)
        : body(true).pipe(
            Effect.withSpan(
              "cacheme.readMany",
              { attributes: { "cacheme.node": node.name, "cacheme.count": entries.length } },
              { captureStackTrace: false }
            )
          )
    )
  })
