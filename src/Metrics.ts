/**
 * Effect `Metric`s of the cache, each with a `node` attribute: hits, misses, stale values served, loads,
 * herd waits (a caller found another one loading) and store errors, plus a histogram of load durations.
 * They go wherever the program's metrics go (OTLP, Prometheus through `effect/observability`), and
 * {@link stats} reads them back for the admin page.
 *
 * @since 0.1.0
 */
import { type Context, Effect, Metric } from "effect"

const counter = (name: string, description: string) => Metric.counter(name, { description, incremental: true })

/** @category metrics */
export const hits = counter("cacheme_hits", "Reads answered by a fresh cached value")
/** @category metrics */
export const misses = counter("cacheme_misses", "Reads that found no usable value")
/** @category metrics */
export const staleServed = counter("cacheme_stale_served", "Reads answered by a stale value")
/** @category metrics */
export const loads = counter("cacheme_loads", "Times the loading effect ran")
/** @category metrics */
export const herdWaits = counter("cacheme_herd_waits", "Reads that waited for another caller's load")
/** @category metrics */
export const storeErrors = counter("cacheme_store_errors", "Store commands that failed or timed out")
/** @category metrics */
export const oversized = counter(
  "cacheme_oversized",
  "Loaded values larger than maxValueBytes, returned but not stored"
)
/** @category metrics */
export const failSafeServed = counter(
  "cacheme_fail_safe_served",
  "Reads answered by a fail-safe value because the load failed or passed its soft timeout"
)
/** @category metrics */
const loadBoundaries = Metric.exponentialBoundaries({ start: 1, factor: 2, count: 14 })
/** @category metrics */
export const loadDuration = Metric.histogram("cacheme_load_duration_ms", {
  description: "How long loads took, in milliseconds",
  boundaries: loadBoundaries
})

/** The metrics of one node, with the `node` attribute applied once. */
export interface NodeMetrics {
  readonly hit: Effect.Effect<void>
  /** `hit`, done at once with the fiber's context (the one-step hit path of `Memo`). */
  readonly hitUnsafe: (context: Context.Context<never>) => void
  readonly miss: Effect.Effect<void>
  readonly stale: Effect.Effect<void>
  readonly load: Effect.Effect<void>
  readonly herdWait: Effect.Effect<void>
  readonly storeError: Effect.Effect<void>
  readonly oversized: Effect.Effect<void>
  readonly failSafe: Effect.Effect<void>
  readonly loadDuration: (millis: number) => Effect.Effect<void>
}

const byNode = new Map<string, NodeMetrics>()

/**
 * The metrics of the node named `node` (made once, then shared).
 *
 * @category constructors
 * @since 0.1.0
 */
export const forNode = (node: string): NodeMetrics => {
  let metrics = byNode.get(node)
  if (metrics === undefined) {
    // Attributes fixed at creation: `withAttributes` would copy the attribute context on every update.
    const attributes = { node }
    const ofNode = (metric: Metric.Counter<number>) =>
      Metric.counter(metric.id, { description: metric.description, incremental: true, attributes })
    const bump = (metric: Metric.Counter<number>) => Metric.update(ofNode(metric), 1)
    const hit = ofNode(hits)
    const duration = Metric.histogram(loadDuration.id, {
      description: loadDuration.description,
      boundaries: loadBoundaries,
      attributes
    })
    metrics = {
      hit: Metric.update(hit, 1),
      hitUnsafe: (context) => hit.updateUnsafe(1, context),
      miss: bump(misses),
      stale: bump(staleServed),
      load: bump(loads),
      herdWait: bump(herdWaits),
      storeError: bump(storeErrors),
      oversized: bump(oversized),
      failSafe: bump(failSafeServed),
      loadDuration: (millis) => Metric.update(duration, millis)
    }
    byNode.set(node, metrics)
  }
  return metrics
}

/**
 * The counts of one node.
 *
 * @category models
 * @since 0.1.0
 */
export interface Stats {
  readonly node: string
  readonly hits: number
  readonly misses: number
  readonly staleServed: number
  readonly loads: number
  readonly herdWaits: number
  readonly storeErrors: number
  readonly oversized: number
  /** Reads answered by a fail-safe value. */
  readonly failSafeServed: number
  /** hits + stale served over all reads; 0 without reads. */
  readonly hitRatio: number
  /** Mean load time in milliseconds; 0 without loads. */
  readonly meanLoadMillis: number
}

/**
 * Reads the counts of a node from the current metric registry.
 *
 * @category getters
 * @since 0.1.0
 */
export const stats = Effect.fnUntraced(function* (node: string) {
  const attributes = { node }
  const count = (metric: Metric.Counter<number>) =>
    Effect.map(Metric.value(Metric.withAttributes(metric, attributes)), (state) => Number(state.count))
  const [h, m, s, l, w, e, o, f] = yield* Effect.all([
    count(hits),
    count(misses),
    count(staleServed),
    count(loads),
    count(herdWaits),
    count(storeErrors),
    count(oversized),
    count(failSafeServed)
  ])
  const durations = yield* Metric.value(Metric.withAttributes(loadDuration, attributes))
  const reads = h + m + s
  const result: Stats = {
    node,
    hits: h,
    misses: m,
    staleServed: s,
    loads: l,
    herdWaits: w,
    storeErrors: e,
    oversized: o,
    failSafeServed: f,
    hitRatio: reads === 0 ? 0 : (h + s) / reads,
    meanLoadMillis: durations.count === 0 ? 0 : durations.sum / durations.count
  }
  return result
})
