/**
 * One process of the torture suite (see README.md), run by `harness.ts` with a JSON configuration as its only
 * argument. In `run` mode it starts `fibers` fibers that each do `ops` seeded operations through `Memo` and
 * `effect-cacheme/kysely` (sync mode) against one table and the shared Redis store (the Redis store, or the tiered
 * store: an in-process tier of its own in front of the shared Redis), and writes its history
 * (history.ts) to `out`. In `verify` mode (after every worker has exited) it reads every entry the run can have
 * made and compares each one the cache serves with a fresh SELECT, and writes a `FinalReport` to `out`.
 *
 * Every random choice is drawn from a seeded PRNG, a fixed number of draws per operation, so a seed replays the
 * same operations (the interleavings of processes and fibers vary from run to run).
 *
 *   node test/torture/worker.ts '<json config>'
 */
import { writeFileSync } from "node:fs"
import { isDeepStrictEqual } from "node:util"
import { Cause, Data, Effect, Exit, Fiber, Layer } from "effect"
import { Redis } from "ioredis"
import { type Dialect, MysqlDialect, PostgresDialect, sql } from "kysely"
import { createPool } from "mysql2"
import { Pool } from "pg"
import { CachemeConfig, CacheStore, InvalidNode, Memo } from "../../src/index.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"
import { type TierHandle, tierOf } from "../../src/store/Tiered.ts"
import { MariaDB, Postgres } from "../support/services.ts"
import type {
  FinalReport,
  HistoryRecord,
  ReadRecord,
  ReadTarget,
  RowState,
  TierReport,
  WorkerLog,
  WriteOp,
  WriteRecord
} from "./history.ts"
import {
  BASE_ROWS,
  COUNTERS,
  FRESH_PER_WORKER,
  freshId,
  GROUPS,
  HOT_ROWS,
  type Model,
  makeModel,
  PREFIXES,
  type Row,
  TITLES
} from "./model.ts"

export interface WorkerConfig {
  readonly mode: "run" | "verify"
  readonly dialect: "postgres" | "mariadb"
  /**
   * `redis`: `CacheStore.layerRedis`; `tiered`: `CacheStore.layerTiered`, each process with its own in-process tier
   * in front of the shared Redis (the store keeps no node by default; every node opts in with `local: true`).
   */
  readonly store: "redis" | "tiered"
  readonly redisUrl: string
  /** The store's prefix. */
  readonly prefix: string
  /** The prefix of the suite's own Redis keys (clock, counters, barriers). */
  readonly aux: string
  readonly run: string
  readonly table: string
  readonly worker: number
  readonly workers: number
  readonly fibers: number
  readonly ops: number
  readonly seed: number
  /** Before these operation indexes, fiber 0 of every worker joins a cold-key phase. */
  readonly coldAt: ReadonlyArray<number>
  /** Concurrent callers per process in a cold phase. */
  readonly coldCallers: number
  /** How long a cold load takes, in millis (longer than the herd's quick re-reads). */
  readonly coldLoadMillis: number
  /**
   * The share of operations that are cached reads (0.4 when absent); the rest of the mix keeps its proportions.
   * The tiered run reads more: a local copy is made by the second read of an entry in a process, and served from
   * the third on, until one of its keys changes.
   */
  readonly reads?: number | undefined
  /**
   * The share of the items read, invalidated and probed that are hot rows (0.3 when absent); of the rest, five in
   * seven are other base rows and two in seven fresh ids.
   */
  readonly hot?: number | undefined
  /** Where to write the WorkerLog (run) or FinalReport (verify), as JSON. */
  readonly out: string
}

