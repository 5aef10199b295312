/**
 * The torture suite's judge on made-up histories: each check finds the violation it exists for, and accepts
 * the interleavings that are not violations (a read concurrent with a write may return either value; a row may
 * leave a list through a write that started before the read ended).
 */
import { assert, describe, it } from "@effect/vitest"
import { check, type CheckInput } from "./check.ts"
import type { FinalReport, HistoryRecord, ReadRecord, ReadTarget, RowState, WriteRecord } from "./history.ts"

const row = (id: number, version: number, grp = 1, title = "t1", deleted = false): RowState => ({
  id,
  version,
  grp,
  title,
  deleted,
  prevGrp: null
})

const initial: WriteRecord = {
  kind: "write",
  worker: -1,
  fiber: 0,
  seq: 0,
  start: 0,
  end: 0,
  op: "initial",
  outcome: "committed",
  states: [row(1, 1), row(2, 1)],
  counters: [],
  detail: ""
}

const write = (
  worker: number,
  seq: number,
  start: number,
  end: number,
  states: ReadonlyArray<RowState>,
  outcome: WriteRecord["outcome"] = "committed"
): WriteRecord => ({
  kind: "write",
  worker,
  fiber: 0,
  seq,
  start,
  end,
  op: "update",
  outcome,
  states,
  counters: [],
  detail: ""
})

const read = (
  worker: number,
  seq: number,
  start: number,
  end: number,
  target: ReadTarget,
  value: unknown,
  readback?: number
): ReadRecord => ({ kind: "read", worker, fiber: 0, seq, start, end, target, value, readback })

const item = (id: number, version: number | null, grp = 1, title = "t1") => ({
  id,
  row: version === null ? null : { grp, title, version },
  load: `l${Math.random()}`
})

const list = (grp: number, rows: ReadonlyArray<[number, number]>, prefix: string | null = null) => ({
  grp,
  prefix,
  rows: rows.map(([id, version]) => ({ id, title: "t1", version })),
  load: "l"
})

const clean: FinalReport = { checked: 1, cached: 1, mismatches: [], unknownKeys: [] }

const judge = (records: ReadonlyArray<HistoryRecord>, extra: Partial<CheckInput> = {}) =>
  check({
    logs: [{ worker: 0, seed: 1, records, errors: [] }],
    initial,
    final: clean,
    coldRuns: new Map(),
    ...extra
  })

