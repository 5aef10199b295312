/**
 * The history migration and repository on every dialect: PGlite and SQLite in process, PostgreSQL and MariaDB on
 * the shared servers (unique table names, dropped afterwards).
 */
import { it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { TestClock } from "effect/testing"
import type { Kysely } from "kysely"
import { Migrator } from "kysely/migration"
import { afterAll, beforeAll, describe, expect } from "vitest"
import { History, Migration } from "../../src/admin/index.ts"
import { CacheStore, Invalidation } from "../../src/index.ts"
import { DIALECTS, isMissing, type TestDatabase, uniqueTableName } from "../kysely/dialects.ts"

const at = (iso: string) => new Date(iso)

for (const dialect of DIALECTS) {
  describe.skipIf(await isMissing(dialect))(`history on ${dialect.name}`, () => {
    const table = uniqueTableName("cm_inv")
    const migrationTable = uniqueTableName("cm_mig")
    const appMigrationTable = uniqueTableName("app_mig")
    const appTable = uniqueTableName("app_items")
    const options = { table, migrationTable }
    let database: TestDatabase
    let db: Kysely<any>

    beforeAll(async () => {
      database = await dialect.make()
      db = database.db
    })
    afterAll(async () => {
      await Effect.runPromise(Migration.rollback(db, options).pipe(Effect.ignore))
      await Effect.runPromise(Migration.dropBookkeeping(db, options).pipe(Effect.ignore))
      await db.schema.dropTable(appTable).ifExists().execute()
      await db.schema.dropTable(appMigrationTable).ifExists().execute()
      await db.schema.dropTable(`${appMigrationTable}_lock`).ifExists().execute()
      await database.close()
    })

    it.effect("creates the table once; a second run does nothing", () =>
      Effect.gen(function* () {
        const first = yield* Migration.migrate(db, options)
        expect(first).toEqual([{ migration: Migration.createTableMigration, direction: "Up", status: "Success" }])
        expect(yield* Migration.migrate(db, options)).toEqual([])
        const tables = yield* Effect.promise(() => db.introspection.getTables())
        const created = tables.find((t) => t.name === table)
        expect(created?.columns.map((column) => column.name).sort()).toEqual(
          ["actor", "count", "created_at", "id", "mode", "target", "value"].sort()
        )
        for (const column of created!.columns) expect(column.isNullable, column.name).toBe(false)
        expect(created!.columns.find((column) => column.name === "id")!.isAutoIncrementing).toBe(true)
        const status = yield* Migration.status(db, options)
        expect(status.map((info) => info.migration)).toEqual([Migration.createTableMigration])
        expect(status[0]!.executedAt).toBeInstanceOf(Date)
      })
    )

    it.effect("records rows and lists them newest first, paged and filtered", () =>
      Effect.gen(function* () {
        const history = yield* History.History
        const rows = [
          {
            createdAt: at("2026-11-20T10:00:00.125Z"),
            actor: "admin:alice",
            target: "key",
            value: "user:1",
            mode: "hard",
            count: 1
          },
          {
            createdAt: at("2026-11-21T11:30:00.500Z"),
            actor: "kysely",
            target: "group",
            value: "user:1",
            mode: "hard",
            count: 3
          },
          {
            createdAt: at("2026-11-22T12:45:59.999Z"),
            actor: "app",
            target: "tag",
            value: "people",
            mode: "soft",
            count: 0
          },
          {
            createdAt: at("2026-11-23T00:00:00.000Z"),
            actor: "cli:bob",
            target: "pattern",
            value: `note:<script>"'é漢字 ${"x".repeat(3000)}`,
            mode: "hard",
            count: 12
          }
        ] as const
        for (const row of rows) yield* history.record(row)
        const all = yield* history.list()
        expect(all.map(({ id: _id, ...rest }) => rest)).toEqual([...rows].reverse())
        expect(all.map((entry) => entry.id)).toEqual([...all.map((entry) => entry.id)].sort((a, b) => b - a))
        const page = yield* history.list({ limit: 2 })
        expect(page.map((entry) => entry.actor)).toEqual(["cli:bob", "app"])
        const older = yield* history.list({ limit: 2, before: page[1]!.id })
        expect(older.map((entry) => entry.actor)).toEqual(["kysely", "admin:alice"])
        const groups = yield* history.list({ target: "group" })
        expect(groups.map((entry) => entry.value)).toEqual(["user:1"])
      }).pipe(Effect.provide(History.layerKysely({ db, table })))
    )

    it.effect("records every invalidation of the program through History.layerListener", () =>
      Effect.gen(function* () {
        const history = yield* History.History
        const before = (yield* history.list({ limit: 1 }))[0]!.id
        yield* TestClock.setTime(Date.parse("2026-11-24T08:00:00.250Z"))
        yield* Invalidation.key("order:7", { source: "kysely" })
        yield* Invalidation.group("order:7")
        const rows = yield* history.list({ before: Number.MAX_SAFE_INTEGER, limit: 10 })
        const fresh = rows.filter((entry) => entry.id > before)
        expect(fresh.map(({ actor, target, value, mode, count }) => ({ actor, target, value, mode, count }))).toEqual([
          { actor: "app", target: "group", value: "order:7", mode: "hard", count: 0 },
          { actor: "kysely", target: "key", value: "order:7", mode: "hard", count: 0 }
        ])
        // The time is the Effect Clock's (here the TestClock's), to the millisecond.
        expect(fresh.map((entry) => entry.createdAt.toISOString())).toEqual([
          "2026-11-24T08:00:00.250Z",
          "2026-11-24T08:00:00.250Z"
        ])
      }).pipe(
        Effect.provide(
          History.layerListener.pipe(
            Layer.provideMerge(History.layerKysely({ db, table })),
            Layer.provideMerge(CacheStore.layerMemory())
          )
        )
      )
    )

    it.effect("keeps its bookkeeping apart from the application's own migrations", () =>
      Effect.gen(function* () {
        const app = new Migrator({
          db,
          migrationTableName: appMigrationTable,
          migrationLockTableName: `${appMigrationTable}_lock`,
          provider: {
            getMigrations: async () => ({
              "0001_items": {
                up: async (db: Kysely<any>) => {
                  await dialect.addIdColumn(db.schema.createTable(appTable)).execute()
                }
              }
            })
          }
        })
        const result = yield* Effect.promise(() => app.migrateToLatest())
        expect(result.error).toBeUndefined()
        const ours = yield* Effect.promise(() => db.selectFrom(migrationTable).select("name").execute())
        const theirs = yield* Effect.promise(() => db.selectFrom(appMigrationTable).select("name").execute())
        expect(ours.map((row) => row.name)).toEqual([Migration.createTableMigration])
        expect(theirs.map((row) => row.name)).toEqual(["0001_items"])
        expect(yield* Migration.migrate(db, options)).toEqual([])
      })
    )

    it.effect("rolls back: the history table is dropped, the application's tables stay", () =>
      Effect.gen(function* () {
        const undone = yield* Migration.rollback(db, options)
        expect(undone).toEqual([{ migration: Migration.createTableMigration, direction: "Down", status: "Success" }])
        const names = (yield* Effect.promise(() => db.introspection.getTables())).map((t) => t.name)
        expect(names).not.toContain(table)
        expect(names).toContain(appTable)
        const failure = yield* History.History.pipe(
          Effect.flatMap((history) => history.list()),
          Effect.flip,
          Effect.provide(History.layerKysely({ db, table }))
        )
        expect(failure._tag).toBe("HistoryError")
        // and it can be created again
        expect((yield* Migration.migrate(db, options)).length).toBe(1)
      })
    )
  })
}

describe("migration options", () => {
  it.effect("refuses table names that are not plain identifiers", () =>
    Effect.gen(function* () {
      const database = yield* Effect.promise(() => DIALECTS[0]!.make())
      const error = yield* Migration.migrate(database.db, { table: "x; drop table users" }).pipe(Effect.flip)
      expect(error._tag).toBe("MigrationError")
      expect(error.message).toContain("plain SQL identifier")
      yield* Effect.promise(() => database.close())
    })
  )
})
