/**
 * What the torture suite caches: one table of items, read through four nodes, and the loaders behind them.
 *
 * - `item(id)`: one row by id, or `null` (groups: the row's `TableInvalidNode` on `id`, and a plain `InvalidNode`
 *   shard `id % 3`, invalidated by hand only);
 * - `group(grp, prefix)`: the rows of a group (`TableInvalidNode` on `grp`) whose title starts with `prefix`
 *   (`null`: every row). `prefix` may be `null` or `"null"`, which an ambiguous key encoding would confuse;
 * - `counter(k)`: a counter kept in Redis, invalidated by hand through a plain `InvalidNode` after each INCR;
 * - `cold(phase)`: a key read cold by every process at once, whose loader counts its runs in Redis.
 *
 * Every value carries the fields it was loaded for (a value served to other fields is caught) and a `load` id
 * unique to the load that made it (so "the entry stopped being served" is decidable across processes).
 * Rows carry a `version` that every write raises by one under the row's lock, so versions follow commit order.
 */
import { Effect, Schema } from "effect"
import type { Redis } from "ioredis"
import { InvalidNode, Node } from "../../src/index.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"

/** Group numbers of the rows. */
export const GROUPS = [1, 2, 3, 4] as const
/** Title prefixes the group lists filter by: `null` (no filter) and `"null"` must never share an entry. */
export const PREFIXES = [null, "null", "t"] as const
/** Titles the writes give rows. */
export const TITLES = ["t1", "t2", "null", "nullx", "x"] as const
/** Counters (Redis, invalidated by hand). */
export const COUNTERS = [0, 1, 2] as const
/** Ids 1..BASE_ROWS exist at the start. */
export const BASE_ROWS = 24
/** Ids 1..HOT_ROWS are read and written more often than the others. */
export const HOT_ROWS = 4
/** Each worker inserts ids `freshId(worker, 0..FRESH_PER_WORKER-1)`, in order; nobody else does. */
export const FRESH_PER_WORKER = 12

export const freshId = (worker: number, k: number): number => 1000 + worker * 100 + k

/** A row as the table holds it. */
export interface Row {
  readonly id: number
  readonly grp: number
  readonly title: string
  readonly version: number
}

export const ItemValue = Schema.Struct({
  id: Schema.Number,
  row: Schema.NullOr(Schema.Struct({ grp: Schema.Number, title: Schema.String, version: Schema.Number })),
  load: Schema.String
})
export type ItemValue = typeof ItemValue.Type

export const GroupValue = Schema.Struct({
  grp: Schema.Number,
  prefix: Schema.NullOr(Schema.String),
  rows: Schema.Array(Schema.Struct({ id: Schema.Number, title: Schema.String, version: Schema.Number })),
  load: Schema.String
})
export type GroupValue = typeof GroupValue.Type

export const CounterValue = Schema.Struct({ k: Schema.Number, n: Schema.Number, load: Schema.String })
export type CounterValue = typeof CounterValue.Type

export const ColdValue = Schema.Struct({ phase: Schema.Number, rows: Schema.Number, load: Schema.String })

/** The DDL of the items table (integer columns: `pg` returns them as numbers). */
export const createTableSql = (table: string) =>
  `create table ${table} (id integer primary key, grp integer not null, title varchar(32) not null, version integer not null)`

/** The rows the table starts with (version 1). */
export const baseRows = (): ReadonlyArray<Row> =>
  Array.from({ length: BASE_ROWS }, (_, i) => ({
    id: i + 1,
    grp: GROUPS[i % GROUPS.length]!,
    title: TITLES[i % TITLES.length]!,
    version: 1
  }))

/** Redis keys of the suite itself (the clock, counters, barriers, loader counts), outside the store's prefix. */
export const auxKeys = (aux: string) => ({
  clock: `${aux}clock`,
  counter: (k: number) => `${aux}counter:${k}`,
  arrived: (phase: number) => `${aux}arrived:${phase}`,
  coldRuns: (phase: number) => `${aux}cold-runs:${phase}`
})

/**
 * The nodes and groups of one run (names carry the run id: nodes are process-wide and unique by name). Loads
 * pause a few milliseconds now and then, so that reads, writes and invalidations interleave with them.
 */
