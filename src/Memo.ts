/**
 * Read-through caching of an effect under a node instance (cacheme's `@cacheme(node=...)`).
 *
 * - A hit is one store round trip (the entry and the stamps of its groups and tags), decoded with the node's
 *   Schema.
 * - A miss takes the key's lease; only the lease holder runs the effect (renewing the lease while it runs), and
 *   its value is stored with the stamps its sets had before the load: an invalidation voids the lease or changes a
 *   stamp, so a value loaded across a concurrent invalidation is returned to its caller but never served again.
 * - Other callers wait while the lease is live (re-reading on the herd settings' cadence, up to `herdMaxWait`);
 *   with stale on they get the previous value at once while one caller refreshes it in the background.
 * - Inside one process, concurrent calls for one key share one fiber's work (single-flight) when that work cannot
 *   predate their own lookup, and a failing load wakes every waiter with its error. Failures are never cached.
 * - Store failures fail open: the effect runs and the failure is logged and counted, bounded by the command
 *   timeout. {@link cachedStrict} surfaces them as a `CacheStoreError` instead.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Deferred, Duration, Effect, Exit, type Schema } from "effect"
import { dual } from "effect/Function"
import * as CacheStore from "./CacheStore.ts"
import { CachemeConfig, type Settings } from "./CachemeConfig.ts"
import * as Codec from "./internal/codec.ts"
import type { InvalidFields } from "./internal/fields.ts"
import { groupSet, tagSet } from "./internal/keys.ts"
import { newToken } from "./internal/protocol.ts"
import * as Invalidation from "./Invalidation.ts"
import * as Metrics from "./Metrics.ts"
import type * as Node from "./Node.ts"

type Store = CacheStore.CacheStore["Service"]
type CacheStoreError = CacheStore.CacheStoreError

/** Completes the waiters of a leader that was interrupted: they start over instead of failing. */
const Retry = Symbol.for("effect-cacheme/Memo/Retry")

/**
 * Store requests are numbered in the order they are sent (one connection keeps that order), so a caller can
 * tell whether another caller's value came from a request sent after its own lookup.
 */
let requests = 0

/**
 * Where a value came from: the number of the request that decided it (the lookup that found it, the lease its
 * load ran under, or the start of a load without the store), and for a load under a lease, its token and the
 * stamps its lookup saw.
 */
interface Source {
  readonly request: number
  readonly token: string | undefined
  readonly stamps: ReadonlyArray<string | null> | undefined
}

interface Served<A> {
  readonly value: A
  readonly source: Source
}

/** A load under way in this process; the Deferred is made only when a second caller joins. */
interface Flight {
  joined: Deferred.Deferred<Served<unknown>, unknown> | undefined
}

/** One single-flight table per store, so two stores (or two tests) never share flights. */
const flightsByStore = new WeakMap<Store, Map<string, Flight>>()

const flightsOf = (store: Store) => {
  let flights = flightsByStore.get(store)
  if (flights === undefined) {
    flights = new Map()
    flightsByStore.set(store, flights)
  }
  return flights
}

/** How one node's entries live under the current settings, in millis. */
interface Timing {
  readonly staleOn: boolean
  readonly freshMillis: number | undefined
  readonly lifeMillis: number | undefined
  readonly leaseMillis: number
}

const timings = new WeakMap<Node.Node, { readonly settings: Settings; readonly timing: Timing }>()

/** The timing of a node, computed once per node and settings. */
const timingOf = (node: Node.Node, settings: Settings): Timing => {
  const cached = timings.get(node)
  if (cached !== undefined && cached.settings === settings) return cached.timing
  const timing = computeTiming(node, settings)
  timings.set(node, { settings, timing })
  return timing
}

const computeTiming = (node: Node.Node, settings: Settings): Timing => {
  const ttl = node.ttl === undefined ? settings.ttl : node.ttl === null ? undefined : node.ttl
  const freshMillis = ttl === undefined ? undefined : Duration.toMillis(ttl)
  const stale = node.stale === undefined ? settings.stale : node.stale
  const staleOn = stale !== false
  const windowMillis = !staleOn ? 0 : stale === true ? freshMillis : Duration.toMillis(stale as Duration.Duration)
  return {
    staleOn,
    freshMillis,
    lifeMillis: freshMillis === undefined || windowMillis === undefined ? undefined : freshMillis + windowMillis,
    leaseMillis: Math.max(1, Math.ceil(Duration.toMillis(node.leaseTtl ?? settings.leaseTtl)))
  }
}

