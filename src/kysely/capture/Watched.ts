/**
 * Lookups in the watched map (table -> watched columns): which written tables are watched, under the name the map
 * gives them, and the whole-table events of a write whose rows are unknown.
 *
 * Names written in SQL may differ from the map's in case (unquoted identifiers are case-insensitive in SQL), so a
 * lookup that misses exactly falls back to a case-insensitive match.
 *
 * @internal
 */
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import { wholeTableEvent } from "./Events.ts"
import type { BlindWrite } from "./RawSqlAnalysis.ts"

export type WatchedTables = ReadonlyMap<string, ReadonlyArray<string>>

export interface WatchedTable {
  /** The name as the watched map spells it. */
  readonly table: string
  readonly columns: ReadonlyArray<string>
}

export const findWatched = (watched: WatchedTables, name: string): WatchedTable | undefined => {
  const columns = watched.get(name)
  if (columns !== undefined) return { table: name, columns }
  const lower = name.toLowerCase()
  for (const [table, tableColumns] of watched) {
    if (table.toLowerCase() === lower) return { table, columns: tableColumns }
  }
  return undefined
}

/** Whole-table events for the watched tables among a blind write's tables (every watched table when unknown). */
export const blindEvents = (write: BlindWrite, watched: WatchedTables): ReadonlyArray<InvalidationEvent> => {
  const tables =
    write.tables === "every"
      ? [...watched.keys()]
      : write.tables.flatMap((name) => {
          const found = findWatched(watched, name)
          return found === undefined ? [] : [found.table]
        })
  return [...new Set(tables)].map((table) => wholeTableEvent(table, write.operation))
}
