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
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, Fiber, Option, Schema, Tracer } from "effect"
import { dual } from "effect/Function"
import * as CacheStore from "./CacheStore.ts"
import { CachemeConfig, type Settings } from "./CachemeConfig.ts"
import * as Codec from "./internal/codec.ts"
import { type InvalidFields, runCallback } from "./internal/fields.ts"
import { epochOfSet, familyOfGroupKey, groupSet, tagSet } from "./internal/keys.ts"
import * as LeaseKeeper from "./internal/leaseKeeper.ts"
import * as Many from "./internal/many.ts"
import { newToken } from "./internal/protocol.ts"
import * as Invalidation from "./Invalidation.ts"
import type * as InvalidNode from "./InvalidNode.ts"
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

/**
 * How a read was answered: a fresh value (`hit`), a stale one (`stale`), another caller's load in this process
 * (`joined`), this caller's load (`miss`), the fail-safe value after a failed or slow load (`failSafe`), or the
 * effect without the cache (`bypassed`: the cache is off or the node skips these fields).
 *
 * @category models
 * @since 0.2.0
 */
export type Outcome = "hit" | "stale" | "joined" | "miss" | "failSafe" | "bypassed"

interface Served<A> {
  readonly value: A
  readonly source: Source
  readonly outcome: Outcome
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

/**
 * How one node's entries live under the current settings, in millis.
 *
 * @internal
 */
export interface Timing {
  readonly staleOn: boolean
  readonly freshMillis: number | undefined
  /** How long past its freshness a stale value is served; `undefined`: as long as the entry lives. */
  readonly staleMillis: number | undefined
  /** How long past its freshness a value is kept as a fail-safe answer; `undefined`: no fail-safe. */
  readonly failSafeMillis: number | undefined
  readonly lifeMillis: number | undefined
  readonly leaseMillis: number
}

const timings = new WeakMap<Node.Node, { readonly settings: Settings; readonly timing: Timing }>()

/**
 * The timing of a node, computed once per node and settings.
 *
 * @internal
 */
export const timingOf = (node: Node.Node, settings: Settings): Timing => {
  const cached = timings.get(node)
  if (cached !== undefined && cached.settings === settings) return cached.timing
  const timing = computeTiming(node, settings)
  timings.set(node, { settings, timing })
  return timing
}

const computeTiming = (node: Node.Node, settings: Settings): Timing => {
  const ttl = node.ttl === undefined ? settings.ttl : node.ttl === null ? undefined : node.ttl
  const stale = node.stale === undefined ? settings.stale : node.stale
  const failSafeMillis = node.failSafe === undefined ? undefined : Duration.toMillis(node.failSafe.window)
  return {
    ...lifeOf(ttl === undefined ? undefined : Duration.toMillis(ttl), stale, failSafeMillis),
    leaseMillis: Math.max(1, Math.ceil(Duration.toMillis(node.leaseTtl ?? settings.leaseTtl)))
  }
}

/** How an entry fresh for `freshMillis` lives: its stale window, and kept longer for a fail-safe window. */
const lifeOf = (
  freshMillis: number | undefined,
  stale: boolean | Duration.Duration,
  failSafeMillis: number | undefined
): Omit<Timing, "leaseMillis"> => {
  const staleOn = stale !== false
  const staleMillis = !staleOn ? 0 : stale === true ? freshMillis : Duration.toMillis(stale as Duration.Duration)
  const keepMillis =
    failSafeMillis === undefined || staleMillis === undefined ? staleMillis : Math.max(staleMillis, failSafeMillis)
  return {
    staleOn,
    freshMillis,
    staleMillis,
    failSafeMillis,
    lifeMillis: freshMillis === undefined || keepMillis === undefined ? undefined : freshMillis + keepMillis
  }
}

/**
 * How long one loaded value lives: the node's timing, or for a node whose ttl is a function of the value, what
 * that function says (a throw or a bad duration fails, and the value is not stored).
 *
 * @internal
 */
export const fillTiming = (
  instance: Node.Instance,
  settings: Settings,
  timing: Timing,
  value: unknown
): Exit.Exit<{ readonly freshMillis: number | undefined; readonly lifeMillis: number | undefined }, InvalidFields> => {
  const ttlOf = instance.node.ttlOf
  if (ttlOf === undefined) return Exit.succeed(timing)
  return Exit.map(
    runCallback(
      instance.node.name,
      "ttl function",
      () => ttlOf(value, instance.fields),
      (ttl) => {
        if (ttl === undefined || ttl === null) return undefined
        const duration = Duration.fromInput(ttl as Duration.Input)
        if (Option.isNone(duration) || !Duration.isFinite(duration.value) || Duration.toMillis(duration.value) <= 0)
          return "did not return a finite duration above zero, null or undefined"
        return Duration.toMillis(duration.value) > 10 * 365 * 24 * 3600 * 1000
          ? "returned more than ten years"
          : undefined
      }
    ),
    (ttl) => {
      if (ttl === undefined) return timing
      const stale = instance.node.stale === undefined ? settings.stale : instance.node.stale
      return lifeOf(
        ttl === null ? undefined : Math.ceil(Duration.toMillis(Duration.fromInputUnsafe(ttl as Duration.Input))),
        stale,
        timing.failSafeMillis
      )
    }
  )
}

const tagSetsByNode = new WeakMap<Node.Node, CacheStore.Sets>()

/**
 * The sets (tags and groups) of an entry, in a fixed order, then those of the groups its value may name (their
 * families' tags and epochs). An entry without groups has its node's tag sets, made once per node: the same value
 * on every call, so the store can cache what it derives from it.
 *
 * @internal
 */
export const setsOf = (instance: Node.Instance): CacheStore.Sets => {
  if (instance.groups.length === 0) {
    let sets = tagSetsByNode.get(instance.node)
    if (sets === undefined) {
      sets = CacheStore.sets([...new Set([...instance.node.tags.map(tagSet), ...instance.node.valueSets])])
      tagSetsByNode.set(instance.node, sets)
    }
    return sets
  }
  const names = new Set<string>(instance.node.tags.map(tagSet))
  for (const group of instance.groups) {
    names.add(groupSet(group.key))
    for (const tag of group.group.tags) names.add(tagSet(tag))
  }
  for (const set of instance.node.valueSets) names.add(set)
  return CacheStore.sets([...names])
}

/**
 * The groups a loaded value names (`invalidatedByValue`), as the sets a fill records beyond the entry's own:
 * `undefined` for a node without; a failure when one cannot be guarded (the function threw or returned something
 * else than groups, or a group of a family the node did not declare).
 */
const valueGroupsOf = (
  instance: Node.Instance,
  value: unknown
): Exit.Exit<ReadonlyArray<string> | undefined, InvalidFields> => {
  const valueGroups = instance.node.options.invalidatedByValue
  if (valueGroups === undefined) return Exit.succeed(undefined)
  const known = new Set(setsOf(instance).names)
  const named = runCallback(
    instance.node.name,
    "invalidatedByValue",
    () => {
      const groups: unknown = valueGroups.groups(value, instance.fields)
      if (!Array.isArray(groups)) return "did not return an array of groups"
      const sets = new Set<string>()
      for (const group of groups as ReadonlyArray<Partial<InvalidNode.Instance> | undefined>) {
        if (typeof group?.key !== "string" || typeof group.group !== "object")
          return "returned something that is not a group (an InvalidNode instance)"
        const set = groupSet(group.key)
        if (!known.has(epochOfSet(set)!))
          return `named the group ${JSON.stringify(group.key)}, of the family ${JSON.stringify(familyOfGroupKey(group.key))}, which is not among its families (a group's family is its key's part before the first ":"; a default key starts with its InvalidNode's name)`
        const untagged = group.group.tags.find((tag) => !known.has(tagSet(tag)))
        if (untagged !== undefined)
          return `named the group ${JSON.stringify(group.key)}, whose tag ${JSON.stringify(untagged)} is not a tag of its families`
        if (!known.has(set)) sets.add(set)
      }
      return [...sets]
    },
    (result) => (typeof result === "string" ? result : undefined)
  )
  return named as Exit.Exit<ReadonlyArray<string>, InvalidFields>
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
  /** `Memo.refresh`: load even when a value is found, leaving it in place for stale readers meanwhile. */
  readonly refresh: boolean
  /** Whether the program has a tracer: spans of loads and fills are made only then (see `traced`). */
  readonly traced: boolean
  /** The last value seen, kept for a fail-safe answer when this caller's load fails or is slow. */
  fallback: { readonly value: A } | undefined
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
    const measured = Effect.onExit(load, () => call.metrics.loadDuration(performance.now() - start))
    return call.traced ? Effect.withSpan(measured, "cacheme.load", spanOptions(call.instance)) : measured
  })

