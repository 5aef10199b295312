/**
 * The torture suite's judge: pure functions over the workers' histories (history.ts), the final pass and the
 * cold-key loader counts. Each invariant of "The torture suite" in docs/concepts.md is one check here:
 *
 * - `final`: every entry the cache served after the run equals a fresh SELECT (or GET);
 * - `read-your-writes`: a read a writer made right after its write resolved, of a row or group the write
 *   touched, is not older than that write;
 * - `same-process` / `cross-process`: no read that started after a write resolved (in another fiber of the same
 *   process, or in another process) is older than that write;
 * - `phantom`: every row a read returns is a state some committed write produced (never a rolled-back one);
 * - `foreign`: every value belongs to the fields it was read for (an ambiguous key would serve another's);
 * - `membership`: an entry stops being served once one of its groups, tags (or its key) is invalidated;
 * - `cold-load`: a key read cold by every process at once is loaded once, and every caller gets that load.
 *
 * "Older" is decidable because every write raises its rows' `version` by one under the row's lock (versions follow
 * commit order), ids are never inserted twice (a deleted row is the last state of its id), counters only grow,
 * and every write and read carries ticks of one shared clock. A row a read does not show (a `null` item, a row
 * missing from a group) is older than a write that resolved before the read started unless a later write that
 * took the row away (a delete, a move, a new title) had started before the read ended: such a read is accepted.
 */
import {
  type ColdRecord,
  describeTarget,
  type FinalReport,
  type HistoryRecord,
  type ProbeRecord,
  type ReadRecord,
  type RowState,
  type WorkerLog,
  type WriteRecord
} from "./history.ts"

export type Check =
  | "final"
  | "read-your-writes"
  | "same-process"
  | "cross-process"
  | "phantom"
  | "foreign"
  | "membership"
  | "cold-load"

export const CHECKS: ReadonlyArray<Check> = [
  "final",
  "read-your-writes",
  "same-process",
  "cross-process",
  "phantom",
  "foreign",
  "membership",
  "cold-load"
]

export interface Violation {
  readonly check: Check
  readonly message: string
  /** The read, probe or cold record at fault, when there is one. */
  readonly record: HistoryRecord | undefined
  /** The writes the read contradicts (resolved before it started). */
  readonly writes: ReadonlyArray<WriteRecord>
  /** Row ids whose history explains the violation. */
  readonly ids: ReadonlyArray<number>
}

export interface Verdict {
  readonly violations: ReadonlyArray<Violation>
  readonly counts: Record<Check, number>
  readonly totals: {
    readonly reads: number
    /** Reads served a value an earlier read (ended before this one started) had returned: from the store. */
    readonly served: number
    readonly readbacks: number
    readonly writes: number
    readonly committed: number
    readonly rolledback: number
    /** Writes the database refused (a deadlock, say): rolled back, no effect. */
    readonly failed: number
    readonly invalidations: number
    readonly probes: number
    readonly coldPhases: number
  }
}

interface Placed {
  readonly state: RowState
  readonly write: WriteRecord
}

const rank = (state: RowState) => (state.deleted ? Number.POSITIVE_INFINITY : state.version)

/** The category of a stale read, from the writes it contradicts: its own write first. */
const category = (read: ReadRecord, writes: ReadonlyArray<WriteRecord>): Check => {
  if (
    read.readback !== undefined &&
    writes.some((w) => w.worker === read.worker && w.fiber === read.fiber && w.seq === read.readback)
  ) {
    return "read-your-writes"
  }
  return writes.some((w) => w.worker === read.worker) ? "same-process" : "cross-process"
}

const distinct = <A>(values: ReadonlyArray<A>) => [...new Set(values)]

export interface CheckInput {
  readonly logs: ReadonlyArray<WorkerLog>
  /** The rows the table started with, as a write at tick 0. */
  readonly initial: WriteRecord
  readonly final: FinalReport
  /** Loader runs per cold phase, read from Redis after the run. */
  readonly coldRuns: ReadonlyMap<number, number>
}