/** mulberry32: the same seed makes the same choices. */
export const random = (seed: number): (() => number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** The seed of one fiber of one worker. */
export const fiberSeed = (seed: number, worker: number, fiber: number) =>
  (seed + Math.imul(worker + 1, 7919) + Math.imul(fiber + 1, 104729)) >>> 0

/** Cached values of the store, in the sense of the admin: settings that no busy host trips over. */
export const settingsFor = (prefix: string): CachemeConfig.Input => ({
  prefix,
  // A command that times out fails open, and an invalidation given up would leave a stale entry behind: the
  // suite judges the cache, not the host, so no command may time out.
  commandTimeout: "10 seconds",
  stale: false
})

const dialectOf = (name: WorkerConfig["dialect"]): Dialect =>
  name === "postgres"
    ? new PostgresDialect({
        pool: new Pool({ host: "127.0.0.1", port: Postgres.port, user: "postgres", database: "test", max: 4 })
      })
    : new MysqlDialect({ pool: createPool({ uri: MariaDB.url, connectionLimit: 4 }) })

/** A transaction's own failure: roll back (a savepoint, or the whole transaction). */
class Rollback extends Data.TaggedError("Rollback")<{ readonly where: string }> {}

const pick = <A>(values: ReadonlyArray<A>, draw: number): A => values[Math.floor(draw * values.length)]!

const escapeGlob = (literal: string): string => literal.replace(/[*?[\]\\]/g, "\\$&")

const stripLoad = (value: any) => {
  const { load: _, ...rest } = value
  return rest
}

const runWorker = (config: WorkerConfig, model: Model, redis: Redis, loadId: () => string) => {
  const { table } = model
  const records: Array<HistoryRecord> = []
  const errors: Array<string> = []
  const tick = Effect.promise(() => redis.incr(model.keys.clock))
  /** Ids this worker inserted (and has not deleted), shared by its fibers. */
  const mine: Array<number> = []
  let nextFresh = 0
  let baseDeletes = 0

  const itemFn = Memo.fn(model.Item, ({ id }) => model.load.item(id).pipe(Effect.tap(() => model.pause)))

  /** A slow loader: reads, then works 20-60 ms (a write may resolve meanwhile). */
  const slowly = Effect.suspend(() => Effect.sleep(20 + Math.floor(Math.random() * 40)))

  const readValue = (target: ReadTarget, draw: number, slow = false): Effect.Effect<any, unknown, any> => {
    const after = slow ? slowly : model.pause
    switch (target.node) {
      case "item":
        // Both spellings of a cached read: Memo.fn and Memo.cached.
        return draw < 0.5 && !slow
          ? itemFn({ id: target.id })
          : model.load.item(target.id).pipe(
              Effect.tap(() => after),
              Memo.cached(model.Item.make({ id: target.id }))
            )
      case "group":
        return model.load.group(target.grp, target.prefix).pipe(
          Effect.tap(() => after),
          Memo.cached(model.Group.make({ grp: target.grp, prefix: target.prefix }))
        )
      case "counter":
        return model.load.counter(target.k).pipe(
          Effect.tap(() => after),
          Memo.cached(model.Counter.make({ k: target.k }))
        )
    }
  }

  /** Maps a uniform draw onto the operation scale below (reads under 0.4), with `config.reads` of it reads. */
  const reads = config.reads ?? 0.4
  const hot = config.hot ?? 0.3
  const mix = (drawn: number) => (drawn < reads ? (drawn * 0.4) / reads : 0.4 + ((drawn - reads) * 0.6) / (1 - reads))

  const fiber = (f: number) =>
    Effect.gen(function* () {
      const next = random(fiberSeed(config.seed, config.worker, f))
      let seq = 0
      const base = () => ({ worker: config.worker, fiber: f, seq: seq++ })

      const read = (target: ReadTarget, draw: number, readback?: number, slow = false) =>
        Effect.gen(function* () {
          const meta = base()
          const start = yield* tick
          const value = yield* readValue(target, draw, slow)
          const end = yield* tick
          const record: ReadRecord = { kind: "read", ...meta, start, end, target, value, readback }
          records.push(record)
          return value
        })

      /** Rows 1-4 are hot (every fiber of every process reads and writes them often); fresh ids may not exist yet. */
      const pickId = (d: number, e: number) =>
        d < hot
          ? 1 + Math.floor(e * HOT_ROWS)
          : (d - hot) / (1 - hot) < 5 / 7
            ? 1 + Math.floor(e * BASE_ROWS)
            : freshId(Math.floor(e * config.workers), Math.floor(((e * config.workers) % 1) * FRESH_PER_WORKER))

      const pickTarget = (d: ReadonlyArray<number>): ReadTarget =>
        d[0]! < 0.5
          ? { node: "item", id: pickId(d[1]!, d[2]!) }
          : d[0]! < 0.88
            ? { node: "group", grp: pick(GROUPS, d[1]!), prefix: pick(PREFIXES, d[2]!) }
            : { node: "counter", k: pick(COUNTERS, d[1]!) }

      /** A row to write: one of the base rows, or one this worker inserted. */
      const writable = (d: number, e: number) =>
        mine.length > 0 && d < 0.3
          ? mine[Math.floor(e * mine.length)]!
          : d < 0.55
            ? 1 + Math.floor(e * HOT_ROWS)
            : 1 + Math.floor(e * BASE_ROWS)

      const selectRow = (id: number) =>
        Database.query((db) => db.selectFrom(table).selectAll().where("id", "=", id).executeTakeFirst()).pipe(
          Effect.map((row) => row as Row | undefined)
        )

      const state = (row: Row, prevGrp: number | null, deleted = false): RowState => ({
        id: row.id,
        version: row.version,
        grp: row.grp,
        title: row.title,
        deleted,
        prevGrp
      })

      /**
       * Runs one write, records it, and reads back what it touched once it committed. Now and then, slow reads of
       * `around` (what the write is about to touch) start in the background just before it: another request of
       * the process loading the old row while the write commits, whose load the read-back must not join.
       */
      const write = (
        op: WriteOp,
        d: ReadonlyArray<number>,
        body: Effect.Effect<
          { states: ReadonlyArray<RowState>; counters?: ReadonlyArray<{ k: number; n: number }>; detail: string },
          unknown,
          any
        >,
        around: ReadonlyArray<ReadTarget> = []
      ) =>
        Effect.gen(function* () {
          const background =
            around.length > 0 && d[8]! < 0.4
              ? yield* Effect.forkChild(
                  Effect.forEach(around, (target) => read(target, d[5]!, undefined, true), {
                    concurrency: "unbounded",
                    discard: true
                  })
                )
              : undefined
          if (background !== undefined) yield* Effect.sleep(2)
          const meta = base()
          const start = yield* tick
          const exit = yield* Effect.exit(body)
          const end = yield* tick
          let record: WriteRecord
          if (Exit.isSuccess(exit)) {
            const { counters = [], detail, states } = exit.value
            const changed = states.length > 0 || counters.length > 0
            record = {
              kind: "write",
              ...meta,
              start,
              end,
              op,
              outcome: changed ? "committed" : "noop",
              states,
              counters,
              detail
            }
          } else {
            const failure = Cause.squash(exit.cause)
            const rolledBack = failure instanceof Rollback
            if (!rolledBack && !(failure as any)?._tag?.startsWith?.("DatabaseError")) {
              errors.push(`w${config.worker}/f${f} ${op}: ${Cause.pretty(exit.cause)}`)
            }
            record = {
              kind: "write",
              ...meta,
              start,
              end,
              op,
              outcome: rolledBack ? "rolledback" : "failed",
              states: [],
              counters: [],
              detail: rolledBack ? (failure as Rollback).where : String((failure as any)?.message ?? failure)
            }
          }
          records.push(record)
          if (record.outcome === "committed") {
            // Read-your-writes: every row and group the write touched, right away.
            for (const s of record.states.slice(0, 4)) yield* read({ node: "item", id: s.id }, d[7]!, record.seq)
            const groups = new Set(record.states.flatMap((s) => (s.prevGrp === null ? [s.grp] : [s.grp, s.prevGrp])))
            for (const grp of groups) yield* read({ node: "group", grp, prefix: null }, d[7]!, record.seq)
            for (const c of record.counters) yield* read({ node: "counter", k: c.k }, d[7]!, record.seq)
          }
          if (background !== undefined) yield* Fiber.join(background)
        })

      const affected = (result: { numUpdatedRows?: bigint; numDeletedRows?: bigint; numAffectedRows?: bigint }) =>
        Number(result.numUpdatedRows ?? result.numDeletedRows ?? result.numAffectedRows ?? 0n)

      /** Single-row autocommit writes: compare-and-set on the version read just before. */
      const casUpdate = (d: ReadonlyArray<number>, id: number, move: boolean) =>
        Effect.gen(function* () {
          const row = yield* selectRow(id)
          if (row === undefined) return { states: [], detail: `${id} absent` }
          const grp = move
            ? pick(
                GROUPS.filter((g) => g !== row.grp),
                d[3]!
              )
            : row.grp
          const title = move ? row.title : pick(TITLES, d[3]!)
          const result = yield* Database.query((db) =>
            db
              .updateTable(table)
              .set({ grp, title, version: sql`version + 1` })
              .where("id", "=", id)
              .where("grp", "=", row.grp)
              .where("version", "=", row.version)
              .executeTakeFirst()
          )
          const detail = `${id} v${row.version} g${row.grp} -> g${grp} ${JSON.stringify(title)}`
          return affected(result) === 1
            ? { states: [state({ id, grp, title, version: row.version + 1 }, row.grp)], detail }
            : { states: [], detail: `${detail}: lost` }
        })

      const insert = (d: ReadonlyArray<number>) =>
        Effect.gen(function* () {
          if (nextFresh >= FRESH_PER_WORKER) return yield* casUpdate(d, writable(d[1]!, d[2]!), false)
          const id = freshId(config.worker, nextFresh++)
          const row: Row = { id, grp: pick(GROUPS, d[1]!), title: pick(TITLES, d[2]!), version: 1 }
          yield* Database.query((db) => db.insertInto(table).values(row).execute())
          mine.push(id)
          return { states: [state(row, null)], detail: `${id}` }
        })

      /** Deletes a row this worker inserted, or (a few times per worker) a base row. */
      const deleteRow = (d: ReadonlyArray<number>, raw: boolean) =>
        Effect.gen(function* () {
          const fromMine = mine.length > 0 && (d[1]! < 0.85 || baseDeletes >= 3)
          if (!fromMine && baseDeletes >= 3) return yield* casUpdate(d, writable(d[1]!, d[2]!), false)
          const id = fromMine ? mine[Math.floor(d[2]! * mine.length)]! : 1 + Math.floor(d[2]! * BASE_ROWS)
          const row = yield* selectRow(id)
          if (row === undefined) return { states: [], detail: `${id} absent` }
          const result = raw
            ? yield* Database.query((db) =>
                sql`delete from ${sql.table(table)} where id = ${id} and version = ${row.version}`.execute(db)
              )
            : yield* Database.query((db) =>
                db
                  .deleteFrom(table)
                  .where("id", "=", id)
                  .where("grp", "=", row.grp)
                  .where("version", "=", row.version)
                  .executeTakeFirst()
              )
          if (affected(result as any) !== 1) return { states: [], detail: `${id} v${row.version}: lost` }
          if (fromMine) mine.splice(mine.indexOf(id), 1)
          else baseDeletes++
          return {
            states: [state({ ...row, version: row.version + 1 }, row.grp, true)],
            detail: `${id} v${row.version}`
          }
        })

      const rawUpdate = (d: ReadonlyArray<number>, id: number) =>
        Effect.gen(function* () {
          const row = yield* selectRow(id)
          if (row === undefined) return { states: [], detail: `${id} absent` }
          const title = pick(TITLES, d[3]!)
          const result = yield* Database.query((db) =>
            sql`update ${sql.table(table)} set title = ${title}, version = version + 1 where id = ${id} and version = ${row.version}`.execute(
              db
            )
          )
          const detail = `${id} v${row.version} ${JSON.stringify(title)}`
          return affected(result as any) === 1
            ? { states: [state({ ...row, title, version: row.version + 1 }, row.grp)], detail }
            : { states: [], detail: `${detail}: lost` }
        })

      /** The rows with these ids (or in this group), locked, in id order. */
      const lockRows = (ids: ReadonlyArray<number>, grp?: number) =>
        Database.query((db) => {
          let query = db.selectFrom(table).selectAll()
          query =
            grp === undefined
              ? query.where("id", "in", ids.length > 0 ? [...ids] : [-1])
              : query.where((eb) => eb.or([eb("grp", "=", grp), eb("id", "in", ids.length > 0 ? [...ids] : [-1])]))
          return query.orderBy("id").forUpdate().execute()
        }).pipe(Effect.map((rows) => rows as unknown as ReadonlyArray<Row>))

      /** The states a transaction made: rows whose version moved, rows that appeared, rows that went. */
      const diff = (before: ReadonlyArray<Row>, after: ReadonlyArray<Row>): ReadonlyArray<RowState> => {
        const old = new Map(before.map((row) => [row.id, row]))
        const now = new Map(after.map((row) => [row.id, row]))
        const states: Array<RowState> = []
        for (const row of after) {
          const prev = old.get(row.id)
          if (prev === undefined || prev.version !== row.version) states.push(state(row, prev?.grp ?? null))
        }
        for (const row of before) {
          if (!now.has(row.id)) states.push(state({ ...row, version: row.version + 1 }, row.grp, true))
        }
        return states
      }

      /**
       * A transaction over 2-3 rows: an update, a move in a savepoint that may roll back, maybe a raw update, a
       * delete or an insert, an uncached read of its own writes (Memo inside a transaction), and a rollback of
       * the whole now and then.
       */
      const transaction = (d: ReadonlyArray<number>) =>
        Database.transaction(
          Effect.gen(function* () {
            const ids = [...new Set([writable(d[1]!, d[2]!), writable(d[2]!, d[3]!), writable(d[3]!, d[1]!)])].sort(
              (a, b) => a - b
            )
            const before = yield* lockRows(ids)
            const present = before.map((row) => row.id)
            const steps: Array<string> = []
            if (present.length > 0) {
              const id = present[0]!
              const title = pick(TITLES, d[4]!)
              yield* Database.query((db) =>
                db.updateTable(table).set({ title, version: sql`version + 1` }).where("id", "=", id).execute()
              )
              steps.push(`update ${id} ${JSON.stringify(title)}`)
            }
            if (present.length > 1) {
              const id = present[1]!
              const grp = pick(GROUPS, d[5]!)
              const undo = d[6]! < 0.4
              yield* Database.transaction(
                Effect.gen(function* () {
                  yield* Database.query((db) =>
                    db.updateTable(table).set({ grp, version: sql`version + 1` }).where("id", "=", id).execute()
                  )
                  if (undo) return yield* new Rollback({ where: "savepoint" })
                })
              ).pipe(Effect.catchTag("Rollback", () => Effect.void))
              steps.push(`savepoint: move ${id} to g${grp}${undo ? " (rolled back)" : ""}`)
            }
            const extra = d[4]!
            let inserted: number | undefined
            if (extra < 0.3 && present.length > 0) {
              const id = present[present.length - 1]!
              yield* Database.query((db) =>
                sql`update ${sql.table(table)} set title = ${"x"}, version = version + 1 where id = ${id}`.execute(db)
              )
              steps.push(`raw update ${id}`)
            } else if (extra < 0.45 && present.length > 2 && mine.includes(present[2]!)) {
              yield* Database.query((db) => db.deleteFrom(table).where("id", "=", present[2]!).execute())
              steps.push(`delete ${present[2]}`)
            } else if (extra < 0.6 && nextFresh < FRESH_PER_WORKER) {
              inserted = freshId(config.worker, nextFresh++)
              const id = inserted
              yield* Database.query((db) =>
                db
                  .insertInto(table)
                  .values({ id, grp: pick(GROUPS, d[5]!), title: "t1", version: 1 })
                  .execute()
              )
              steps.push(`insert ${inserted}`)
            }
            // Memo inside the transaction reads the database (its own writes), and must not cache what it read.
            if (present.length > 0) yield* readValue({ node: "item", id: present[0]! }, d[7]!)
            const after = yield* lockRows(inserted === undefined ? ids : [...ids, inserted])
            if (d[6]! > 0.8) return yield* new Rollback({ where: `transaction (${steps.join("; ")})` })
            return { before, after, inserted, steps }
          })
        ).pipe(
          Effect.map(({ after, before, inserted, steps }) => {
            if (inserted !== undefined) mine.push(inserted)
            const states = diff(before, after)
            for (const s of states) {
              if (s.deleted && mine.includes(s.id)) mine.splice(mine.indexOf(s.id), 1)
            }
            return { states, detail: steps.join("; ") }
          })
        )

      /** A bulk update of a whole group (a non-key WHERE), in a transaction. */
      const bulk = (d: ReadonlyArray<number>) =>
        Database.transaction(
          Effect.gen(function* () {
            const grp = pick(GROUPS, d[1]!)
            const title = pick(TITLES, d[2]!)
            const before = yield* lockRows([], grp)
            yield* Database.query((db) =>
              db.updateTable(table).set({ title, version: sql`version + 1` }).where("grp", "=", grp).execute()
            )
            const after = yield* lockRows(
              before.map((row) => row.id),
              grp
            )
            return { states: diff(before, after), detail: `g${grp} ${JSON.stringify(title)}` }
          })
        )

      const counter = (d: ReadonlyArray<number>) =>
        Effect.gen(function* () {
          const k = pick(COUNTERS, d[1]!)
          const n = yield* Effect.promise(() => redis.incr(model.keys.counter(k)))
          yield* InvalidNode.invalidate(model.CounterGroup.make({ k }), { mode: d[2]! < 0.3 ? "soft" : "hard" })
          return { states: [], counters: [{ k, n }], detail: `counter ${k} = ${n}` }
        })

      /**
       * One of the ways to invalidate what a target's entry depends on, with its name and index; `avoid` names an
       * index not to take (a probe's second round invalidates through another set than its first).
       */
      const invalidation = (target: ReadTarget, d: number, e: number, avoid?: number) => {
        const mode = e < 0.3 ? ("soft" as const) : ("hard" as const)
        const options = { mode }
        const ways: Array<[string, Effect.Effect<number, unknown, any>]> = []
        switch (target.node) {
          case "item": {
            const instance = model.Item.make({ id: target.id })
            ways.push(
              [`key ${instance.key}`, Memo.invalidate(instance, options)],
              [`group by-id ${target.id}`, InvalidNode.invalidate(model.ById.make({ id: target.id }), options)],
              [
                `group by-id ${target.id} (TableInvalidNode)`,
                TableInvalidNode.invalidate(model.ById, { id: target.id }, options)
              ],
              [`group shard ${target.id % 3}`, InvalidNode.invalidate(model.Shard.make({ s: target.id % 3 }), options)],
              [`pattern ${instance.key}`, Memo.invalidatePattern(escapeGlob(instance.key), options)],
              [`tag ${model.rowsTag}`, Memo.invalidateTag(model.rowsTag, options)],
              [`node ${model.Item.name}`, Memo.invalidateNode(model.Item, options)],
              [`table tag`, Memo.invalidateTag(TableInvalidNode.tableTag(table), options)]
            )
            break
          }
          case "group": {
            const instance = model.Group.make({ grp: target.grp, prefix: target.prefix })
            ways.push(
              [`key ${instance.key}`, Memo.invalidate(instance, options)],
              [`group by-grp ${target.grp}`, InvalidNode.invalidate(model.ByGrp.make({ grp: target.grp }), options)],
              [
                `group by-grp ${target.grp} (TableInvalidNode)`,
                TableInvalidNode.invalidate(model.ByGrp, { grp: target.grp }, options)
              ],
              [`tag ${model.rowsTag}`, Memo.invalidateTag(model.rowsTag, options)],
              [`node ${model.Group.name}`, Memo.invalidateNode(model.Group, options)],
              [`table tag`, Memo.invalidateTag(TableInvalidNode.tableTag(table), options)]
            )
            break
          }
          case "counter": {
            const instance = model.Counter.make({ k: target.k })
            ways.push(
              [`key ${instance.key}`, Memo.invalidate(instance, options)],
              [`group counter ${target.k}`, InvalidNode.invalidate(model.CounterGroup.make({ k: target.k }), options)],
              [`node ${model.Counter.name}`, Memo.invalidateNode(model.Counter, options)]
            )
            break
          }
        }
        // Tags and nodes reach every entry: rarer than keys and groups.
        let index =
          d < 0.85 ? Math.floor((d / 0.85) * Math.min(ways.length, 5)) : Math.floor(((d - 0.85) / 0.15) * ways.length)
        if (index === avoid) index = (index + 1) % ways.length
        const [name, effect] = ways[index]!
        return { name, mode, effect, index }
      }

      const invalidate = (d: ReadonlyArray<number>) =>
        Effect.gen(function* () {
          const target = pickTarget(d)
          const { effect, mode, name } = invalidation(target, d[3]!, d[4]!)
          const meta = base()
          const start = yield* tick
          const count = yield* effect
          const end = yield* tick
          records.push({ kind: "invalidate", ...meta, start, end, target: name, mode, count })
        })

      /**
       * Membership: once one of an entry's sets (or its key) is invalidated, the value read before is never served
       * again. Two rounds through two different sets: the entry read after the first may have been refilled by
       * another process while the first invalidation was under way, and must be in every set all the same.
       */
      const probe = (d: ReadonlyArray<number>) =>
        Effect.gen(function* () {
          const target = pickTarget(d)
          let before = yield* read(target, d[5]!)
          let avoid: number | undefined
          for (const [way, mode] of [
            [d[3]!, d[4]!],
            [d[6]!, d[0]!]
          ] as const) {
            const { effect, index, name } = invalidation(target, way, mode, avoid)
            avoid = index
            const meta = base()
            const start = yield* tick
            yield* effect
            const after = yield* read(target, d[5]!)
            const end = yield* tick
            records.push({
              kind: "probe",
              ...meta,
              start,
              end,
              key: JSON.stringify(target),
              via: name,
              mode: mode < 0.3 ? "soft" : "hard",
              before: before.load,
              after: after.load
            })
            before = after
          }
        })

      /** Every worker's fiber 0 reads a cold key with `coldCallers` callers at once: one load in all. */
      const cold = (phase: number) =>
        Effect.gen(function* () {
          yield* Effect.promise(() => redis.incr(model.keys.arrived(phase)))
          for (let waited = 0; ; waited++) {
            const arrived = Number(yield* Effect.promise(() => redis.get(model.keys.arrived(phase))))
            if (arrived >= config.workers) break
            if (waited > 12_000)
              return yield* Effect.die(new Error(`cold phase ${phase}: the other workers never came`))
            yield* Effect.sleep(5)
          }
          const load = Effect.gen(function* () {
            yield* Effect.promise(() => redis.incr(model.keys.coldRuns(phase)))
            const rows = yield* Database.query((db) =>
              db
                .selectFrom(table)
                .select((eb) => eb.fn.countAll().as("n"))
                .executeTakeFirstOrThrow()
            )
            yield* Effect.sleep(config.coldLoadMillis)
            return { phase, rows: Number(rows.n), load: loadId() }
          })
          const meta = base()
          const start = yield* tick
          const values = yield* Effect.all(
            Array.from({ length: config.coldCallers }, () => load.pipe(Memo.cached(model.Cold.make({ phase })))),
            { concurrency: "unbounded" }
          )
          const end = yield* tick
          records.push({ kind: "cold", ...meta, start, end, phase, loads: [...new Set(values.map((v) => v.load))] })
        })

      for (let i = 0; i < config.ops; i++) {
        const phase = config.coldAt.indexOf(i)
        if (f === 0 && phase !== -1) yield* cold(phase)
        const d = Array.from({ length: 10 }, next)
        // The last operations of a fiber only read (while other fibers and processes may still write), so the
        // final pass finds entries filled in the thick of it.
        const drawn = next()
        const op = i >= config.ops * 0.85 ? drawn * 0.4 : mix(drawn)
        const id = writable(d[1]!, d[2]!)
        const around: ReadonlyArray<ReadTarget> = [
          { node: "item", id },
          { node: "group", grp: pick(GROUPS, d[9]!), prefix: null }
        ]
        const step =
          op < 0.4
            ? read(pickTarget(d), d[5]!)
            : op < 0.47
              ? invalidate(d)
              : op < 0.52
                ? probe(d)
                : op < 0.62
                  ? write("update", d, casUpdate(d, id, false), around)
                  : op < 0.7
                    ? write("move", d, casUpdate(d, id, true), around)
                    : op < 0.75
                      ? write(
                          "insert",
                          d,
                          insert(d),
                          // The id about to be inserted (once they are all used, an insert is an update).
                          nextFresh < FRESH_PER_WORKER
                            ? [{ node: "item", id: freshId(config.worker, nextFresh) }]
                            : around
                        )
                      : op < 0.78
                        ? write("delete", d, deleteRow(d, false))
                        : op < 0.83
                          ? write(
                              d[0]! < 0.85 ? "raw-update" : "raw-delete",
                              d,
                              d[0]! < 0.85 ? rawUpdate(d, id) : deleteRow(d, true),
                              around
                            )
                          : op < 0.91
                            ? write("transaction", d, transaction(d), around)
                            : op < 0.94
                              ? write("bulk", d, bulk(d), [{ node: "group", grp: pick(GROUPS, d[1]!), prefix: null }])
                              : write("counter", d, counter(d), [{ node: "counter", k: pick(COUNTERS, d[1]!) }])
        yield* step.pipe(
          Effect.catchCause((cause) =>
            Effect.sync(() => errors.push(`w${config.worker}/f${f} op ${i}: ${Cause.pretty(cause)}`))
          )
        )
      }
    })

  return Effect.gen(function* () {
    const tier = yield* tierServing(config)
    yield* Effect.all(
      Array.from({ length: config.fibers }, (_, f) => fiber(f)),
      { concurrency: "unbounded", discard: true }
    )
    // Hold releases go out on the next turn after a write resolved: let them land before the layer closes.
    yield* Effect.sleep(200)
    const log: WorkerLog = { worker: config.worker, seed: config.seed, records, errors, tier: tierReport(tier) }
    return log
  })
}

/** The tier behind the store the workers see (`countLocalHits` wraps the tiered store). */
const tiersOf = new WeakMap<CacheStore.CacheStore["Service"], TierHandle>()

/**
 * On the tiered store, the store's tier once it serves (its channel is up and its first heartbeat came back), so
 * that the run exercises local copies from its first operation; `undefined` on the Redis store.
 */
const tierServing = (config: WorkerConfig) =>
  Effect.gen(function* () {
    if (config.store !== "tiered") return undefined
    const tier = tiersOf.get(yield* CacheStore.CacheStore)
    if (tier === undefined) return yield* Effect.die(new Error("the tiered run's store has no in-process tier"))
    for (let waited = 0; !tier.serving(); waited++) {
      if (waited > 6000) return yield* Effect.die(new Error("the in-process tier never started serving"))
      yield* Effect.sleep(5)
    }
    return tier
  })

/** Lookups answered from local copies, by node (the part of the key before its first `:`). */
const localHitsByNode = new Map<string, number>()

/**
 * The tiered store as it is, but counting which nodes' lookups its tier answered (a local hit is answered when
 * `lookup` is called, so the tier's counter moves during the call exactly when this lookup was one).
 */
const countLocalHits = <E, R>(layer: Layer.Layer<CacheStore.CacheStore, E, R>) =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const tier = tierOf(store)
      if (tier === undefined) return yield* Effect.die(new Error("the tiered run's store has no in-process tier"))
      const lookup: typeof store.lookup = (key, sets, leaseMillis, local) => {
        const before = tier.stats.localHits
        const found = store.lookup(key, sets, leaseMillis, local)
        if (tier.stats.localHits > before) {
          const node = key.slice(0, key.indexOf(":"))
          localHitsByNode.set(node, (localHitsByNode.get(node) ?? 0) + 1)
        }
        return found
      }
      const counted: CacheStore.CacheStore["Service"] = { ...store, lookup }
      tiersOf.set(counted, tier)
      return counted
    })
  ).pipe(Layer.provide(layer))

