/**
 * What one single-row update through `effect-cacheme/kysely` (sync mode) costs Redis per group it invalidates,
 * counted by `INFO commandstats` of a private `redis-server` (port 6482) that nothing else talks to: scripts'
 * inner calls included, the test's own probes (`INFO`, `CONFIG`, `EXISTS`, `KEYS`, `MGET`) left out (no store
 * command of a write is one of them). Exact counts, which do not
 * move with the machine's load.
 *
 * The update pins its row by id, so every group of a node on `id` is predicted and held beside the statement
 * (a hold, then its release after the write); a group on a column the WHERE does not pin (`team`) is
 * invalidated after COMMIT. Three states of the groups before the write: never read (no stamp), read once and
 * the entry invalidated by key (a stamp, an empty index), and one cached entry per group.
 *
 * The table these counts make is in docs/benchmarks.md (Kysely section).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import type { Kysely } from "kysely"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { groupSet } from "../../src/internal/keys.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"
import { PGliteDialect } from "../../src/kysely/dialects/PGliteDialect.ts"
import { uniquePrefix } from "../support/backends.ts"
import { type PrivateRedis, redisServerMissing, startRedis } from "../support/fault-redis.ts"

const skip = redisServerMissing()
const port = 6482

/** Redis calls per command name (`INFO commandstats`), the test's own probes left out. */
const commandCalls = (info: string): Record<string, number> => {
  const calls: Record<string, number> = {}
  for (const line of info.split(/\r?\n/)) {
    const match = /^cmdstat_([^:]+):calls=(\d+)/.exec(line)
    if (match === null) continue
    const name = match[1]!
    if (["info", "exists", "ping", "keys", "mget"].includes(name) || name.startsWith("config")) continue
    calls[name] = Number(match[2])
  }
  return calls
}

type GroupsState = "no stamp" | "stamp, no entry" | "one entry each"
type Kind = "held" | "after commit"

interface Count {
  readonly groups: number
  readonly kind: Kind
  readonly state: GroupsState
  readonly commands: Record<string, number>
  readonly total: number
}

let tables = 0

/**
 * Counts one update of row 1 of a fresh table with `groups` TableInvalidNodes on it (each its own group of the
 * row), in `state`, on the store and database of the context.
 */
const countUpdate = (redis: PrivateRedis, prefix: string, groups: number, kind: Kind, state: GroupsState) =>
  Effect.gen(function* () {
    const table = `cmd_${process.pid}_${tables++}`
    const column = kind === "held" ? "id" : "team"
    const Groups = Array.from({ length: groups }, (_, i) =>
      TableInvalidNode.make(`${table}-g${i}`, { table, fields: { [column]: Schema.Number } })
    )
    const Entries = Groups.map((Group, i) =>
      Node.make(`${table}-n${i}`, {
        fields: { id: Schema.Number },
        value: Schema.String,
        invalidatedBy: ({ id }) => [Group.make({ [column]: id })]
      })
    )
    // No hold marker left under the prefix: the releases of earlier writes (sent after they resolved) are done.
    const quiet = Effect.gen(function* () {
      for (let tries = 0; tries < 1000; tries++) {
        const markers = yield* Effect.promise(async () => {
          const keys = await redis.admin.keys(`${prefix}~s:*`)
          const values = keys.length === 0 ? [] : await redis.admin.mget(...keys)
          return values.filter((value) => value !== null && Protocol.isHold(value)).length
        })
        if (markers === 0) return
        yield* Effect.sleep("5 millis")
      }
      assert.fail("hold markers were never released")
    })
    const query = <A>(f: (db: Kysely<any>) => Promise<A>) => Effect.orDie(Database.query(f))
    yield* query((db) =>
      db.schema
        .createTable(table)
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("team", "integer", (c) => c.notNull())
        .addColumn("name", "varchar(100)", (c) => c.notNull())
        .execute()
    )
    // A row's team is its id, so every group of row 1 is `<node>:1`. Row 2 takes a first update (with entries),
    // so that every script is loaded (EVALSHA, not EVAL) when row 1's is counted.
    yield* query((db) =>
      db
        .insertInto(table)
        .values([
          { id: 1, team: 1, name: "first" },
          { id: 2, team: 2, name: "first" }
        ])
        .execute()
    )
    for (const Entry of Entries) yield* Effect.succeed("cached").pipe(Memo.cached(Entry.make({ id: 2 })))
    yield* query((db) => db.updateTable(table).set({ name: "warm" }).where("id", "=", 2).execute())
    yield* quiet
    if (state !== "no stamp") {
      for (const Entry of Entries) yield* Effect.succeed("cached").pipe(Memo.cached(Entry.make({ id: 1 })))
    }
    if (state === "stamp, no entry") {
      for (const Entry of Entries) yield* Memo.invalidate(Entry.make({ id: 1 }))
    }
    const stamps = Groups.map((Group) => Protocol.stampKey(prefix, groupSet(Group.make({ [column]: 1 } as any).key)))
    yield* quiet
    yield* Effect.promise(() => redis.admin.config("RESETSTAT"))
    yield* query((db) => db.updateTable(table).set({ name: "second" }).where("id", "=", 1).execute())
    // A hold's release follows the write: wait until no group's stamp (or hold marker) is left.
    for (let tries = 0; tries < 1000; tries++) {
      if ((yield* Effect.promise(() => redis.admin.exists(...stamps))) === 0) break
      yield* Effect.sleep("5 millis")
    }
    const commands = commandCalls(yield* Effect.promise(() => redis.admin.info("commandstats")))
    const total = Object.values(commands).reduce((sum, n) => sum + n, 0)
    // The entries are gone, the groups reached.
    for (const Entry of Entries) {
      assert.isNull(yield* Effect.promise(() => redis.admin.get(prefix + Entry.make({ id: 1 }).key)))
    }
    return { groups, kind, state, commands, total } satisfies Count
  })