export const check = (input: CheckInput): Verdict => {
  const records = input.logs.flatMap((log) => log.records)
  const writes = [input.initial, ...records.filter((r): r is WriteRecord => r.kind === "write")]
  const committed = writes.filter((w) => w.outcome === "committed")
  const reads = records.filter((r): r is ReadRecord => r.kind === "read")
  const violations: Array<Violation> = []

  // Every committed state of every row, and every counter value, with the write that made it.
  const rows = new Map<number, Array<Placed>>()
  const counters = new Map<number, Array<{ readonly n: number; readonly write: WriteRecord }>>()
  for (const write of committed) {
    for (const state of write.states) {
      const list = rows.get(state.id) ?? []
      list.push({ state, write })
      rows.set(state.id, list)
    }
    for (const counter of write.counters) {
      const list = counters.get(counter.k) ?? []
      list.push({ n: counter.n, write })
      counters.set(counter.k, list)
    }
  }
  const placed = (id: number) => rows.get(id) ?? []
  const exists = (id: number, version: number, grp: number | undefined, title: string) =>
    placed(id).some(
      ({ state }) =>
        !state.deleted && state.version === version && state.title === title && (grp === undefined || state.grp === grp)
    )

  const stale = (read: ReadRecord, contradicted: ReadonlyArray<WriteRecord>, ids: ReadonlyArray<number>, why: string) =>
    violations.push({
      check: category(read, contradicted),
      message: `${describeTarget(read.target)} read by w${read.worker}/f${read.fiber}#${read.seq} [${read.start}..${read.end}]: ${why}`,
      record: read,
      writes: distinct(contradicted),
      ids
    })

  for (const read of reads) {
    const { target, value } = read
    const resolvedBefore = (write: WriteRecord) => write.end < read.start
    const startedBefore = (write: WriteRecord) => write.start < read.end
    if (target.node === "item") {
      if (value.id !== target.id) {
        violations.push({
          check: "foreign",
          message: `item(${target.id}) returned the value of item(${value.id})`,
          record: read,
          writes: [],
          ids: [target.id]
        })
        continue
      }
      const history = placed(target.id)
      if (value.row === null) {
        // Absent: older than any present state resolved before, unless a delete had started before the end.
        if (history.some(({ state, write }) => state.deleted && startedBefore(write))) continue
        const contradicted = history.filter(({ state, write }) => !state.deleted && resolvedBefore(write))
        if (contradicted.length > 0) {
          stale(
            read,
            contradicted.map((p) => p.write),
            [target.id],
            `null, but version ${Math.max(...contradicted.map((p) => p.state.version))} had resolved`
          )
        }
        continue
      }
      const { version, grp, title } = value.row
      if (!exists(target.id, version, grp, title)) {
        violations.push({
          check: "phantom",
          message: `item(${target.id}) returned version ${version} (${grp}, ${JSON.stringify(title)}), which no committed write made`,
          record: read,
          writes: [],
          ids: [target.id]
        })
      }
      const contradicted = history.filter(({ state, write }) => rank(state) > version && resolvedBefore(write))
      if (contradicted.length > 0) {
        const newest = contradicted.reduce((a, b) => (rank(a.state) >= rank(b.state) ? a : b)).state
        stale(
          read,
          contradicted.map((p) => p.write),
          [target.id],
          `version ${version}, but ${newest.deleted ? "its delete" : `version ${newest.version}`} had resolved`
        )
      }
      continue
    }
    if (target.node === "group") {
      if (value.grp !== target.grp || value.prefix !== target.prefix) {
        violations.push({
          check: "foreign",
          message: `${describeTarget(target)} returned the value of group(${value.grp}, ${JSON.stringify(value.prefix)})`,
          record: read,
          writes: [],
          ids: []
        })
        continue
      }
      const matches = (state: RowState) =>
        !state.deleted && state.grp === target.grp && (target.prefix === null || state.title.startsWith(target.prefix))
      const shown = new Map<number, { readonly title: string; readonly version: number }>()
      for (const row of value.rows as ReadonlyArray<{ id: number; title: string; version: number }>) {
        shown.set(row.id, row)
        const fits = target.prefix === null || row.title.startsWith(target.prefix)
        if (!fits || !exists(row.id, row.version, target.grp, row.title)) {
          violations.push({
            check: "phantom",
            message: `${describeTarget(target)} listed row ${row.id} version ${row.version} (${JSON.stringify(row.title)}), which no committed write made in that group`,
            record: read,
            writes: [],
            ids: [row.id]
          })
        }
        const contradicted = placed(row.id).filter(
          ({ state, write }) => rank(state) > row.version && resolvedBefore(write)
        )
        if (contradicted.length > 0) {
          stale(
            read,
            contradicted.map((p) => p.write),
            [row.id],
            `listed row ${row.id} at version ${row.version}, but a later state had resolved`
          )
        }
      }
      for (const [id, history] of rows) {
        if (shown.has(id)) continue
        const contradicted = history.filter(
          ({ state, write }) =>
            matches(state) &&
            resolvedBefore(write) &&
            // Taken out of the list by a later write that may have committed before the load read the table.
            !history.some(
              (later) => rank(later.state) > rank(state) && !matches(later.state) && startedBefore(later.write)
            )
        )
        if (contradicted.length > 0) {
          stale(
            read,
            contradicted.map((p) => p.write),
            [id],
            `row ${id} missing, but version ${Math.max(...contradicted.map((p) => p.state.version))} (in the list) had resolved and nothing took it out`
          )
        }
      }
      continue
    }
    if (value.k !== target.k) {
      violations.push({
        check: "foreign",
        message: `counter(${target.k}) returned the value of counter(${value.k})`,
        record: read,
        writes: [],
        ids: []
      })
      continue
    }
    const contradicted = (counters.get(target.k) ?? []).filter(({ n, write }) => n > value.n && write.end < read.start)
    if (contradicted.length > 0) {
      stale(
        read,
        contradicted.map((c) => c.write),
        [],
        `counter ${value.n}, but ${Math.max(...contradicted.map((c) => c.n))} had been written and invalidated`
      )
    }
  }

  for (const probe of records.filter((r): r is ProbeRecord => r.kind === "probe")) {
    if (probe.before === probe.after) {
      violations.push({
        check: "membership",
        message: `${probe.key}: still served load ${probe.before} after ${probe.mode} invalidation of ${probe.via} resolved`,
        record: probe,
        writes: [],
        ids: []
      })
    }
  }

  const colds = records.filter((r): r is ColdRecord => r.kind === "cold")
  const phases = distinct(colds.map((c) => c.phase))
  for (const phase of phases) {
    const runs = input.coldRuns.get(phase) ?? 0
    const loads = distinct(colds.filter((c) => c.phase === phase).flatMap((c) => c.loads))
    if (runs !== 1 || loads.length !== 1) {
      violations.push({
        check: "cold-load",
        message: `cold phase ${phase}: the loader ran ${runs} times across processes; callers got ${loads.length} different loads`,
        record: colds.find((c) => c.phase === phase),
        writes: [],
        ids: []
      })
    }
  }

  for (const mismatch of input.final.mismatches) {
    violations.push({
      check: "final",
      message: `${describeTarget(mismatch.target)} cached ${JSON.stringify(mismatch.cached)}, fresh ${JSON.stringify(mismatch.fresh)}`,
      record: undefined,
      writes: [],
      ids: mismatch.target.node === "item" ? [mismatch.target.id] : []
    })
  }

  const firstReturned = new Map<string, number>()
  for (const read of reads) {
    const load = read.value.load as string
    firstReturned.set(load, Math.min(firstReturned.get(load) ?? Number.POSITIVE_INFINITY, read.end))
  }
  const served = reads.filter((read) => firstReturned.get(read.value.load)! < read.start).length

  const counts = Object.fromEntries(CHECKS.map((c) => [c, 0])) as Record<Check, number>
  for (const violation of violations) counts[violation.check]++
  return {
    violations,
    counts,
    totals: {
      reads: reads.length,
      served,
      readbacks: reads.filter((r) => r.readback !== undefined).length,
      writes: writes.length - 1,
      committed: committed.length - 1,
      rolledback: writes.filter((w) => w.outcome === "rolledback").length,
      failed: writes.filter((w) => w.outcome === "failed").length,
      invalidations: records.filter((r) => r.kind === "invalidate").length,
      probes: records.filter((r) => r.kind === "probe").length,
      coldPhases: phases.length
    }
  }
}