const tagSetsByNode = new WeakMap<Node.Node, CacheStore.Sets>()

/**
 * The sets (tags and groups) of an entry, in a fixed order. An entry without groups has its node's tag sets,
 * made once per node: the same value on every call, so the store can cache what it derives from it.
 */
const setsOf = (instance: Node.Instance): CacheStore.Sets => {
  if (instance.groups.length === 0) {
    let sets = tagSetsByNode.get(instance.node)
    if (sets === undefined) {
      sets = CacheStore.sets([...new Set(instance.node.tags.map(tagSet))])
      tagSetsByNode.set(instance.node, sets)
    }
    return sets
  }
  const names = new Set<string>(instance.node.tags.map(tagSet))
  for (const group of instance.groups) {
    names.add(groupSet(group.key))
    for (const tag of group.group.tags) names.add(tagSet(tag))
  }
  return CacheStore.sets([...names])
}

interface Call<A, E, R> {
  readonly load: Effect.Effect<A, E, R>
  readonly instance: Node.Instance
  readonly sets: CacheStore.Sets
  readonly store: Store
  readonly settings: Settings
  readonly timing: Timing
  readonly metrics: Metrics.NodeMetrics
  readonly strict: boolean
}

type Result<A, E> = Effect.Effect<Served<A>, E | CacheStoreError, any>

/** A store failure: counted and logged; fails the call only in strict mode. */
const storeFailed = <A, E, R>(call: Call<A, E, R>, error: CacheStoreError): Effect.Effect<void, CacheStoreError> =>
  Effect.andThen(
    call.metrics.storeError,
    Effect.logWarning(`effect-cacheme: store ${error.operation} failed, serving without cache`).pipe(
      Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key, reason: error.message }),
      Effect.andThen(call.strict ? Effect.fail(error) : Effect.void)
    )
  )

/** Runs a store command; on failure, `orElse` decides how the call goes on (fail open). */
const attempt = <A, B, E, R, E2, R2>(
  call: Call<A, E, R>,
  command: Effect.Effect<B, CacheStoreError>,
  orElse: Effect.Effect<B, E2, R2>
): Effect.Effect<B, E2 | CacheStoreError, R2> =>
  Effect.catch(command, (error) => Effect.andThen(storeFailed(call, error), orElse))

const timed = <A, E, R>(call: Call<A, E, R>, load: Effect.Effect<A, E, R>) =>
  Effect.suspend(() => {
    const start = performance.now()
    return load.pipe(
      Effect.onExit(() => call.metrics.loadDuration(performance.now() - start)),
      Effect.withSpan("cacheme.load", {
        attributes: { "cacheme.node": call.instance.node.name, "cacheme.key": call.instance.key }
      })
    )
  })

/** Runs the effect without storing anything. */
const loadOnly = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Served<A>, E, R> =>
  Effect.suspend(() => {
    const source: Source = { request: ++requests, token: undefined, stamps: undefined }
    return Effect.andThen(
      call.metrics.load,
      Effect.map(timed(call, call.load), (value) => ({ value, source }))
    )
  })

/**
 * Loads as the lease holder, then stores the value if the lease survived and no set of the entry was
 * invalidated since the lookup. A failed load is never cached: the lease is given up (and the stamps it made
 * dropped), so the next caller loads at once.
 */