const row = (count: Count) =>
  `| ${count.kind} | ${count.state} | ${count.groups} | ${count.total} | ${(count.total / count.groups).toFixed(1)} | ${Object.entries(
    count.commands
  )
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([name, n]) => `${name} ${n}`)
    .join(", ")} |`

/**
 * Commands per group, by path and state before the write: the group's own part (its hold and release, or its
 * invalidation, and the look into its index) and, for a cached entry, the entry's reclaim (the reclaim script's
 * `EVALSHA`, `GET` and `DEL`, and one `ZREM` per set the entry is in: here its group, its node's tag and its table's
 * tag, so 6).
 */
const expected: Record<Kind, Record<GroupsState, number>> = {
  // A group's change also bumps its family's epoch (value groups, invariant 8): one `SET ... XX` after the hold's
  // `SET ... GET`, one inside the release's and the invalidation's scripts.
  held: { "no stamp": 5, "stamp, no entry": 6, "one entry each": 6 + 6 },
  "after commit": { "no stamp": 3, "stamp, no entry": 5, "one entry each": 5 + 6 }
}

describe.skipIf(skip)("Redis commands of a Kysely-wrapped single-row update (sync mode)", () => {
  it.live(
    "per invalidated group, for 1, 2 and 5 groups: at most 6 for the group itself",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const layer = Database.layer({ dialect: new PGliteDialect() }).pipe(
          Layer.provideMerge(CacheStore.layerRedis({ url: redis.url, prefix, sweepInterval: null })),
          Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "10 seconds" })),
          Layer.orDie
        )
        const counts: Array<Count> = []
        yield* Effect.gen(function* () {
          for (const kind of ["held", "after commit"] as const) {
            for (const state of ["no stamp", "stamp, no entry", "one entry each"] as const) {
              for (const groups of [1, 2, 5]) counts.push(yield* countUpdate(redis, prefix, groups, kind, state))
            }
          }
        }).pipe(Effect.provide(layer))
        console.log(
          [
            "| groups | before the write | groups | commands | per group | by command |",
            "| --- | --- | ---: | ---: | ---: | --- |",
            ...counts.map(row)
          ].join("\n")
        )
        for (const count of counts) {
          assert.strictEqual(
            count.total,
            count.groups * expected[count.kind][count.state],
            `${count.kind}, ${count.state}, ${count.groups} groups: ${JSON.stringify(count.commands)}`
          )
        }
      }),
    300_000
  )
})