const tierReport = (tier: TierHandle | undefined): TierReport | undefined =>
  tier === undefined
    ? undefined
    : {
        localHits: tier.stats.localHits,
        kept: tier.stats.kept,
        discarded: tier.stats.discarded,
        invalidated: tier.stats.invalidated,
        flushes: tier.stats.flushes,
        heartbeats: tier.stats.heartbeats,
        sessions: tier.sessions(),
        byNode: Object.fromEntries(localHitsByNode)
      }

/**
 * The final pass: every entry the run can have made is read through the cache once; each one the cache served
 * (its loader did not run) must equal a fresh read. Then the store's keys are listed: every entry key must be
 * one of these instances' (or a cold key's).
 */
const verify = (config: WorkerConfig, model: Model) =>
  Effect.gen(function* () {
    const mismatches: Array<FinalReport["mismatches"][number]> = []
    let checked = 0
    let cached = 0
    const known = new Set<string>()
    const one = <A>(target: ReadTarget, instance: { readonly key: string }, load: Effect.Effect<A, unknown, any>) =>
      Effect.gen(function* () {
        known.add(instance.key)
        checked++
        let ran = false
        const counted = Effect.tap(load, () =>
          Effect.sync(() => {
            ran = true
          })
        )
        const value = yield* Memo.cached(counted, instance as any) as Effect.Effect<A, unknown, any>
        if (ran) return
        cached++
        const fresh = yield* load
        if (!isDeepStrictEqual(stripLoad(value), stripLoad(fresh))) mismatches.push({ target, cached: value, fresh })
      })
    const ids = [
      ...Array.from({ length: BASE_ROWS }, (_, i) => i + 1),
      ...Array.from({ length: config.workers }, (_, w) =>
        Array.from({ length: FRESH_PER_WORKER }, (_, k) => freshId(w, k))
      ).flat()
    ]
    for (const id of ids) yield* one({ node: "item", id }, model.Item.make({ id }), model.load.item(id))
    for (const grp of GROUPS) {
      for (const prefix of PREFIXES) {
        yield* one({ node: "group", grp, prefix }, model.Group.make({ grp, prefix }), model.load.group(grp, prefix))
      }
    }
    for (const k of COUNTERS) yield* one({ node: "counter", k }, model.Counter.make({ k }), model.load.counter(k))
    for (let phase = 0; phase < config.coldAt.length; phase++) known.add(model.Cold.make({ phase }).key)
    const store = yield* CacheStore.CacheStore
    const unknownKeys: Array<string> = []
    let cursor: string | undefined
    do {
      const page = yield* store.scan({ pattern: "*", cursor, count: 500 })
      for (const key of page.keys) if (!known.has(key)) unknownKeys.push(key)
      cursor = page.cursor
    } while (cursor !== "0")
    const report: FinalReport = { checked, cached, mismatches, unknownKeys }
    return report
  })