const loadAndFill = <A, E, R>(
  call: Call<A, E, R>,
  token: string,
  leased: Extract<CacheStore.Leasing, { readonly _tag: "Leased" }>
): Effect.Effect<A, E | CacheStoreError, R> => {
  const { instance, store, timing, sets } = call
  const release = Effect.ignore(store.release(instance.key, token, sets, leased.stamps, leased.created))
  return Effect.gen(function* () {
    yield* call.metrics.load
    const exit = yield* Effect.exit(keepingLease(call, token, timed(call, call.load)))
    if (Exit.isFailure(exit) || leased.held) {
      yield* release
      return yield* exit
    }
    const encoded = Codec.encode(instance.node, exit.value)
    if (Exit.isFailure(encoded)) {
      yield* release
      yield* Effect.logError(
        "effect-cacheme: the loaded value does not match the node's value Schema; not cached"
      ).pipe(Effect.annotateLogs({ node: instance.node.name, key: instance.key, cause: Cause.pretty(encoded.cause) }))
      return exit.value
    }
    // A UTF-8 byte is at most 3 per UTF-16 unit: counting bytes is only needed for values that could be too large.
    const bytes =
      encoded.value.length > call.settings.maxValueBytes / 3 ? Buffer.byteLength(encoded.value) : encoded.value.length
    if (bytes > call.settings.maxValueBytes) {
      yield* release
      yield* call.metrics.oversized
      yield* Effect.logWarning("effect-cacheme: value larger than maxValueBytes; returned, not stored").pipe(
        Effect.annotateLogs({
          node: instance.node.name,
          key: instance.key,
          bytes,
          maxValueBytes: call.settings.maxValueBytes
        })
      )
      return exit.value
    }
    yield* attempt(
      call,
      store.fill(instance.key, token, sets, leased.stamps, {
        value: encoded.value,
        freshMillis: timing.freshMillis,
        lifeMillis: timing.lifeMillis
      }),
      Effect.succeed(false)
    )
    return exit.value
  }).pipe(Effect.onInterrupt(() => release))
}

/**
 * Runs the load while renewing its lease every third of the lease's life, so that a slow load keeps the key (its
 * waiters go on waiting instead of loading again) and a holder that dies frees it within one lease. Renewal stops
 * when the lease is no longer ours (an invalidation voided it) or the store fails; the load goes on either way.
 */
const keepingLease = <A, E, R, B, E2, R2>(
  call: Call<A, E, R>,
  token: string,
  load: Effect.Effect<B, E2, R2>
): Effect.Effect<B, E2, R2> => {
  const every = Math.max(1, Math.floor(call.timing.leaseMillis / 3))
  const renew = Effect.sleep(every).pipe(
    Effect.andThen(call.store.renew(call.instance.key, token, call.timing.leaseMillis)),
    Effect.orElseSucceed(() => false),
    Effect.repeat({ while: (renewed) => renewed })
  )
  return Effect.raceFirst(load, Effect.andThen(renew, Effect.never))
}

/** Refreshes a stale entry in the store's scope; the caller has already been answered. */
const refreshInBackground = <A, E, R>(call: Call<A, E, R>, view: CacheStore.View) =>
  Effect.forkIn(
    Effect.gen(function* () {
      const token = newToken()
      const leasing = yield* call.store.lease(
        call.instance.key,
        token,
        call.sets,
        view,
        "keep",
        call.timing.leaseMillis,
        call.timing.lifeMillis
      )
      if (leasing._tag === "Leased") yield* loadAndFill({ ...call, strict: false }, token, leasing)
    }).pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning("effect-cacheme: background refresh failed").pipe(
          Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key, cause: Cause.pretty(cause) })
        )
      )
    ),
    call.store.scope
  )

/** Logs why a stored value cannot be used: written under another Schema or version, or corrupt. */
const logUnreadable = <A, E, R>(
  call: Call<A, E, R>,
  decoded: Exclude<Codec.Decoded<A>, { readonly _tag: "Value" }>
): Effect.Effect<void> =>
  Effect.logWarning(
    decoded._tag === "Mismatch"
      ? `effect-cacheme: entry written under another value Schema or version (${decoded.stamp}); reloading`
      : `effect-cacheme: corrupt entry (${decoded.reason}); reloading`
  ).pipe(Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key }))

/** What a lookup found, decided: each branch one action. */
type Step<A> =
  | { readonly _tag: "Done"; readonly served: Served<A> }
  | { readonly _tag: "Unreadable" }
  | { readonly _tag: "Miss"; readonly view: CacheStore.View; readonly request: number }
  | { readonly _tag: "StoreDown" }

