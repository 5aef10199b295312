/**
 * Building invalidation events from rows: projecting rows onto the watched columns, dropping duplicate rows,
 * whole-table events for writes whose rows are unknown, and coalescing the events of one unit of work.
 *
 * @internal
 */
import type { InvalidationEvent, WriteOperation } from "../InvalidationEvent.ts"

/** A row reduced to the watched columns of its table. */
export type CapturedRow = Readonly<Record<string, unknown>>

/** The values of `columns` in `row`; a column the row lacks reads as `undefined`. */
export const projectRow = (row: Readonly<Record<string, unknown>>, columns: ReadonlyArray<string>): CapturedRow => {
  const projected: Record<string, unknown> = {}
  for (const column of columns) projected[column] = row[column]
  return Object.freeze(projected)
}

/** A string identifying a row by its values, so that equal rows (old and new row of an unchanged update) meet. */
const rowIdentity = (row: CapturedRow): string => {
  const parts: Array<string> = []
  for (const key of Object.keys(row).sort()) parts.push(`${JSON.stringify(key)}:${valueIdentity(row[key])}`)
  return parts.join(",")
}

const valueIdentity = (value: unknown): string => {
  if (value === undefined) return "u"
  if (value === null) return "n"
  if (typeof value === "bigint") return `b${value}`
  if (typeof value === "number") return `d${value}`
  if (typeof value === "string") return `s${JSON.stringify(value)}`
  if (typeof value === "boolean") return value ? "t" : "f"
  if (value instanceof Date) return `D${value.getTime()}`
  if (value instanceof Uint8Array) return `x${Buffer.from(value).toString("hex")}`
  try {
    return `j${JSON.stringify(value, (_key, nested: unknown) => (typeof nested === "bigint" ? `${nested}n` : nested))}`
  } catch {
    return `o${String(value)}`
  }
}

/** `rows` without repeats, in order of first appearance. */
export const distinctRows = (rows: Iterable<CapturedRow>): ReadonlyArray<CapturedRow> => {
  const seen = new Set<string>()
  const distinct: Array<CapturedRow> = []
  for (const row of rows) {
    const identity = rowIdentity(row)
    if (seen.has(identity)) continue
    seen.add(identity)
    distinct.push(row)
  }
  return distinct
}

/**
 * Most rows an event carries. Past it the event is whole-table: invalidating every group of the table is then
 * cheaper than shipping and resolving each row (and the capture stops reading rows it would not use).
 */
export const MAX_EVENT_ROWS = 10_000

/**
 * The event of a write whose rows are known; none when it touched no row (a no-op update emits nothing), a
 * whole-table one past {@link MAX_EVENT_ROWS}.
 */
export const rowEvents = (
  table: string,
  operation: WriteOperation,
  rows: Iterable<CapturedRow>
): ReadonlyArray<InvalidationEvent> => {
  const distinct = distinctRows(rows)
  if (distinct.length === 0) return []
  if (distinct.length > MAX_EVENT_ROWS) return [wholeTableEvent(table, operation)]
  return [Object.freeze({ table, operation, rows: Object.freeze([...distinct]), wholeTable: false })]
}

/** The event of a write whose rows are unknown: every group of `table` must go. */
export const wholeTableEvent = (table: string, operation: WriteOperation): InvalidationEvent =>
  Object.freeze({ table, operation, rows: Object.freeze([]), wholeTable: true })

/**
 * The events of one unit of work, one per table and operation: rows are merged (each distinct row once), and a
 * whole-table event absorbs the rows of its table and operation. Order of first appearance is kept.
 */
export const coalesceEvents = (events: ReadonlyArray<InvalidationEvent>): ReadonlyArray<InvalidationEvent> => {
  if (events.length <= 1) return events
  const groups = new Map<
    string,
    { table: string; operation: WriteOperation; rows: Array<CapturedRow>; whole: boolean }
  >()
  for (const event of events) {
    const key = `${event.operation}\u0000${event.table}`
    let group = groups.get(key)
    if (group === undefined) {
      group = { table: event.table, operation: event.operation, rows: [], whole: false }
      groups.set(key, group)
    }
    group.whole ||= event.wholeTable
    if (!group.whole) group.rows.push(...event.rows)
  }
  const coalesced: Array<InvalidationEvent> = []
  for (const group of groups.values()) {
    if (group.whole) coalesced.push(wholeTableEvent(group.table, group.operation))
    else coalesced.push(...rowEvents(group.table, group.operation, group.rows))
  }
  return coalesced
}