/** Runs the effect without storing anything. */
const loadOnly = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Served<A>, E, R> =>
  Effect.suspend(() => {
    const source: Source = { request: ++requests, token: undefined, stamps: undefined }
    return Effect.andThen(
      call.metrics.load,
      Effect.map(timed(call, call.load), (value): Served<A> => ({ value, source, outcome: "miss" }))
    )
  })

/**
 * What a loaded value comes to before it is stored: the fill, or why it is not stored (`log` says so). One place
 * for the checks every fill passes (`Memo`'s and a batch's): the value Schema, `maxValueBytes`, `cacheWhen` and a
 * ttl function.
 *
 * @internal
 */
export type Storable =
  | { readonly _tag: "Store"; readonly fill: CacheStore.Fill }
  | {
      readonly _tag: "Skip"
      /** Why, in words (`Memo.set` answers it as `InvalidValue`); `undefined` when `cacheWhen` declined. */
      readonly reason: string | undefined
      readonly log: Effect.Effect<void>
    }

/** @internal */
export const storable = (
  instance: Node.Instance,
  settings: Settings,
  timing: Timing,
  metrics: Metrics.NodeMetrics,
  value: unknown,
  /** `Memo.set` stores what it is given: `cacheWhen` does not apply. */
  applyCacheWhen = true
): Storable => {
  const annotations = { node: instance.node.name, key: instance.key }
  const encoded = Codec.encode(instance.node, value)
  if (Exit.isFailure(encoded))
    return {
      _tag: "Skip",
      reason: `does not match the node's value Schema: ${Cause.pretty(encoded.cause)}`,
      log: Effect.logError("effect-cacheme: the loaded value does not match the node's value Schema; not cached").pipe(
        Effect.annotateLogs({ ...annotations, cause: Cause.pretty(encoded.cause) })
      )
    }
  // A UTF-8 byte is at most 3 per UTF-16 unit: counting bytes is only needed for values that could be too large.
  const { maxValueBytes } = settings
  const bytes = encoded.value.length > maxValueBytes / 3 ? Buffer.byteLength(encoded.value) : encoded.value.length
  if (bytes > maxValueBytes)
    return {
      _tag: "Skip",
      reason: `${bytes} bytes, more than maxValueBytes (${maxValueBytes})`,
      log: Effect.andThen(
        metrics.oversized,
        Effect.logWarning("effect-cacheme: value larger than maxValueBytes; returned, not stored").pipe(
          Effect.annotateLogs({ ...annotations, bytes, maxValueBytes })
        )
      )
    }
  const cacheWhen = applyCacheWhen ? instance.node.options.cacheWhen : undefined
  const wanted =
    cacheWhen === undefined
      ? Exit.succeed(true)
      : runCallback(instance.node.name, "cacheWhen", () => cacheWhen(value, instance.fields) === true)
  if (Exit.isSuccess(wanted) && !wanted.value) return { _tag: "Skip", reason: undefined, log: Effect.void }
  const life = Exit.isFailure(wanted)
    ? (wanted as Exit.Exit<never, InvalidFields>)
    : fillTiming(instance, settings, timing, value)
  const notCached = (cause: Cause.Cause<InvalidFields>): Storable => ({
    _tag: "Skip",
    reason: Cause.pretty(cause),
    log: Effect.logError("effect-cacheme: not cached").pipe(
      Effect.annotateLogs({ ...annotations, cause: Cause.pretty(cause) })
    )
  })
  if (Exit.isFailure(life)) return notCached(life.cause)
  const groups = valueGroupsOf(instance, value)
  if (Exit.isFailure(groups)) return notCached(groups.cause)
  const { freshMillis, lifeMillis } = life.value
  return {
    _tag: "Store",
    fill:
      groups.value === undefined || groups.value.length === 0
        ? { value: encoded.value, freshMillis, lifeMillis }
        : { value: encoded.value, freshMillis, lifeMillis, groups: groups.value }
  }
}