describe("torture check", () => {
  it("a read that starts after another process's write resolved and returns the older version is cross-process", () => {
    const verdict = judge([write(1, 0, 10, 20, [row(1, 2)]), read(0, 0, 21, 30, { node: "item", id: 1 }, item(1, 1))])
    assert.strictEqual(verdict.counts["cross-process"], 1)
    assert.strictEqual(verdict.violations.length, 1)
  })

  it("a read concurrent with the write may return either version", () => {
    const verdict = judge([
      write(1, 0, 10, 20, [row(1, 2)]),
      read(0, 0, 15, 30, { node: "item", id: 1 }, item(1, 1)),
      read(0, 1, 16, 31, { node: "item", id: 1 }, item(1, 2))
    ])
    assert.strictEqual(verdict.violations.length, 0)
  })

  it("the writer's read-back older than its own write is read-your-writes; another fiber's is same-process", () => {
    const verdict = judge([
      write(0, 0, 10, 20, [row(1, 2)]),
      read(0, 1, 21, 30, { node: "item", id: 1 }, item(1, 1), 0),
      { ...read(0, 0, 22, 31, { node: "item", id: 1 }, item(1, 1)), fiber: 1 }
    ])
    assert.strictEqual(verdict.counts["read-your-writes"], 1)
    assert.strictEqual(verdict.counts["same-process"], 1)
  })

  it("null after an insert resolved is stale unless a delete had started before the read ended", () => {
    const inserted = write(1, 0, 10, 20, [row(7, 1)])
    assert.strictEqual(
      judge([inserted, read(0, 0, 21, 30, { node: "item", id: 7 }, item(7, null))]).counts["cross-process"],
      1
    )
    const deleted = write(1, 1, 29, 40, [row(7, 2, 1, "t1", true)])
    assert.strictEqual(
      judge([inserted, deleted, read(0, 0, 21, 30, { node: "item", id: 7 }, item(7, null))]).violations.length,
      0
    )
    // A row served after its delete resolved is stale.
    assert.strictEqual(
      judge([inserted, deleted, read(0, 0, 41, 50, { node: "item", id: 7 }, item(7, 1))]).counts["cross-process"],
      1
    )
  })

  it("a group list missing a row moved in before it started is stale, unless a later write took the row out", () => {
    const movedIn = write(1, 0, 10, 20, [{ ...row(1, 2, 2), prevGrp: 1 }])
    const missing = read(0, 0, 21, 30, { node: "group", grp: 2, prefix: null }, list(2, []))
    assert.strictEqual(judge([movedIn, missing]).counts["cross-process"], 1)
    const movedOut = write(1, 1, 25, 35, [{ ...row(1, 3, 3), prevGrp: 2 }])
    assert.strictEqual(judge([movedIn, movedOut, missing]).violations.length, 0)
    // The old list, still showing the row in group 1 after the move resolved.
    const old = read(
      0,
      1,
      21,
      30,
      { node: "group", grp: 1, prefix: null },
      list(1, [
        [1, 1],
        [2, 1]
      ])
    )
    assert.strictEqual(judge([movedIn, old]).counts["cross-process"], 1)
  })

  it("a title filter decides what a list must hold", () => {
    // Row 2 gets the title "x": the list of titles starting with "t" must no longer show it.
    const retitled = write(1, 0, 10, 20, [{ ...row(2, 2, 1, "x"), prevGrp: 1 }])
    const value = { grp: 1, prefix: "t", rows: [{ id: 1, title: "t1", version: 1 }], load: "l" }
    assert.strictEqual(
      judge([retitled, read(0, 0, 21, 30, { node: "group", grp: 1, prefix: "t" }, value)]).violations.length,
      0
    )
    const stale = { ...value, rows: [...value.rows, { id: 2, title: "t1", version: 1 }] }
    assert.strictEqual(
      judge([retitled, read(0, 0, 21, 30, { node: "group", grp: 1, prefix: "t" }, stale)]).counts["cross-process"],
      1
    )
  })

  it("a row state no committed write made (a rolled-back one) is a phantom", () => {
    const verdict = judge([
      write(1, 0, 10, 20, [row(1, 2, 1, "x")], "rolledback"),
      read(0, 0, 21, 30, { node: "item", id: 1 }, item(1, 2, 1, "x"))
    ])
    assert.strictEqual(verdict.counts.phantom, 1)
  })

  it("a value of other fields is foreign", () => {
    const verdict = judge([
      read(
        0,
        0,
        1,
        2,
        { node: "group", grp: 1, prefix: "null" },
        list(
          1,
          [
            [1, 1],
            [2, 1]
          ],
          null
        )
      ),
      read(0, 1, 1, 2, { node: "item", id: 2 }, item(1, 1))
    ])
    assert.strictEqual(verdict.counts.foreign, 2)
  })

  it("counters: a value below one written and invalidated before the read started is stale", () => {
    const incr: WriteRecord = { ...write(1, 0, 10, 20, []), op: "counter", counters: [{ k: 0, n: 5 }] }
    const value = (n: number) => ({ k: 0, n, load: "l" })
    assert.strictEqual(
      judge([incr, read(0, 0, 21, 22, { node: "counter", k: 0 }, value(4))]).counts["cross-process"],
      1
    )
    assert.strictEqual(judge([incr, read(0, 0, 21, 22, { node: "counter", k: 0 }, value(5))]).violations.length, 0)
  })

  it("membership, cold loads and the final pass", () => {
    const verdict = judge(
      [
        {
          kind: "probe",
          worker: 0,
          fiber: 0,
          seq: 0,
          start: 1,
          end: 2,
          key: "k",
          via: "tag",
          mode: "hard",
          before: "a",
          after: "a"
        },
        {
          kind: "probe",
          worker: 0,
          fiber: 0,
          seq: 1,
          start: 3,
          end: 4,
          key: "k",
          via: "tag",
          mode: "hard",
          before: "a",
          after: "b"
        },
        { kind: "cold", worker: 0, fiber: 0, seq: 2, start: 5, end: 6, phase: 0, loads: ["x"] },
        { kind: "cold", worker: 1, fiber: 0, seq: 0, start: 5, end: 6, phase: 0, loads: ["y"] }
      ],
      {
        coldRuns: new Map([[0, 2]]),
        final: {
          checked: 2,
          cached: 1,
          mismatches: [{ target: { node: "item", id: 1 }, cached: 1, fresh: 2 }],
          unknownKeys: []
        }
      }
    )
    assert.strictEqual(verdict.counts.membership, 1)
    assert.strictEqual(verdict.counts["cold-load"], 1)
    assert.strictEqual(verdict.counts.final, 1)
    assert.strictEqual(verdict.violations.length, 3)
  })
})
