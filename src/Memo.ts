/**
 * Read-through caching of an effect under a node instance (cacheme's `@cacheme(node=...)`).
 *
 * - A hit is one store round trip, decoded with the node's Schema.
 * - A miss takes a lease atomically with the read; only the lease holder runs the effect, and its value is
 *   stored only while the lease is still valid: an invalidation voids the lease, so a value loaded across a
 *   concurrent invalidation is returned to its caller but never stored.
 * - Other callers wait on a `Schedule` made of the herd settings (count x interval) and read again; with
 *   stale on they get the previous value at once while one caller refreshes it in the background. When
 *   waiting runs out they run the effect themselves (without storing).
 * - Inside one process, concurrent calls for one key share one fiber's work (single-flight), and a failing
 *   load wakes every waiter with its error. Failures are never cached.
 * - Store failures fail open: the effect runs and the failure is logged and counted, bounded by the command
 *   timeout. {@link cachedStrict} surfaces them as a `CacheStoreError` instead.
 *
 * @since 0.1.0
 */
import { Cause, Deferred, Duration, Effect, Exit, Schedule, type Schema } from "effect"
import { dual } from "effect/Function"
import { CacheStore, type CacheStoreError, type ReadResult } from "./CacheStore.ts"
import { CachemeConfig, type Settings } from "./CachemeConfig.ts"
import * as Codec from "./internal/codec.ts"
import type { InvalidFields } from "./internal/fields.ts"
import { groupSet, tagSet } from "./internal/keys.ts"
import * as Invalidation from "./Invalidation.ts"
import * as Metrics from "./Metrics.ts"
import type * as Node from "./Node.ts"

/** Completes the waiters of a leader that was interrupted: they start over instead of failing. */
const Retry = Symbol.for("effect-cacheme/Memo/Retry")

/** Ends herd waiting early once a read is no longer `Busy`. */
const StillBusy = Symbol.for("effect-cacheme/Memo/StillBusy")

/** A load under way in this process; the Deferred is made only when a second caller joins. */
interface Flight {
  joined: Deferred.Deferred<unknown, unknown> | undefined
}

/** One single-flight table per store, so two stores (or two tests) never share flights. */
const flightsByStore = new WeakMap<CacheStore["Service"], Map<string, Flight>>()

const flightsOf = (store: CacheStore["Service"]) => {
  let flights = flightsByStore.get(store)
  if (flights === undefined) {
    flights = new Map()
    flightsByStore.set(store, flights)
  }
  return flights
}

const tokenPrefix = Math.random().toString(36).slice(2, 10)
let tokenCounter = 0
const newToken = () => `${tokenPrefix}${(tokenCounter++).toString(36)}`

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
    leaseMillis: Duration.toMillis(node.leaseTtl ?? settings.leaseTtl)
  }
}

const setsOf = (instance: Node.Instance): ReadonlyArray<string> => {
  const sets = new Set<string>(instance.node.tags.map(tagSet))
  for (const group of instance.groups) {
    sets.add(groupSet(group.key))
    for (const tag of group.group.tags) sets.add(tagSet(tag))
  }
  return [...sets]
}

interface Call<A, E, R> {
  readonly load: Effect.Effect<A, E, R>
  readonly instance: Node.Instance
  readonly store: CacheStore["Service"]
  readonly settings: Settings
  readonly timing: Timing
  readonly metrics: Metrics.NodeMetrics
  readonly strict: boolean
}

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

/** Runs the effect without touching the store. */
const loadOnly = <A, E, R>(call: Call<A, E, R>) => Effect.andThen(call.metrics.load, timed(call, call.load))

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

/**
 * Loads as the lease holder: registers memberships first (so a group invalidation during the load reaches
 * the key), runs the effect, then stores the value if the lease survived. A set held by a committing write
 * refuses the key: the caller still gets its value, but it is not stored.
 */