const main = async () => {
  const config = JSON.parse(process.argv[2]!) as WorkerConfig
  const redis = new Redis(config.redisUrl)
  redis.on("error", () => {})
  let loads = 0
  const loadId = () => `${config.mode === "verify" ? "verify" : `w${config.worker}`}.${loads++}`
  const tiered = config.store === "tiered"
  const model = makeModel({
    run: config.run,
    table: config.table,
    aux: config.aux,
    redis,
    loadId,
    local: tiered ? true : undefined
  })
  const store = tiered
    ? // The store's default keeps nothing (`only`), so what the tier serves it serves through the nodes' own
      // opt-in; the staleness bound is the default (1 second).
      CacheStore.layerTiered({ url: config.redisUrl, prefix: config.prefix, local: { only: () => false } })
    : CacheStore.layerRedis({ url: config.redisUrl, prefix: config.prefix })
  const layer = Database.layer({ dialect: dialectOf(config.dialect) }).pipe(
    Layer.provideMerge(tiered ? countLocalHits(store) : store),
    Layer.provideMerge(CachemeConfig.layer(settingsFor(config.prefix))),
    Layer.orDie
  )
  const program: Effect.Effect<unknown, unknown, any> =
    config.mode === "run" ? runWorker(config, model, redis, loadId) : verify(config, model)
  const result = await Effect.runPromise(program.pipe(Effect.provide(layer)) as Effect.Effect<unknown, unknown, never>)
  writeFileSync(config.out, JSON.stringify(result))
  redis.disconnect()
}

await main()