export const makeModel = (options: {
  readonly run: string
  readonly table: string
  readonly aux: string
  readonly redis: Redis
  /** Makes the `load` id of a value: unique to one load. */
  readonly loadId: () => string
  /**
   * Every node's `local` option: `true` opts it into a tiered store's in-process tier (the tiered run's store
   * keeps nothing by default, so the tier serves these nodes only through this option); absent, the store's default.
   */
  readonly local?: boolean | undefined
}) => {
  const { aux, loadId, local, redis, run, table } = options
  const keys = auxKeys(aux)
  const ById = TableInvalidNode.make(`tt-${run}-by-id`, { table, fields: { id: Schema.Number } })
  const ByGrp = TableInvalidNode.make(`tt-${run}-by-grp`, { table, fields: { grp: Schema.Number } })
  const Shard = InvalidNode.make(`tt-${run}-shard`, { fields: { s: Schema.Number } })
  const CounterGroup = InvalidNode.make(`tt-${run}-counter-group`, { fields: { k: Schema.Number } })
  /** A tag both row nodes carry. */
  const rowsTag = `tt-${run}-rows`

  const Item = Node.make(`tt-${run}-item`, {
    fields: { id: Schema.Number },
    value: ItemValue,
    ttl: null,
    stale: false,
    local,
    tags: [rowsTag],
    invalidatedBy: ({ id }) => [ById.make({ id }), Shard.make({ s: id % 3 })]
  })
  const Group = Node.make(`tt-${run}-group`, {
    fields: { grp: Schema.Number, prefix: Schema.NullOr(Schema.String) },
    value: GroupValue,
    ttl: null,
    stale: false,
    local,
    tags: [rowsTag],
    invalidatedBy: ({ grp }) => [ByGrp.make({ grp })]
  })
  const Counter = Node.make(`tt-${run}-counter`, {
    fields: { k: Schema.Number },
    value: CounterValue,
    ttl: null,
    stale: false,
    local,
    invalidatedBy: ({ k }) => [CounterGroup.make({ k })]
  })
  const Cold = Node.make(`tt-${run}-cold`, {
    fields: { phase: Schema.Number },
    value: ColdValue,
    ttl: null,
    stale: false,
    local
  })

  const pause = Effect.suspend(() => {
    const r = Math.random()
    // Mostly short; one load in ten is slow (20-60 ms), so that writes and invalidations land during loads that
    // other callers of the process have joined.
    return r < 0.1
      ? Effect.sleep(20 + Math.floor(Math.random() * 40))
      : r < 0.55
        ? Effect.sleep(Math.floor(Math.random() * 8))
        : Effect.void
  })

  /** The loaders, uncached: what a fresh SELECT (or GET) gives. */
  const load = {
    item: (id: number) =>
      Database.query((db) =>
        db.selectFrom(table).select(["grp", "title", "version"]).where("id", "=", id).executeTakeFirst()
      ).pipe(
        Effect.map(
          (row): ItemValue => ({
            id,
            row: row === undefined ? null : { grp: row.grp, title: row.title, version: row.version },
            load: loadId()
          })
        )
      ),
    group: (grp: number, prefix: string | null) =>
      Database.query((db) =>
        db.selectFrom(table).select(["id", "title", "version"]).where("grp", "=", grp).orderBy("id").execute()
      ).pipe(
        Effect.map(
          (rows): GroupValue => ({
            grp,
            prefix,
            // Filtered here, not with LIKE: MariaDB's collations compare case-insensitively.
            rows: rows
              .filter((row) => prefix === null || (row.title as string).startsWith(prefix))
              .map((row) => ({ id: row.id, title: row.title, version: row.version })),
            load: loadId()
          })
        )
      ),
    counter: (k: number) =>
      Effect.promise(() => redis.get(keys.counter(k))).pipe(
        Effect.map((n): CounterValue => ({ k, n: Number(n ?? 0), load: loadId() }))
      )
  }

  return {
    table,
    rowsTag,
    ById,
    ByGrp,
    Shard,
    CounterGroup,
    Item,
    Group,
    Counter,
    Cold,
    load,
    pause,
    keys
  }
}

export type Model = ReturnType<typeof makeModel>