/** A fill in a `cacheme.fill` span (with whether it was stored) when the program has a tracer. @internal */
export const tracedFill = (
  traced: boolean,
  instance: Node.Instance,
  fill: Effect.Effect<boolean, CacheStoreError>
): Effect.Effect<boolean, CacheStoreError> =>
  traced
    ? fill.pipe(
        Effect.tap((stored) => Effect.annotateCurrentSpan("cacheme.stored", stored)),
        Effect.withSpan("cacheme.fill", spanOptions(instance))
      )
    : fill

/**
 * Loads as the lease holder, then stores the value if the lease survived and no set of the entry was
 * invalidated since the lookup. A failed load is never cached: the lease is given up (and the stamps it made
 * dropped), so the next caller loads at once.
 */
const loadThenFill = <A, E, R>(
  call: Call<A, E, R>,
  token: string,
  leased: Extract<CacheStore.Leasing, { readonly _tag: "Leased" }>
): Effect.Effect<A, E | CacheStoreError, R> => {
  const { instance, store, timing, sets } = call
  const release = Effect.ignore(store.release(instance.key, token, sets, leased.stamps, leased.created))
  return Effect.gen(function* () {
    yield* call.metrics.load
    const exit = yield* Effect.exit(
      LeaseKeeper.keeping(call.store, [{ key: instance.key, token }], timing.leaseMillis, timed(call, call.load))
    )
    if (Exit.isFailure(exit) || leased.held) {
      yield* release
      return yield* exit
    }
    const decision = storable(instance, call.settings, timing, call.metrics, exit.value)
    if (decision._tag === "Skip") {
      yield* release
      yield* decision.log
      return exit.value
    }
    yield* attempt(
      call,
      tracedFill(call.traced, instance, store.fill(instance.key, token, sets, leased.stamps, decision.fill)),
      Effect.succeed(false)
    )
    return exit.value
  }).pipe(Effect.onInterrupt(() => release))
}

/** What a lease holder's load came to: its value, or a fail-safe answer (with the request that validated it). */
interface Loaded<A> {
  readonly value: A
  readonly outcome: Outcome
  /** For a fail-safe answer: the request that found the value still in the store. */
  readonly request?: number | undefined
}

/**
 * The fail-safe answer of a failed or slow load: the value the store holds for the key *now*, if it is still
 * there (a hard invalidation removed it: no answer) and within the fail-safe window. Looked up again, never taken
 * from an earlier lookup: a value invalidated or aged out meanwhile is never served.
 */
const failSafeAnswer = <A, E, R>(call: Call<A, E, R>, why: string): Effect.Effect<Option.Option<Loaded<A>>> =>
  Effect.suspend(() => {
    const request = ++requests
    const windowMillis = call.timing.failSafeMillis ?? 0
    return Effect.flatMap(
      Effect.option(call.store.lookup(call.instance.key, call.sets, call.timing.leaseMillis, false)),
      (found): Effect.Effect<Option.Option<Loaded<A>>> => {
        if (Option.isNone(found)) return Effect.succeed(Option.none())
        const lookup = found.value
        if (lookup._tag === "Miss" || (lookup._tag === "Stale" && lookup.staleFor >= windowMillis))
          return Effect.succeed(Option.none())
        const decoded = Codec.decodeIn<A>(call.instance.node, lookup)
        if (decoded._tag !== "Value") return Effect.succeed(Option.none())
        return call.metrics.failSafe.pipe(
          Effect.andThen(
            Effect.logWarning(`effect-cacheme: ${why}; serving the fail-safe value`).pipe(
              Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key })
            )
          ),
          Effect.as(Option.some<Loaded<A>>({ value: decoded.value, outcome: "failSafe", request }))
        )
      }
    )
  })

/**
 * Loads and fills as the lease holder. For a node with a fail-safe, when a value was found too old to serve, a
 * failed load (or one slower than the soft timeout) is answered with the value the store still holds (see
 * `failSafeAnswer`); a slow load goes on in the store's scope and stores its value when it ends.
 */