const loadAndFill = <A, E, R>(call: Call<A, E, R>, token: string): Effect.Effect<A, E | CacheStoreError, R> => {
  const { instance, store, timing } = call
  const sets = setsOf(instance)
  return Effect.gen(function* () {
    const tracked = yield* attempt(call, store.track(instance.key, sets, timing.lifeMillis), Effect.succeed(false))
    yield* call.metrics.load
    const exit = yield* Effect.exit(timed(call, call.load))
    if (Exit.isFailure(exit) || !tracked) {
      // Never cached: give the lease up so that the next caller loads at once.
      yield* Effect.ignore(store.release(instance.key, token))
      return yield* exit
    }
    const encoded = Codec.encode(instance.node, exit.value)
    if (Exit.isFailure(encoded)) {
      yield* Effect.ignore(store.release(instance.key, token))
      yield* Effect.logError(
        "effect-cacheme: the loaded value does not match the node's value Schema; not cached"
      ).pipe(Effect.annotateLogs({ node: instance.node.name, key: instance.key, cause: Cause.pretty(encoded.cause) }))
      return exit.value
    }
    yield* attempt(
      call,
      store.fill(instance.key, token, {
        value: encoded.value,
        freshMillis: timing.freshMillis,
        lifeMillis: timing.lifeMillis,
        sets
      }),
      Effect.succeed(false)
    )
    return exit.value
  }).pipe(Effect.onInterrupt(() => Effect.ignore(store.release(instance.key, token))))
}

/** Refreshes a stale entry in the store's scope; the caller has already been answered. */
const refreshInBackground = <A, E, R>(call: Call<A, E, R>, token: string) =>
  Effect.forkIn(
    loadAndFill({ ...call, strict: false }, token).pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning("effect-cacheme: background refresh failed").pipe(
          Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key, cause: Cause.pretty(cause) })
        )
      )
    ),
    call.store.scope
  )

type Outcome<A> = { readonly _tag: "Done"; readonly value: A } | { readonly _tag: "Wait" } | { readonly _tag: "Reread" }

const done = <A>(value: A): Outcome<A> => ({ _tag: "Done", value })
const wait: Outcome<never> = { _tag: "Wait" }
const reread: Outcome<never> = { _tag: "Reread" }

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

/** What a read result means for this call. */
const settle = <A, E, R>(
  call: Call<A, E, R>,
  result: ReadResult,
  token: string
): Effect.Effect<Outcome<A>, E | CacheStoreError, R> => {
  switch (result._tag) {
    case "Hit": {
      const decoded = Codec.decode<A>(call.instance.node, result.value)
      if (decoded._tag === "Value") return Effect.as(call.metrics.hit, done(decoded.value))
      // Drop the unreadable entry, then read again to take the lease and overwrite it.
      return logUnreadable(call, decoded).pipe(
        Effect.andThen(attempt(call, call.store.invalidate([call.instance.key], "hard"), Effect.succeed(0))),
        Effect.as(reread)
      )
    }
    case "Stale": {
      const decoded = Codec.decode<A>(call.instance.node, result.value)
      if (decoded._tag === "Value" && call.timing.staleOn) {
        const served = Effect.as(call.metrics.stale, done(decoded.value))
        return result.lease ? Effect.andThen(refreshInBackground(call, token), served) : served
      }
      // An unreadable stale value is overwritten by the next fill.
      const logged = decoded._tag === "Value" ? Effect.void : logUnreadable(call, decoded)
      if (!result.lease) return Effect.as(logged, wait)
      return logged.pipe(Effect.andThen(call.metrics.miss), Effect.andThen(Effect.map(loadAndFill(call, token), done)))
    }
    case "Miss":
      return Effect.andThen(call.metrics.miss, Effect.map(loadAndFill(call, token), done))
    case "Busy":
      return Effect.succeed(wait)
  }
}

/** Reads (taking the lease when free) and settles; a store failure loads without the cache. */
const readAndSettle = <A, E, R>(call: Call<A, E, R>, token: string) =>
  Effect.flatMap(
    attempt<A, ReadResult | undefined, E, R, never, never>(
      call,
      call.store.read(call.instance.key, token, call.timing.leaseMillis),
      Effect.succeed(undefined)
    ),
    (result): Effect.Effect<Outcome<A>, E | CacheStoreError, R> =>
      result === undefined ? Effect.map(loadOnly(call), done) : settle(call, result, token)
  )

/** Waits for another caller's load: re-reads on the herd schedule, then loads without storing. */
const waitForHerd = <A, E, R>(call: Call<A, E, R>, token: string): Effect.Effect<A, E | CacheStoreError, R> => {
  const { herdRetryCount, herdRetryInterval } = call.settings
  const poll = Effect.flatMap(readAndSettle(call, token), (outcome) =>
    outcome._tag === "Wait" ? Effect.fail(StillBusy) : Effect.succeed(outcome)
  )
  const schedule = Schedule.spaced(herdRetryInterval)
  return Effect.andThen(
    call.metrics.herdWait,
    herdRetryCount === 0
      ? loadOnly(call)
      : Effect.sleep(herdRetryInterval).pipe(
          Effect.andThen(
            Effect.retry(poll, { schedule, times: herdRetryCount - 1, while: (error) => error === StillBusy })
          ),
          Effect.flatMap((outcome) => (outcome._tag === "Done" ? Effect.succeed(outcome.value) : lead(call))),
          Effect.catchIf(
            (error): error is typeof StillBusy => error === StillBusy,
            () => loadOnly(call)
          )
        )
  )
}