/** Looks the key up and decides what the lookup means for this call. */
const look = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Step<A>, CacheStoreError, R> =>
  Effect.suspend(() => {
    const request = ++requests
    return Effect.flatMap(
      attempt(
        call,
        call.store.lookup(call.instance.key, call.sets, call.timing.leaseMillis),
        Effect.succeed(undefined)
      ),
      (lookup): Effect.Effect<Step<A>, never, R> => {
        if (lookup === undefined) return Effect.succeed({ _tag: "StoreDown" })
        const source: Source = { request, token: undefined, stamps: undefined }
        switch (lookup._tag) {
          case "Hit": {
            const decoded = Codec.decode<A>(call.instance.node, lookup.value)
            if (decoded._tag === "Value")
              return Effect.as(call.metrics.hit, { _tag: "Done", served: { value: decoded.value, source } })
            return Effect.as(logUnreadable(call, decoded), { _tag: "Unreadable" })
          }
          case "Stale": {
            const decoded = Codec.decode<A>(call.instance.node, lookup.value)
            if (decoded._tag === "Value" && call.timing.staleOn) {
              const served: Step<A> = { _tag: "Done", served: { value: decoded.value, source } }
              const answer = Effect.as(call.metrics.stale, served)
              return lookup.view.holder === undefined
                ? Effect.andThen(refreshInBackground(call, lookup.view), answer)
                : answer
            }
            // An unusable stale value is overwritten by the next fill.
            const logged = decoded._tag === "Value" ? Effect.void : logUnreadable(call, decoded)
            return Effect.as(logged, { _tag: "Miss", view: lookup.view, request })
          }
          case "Miss":
            return Effect.succeed({ _tag: "Miss", view: lookup.view, request })
        }
      }
    )
  })

/**
 * The read-through path: look up, then act on what was found. A miss joins this process's load of the key if
 * that load cannot have read data older than this call's lookup (see `admissible`), else leads its own.
 */
const serve = <A, E, R>(call: Call<A, E, R>, unreadable = 0): Result<A, E> =>
  Effect.flatMap(look(call), (step): Result<A, E> => {
    switch (step._tag) {
      case "Done":
        return Effect.succeed(step.served)
      case "StoreDown":
        return loadOnly(call)
      case "Unreadable":
        // Drop the unreadable entry, then read again to take the lease and overwrite it; if it is unreadable
        // again, load without storing.
        return unreadable > 0
          ? loadOnly(call)
          : Effect.andThen(
              attempt(call, call.store.invalidate([call.instance.key], "hard"), Effect.succeed(0)),
              serve(call, unreadable + 1)
            )
      case "Miss":
        return joinOrLead(call, step.view, step.request)
    }
  })

/**
 * Whether a value another caller of this process obtained may be handed to a caller whose lookup was request
 * `request` and saw `view`: when the value was decided by a request sent after that lookup, or when it was
 * loaded under a lease that lookup saw, with the same stamps (so no invalidation of the key or of its sets came
 * between the load's lookup and this one). Else the value may predate an invalidation this caller must see.
 */
const admissible = (source: Source, request: number, view: CacheStore.View): boolean => {
  if (source.request > request) return true
  if (source.token === undefined || source.stamps === undefined || view.holder !== source.token) return false
  if (source.stamps.length !== view.stamps.length) return false
  for (let i = 0; i < view.stamps.length; i++) if (source.stamps[i] !== view.stamps[i]) return false
  return true
}

/** Joins the flight for the key or leads a new one. */
const joinOrLead = <A, E, R>(call: Call<A, E, R>, view: CacheStore.View, request: number): Result<A, E> =>
  Effect.suspend(() => {
    const flights = flightsOf(call.store)
    const key = call.instance.key
    const pending = flights.get(key)
    if (pending !== undefined) {
      pending.joined ??= Deferred.makeUnsafe()
      return Effect.flatMap(Effect.exit(Deferred.await(pending.joined)), (exit): Result<A, E> => {
        if (Exit.isSuccess(exit)) {
          const served = exit.value as Served<A>
          // A follower got its value without loading: it counts as a hit.
          if (admissible(served.source, request, view)) return Effect.as(call.metrics.hit, served)
          return serve(call)
        }
        return Cause.hasFails(exit.cause) && Cause.squash(exit.cause) === Retry
          ? serve(call)
          : (exit as Exit.Exit<never, E | CacheStoreError>)
      })
    }
    const flight: Flight = { joined: undefined }
    flights.set(key, flight)
    return lead(call, view).pipe(
      Effect.onExit((exit) => {
        if (flights.get(key) === flight) flights.delete(key)
        if (flight.joined === undefined) return Effect.void
        return Deferred.done(
          flight.joined,
          Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
            ? Exit.fail(Retry)
            : (exit as Exit.Exit<Served<unknown>, unknown>)
        )
      })
    )
  })