const loadAndFill = <A, E, R>(
  call: Call<A, E, R>,
  token: string,
  leased: Extract<CacheStore.Leasing, { readonly _tag: "Leased" }>
): Effect.Effect<Loaded<A>, E | CacheStoreError, R> => {
  const loaded = loadThenFill(call, token, leased)
  const failSafe = call.instance.node.failSafe
  if (call.fallback === undefined || failSafe === undefined)
    return Effect.map(loaded, (value): Loaded<A> => ({ value, outcome: "miss" }))
  const settle = (exit: Exit.Exit<A, E | CacheStoreError>): Effect.Effect<Loaded<A>, E | CacheStoreError> =>
    Exit.isSuccess(exit)
      ? Effect.succeed({ value: exit.value, outcome: "miss" })
      : Cause.hasInterruptsOnly(exit.cause)
        ? (exit as Exit.Exit<never>)
        : Effect.flatMap(
            failSafeAnswer(call, `the load failed (${Cause.pretty(exit.cause).split("\n")[0]})`),
            (answer): Effect.Effect<Loaded<A>, E | CacheStoreError> =>
              Option.isSome(answer) ? Effect.succeed(answer.value) : (exit as Exit.Exit<never, E | CacheStoreError>)
          )
  if (failSafe.softTimeout === undefined) return Effect.flatMap(Effect.exit(loaded), settle)
  const softTimeout = failSafe.softTimeout
  return Effect.flatMap(Effect.forkIn(loaded, call.store.scope), (fiber) =>
    Fiber.await(fiber).pipe(
      Effect.timeoutOption(softTimeout),
      Effect.flatMap((exit) =>
        Option.isSome(exit)
          ? settle(exit.value)
          : Effect.flatMap(failSafeAnswer(call, "the load passed its soft timeout"), (answer) =>
              Option.isSome(answer) ? Effect.succeed(answer.value) : Effect.flatMap(Fiber.await(fiber), settle)
            )
      ),
      Effect.onInterrupt(() => Fiber.interrupt(fiber))
    )
  )
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
      if (leasing._tag === "Leased") yield* loadThenFill({ ...call, strict: false }, token, leasing)
    }).pipe(
      Effect.catchCause((cause) =>
        Effect.logWarning("effect-cacheme: background refresh failed").pipe(
          Effect.annotateLogs({ node: call.instance.node.name, key: call.instance.key, cause: Cause.pretty(cause) })
        )
      )
    ),
    call.store.scope
  )

/** Logs why a stored value of `instance` cannot be used: written under another Schema or version, or corrupt. @internal */
export const logUnreadable = <A>(
  instance: Node.Instance,
  decoded: Exclude<Codec.Decoded<A>, { readonly _tag: "Value" }>
): Effect.Effect<void> =>
  Effect.logWarning(
    decoded._tag === "Mismatch"
      ? `effect-cacheme: entry written under another value Schema or version (${decoded.stamp}); reloading`
      : `effect-cacheme: corrupt entry (${decoded.reason}); reloading`
  ).pipe(Effect.annotateLogs({ node: instance.node.name, key: instance.key }))

/** What a lookup found, decided: each branch one action. */
type Step<A> =
  | { readonly _tag: "Done"; readonly served: Served<A> }
  | { readonly _tag: "Unreadable" }
  | { readonly _tag: "Miss"; readonly view: CacheStore.View; readonly request: number }
  | { readonly _tag: "StoreDown" }

/**
 * Whether a value stale for `staleFor` millis is served: the entry's life bounds the stale window by itself,
 * except where a fail-safe window keeps entries longer.
 *
 * @internal
 */
export const servesStale = (timing: Timing, staleFor: number): boolean =>
  timing.staleOn &&
  (timing.failSafeMillis === undefined || timing.staleMillis === undefined || staleFor < timing.staleMillis)

