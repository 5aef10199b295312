/**
 * The records a torture worker keeps of what it did, with ticks of the shared clock (a Redis INCR, so ticks of
 * all processes are totally ordered): a write's `start` is taken before its first statement and its `end` once
 * it resolved; a read's `start` before it began and its `end` once it returned.
 */

/** A row state a committed write produced. `deleted`: the row is gone (ids are never inserted twice). */
export interface RowState {
  readonly id: number
  /** The row's version after the write (versions rise by one per write, in commit order). */
  readonly version: number
  readonly grp: number
  readonly title: string
  readonly deleted: boolean
  /** The row's group before the write, when known (a move touches both). */
  readonly prevGrp: number | null
}

export interface CounterState {
  readonly k: number
  readonly n: number
}

interface Base {
  readonly worker: number
  readonly fiber: number
  /** Order within the fiber. */
  readonly seq: number
  readonly start: number
  readonly end: number
}

export type WriteOp =
  | "initial"
  | "update"
  | "move"
  | "insert"
  | "delete"
  | "raw-update"
  | "raw-delete"
  | "transaction"
  | "bulk"
  | "counter"

export interface WriteRecord extends Base {
  readonly kind: "write"
  readonly op: WriteOp
  /** `noop`: nothing matched (a lost compare-and-set); `rolledback`: by choice; `failed`: the database refused. */
  readonly outcome: "committed" | "noop" | "rolledback" | "failed"
  readonly states: ReadonlyArray<RowState>
  readonly counters: ReadonlyArray<CounterState>
  readonly detail: string
}

export type ReadTarget =
  | { readonly node: "item"; readonly id: number }
  | { readonly node: "group"; readonly grp: number; readonly prefix: string | null }
  | { readonly node: "counter"; readonly k: number }

export interface ReadRecord extends Base {
  readonly kind: "read"
  readonly target: ReadTarget
  /** The value returned (see model.ts); its `load` names the process and load that made it. */
  readonly value: any
  /** Set on the reads a writer makes right after its write resolved: the write's `seq`. */
  readonly readback: number | undefined
}

export interface InvalidateRecord extends Base {
  readonly kind: "invalidate"
  readonly target: string
  readonly mode: "hard" | "soft"
  readonly count: number
}

/** Read, invalidate one of the entry's sets (or its key), read again: the second read must not be the first. */
export interface ProbeRecord extends Base {
  readonly kind: "probe"
  readonly key: string
  readonly via: string
  readonly mode: "hard" | "soft"
  readonly before: string
  readonly after: string
}

/** The values every caller of one process got for a cold key. */
export interface ColdRecord extends Base {
  readonly kind: "cold"
  readonly phase: number
  readonly loads: ReadonlyArray<string>
}

export type HistoryRecord = WriteRecord | ReadRecord | InvalidateRecord | ProbeRecord | ColdRecord

/** What a worker's in-process tier did (tiered store runs only): its counters at the end of the run. */
export interface TierReport {
  /** Lookups answered from local copies. */
  readonly localHits: number
  /** Reads from Redis whose keys were kept, and those not kept (an invalidation came while they were in flight). */
  readonly kept: number
  readonly discarded: number
  /** Copies dropped by an invalidation message or a write of this process. */
  readonly invalidated: number
  /** Times the tier emptied itself (channel down, bound lapsed, pattern invalidation). */
  readonly flushes: number
  readonly heartbeats: number
  /** Channel sessions established (1 unless a connection dropped). */
  readonly sessions: number
  /** Lookups answered from local copies, by node name. */
  readonly byNode: Readonly<Record<string, number>>
}

export interface WorkerLog {
  readonly worker: number
  readonly seed: number
  readonly records: ReadonlyArray<HistoryRecord>
  /** Unexpected failures (not a check: these fail the run). */
  readonly errors: ReadonlyArray<string>
  /** The tier's counters, when the worker ran on the tiered store. */
  readonly tier?: TierReport | undefined
}

/** What the final pass found: each entry the cache served without loading, against a fresh SELECT. */
export interface FinalReport {
  readonly checked: number
  readonly cached: number
  readonly mismatches: ReadonlyArray<{ readonly target: ReadTarget; readonly cached: unknown; readonly fresh: unknown }>
  /** Entry keys in the store no known instance has (a key encoding that moved, say). */
  readonly unknownKeys: ReadonlyArray<string>
}

export const describeTarget = (target: ReadTarget): string =>
  target.node === "item"
    ? `item(${target.id})`
    : target.node === "group"
      ? `group(${target.grp}, ${JSON.stringify(target.prefix)})`
      : `counter(${target.k})`