/** What asking for the lease came to: a value (loaded under it, or without the store), or a reason to wait. */
type Acquired<A> = { readonly _tag: "Served"; readonly served: Served<A> } | { readonly _tag: "Busy" | "Changed" }

/** Asks for the lease; with it, loads and fills. A store failure loads without the cache. */
const acquire = <A, E, R>(
  call: Call<A, E, R>,
  view: CacheStore.View
): Effect.Effect<Acquired<A>, E | CacheStoreError, R> =>
  Effect.suspend(() => {
    const token = newToken()
    const request = ++requests
    return Effect.flatMap(
      attempt(
        call,
        call.store.lease(
          call.instance.key,
          token,
          call.sets,
          view,
          "replace",
          call.timing.leaseMillis,
          call.timing.lifeMillis
        ),
        Effect.succeed(undefined)
      ),
      (leasing): Effect.Effect<Acquired<A>, E | CacheStoreError, R> => {
        if (leasing === undefined)
          return Effect.map(loadOnly(call), (served): Acquired<A> => ({ _tag: "Served", served }))
        if (leasing._tag !== "Leased") return Effect.succeed({ _tag: leasing._tag })
        // What this load records (the stamps its lease made included). A load under a hold may read rows a write
        // is committing: nobody may join it on the strength of its lease.
        const source: Source = leasing.held
          ? { request, token: undefined, stamps: undefined }
          : { request, token, stamps: leasing.stamps }
        return Effect.andThen(
          call.metrics.miss,
          Effect.map(
            loadAndFill(call, token, leasing),
            (value): Acquired<A> => ({ _tag: "Served", served: { value, source } })
          )
        )
      }
    )
  })

/** The leader's path after a miss: take the lease and load, or wait for the caller that holds it. */
const lead = <A, E, R>(call: Call<A, E, R>, view: CacheStore.View, changes = 0): Result<A, E> =>
  view.holder !== undefined
    ? waitForHerd(call)
    : Effect.flatMap(acquire(call, view), (acquired): Result<A, E> => {
        switch (acquired._tag) {
          case "Served":
            return Effect.succeed(acquired.served)
          case "Busy":
            return waitForHerd(call)
          case "Changed":
            return changes < 2 ? relook(call, changes + 1) : loadOnly(call)
        }
      })

/** Looks again after the key changed under a lease request; a value found now is served. */
const relook = <A, E, R>(call: Call<A, E, R>, changes: number): Result<A, E> =>
  Effect.flatMap(look(call), (step): Result<A, E> => {
    switch (step._tag) {
      case "Done":
        return Effect.succeed(step.served)
      case "Miss":
        return lead(call, step.view, changes)
      default:
        return loadOnly(call)
    }
  })

/**
 * Waits for another caller's load: looks up again, `herdRetryCount` times `herdRetryInterval` apart, then less
 * and less often (every 100 ms at most, a quarter of the lease at least) while a live lease shows the load is under
 * way, up to
 * `herdMaxWait`. The value is served when it appears; when no live lease is seen (the holder failed, died or
 * never was: an expired or forged lease), or the wait is over, this caller asks for the lease, which the store
 * grants unless a live one stands; only then, past `herdMaxWait`, does it load without storing.
 */
const waitForHerd = <A, E, R>(call: Call<A, E, R>): Result<A, E> =>
  Effect.gen(function* () {
    yield* call.metrics.herdWait
    const { herdRetryCount, herdRetryInterval, herdMaxWait } = call.settings
    const quick = Duration.toMillis(herdRetryInterval)
    const slowest = Math.max(quick, Math.min(100, Math.floor(call.timing.leaseMillis / 4)))
    const deadline = (yield* Clock.currentTimeMillis) + Duration.toMillis(herdMaxWait)
    let delay = quick
    for (let polls = 1; ; polls++) {
      yield* Effect.sleep(delay)
      if (polls >= herdRetryCount) delay = Math.min(slowest, delay * 2)
      const step = yield* look(call)
      if (step._tag === "Done") return step.served
      if (step._tag !== "Miss") return yield* loadOnly(call)
      const over = (yield* Clock.currentTimeMillis) >= deadline
      if (step.view.holder !== undefined && !over) continue
      const acquired = yield* acquire(call, step.view)
      if (acquired._tag === "Served") return acquired.served
      if (over) return yield* loadOnly(call)
    }
  })