/** Looks the key up and decides what the lookup means for this call. */
const look = <A, E, R>(call: Call<A, E, R>): Effect.Effect<Step<A>, CacheStoreError, R> =>
  Effect.suspend(() => {
    const request = ++requests
    return Effect.flatMap(
      attempt(
        call,
        call.store.lookup(call.instance.key, call.sets, call.timing.leaseMillis, call.instance.node.options.local),
        Effect.succeed(undefined)
      ),
      (lookup): Effect.Effect<Step<A>, never, R> => {
        // The fail-safe value is only ever the one the latest lookup found (set again below for a stale value).
        call.fallback = undefined
        if (lookup === undefined) return Effect.succeed({ _tag: "StoreDown" })
        const source: Source = { request, token: undefined, stamps: undefined }
        switch (lookup._tag) {
          case "Hit": {
            const decoded = Codec.decodeIn<A>(call.instance.node, lookup)
            if (decoded._tag === "Value")
              return Effect.as(call.metrics.hit, {
                _tag: "Done",
                served: { value: decoded.value, source, outcome: "hit" }
              })
            return Effect.as(logUnreadable(call.instance, decoded), { _tag: "Unreadable" })
          }
          case "Stale": {
            const decoded = Codec.decodeIn<A>(call.instance.node, lookup)
            if (decoded._tag === "Value" && !call.refresh && servesStale(call.timing, lookup.staleFor)) {
              const served: Step<A> = { _tag: "Done", served: { value: decoded.value, source, outcome: "stale" } }
              const answer = Effect.as(call.metrics.stale, served)
              return lookup.view.holder === undefined
                ? Effect.andThen(refreshInBackground(call, lookup.view), answer)
                : answer
            }
            // Kept (and left in place under this caller's lease) for a fail-safe answer if its load fails.
            call.fallback =
              decoded._tag === "Value" &&
              !call.refresh &&
              call.timing.failSafeMillis !== undefined &&
              lookup.staleFor < call.timing.failSafeMillis
                ? { value: decoded.value }
                : undefined
            const logged = decoded._tag === "Value" ? Effect.void : logUnreadable(call.instance, decoded)
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
          if (admissible(served.source, request, view))
            return Effect.as(call.metrics.hit, { ...served, outcome: "joined" as const })
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
type Acquired<A> =
  | { readonly _tag: "Served"; readonly served: Served<A> }
  | { readonly _tag: "Busy" | "Changed" }
  /** The lease request failed, and the caller (a herd waiter) decides what comes next. */
  | { readonly _tag: "StoreDown" }

/**
 * Asks for the lease; with it, loads and fills. A store failure loads without the cache, or for a herd waiter
 * (`waiting`) is reported (it waits on).
 */
const acquire = <A, E, R>(
  call: Call<A, E, R>,
  view: CacheStore.View,
  waiting = false
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
          // A refresh, and a load that may end in a fail-safe answer, leave the value seen in place.
          call.refresh || call.fallback !== undefined ? "keep" : "replace",
          call.timing.leaseMillis,
          call.timing.lifeMillis
        ),
        Effect.succeed(undefined)
      ),
      (leasing): Effect.Effect<Acquired<A>, E | CacheStoreError, R> => {
        if (leasing === undefined)
          return waiting
            ? Effect.succeed({ _tag: "StoreDown" })
            : Effect.map(loadOnly(call), (served): Acquired<A> => ({ _tag: "Served", served }))
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
            ({ value, outcome, request }): Acquired<A> => ({
              _tag: "Served",
              // A fail-safe answer was decided by the lookup that found it, not by the lease.
              served: {
                value,
                outcome,
                source: request === undefined ? source : { request, token: undefined, stamps: undefined }
              }
            })
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
          case "StoreDown":
            return loadOnly(call)
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
  Effect.acquireUseRelease(
    Effect.sync(() => call.store.watch?.(call.instance.key)),
    (watch) =>
      Effect.gen(function* () {
        yield* call.metrics.herdWait
        const { herdRetryCount, herdRetryInterval, herdMaxWait } = call.settings
        const quick = Duration.toMillis(herdRetryInterval)
        const slowest = Math.max(quick, Math.min(100, Math.floor(call.timing.leaseMillis / 4)))
        const started = yield* Clock.currentTimeMillis
        const deadline = started + Duration.toMillis(herdMaxWait)
        const softTimeout = call.instance.node.failSafe?.softTimeout
        const failSafeAt = softTimeout === undefined ? undefined : started + Duration.toMillis(softTimeout)
        let delay = quick
        // Re-reads, and lease requests, that could not reach the store, each in a row: a passing fault does not
        // make a waiter load beside the holder; a store that stays unreachable for `herdRetryCount` of them (or
        // past `herdMaxWait`) does, without the cache.
        let failures = 0
        let leaseFailures = 0
        const tolerated = Math.max(1, herdRetryCount)
        for (let polls = 1; ; polls++) {
          // A completion notice (the holder filled or released) ends the wait early.
          if (watch === undefined) yield* Effect.sleep(delay)
          else yield* watch.wait(delay)
          watch?.arm()
          if (polls >= herdRetryCount) delay = Math.min(slowest, delay * 2)
          const step = yield* look(call)
          if (step._tag === "Done") return step.served
          if (step._tag === "StoreDown") {
            failures++
            if (failures < tolerated && (yield* Clock.currentTimeMillis) < deadline) continue
          }
          if (step._tag !== "Miss") return yield* loadOnly(call)
          failures = 0
          const now = yield* Clock.currentTimeMillis
          // Another caller's load passed the soft timeout: the value this look found still in the store answers.
          if (
            step.view.holder !== undefined &&
            call.fallback !== undefined &&
            failSafeAt !== undefined &&
            now >= failSafeAt
          ) {
            yield* call.metrics.failSafe
            const served: Served<A> = {
              value: call.fallback.value,
              outcome: "failSafe",
              source: { request: step.request, token: undefined, stamps: undefined }
            }
            return served
          }
          const over = now >= deadline
          if (step.view.holder !== undefined && !over) continue
          const acquired = yield* acquire(call, step.view, true)
          if (acquired._tag === "Served") return acquired.served
          if (acquired._tag === "StoreDown") {
            if (++leaseFailures < tolerated && !over) continue
          } else leaseFailures = 0
          if (over || acquired._tag === "StoreDown") return yield* loadOnly(call)
        }
      }),
    (watch) => Effect.sync(() => watch?.close())
  )

/**
 * A hook (`onHit`, `onMiss`) run so that it can never fail or break the read: a failure is logged.
 *
 * @internal
 */
export const runHook = (
  instance: Node.Instance,
  hook: ((event: Node.Event<any, any>) => Effect.Effect<void, unknown>) | undefined,
  value: unknown
): Effect.Effect<void> =>
  hook === undefined
    ? Effect.void
    : Effect.suspend(() => {
        const result: unknown = hook({ node: instance.node.name, key: instance.key, fields: instance.fields, value })
        return Effect.isEffect(result)
          ? (result as Effect.Effect<void, unknown>)
          : Effect.logWarning("effect-cacheme: a read hook returned something else than an Effect; ignored")
      }).pipe(
        Effect.catchCause((cause) =>
          Cause.hasInterruptsOnly(cause)
            ? Effect.void
            : Effect.logWarning("effect-cacheme: a read hook failed").pipe(
                Effect.annotateLogs({ node: instance.node.name, key: instance.key, cause: Cause.pretty(cause) })
              )
        )
      )

/** After a read: its outcome on its span (when traced), and the node's hook for it. */
const afterRead = <A>(instance: Node.Instance, served: Served<A>, traced: boolean): Effect.Effect<void> => {
  const { onHit, onMiss } = instance.node.options
  const annotate = traced ? Effect.annotateCurrentSpan("cacheme.outcome", served.outcome) : Effect.void
  switch (served.outcome) {
    case "hit":
    case "stale":
    case "joined":
      return onHit === undefined ? annotate : Effect.andThen(annotate, runHook(instance, onHit, served.value))
    case "miss":
      return onMiss === undefined ? annotate : Effect.andThen(annotate, runHook(instance, onMiss, served.value))
    default:
      return annotate
  }
}

/**
 * Runs `f` with the store, the settings and whether the program has a tracer, all read from the context in one
 * step (a hit is a few microseconds: each step counts), in a span named `name` when it has one (a tracer other
 * than Effect's native one, e.g. `@effect/opentelemetry`'s; without one no span is made). `bypass` runs instead
 * when the cache is off or the instance skips it.
 */
const withStore = <B, E, R>(
  name: string,
  instance: Node.Instance,
  f: (store: Store, settings: Settings, traced: boolean) => Effect.Effect<B, E, R>,
  bypass: (traced: boolean) => Effect.Effect<B, E, R>
): Effect.Effect<B, E, R | CacheStore.CacheStore> =>
  Effect.contextWith((context: Context.Context<CacheStore.CacheStore>) => {
    const { traced, settings } = servicesOf(context)
    let body: Effect.Effect<B, E, R>
    if (!settings.enabled || instance.skip) body = bypass(traced)
    else {
      const store = Context.get(context, CacheStore.CacheStore)
      body =
        store.prefixSource === "settings" && store.prefix !== settings.prefix
          ? Effect.andThen(CacheStore.checkPrefix(store, settings), Effect.never)
          : f(store, settings, traced)
    }
    return traced ? Effect.withSpan(body, name, spanOptions(instance)) : body
  })

/** What a read takes from its context besides the store. */
interface Services {
  readonly traced: boolean
  readonly settings: Settings
  readonly clock: Clock.Clock
}

/**
 * Contexts never change (providing a service makes a new one), and the calls of one runtime or one program share
 * theirs: what a read takes from its context is looked up once per context.
 */
const servicesByContext = new WeakMap<Context.Context<never>, Services>()

const servicesOf = (context: Context.Context<never>): Services => {
  let found = servicesByContext.get(context)
  if (found === undefined) {
    found = {
      traced: Context.get(context, Tracer.Tracer) !== Tracer.nativeTracer,
      settings: Context.get(context, CachemeConfig),
      clock: Context.get(context, Clock.Clock)
    }
    servicesByContext.set(context, found)
  }
  return found
}

const makeCall = <A, E, R>(
  load: Effect.Effect<A, E, R>,
  instance: Node.Instance,
  store: Store,
  settings: Settings,
  strict: boolean,
  refresh: boolean,
  traced: boolean
): Call<A, E, R> => ({
  load,
  instance,
  sets: setsOf(instance),
  store,
  settings,
  timing: timingOf(instance.node, settings),
  metrics: Metrics.forNode(instance.node.name),
  strict,
  refresh,
  traced,
  fallback: undefined
})

/** The options of a span about one entry: its node and key, no stack trace captured (it costs an Error). */
const spanOptions = (instance: Node.Instance) => ({
  attributes: { "cacheme.node": instance.node.name, "cacheme.key": instance.key },
  captureStackTrace: false
})

/** What {@link hitAtOnce} returns when the read must take the full path. */
const noHit: unique symbol = Symbol.for("effect-cacheme/Memo/noHit")

/**
 * A fresh hit answered in the read's one step, when the store can tell without I/O (`hitNow`: the in-process
 * store, a tiered store's local copies): the value (from the copy's cell, decoded once), or `noHit`. It does what
 * the full path does for a hit, minus what a hit found without I/O cannot need: no span (called only without a
 * tracer), no store failure to fail open from, no load to join; the hit counter moves as on the full path. An
 * unreadable value takes the full path, which logs it and reloads.
 */
const hitAtOnce = (
  store: Store,
  instance: Node.Instance,
  settings: Settings,
  context: Context.Context<never>,
  clock: Clock.Clock
): unknown => {
  const node = instance.node
  const hot = hotOf(node)
  let found: CacheStore.Hit | undefined
  try {
    found = store.hitNow!(
      instance.key,
      instance.groups.length === 0 ? hot.sets : setsOf(instance),
      timingOf(node, settings).leaseMillis,
      node.options.local,
      clock
    )
  } catch {
    return noHit
  }
  if (found === undefined) return noHit
  let value: unknown
  const cell = found.cell
  if (hot.shares && cell !== undefined && cell.decodedBy === node) value = cell.decoded
  else {
    const decoded = Codec.decodeIn(node, found)
    if (decoded._tag !== "Value") return noHit
    value = decoded.value
  }
  hot.metrics.hitUnsafe(context)
  return value
}

/** What a hit at once needs of a node, found with one lookup. */
interface Hot {
  /** The sets of its instances without groups. */
  readonly sets: CacheStore.Sets
  readonly metrics: Metrics.NodeMetrics
  /** Whether its decoded values are handed to every hit (`Codec.reuseOf`). */
  readonly shares: boolean
}

const hotByNode = new WeakMap<Node.Node, Hot>()

const hotOf = (node: Node.Node): Hot => {
  let hot = hotByNode.get(node)
  if (hot === undefined) {
    hot = {
      sets: setsOf({ node, fields: {}, key: "", groups: [], skip: false }),
      metrics: Metrics.forNode(node.name),
      shares: Codec.reuseOf(node) === "value"
    }
    hotByNode.set(node, hot)
  }
  return hot
}

/**
 * A read through the cache; `load` makes the effect to run on a miss (called only then, once per read). It is
 * {@link withStore}'s steps written out in one closure (a hit is about a microsecond: each allocation counts).
 */
const run = <A, E, R>(
  load: () => Effect.Effect<A, E, R>,
  instance: Node.Instance,
  strict: boolean,
  refresh = false
): Effect.Effect<A, E | CacheStoreError, R | CacheStore.CacheStore> =>
  Effect.contextWith((context: Context.Context<CacheStore.CacheStore>): Effect.Effect<A, E | CacheStoreError, R> => {
    const { traced, settings, clock } = servicesOf(context)
    let body: Effect.Effect<A, E | CacheStoreError, R>
    if (!settings.enabled || instance.skip) {
      const effect = load()
      body = traced ? Effect.tap(effect, () => Effect.annotateCurrentSpan("cacheme.outcome", "bypassed")) : effect
    } else {
      const store = Context.get(context, CacheStore.CacheStore)
      if (store.prefixSource === "settings" && store.prefix !== settings.prefix)
        body = Effect.andThen(CacheStore.checkPrefix(store, settings), Effect.never)
      else {
        if (!traced && !refresh && store.hitNow !== undefined) {
          const value = hitAtOnce(store, instance, settings, context as Context.Context<never>, clock)
          if (value !== noHit) {
            const onHit = instance.node.options.onHit
            return onHit === undefined
              ? Effect.succeed(value as A)
              : Effect.as(runHook(instance, onHit, value), value as A)
          }
        }
        // The effect is made when a load runs: a read answered from the store never makes it.
        const call = makeCall(Effect.suspend(load), instance, store, settings, strict, refresh, traced)
        const served = refresh ? Effect.andThen(store.invalidate([instance.key], "soft"), serve(call)) : serve(call)
        body = Effect.flatMap(served, (served) => Effect.as(afterRead(instance, served, traced), served.value))
      }
    }
    return traced ? Effect.withSpan(body, refresh ? "cacheme.refresh" : "cacheme.read", spanOptions(instance)) : body
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
    run(() => self, instance, false) as Effect.Effect<A, E, R | CacheStore.CacheStore>
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
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, instance: Node.Instance) => run(() => self, instance, true))

/**
 * A cached function of a node's fields: the fields are checked against their Schema (an `InvalidFields`
 * error names the field at fault), then the effect the function returns is read through the cache. The function
 * is called when a value must be loaded, not on a hit.
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
  (fields: Schema.Struct.Type<F>): Effect.Effect<V["Type"], E | InvalidFields, R | CacheStore.CacheStore> => {
    const made = node.makeExit(fields)
    if (Exit.isFailure(made)) return made
    const instance = made.value
    return run(() => f(instance.fields), instance, false) as Effect.Effect<V["Type"], E, R | CacheStore.CacheStore>
  }

/**
 * A value given to {@link set} that cannot be stored: it does not match the node's value Schema, it is larger
 * than `maxValueBytes`, or the node's ttl function fails on it. Nothing was changed.
 *
 * @category errors
 * @since 0.2.0
 */
export class InvalidValue extends Schema.TaggedError<InvalidValue>()("InvalidValue", {
  node: Schema.String,
  key: Schema.String,
  message: Schema.String
}) {}

/**
 * Reads an entry without loading it: `Some` with a fresh value (or a stale one, for a node that serves stale
 * values within its window), `None` on a miss, an unreadable entry, or when the cache is off or skips the
 * instance. A store failure is a `CacheStoreError`.
 *
 * @category operations
 * @since 0.2.0
 */
export const get = <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
  instance: Node.Instance<F, V>
): Effect.Effect<Option.Option<V["Type"]>, CacheStoreError, CacheStore.CacheStore> =>
  withStore(
    "cacheme.get",
    instance,
    (store, settings) => {
      const timing = timingOf(instance.node, settings)
      return Effect.map(
        store.lookup(instance.key, setsOf(instance), timing.leaseMillis, instance.node.options.local),
        (lookup): Option.Option<V["Type"]> => {
          if (lookup._tag === "Miss" || (lookup._tag === "Stale" && !servesStale(timing, lookup.staleFor)))
            return Option.none()
          const decoded = Codec.decodeIn<V["Type"]>(instance.node, lookup)
          return decoded._tag === "Value" ? Option.some(decoded.value) : Option.none()
        }
      )
    },
    () => Effect.succeed(Option.none())
  )

/**
 * Whether the entry holds a value {@link get} would return.
 *
 * @category operations
 * @since 0.2.0
 */
export const has = (instance: Node.Instance): Effect.Effect<boolean, CacheStoreError, CacheStore.CacheStore> =>
  Effect.map(get(instance), Option.isSome)

/**
 * Stores a value for an entry, as a load would: under the key's lease, with the stamps its groups and tags have
 * now, so an invalidation that lands meanwhile wins. A load under way when `set` starts loses its lease (its
 * value, read earlier, is not stored over this one). Returns whether the value was stored: `false` when a
 * committing write holds one of the entry's sets (see `Invalidator`'s holds) or loads that started after this
 * call kept taking the key. The node's `cacheWhen` does not apply (the caller chose to store it).
 *
 * @category operations
 * @since 0.2.0
 */
export const set: {
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    value: V["Type"]
  ): (instance: Node.Instance<F, V>) => Effect.Effect<boolean, CacheStoreError | InvalidValue, CacheStore.CacheStore>
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    instance: Node.Instance<F, V>,
    value: V["Type"]
  ): Effect.Effect<boolean, CacheStoreError | InvalidValue, CacheStore.CacheStore>
} = dual(
  2,
  (
    instance: Node.Instance,
    value: unknown
  ): Effect.Effect<boolean, CacheStoreError | InvalidValue, CacheStore.CacheStore> =>
    withStore(
      "cacheme.set",
      instance,
      (store, settings) =>
        Effect.gen(function* () {
          const timing = timingOf(instance.node, settings)
          const decision = storable(instance, settings, timing, Metrics.forNode(instance.node.name), value, false)
          if (decision._tag === "Skip")
            return yield* new InvalidValue({
              node: instance.node.name,
              key: instance.key,
              message: decision.reason ?? "not storable"
            })
          const sets = setsOf(instance)
          const key = instance.key
          for (let attempt = 0; attempt < 3; attempt++) {
            let lookup = yield* store.lookup(key, sets, timing.leaseMillis, false)
            if (lookup._tag === "Hit" || lookup.view.holder !== undefined) {
              // Void the lease of a load under way (it read before this value) and drop the old value.
              yield* store.invalidate([key], "hard")
              lookup = yield* store.lookup(key, sets, timing.leaseMillis, false)
              if (lookup._tag === "Hit") continue
            }
            if (lookup.view.held) return false
            if (lookup.view.holder !== undefined) continue
            const token = newToken()
            const leasing = yield* store.lease(
              key,
              token,
              sets,
              lookup.view,
              "replace",
              timing.leaseMillis,
              decision.fill.lifeMillis
            )
            if (leasing._tag !== "Leased") continue
            if (leasing.held) {
              yield* store.release(key, token, sets, leasing.stamps, leasing.created)
              return false
            }
            return yield* store.fill(key, token, sets, leasing.stamps, decision.fill)
          }
          return false
        }),
      () => Effect.succeed(false)
    )
)

/**
 * Loads the entry again and stores the new value, even when a fresh value is cached; returns the new value.
 * The entry is first invalidated softly (a load under way loses its lease): readers of a node that serves stale
 * values keep getting the current value until the new one lands, others wait for it as on a miss. Store
 * failures surface as a `CacheStoreError`.
 *
 * @category operations
 * @since 0.2.0
 */
export const refresh: {
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    instance: Node.Instance<F, V>
  ): <A extends V["Type"], E, R>(
    self: Effect.Effect<A, E, R>
  ) => Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore.CacheStore>
  <A extends V["Type"], E, R, F extends Schema.Struct.Fields, V extends Node.ValueSchema>(
    self: Effect.Effect<A, E, R>,
    instance: Node.Instance<F, V>
  ): Effect.Effect<V["Type"], E | CacheStoreError, R | CacheStore.CacheStore>
} = dual(2, <A, E, R>(self: Effect.Effect<A, E, R>, instance: Node.Instance) => run(() => self, instance, true, true))

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

/**
 * A batch given to {@link cachedMany} that cannot be served: its instances are of several nodes (`MixedNodes`),
 * or the loader returned another number of values than it was given fields (`WrongLength`: nothing was stored,
 * every lease of the batch was given up).
 *
 * @category errors
 * @since 0.3.0
 */
export class InvalidBatch extends Schema.TaggedError<InvalidBatch>()("InvalidBatch", {
  node: Schema.String,
  reason: Schema.Literals(["MixedNodes", "WrongLength"]),
  message: Schema.String
}) {}

/**
 * Reads many entries of one node through the cache, DataLoader style: every distinct key is looked up in one
 * round trip; the misses are loaded by one call of `loader`, which receives their fields (in the order of
 * `instances`, each key once) and returns their values **in the same order, one per field** (a wrong number is an
 * {@link InvalidBatch} error, and nothing is stored). Returns the values in the order of `instances` (a repeated
 * instance gets its key's value again).
 *
 * Each key keeps the guarantees of {@link cached}: it is loaded under its own lease, with the stamps its sets had
 * before the loader ran; an invalidation that lands meanwhile refuses that key's fill (the value is returned, not
 * stored); a held set refuses only the fills of that set's keys; the value must match the node's Schema,
 * `maxValueBytes` and `cacheWhen` to be stored. Keys another caller is loading are waited for as {@link cached}
 * waits (their values are served when they land; if their holder gives up, they are loaded by one more loader
 * call). Stale values are served within the node's stale window and refreshed in the background by one loader
 * call. Store failures fail open (the loader loads every key not yet read); a failing loader fails the whole
 * batch, unless the node's fail-safe has a value, still in the store after the failure, for every key it was asked
 * for.
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Memo, Node } from "effect-cacheme"
 *
 * const UserName = Node.make("user-name-many", { fields: { id: Schema.Number }, value: Schema.String })
 *
 * // One query for every miss, e.g. `SELECT id, name FROM users WHERE id IN (...)`; rows come back in any order.
 * const loadNames = (ids: ReadonlyArray<number>) =>
 *   Effect.succeed(ids.map((id) => ({ id, name: `user ${id}` })))
 *
 * const names = Memo.cachedMany([1, 2, 3].map((id) => UserName.make({ id })), (fields) =>
 *   Effect.map(loadNames(fields.map((f) => f.id)), (rows) => {
 *     const byId = new Map(rows.map((row) => [row.id, row.name]))
 *     // One value per field, in the order given: a missing row must still have a value (or make the node's
 *     // value Schema nullable and return null).
 *     return fields.map((f) => byId.get(f.id) ?? "unknown")
 *   })
 * ) // Effect<Array<string>, InvalidBatch, CacheStore>
 * ```
 *
 * @category combinators
 * @since 0.3.0
 */
export const cachedMany = <F extends Schema.Struct.Fields, V extends Node.ValueSchema, E, R>(
  instances: ReadonlyArray<Node.Instance<F, V>>,
  loader: (fields: ReadonlyArray<Schema.Struct.Type<F>>) => Effect.Effect<ReadonlyArray<V["Type"]>, E, R>
): Effect.Effect<Array<V["Type"]>, E | InvalidBatch, R | CacheStore.CacheStore> =>
  Many.run(instances, loader, false) as Effect.Effect<Array<V["Type"]>, E | InvalidBatch, R | CacheStore.CacheStore>

/**
 * Like {@link cachedMany}, but a store failure fails the batch with a `CacheStoreError` instead of failing open.
 *
 * @category combinators
 * @since 0.3.0
 */
export const cachedManyStrict = <F extends Schema.Struct.Fields, V extends Node.ValueSchema, E, R>(
  instances: ReadonlyArray<Node.Instance<F, V>>,
  loader: (fields: ReadonlyArray<Schema.Struct.Type<F>>) => Effect.Effect<ReadonlyArray<V["Type"]>, E, R>
): Effect.Effect<Array<V["Type"]>, E | InvalidBatch | CacheStoreError, R | CacheStore.CacheStore> =>
  Many.run(instances, loader, true)

/**
 * A cached batch function of a node's fields ({@link fn} for {@link cachedMany}): each fields value is checked
 * against its Schema (an `InvalidFields` error names the first at fault), then the batch is read through the
 * cache, `loader` loading the misses.
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { Memo, Node } from "effect-cacheme"
 *
 * const BookTitle = Node.make("book-title-many", { fields: { id: Schema.Number }, value: Schema.String })
 *
 * const getTitles = Memo.fnMany(BookTitle, (fields) => Effect.succeed(fields.map(({ id }) => `Book ${id}`)))
 *
 * const program = getTitles([{ id: 1 }, { id: 2 }]) // Effect<Array<string>, InvalidBatch | InvalidFields, CacheStore>
 * ```
 *
 * @category constructors
 * @since 0.3.0
 */
export const fnMany =
  <F extends Schema.Struct.Fields, V extends Node.ValueSchema, E, R>(
    node: Node.Node<F, V>,
    loader: (fields: ReadonlyArray<Schema.Struct.Type<F>>) => Effect.Effect<ReadonlyArray<V["Type"]>, E, R>
  ) =>
  (
    fields: ReadonlyArray<Schema.Struct.Type<F>>
  ): Effect.Effect<Array<V["Type"]>, E | InvalidBatch | InvalidFields, R | CacheStore.CacheStore> =>
    Effect.flatMap(
      Effect.forEach(fields, (one) => node.makeExit(one)),
      (instances) => cachedMany(instances, loader)
    )