/** A failing run's story: the seed, the counts, and for each violation the read and its rows' histories. */
export const report = (options: {
  readonly label: string
  readonly seed: number
  readonly verdict: Verdict
  readonly logs: ReadonlyArray<WorkerLog>
  readonly initial: WriteRecord
  /** How many violations of each check to tell (2). */
  readonly limit?: number
}): string => {
  const { initial, label, logs, seed, verdict } = options
  const lines: Array<string> = [
    `[torture ${label}] FAILED, seed ${seed} (replay: CACHEME_TORTURE_SEED=${seed})`,
    `violations: ${CHECKS.map((c) => `${c} ${verdict.counts[c]}`).join(", ")}`
  ]
  const records = logs.flatMap((log) => log.records)
  const writes = [initial, ...records.filter((r): r is WriteRecord => r.kind === "write")]
  const show = (record: HistoryRecord) => {
    const { end, fiber, seq, start, worker } = record
    const at = `w${worker}/f${fiber}#${seq} [${start}..${end}]`
    switch (record.kind) {
      case "write":
        return `${at} write ${record.op} ${record.outcome} ${record.detail} -> ${JSON.stringify(record.states.map((s) => (s.deleted ? `${s.id}:deleted` : `${s.id}:v${s.version}:g${s.grp}:${s.title}`)))}${record.counters.length > 0 ? ` counters ${JSON.stringify(record.counters)}` : ""}`
      case "read":
        return `${at} read ${describeTarget(record.target)}${record.readback === undefined ? "" : ` (readback of #${record.readback})`} = ${JSON.stringify(record.value)}`
      case "invalidate":
        return `${at} invalidate ${record.target} ${record.mode} -> ${record.count}`
      case "probe":
        return `${at} probe ${record.key} via ${record.via} ${record.mode}: ${record.before} -> ${record.after}`
      case "cold":
        return `${at} cold ${record.phase}: ${JSON.stringify(record.loads)}`
    }
  }
  // The first few of each check, in the order of CHECKS: one kind of violation does not hide the others.
  const perCheck = options.limit ?? 2
  const shown = CHECKS.flatMap((c) => verdict.violations.filter((v) => v.check === c).slice(0, perCheck))
  for (const violation of shown) {
    lines.push("", `${violation.check}: ${violation.message}`)
    if (violation.record !== undefined) lines.push(`  at: ${show(violation.record)}`)
    for (const write of violation.writes.slice(0, 4)) lines.push(`  contradicts: ${show(write)}`)
    for (const id of violation.ids) {
      lines.push(`  history of row ${id}:`)
      for (const write of writes.filter((w) => w.states.some((s) => s.id === id))) lines.push(`    ${show(write)}`)
    }
    const record = violation.record
    if (record !== undefined) {
      const before = records.filter(
        (r) => r.worker === record.worker && r.fiber === record.fiber && r.seq < record.seq && r.seq >= record.seq - 6
      )
      if (before.length > 0) lines.push("  the same fiber just before:")
      for (const r of before) lines.push(`    ${show(r)}`)
    }
  }
  if (verdict.violations.length > shown.length) {
    lines.push("", `... and ${verdict.violations.length - shown.length} more`)
  }
  return lines.join("\n")
}