const run = <A, E, R>(
  load: Effect.Effect<A, E, R>,
  instance: Node.Instance,
  strict: boolean
): Effect.Effect<A, E | CacheStoreError, R | CacheStore.CacheStore> =>
  Effect.flatMap(CachemeConfig, (settings) => {
    if (!settings.enabled || instance.skip) return load
    return Effect.flatMap(CacheStore.CacheStore, (store) =>
      store.prefixSource === "settings" && store.prefix !== settings.prefix
        ? CacheStore.checkPrefix(store, settings)
        : Effect.map(
            serve({
              load,
              instance,
              sets: setsOf(instance),
              store,
              settings,
              timing: timingOf(instance.node, settings),
              metrics: Metrics.forNode(instance.node.name),
              strict
            }),
            (served) => served.value
          )
    ) as Effect.Effect<A, E | CacheStoreError, R | CacheStore.CacheStore>
  })

/**
 * Reads through the cache: the value of `instance` if cached, else the effect's value, stored for next time.
 * Store failures fail open (the effect runs, the failure is logged).
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Memo, Node } from "effect-cacheme"
 *
 * const UserName = Node.make("user-name", { fields: { id: Schema.Number }, value: Schema.String, ttl: "1 minute" })
 *
 * const loadName = (id: number) => Effect.succeed(`user ${id}`)
 *
 * const name = loadName(1).pipe(Memo.cached(UserName.make({ id: 1 })))
 * ```
 *
 * @category combinators
 * @since 0.1.0
 */
export const cached: {
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    instance: Node.Instance<F, V>
  ): <A extends V["Type"], E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<V["Type"], E, R | CacheStore.CacheStore>
  <A extends V["Type"], E, R, F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    self: Effect.Effect<A, E, R>,
    instance: Node.Instance<F, V>
  ): Effect.Effect<V["Type"], E, R | CacheStore.CacheStore>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, instance: Node.Instance) =>
    run(self, instance, false) as Effect.Effect<A, E, R | CacheStore.CacheStore>
)

/**
 * Like {@link cached}, but a store failure fails the effect with a `CacheStoreError` instead of failing open.
 *
 * @category combinators
 * @since 0.1.0
 */
export const cachedStrict: {
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    instance: Node.Instance<F, V>
  ): <A extends V["Type"], E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore.CacheStore>
  <A extends V["Type"], E, R, F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    self: Effect.Effect<A, E, R>,
    instance: Node.Instance<F, V>
  ): Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore.CacheStore>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, instance: Node.Instance) => run(self, instance, true))

/**
 * A cached function of a node's fields: the fields are checked against their Schema (an `InvalidFields`
 * error names the field at fault), then the effect the function returns is read through the cache.
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Memo, Node } from "effect-cacheme"
 *
 * const BookTitle = Node.make("book-title", { fields: { id: Schema.Number }, value: Schema.String })
 *
 * const getTitle = Memo.fn(BookTitle, ({ id }) => Effect.succeed(`Book ${id}`))
 *
 * const program = getTitle({ id: 7 }) // Effect<string, InvalidFields, CacheStore>
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const fn =
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema, E, R>(
    node: Node.Node<F, V>,
    f: (fields: Schema.Struct.Type<F>) => Effect.Effect<V["Type"], E, R>
  ) =>
  (fields: Schema.Struct.Type<F>): Effect.Effect<V["Type"], E | InvalidFields, R | CacheStore.CacheStore> =>
    Effect.flatMap(node.makeExit(fields), (instance) => cached(f(instance.fields), instance))

/**
 * Invalidates one entry; returns 1 when it held a value, else 0.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidate = (
  instance: Node.Instance,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore.CacheStore> => Invalidation.key(instance.key, options)

/**
 * Invalidates every entry of a node (its name is always one of its tags).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidateNode = (
  node: Node.Node,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore.CacheStore> => Invalidation.tag(node.name, options)

/**
 * Invalidates every entry carrying `tag`.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidateTag = (
  tag: string,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore.CacheStore> => Invalidation.tag(tag, options)

/**
 * Invalidates the entries whose key matches a Redis glob pattern, under the prefix only (SCAN, never KEYS).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidatePattern = (
  pattern: string,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore.CacheStore> => Invalidation.pattern(pattern, options)
