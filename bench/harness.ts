/**
 * Timing loops shared by the benchmarks. Every operation is timed on its own (`performance.now()` around it), so
 * a round gives both throughput (ops over the round's wall time) and a latency per operation. Under concurrency
 * the latency of one operation includes the time it queued behind the others, as a caller would see it. Each
 * round also records the CPU time of this process (user + system, every thread) per operation: the cost that
 * decides throughput once the process is busy, and a figure less shaken by other load on the machine.
 *
 * No forced GC between rounds: a full `gc()` shrinks V8's young generation back to its minimum, and the
 * allocation-heavy variants then ran 30-40% slower for the rest of the round than in a steady state.
 */
import { Effect } from "effect"

/** One measured round. */
export interface Round {
  readonly elapsedMs: number
  readonly cpuUs: number
  readonly samples: Float64Array
}

const cpuNow = () => {
  const usage = process.cpuUsage()
  return usage.user + usage.system
}

/** A row of the results: throughput is the median over rounds, latencies are over every sample of every round. */
export interface Summary {
  readonly ops: number
  readonly rounds: number
  readonly opsPerSec: number
  /** CPU time of the process per operation, in microseconds (all rounds). */
  readonly cpuUsPerOp: number
  readonly meanUs: number
  readonly p50Us: number
  readonly p99Us: number
}

/** `op(i)` for i in 0..ops-1, one after the other. */
export const sequential = async (op: (i: number) => Promise<unknown>, ops: number): Promise<Round> => {
  const samples = new Float64Array(ops)
  const cpu = cpuNow()
  const start = performance.now()
  for (let i = 0; i < ops; i++) {
    const t0 = performance.now()
    await op(i)
    samples[i] = performance.now() - t0
  }
  return { elapsedMs: performance.now() - start, cpuUs: cpuNow() - cpu, samples }
}

/** `callers` loops running at once, each doing `perCaller` operations; caller `c` always passes `c`. */
export const concurrent = async (
  op: (caller: number) => Promise<unknown>,
  callers: number,
  perCaller: number
): Promise<Round> => {
  const samples = new Float64Array(callers * perCaller)
  const caller = async (c: number) => {
    for (let i = 0; i < perCaller; i++) {
      const t0 = performance.now()
      await op(c)
      samples[c * perCaller + i] = performance.now() - t0
    }
  }
  const cpu = cpuNow()
  const start = performance.now()
  await Promise.all(Array.from({ length: callers }, (_, c) => caller(c)))
  return { elapsedMs: performance.now() - start, cpuUs: cpuNow() - cpu, samples }
}

/** {@link sequential} as one Effect program: no `runPromise` per operation. */
export const sequentialEffect = <E, R>(op: (i: number) => Effect.Effect<unknown, E, R>, ops: number) =>
  Effect.gen(function* () {
    const samples = new Float64Array(ops)
    const cpu = cpuNow()
    const start = performance.now()
    for (let i = 0; i < ops; i++) {
      const t0 = performance.now()
      yield* op(i)
      samples[i] = performance.now() - t0
    }
    return { elapsedMs: performance.now() - start, cpuUs: cpuNow() - cpu, samples } satisfies Round
  })

/** {@link concurrent} as one Effect program: `callers` fibers, each looping. */
export const concurrentEffect = <E, R>(
  op: (caller: number) => Effect.Effect<unknown, E, R>,
  callers: number,
  perCaller: number
) =>
  Effect.gen(function* () {
    const samples = new Float64Array(callers * perCaller)
    const caller = (c: number) =>
      Effect.gen(function* () {
        for (let i = 0; i < perCaller; i++) {
          const t0 = performance.now()
          yield* op(c)
          samples[c * perCaller + i] = performance.now() - t0
        }
      })
    const cpu = cpuNow()
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: callers }, (_, c) => c),
      caller,
      { concurrency: "unbounded", discard: true }
    )
    return { elapsedMs: performance.now() - start, cpuUs: cpuNow() - cpu, samples } satisfies Round
  })

/** One contender of a comparison: `run` measures one round of it. */
export interface Variant {
  readonly name: string
  readonly run: () => Promise<Round>
}

/** What {@link compare} returns: a summary per variant, and the rounds themselves for paired ratios. */
export interface Comparison {
  readonly summaries: Map<string, Summary>
  readonly rounds: Map<string, ReadonlyArray<Round>>
}

/**
 * Warms every variant up for `warmupMs` (the JIT needs tens of thousands of Effect runs to settle), then
 * measures `rounds` rounds of each, interleaved: round r runs every variant back to back, starting with
 * variant r, so that load from elsewhere on the machine hits all of them alike.
 */
export const compare = async (
  variants: ReadonlyArray<Variant>,
  options: { readonly rounds: number; readonly warmupMs: number }
): Promise<Comparison> => {
  for (const variant of variants) {
    const until = performance.now() + options.warmupMs
    do await variant.run()
    while (performance.now() < until)
  }
  const rounds = new Map<string, Array<Round>>(variants.map((variant) => [variant.name, []]))
  for (let r = 0; r < options.rounds; r++) {
    for (let v = 0; v < variants.length; v++) {
      const variant = variants[(r + v) % variants.length]!
      rounds.get(variant.name)!.push(await variant.run())
    }
  }
  return { summaries: new Map([...rounds].map(([name, measured]) => [name, summarize(measured)])), rounds }
}

/**
 * How much slower `slow` is than `base`, round by round (time per op from throughput): median, min and max
 * over rounds. Rounds run back to back, so each ratio compares two measurements taken under the same load.
 */
export const pairedRatio = (comparison: Comparison, slow: string, base: string) => {
  const a = comparison.rounds.get(slow)!
  const b = comparison.rounds.get(base)!
  const ratios = a.map((round, r) => throughput(b[r]!) / throughput(round))
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) }
}

const throughput = (round: Round) => (round.samples.length / round.elapsedMs) * 1000

const percentile = (sorted: Float64Array, p: number) =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!

const median = (values: ReadonlyArray<number>) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

export const summarize = (rounds: ReadonlyArray<Round>): Summary => {
  const total = rounds.reduce((n, round) => n + round.samples.length, 0)
  const all = new Float64Array(total)
  let offset = 0
  for (const round of rounds) {
    all.set(round.samples, offset)
    offset += round.samples.length
  }
  all.sort()
  const sum = all.reduce((s, x) => s + x, 0)
  return {
    ops: total,
    rounds: rounds.length,
    opsPerSec: median(rounds.map(throughput)),
    cpuUsPerOp: rounds.reduce((n, round) => n + round.cpuUs, 0) / total,
    meanUs: (sum / total) * 1000,
    p50Us: percentile(all, 0.5) * 1000,
    p99Us: percentile(all, 0.99) * 1000
  }
}

/** Prints rows as an aligned text table. */
export const printTable = (
  title: string,
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>
) => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")
  console.log(`\n${title}`)
  console.log(line(header))
  console.log(widths.map((w) => "-".repeat(w)).join("  "))
  for (const row of rows) console.log(line(row))
}

export const fmt = {
  ops: (n: number) => Math.round(n).toLocaleString("en-US"),
  us: (n: number) => n.toFixed(1),
  ratio: (n: number) => `${n.toFixed(2)}x`
}