/** The whole read-through path of the caller that leads a single-flight. */
const lead = <A, E, R>(call: Call<A, E, R>, rereads = 0): Effect.Effect<A, E | CacheStoreError, R> => {
  const token = newToken()
  return Effect.flatMap(readAndSettle(call, token), (outcome) => {
    switch (outcome._tag) {
      case "Done":
        return Effect.succeed(outcome.value)
      case "Wait":
        return waitForHerd(call, token)
      case "Reread":
        // One more read takes the lease of the dropped entry; if it is unreadable again, load without storing.
        return rereads < 1 ? lead(call, rereads + 1) : loadOnly(call)
    }
  })
}

/** Joins the flight for the key or leads a new one. */
const joinOrLead = <A, E, R>(call: Call<A, E, R>): Effect.Effect<A, E | CacheStoreError, R> =>
  Effect.suspend(() => {
    const flights = flightsOf(call.store)
    const key = call.instance.key
    const pending = flights.get(key)
    if (pending !== undefined) {
      pending.joined ??= Deferred.makeUnsafe()
      return Effect.flatMap(Effect.exit(Deferred.await(pending.joined)), (exit) =>
        Exit.isSuccess(exit)
          ? // A follower got its value without loading: it counts as a hit.
            Effect.as(call.metrics.hit, exit.value as A)
          : Cause.hasFails(exit.cause) && Cause.squash(exit.cause) === Retry
            ? joinOrLead(call)
            : (exit as Exit.Exit<never, E | CacheStoreError>)
      )
    }
    const flight: Flight = { joined: undefined }
    flights.set(key, flight)
    return lead(call).pipe(
      Effect.onExit((exit) => {
        if (flights.get(key) === flight) flights.delete(key)
        if (flight.joined === undefined) return Effect.void
        return Deferred.done(
          flight.joined,
          Exit.isFailure(exit) && Cause.hasInterruptsOnly(exit.cause)
            ? Exit.fail(Retry)
            : (exit as Exit.Exit<unknown, unknown>)
        )
      })
    )
  })

const run = <A, E, R>(
  load: Effect.Effect<A, E, R>,
  instance: Node.Instance,
  strict: boolean
): Effect.Effect<A, E | CacheStoreError, R | CacheStore> =>
  Effect.flatMap(CachemeConfig, (settings) => {
    if (!settings.enabled || instance.skip) return load
    return Effect.flatMap(CacheStore, (store) =>
      joinOrLead({
        load,
        instance,
        store,
        settings,
        timing: timingOf(instance.node, settings),
        metrics: Metrics.forNode(instance.node.name),
        strict
      })
    )
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
  ): <A extends V["Type"], E, R>(self: Effect.Effect<A, E, R>) => Effect.Effect<V["Type"], E, R | CacheStore>
  <A extends V["Type"], E, R, F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    self: Effect.Effect<A, E, R>,
    instance: Node.Instance<F, V>
  ): Effect.Effect<V["Type"], E, R | CacheStore>
} = dual(
  2,
  <A, E, R>(self: Effect.Effect<A, E, R>, instance: Node.Instance) =>
    run(self, instance, false) as Effect.Effect<A, E, R | CacheStore>
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
  ) => Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore>
  <A extends V["Type"], E, R, F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    self: Effect.Effect<A, E, R>,
    instance: Node.Instance<F, V>
  ): Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore>
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
  (fields: Schema.Struct.Type<F>): Effect.Effect<V["Type"], E | InvalidFields, R | CacheStore> =>
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
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.key(instance.key, options)

/**
 * Invalidates every entry of a node (its name is always one of its tags).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidateNode = (
  node: Node.Node,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.tag(node.name, options)

/**
 * Invalidates every entry carrying `tag`.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidateTag = (
  tag: string,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.tag(tag, options)

/**
 * Invalidates the entries whose key matches a Redis glob pattern, under the prefix only (SCAN, never KEYS).
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidatePattern = (
  pattern: string,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.pattern(pattern, options)
