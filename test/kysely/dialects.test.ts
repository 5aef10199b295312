/**
 * The dialects of `test/kysely/dialects.ts` against their real databases: writes and their affected-row counts,
 * transactions, savepoints, concurrency, streaming, migrations and destroy. The in-process dialects
 * (`PGliteDialect`, `NodeSqliteDialect`) get extra checks of what this project implements itself.
 */
import { mkdtemp, rm } from "node:fs/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DatabaseSync } from "node:sqlite"
import type { PGlite } from "@electric-sql/pglite"
import type {
  CreateTableBuilder,
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Generated,
  QueryCompiler,
  TransactionSettings
} from "kysely"
import { AbortedTransactionError, Kysely, sql } from "kysely"
import type { Migration } from "kysely/migration"
import { Migrator, NO_MIGRATIONS } from "kysely/migration"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { NodeSqliteDialect } from "../../src/kysely/dialects/NodeSqliteDialect.ts"
import { makePGlite, PGliteDialect } from "../../src/kysely/dialects/PGliteDialect.ts"
import { createTestTable, DIALECTS, dropTestTables, isMissing, uniqueTableName } from "./dialects.ts"

interface ItemTable {
  readonly id: Generated<number>
  readonly name: string
  readonly qty: number
}

/** Test tables get unique names at run time, so every table name maps to the item shape. */
type Items = Record<string, ItemTable>

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const addItemColumns = <T extends string, C extends string>(table: CreateTableBuilder<T, C>) =>
  table.addColumn("name", "varchar(100)", (col) => col.notNull()).addColumn("qty", "integer", (col) => col.notNull())

const names = async (db: Kysely<Items>, table: string): Promise<Array<string>> =>
  (await db.selectFrom(table).select("name").orderBy("id").execute()).map((row) => row.name)

/** Two transactions started together: `first` commits two rows, `second` inserts one and fails. */
const raceTransactions = async (db: Kysely<Items>, table: string, order: "commit first" | "rollback first") => {
  const events: Array<string> = []
  const commits = async () =>
    db.transaction().execute(async (trx) => {
      events.push("commit:start")
      await trx.insertInto(table).values({ name: "c1", qty: 1 }).execute()
      await sleep(15)
      await trx.insertInto(table).values({ name: "c2", qty: 2 }).execute()
      events.push("commit:end")
    })
  const rollsBack = async () =>
    db.transaction().execute(async (trx) => {
      events.push("rollback:start")
      await trx.insertInto(table).values({ name: "r1", qty: 3 }).execute()
      await sleep(15)
      events.push("rollback:end")
      throw new Error("rolled back on purpose")
    })
  const [committed, rolledBack] =
    order === "commit first"
      ? await Promise.allSettled([commits(), rollsBack()])
      : await Promise.allSettled([rollsBack(), commits()]).then(([r, c]) => [c, r] as const)
  return { committed, rolledBack, events }
}

for (const d of DIALECTS) {
  describe.skipIf(await isMissing(d))(`dialect ${d.name}`, () => {
    const items = uniqueTableName("items")
    let db: Kysely<Items>
    let close: () => Promise<void>

    beforeAll(async () => {
      const made = await d.make()
      db = made.db
      close = made.close
      await createTestTable(db, d, items, addItemColumns)
    })

    afterAll(async () => {
      await dropTestTables(db, items)
      await close()
    })

    beforeEach(async () => {
      await db.deleteFrom(items).execute()
    })

    it("inserts without RETURNING and reports the inserted row count", async () => {
      const result = await db
        .insertInto(items)
        .values([
          { name: "a", qty: 1 },
          { name: "b", qty: 2 }
        ])
        .executeTakeFirstOrThrow()
      expect(result.numInsertedOrUpdatedRows).toBe(2n)
      expect(await names(db, items)).toEqual(["a", "b"])
    })

    it.skipIf(!d.supports.returning)("inserts with RETURNING and returns the new rows", async () => {
      const returned = await db
        .insertInto(items)
        .values([
          { name: "a", qty: 1 },
          { name: "b", qty: 2 }
        ])
        .returning(["id", "name"])
        .execute()
      expect(returned.map((row) => row.name)).toEqual(["a", "b"])
      const stored = await db.selectFrom(items).select(["id", "name"]).orderBy("id").execute()
      expect(returned).toEqual(stored)
      expect(new Set(returned.map((row) => row.id)).size).toBe(2)
    })

    it("reports updated and deleted row counts", async () => {
      await db
        .insertInto(items)
        .values([
          { name: "a", qty: 1 },
          { name: "b", qty: 2 },
          { name: "c", qty: 3 }
        ])
        .execute()
      const updated = await db.updateTable(items).set({ name: "z" }).where("qty", ">=", 2).executeTakeFirstOrThrow()
      expect(updated.numUpdatedRows).toBe(2n)
      expect(await names(db, items)).toEqual(["a", "z", "z"])

      const none = await db.deleteFrom(items).where("qty", "=", 99).executeTakeFirstOrThrow()
      expect(none.numDeletedRows).toBe(0n)
      const deleted = await db.deleteFrom(items).where("qty", "=", 1).executeTakeFirstOrThrow()
      expect(deleted.numDeletedRows).toBe(1n)
      expect(await names(db, items)).toEqual(["z", "z"])
    })

    it.skipIf(!d.supports.returning)("reports affected rows for UPDATE and DELETE with RETURNING", async () => {
      await db
        .insertInto(items)
        .values([
          { name: "a", qty: 1 },
          { name: "b", qty: 2 },
          { name: "c", qty: 3 }
        ])
        .execute()
      const updated = await db.executeQuery(
        db.updateTable(items).set({ qty: 10 }).where("qty", "<", 3).returning(["name", "qty"])
      )
      expect(updated.numAffectedRows).toBe(2n)
      expect(updated.rows.map((row) => row.name).sort()).toEqual(["a", "b"])
      expect(updated.rows.map((row) => row.qty)).toEqual([10, 10])
      const deleted = await db.executeQuery(db.deleteFrom(items).where("qty", "=", 3).returning("name"))
      expect(deleted.numAffectedRows).toBe(1n)
      expect(deleted.rows).toEqual([{ name: "c" }])
    })

    it("selects with filters, ordering and limits", async () => {
      await db
        .insertInto(items)
        .values([
          { name: "a", qty: 5 },
          { name: "b", qty: 1 },
          { name: "c", qty: 3 }
        ])
        .execute()
      const rows = await db
        .selectFrom(items)
        .select(["name", "qty"])
        .where("qty", ">", 1)
        .orderBy("qty", "desc")
        .limit(5)
        .execute()
      expect(rows).toEqual([
        { name: "a", qty: 5 },
        { name: "c", qty: 3 }
      ])
      const one = await db.selectFrom(items).select("name").where("name", "=", "b").executeTakeFirst()
      expect(one).toEqual({ name: "b" })
      const missingRow = await db.selectFrom(items).select("name").where("name", "=", "nope").executeTakeFirst()
      expect(missingRow).toBeUndefined()
    })

    it("commits a transaction", async () => {
      const result = await db.transaction().execute(async (trx) => {
        await trx.insertInto(items).values({ name: "t1", qty: 1 }).execute()
        await trx.insertInto(items).values({ name: "t2", qty: 2 }).execute()
        return names(trx, items)
      })
      expect(result).toEqual(["t1", "t2"])
      expect(await names(db, items)).toEqual(["t1", "t2"])
    })

    it("rolls a transaction back when its callback fails", async () => {
      await db.insertInto(items).values({ name: "before", qty: 0 }).execute()
      const failing = db.transaction().execute(async (trx) => {
        await trx.insertInto(items).values({ name: "lost", qty: 1 }).execute()
        await trx.updateTable(items).set({ name: "renamed" }).where("name", "=", "before").execute()
        expect(await names(trx, items)).toEqual(["renamed", "lost"])
        throw new Error("boom")
      })
      await expect(failing).rejects.toThrow("boom")
      expect(await names(db, items)).toEqual(["before"])
    })

    it("rolls back to and releases savepoints inside db.transaction()", async () => {
      await db.transaction().execute(async (trx) => {
        await trx.insertInto(items).values({ name: "outer", qty: 1 }).execute()
        await sql`savepoint sp_a`.execute(trx)
        await trx.insertInto(items).values({ name: "dropped", qty: 2 }).execute()
        await sql`savepoint sp_b`.execute(trx)
        await trx.insertInto(items).values({ name: "dropped too", qty: 3 }).execute()
        await sql`rollback to savepoint sp_a`.execute(trx)
        expect(await names(trx, items)).toEqual(["outer"])
        await sql`savepoint sp_c`.execute(trx)
        await trx.insertInto(items).values({ name: "kept", qty: 4 }).execute()
        await sql`release savepoint sp_c`.execute(trx)
      })
      expect(await names(db, items)).toEqual(["outer", "kept"])
    })

    it("rolls back to and releases nested savepoints of a controlled transaction", async () => {
      const trx = await db.startTransaction().execute()
      await trx.insertInto(items).values({ name: "outer", qty: 1 }).execute()
      const sp1 = await trx.savepoint("sp1").execute()
      await sp1.insertInto(items).values({ name: "dropped", qty: 2 }).execute()
      const sp2 = await sp1.savepoint("sp2").execute()
      await sp2.insertInto(items).values({ name: "dropped too", qty: 3 }).execute()
      const back = await sp2.rollbackToSavepoint("sp1").execute()
      expect(await names(back, items)).toEqual(["outer"])
      const sp3 = await back.savepoint("sp3").execute()
      await sp3.insertInto(items).values({ name: "kept", qty: 4 }).execute()
      const released = await sp3.releaseSavepoint("sp3").execute()
      await released.insertInto(items).values({ name: "after release", qty: 5 }).execute()
      await released.commit().execute()
      expect(released.isCommitted).toBe(true)
      expect(await names(db, items)).toEqual(["outer", "kept", "after release"])
    })

    it("rolls back a controlled transaction", async () => {
      const trx = await db.startTransaction().execute()
      await trx.insertInto(items).values({ name: "gone", qty: 1 }).execute()
      const sp = await trx.savepoint("sp").execute()
      await sp.insertInto(items).values({ name: "gone too", qty: 2 }).execute()
      await sp.rollback().execute()
      expect(sp.isRolledBack).toBe(true)
      expect(await names(db, items)).toEqual([])
    })

    it(`${d.supports.transactionalDdl ? "rolls back" : "keeps"} DDL run in a failed transaction`, async () => {
      const table = uniqueTableName("ddl")
      try {
        const failing = db.transaction().execute(async (trx) => {
          await createTestTable(trx, d, table, addItemColumns)
          throw new Error("undo the DDL")
        })
        await expect(failing).rejects.toThrow("undo the DDL")
        const tables = (await db.introspection.getTables()).map((t) => t.name)
        expect(tables.includes(table)).toBe(!d.supports.transactionalDdl)
      } finally {
        await dropTestTables(db, table)
      }
    })

    for (const order of ["commit first", "rollback first"] as const) {
      it(`keeps concurrent transactions apart (${order})`, async () => {
        const { committed, rolledBack, events } = await raceTransactions(db, items, order)
        expect(committed.status).toBe("fulfilled")
        expect(rolledBack).toMatchObject({ status: "rejected", reason: { message: "rolled back on purpose" } })
        expect(await names(db, items)).toEqual(["c1", "c2"])
        if (d.supports.singleConnection) {
          // One connection: the second transaction starts only once the first has finished.
          const [first, second] = order === "commit first" ? ["commit", "rollback"] : ["rollback", "commit"]
          expect(events).toEqual([`${first}:start`, `${first}:end`, `${second}:start`, `${second}:end`])
        }
      })
    }

    it.skipIf(!d.supports.stream)("streams rows", async () => {
      await db
        .insertInto(items)
        .values(Array.from({ length: 25 }, (_, i) => ({ name: `s${i}`, qty: i })))
        .execute()
      const streamed: Array<number> = []
      for await (const row of db.selectFrom(items).select("qty").orderBy("qty").stream(10)) streamed.push(row.qty)
      expect(streamed).toEqual(Array.from({ length: 25 }, (_, i) => i))
      // The connection is free again afterwards.
      expect(await db.selectFrom(items).select("name").where("qty", "=", 24).executeTakeFirst()).toEqual({
        name: "s24"
      })
    })

    it("runs migrations up and down with kysely/migration's Migrator", async () => {
      const table = uniqueTableName("migrated")
      const migrationTableName = uniqueTableName("kysely_migration")
      const migrationLockTableName = uniqueTableName("kysely_migration_lock")
      const migrations: Record<string, Migration> = {
        "0001_create": {
          up: async (m) => {
            await d
              .addIdColumn(m.schema.createTable(table))
              .addColumn("label", "varchar(50)", (col) => col.notNull())
              .execute()
          },
          down: async (m) => {
            await m.schema.dropTable(table).execute()
          }
        },
        "0002_seed": {
          up: async (m) => {
            await m.insertInto(table).values({ label: "seeded" }).execute()
          },
          down: async (m) => {
            await m.deleteFrom(table).execute()
          }
        }
      }
      const migrator = new Migrator({
        db,
        provider: { getMigrations: async () => migrations },
        migrationTableName,
        migrationLockTableName
      })
      try {
        const up = await migrator.migrateToLatest()
        expect(up.error).toBeUndefined()
        expect(up.results?.map((r) => [r.migrationName, r.direction, r.status])).toEqual([
          ["0001_create", "Up", "Success"],
          ["0002_seed", "Up", "Success"]
        ])
        const migrated = db.withTables<Record<string, { label: string }>>()
        expect(await migrated.selectFrom(table).select("label").execute()).toEqual([{ label: "seeded" }])
        expect(
          (await migrated.selectFrom(migrationTableName).select("name").orderBy("name").execute()).map((r) => r.name)
        ).toEqual(["0001_create", "0002_seed"])

        const again = await migrator.migrateToLatest()
        expect(again.results).toEqual([])

        const down = await migrator.migrateTo(NO_MIGRATIONS)
        expect(down.error).toBeUndefined()
        expect(down.results?.map((r) => [r.migrationName, r.direction, r.status])).toEqual([
          ["0002_seed", "Down", "Success"],
          ["0001_create", "Down", "Success"]
        ])
        const tables = (await db.introspection.getTables()).map((t) => t.name)
        expect(tables).not.toContain(table)
        expect(tables).toContain(migrationTableName)
      } finally {
        await dropTestTables(db, table, migrationTableName, migrationLockTableName)
      }
    })

    it("fails every query after destroy", async () => {
      const own = await d.make()
      const ownDb: Kysely<Items> = own.db
      expect(await sql<{ one: number }>`select 1 as one`.execute(ownDb).then((r) => Number(r.rows[0]?.one))).toBe(1)
      await own.close()
      await expect(sql`select 1 as one`.execute(ownDb)).rejects.toThrow(/destroyed/)
    })
  })
}

/**
 * A pass-through driver wrapper, as the invalidation layer builds one. Its adapter claims several connections, so
 * Kysely's own runtime lock is off and only the wrapped driver's lock keeps single-connection databases serial.
 */
class PassThroughDialect implements Dialect {
  readonly #inner: Dialect
  constructor(inner: Dialect) {
    this.#inner = inner
  }
  createAdapter(): DialectAdapter {
    const adapter = this.#inner.createAdapter()
    return Object.create(adapter, { supportsMultipleConnections: { value: true } }) as DialectAdapter
  }
  createDriver(): Driver {
    const inner = this.#inner.createDriver()
    return {
      init: () => inner.init(),
      acquireConnection: () => inner.acquireConnection(),
      releaseConnection: (connection: DatabaseConnection) => inner.releaseConnection(connection),
      beginTransaction: (connection: DatabaseConnection, settings: TransactionSettings) =>
        inner.beginTransaction(connection, settings),
      commitTransaction: (connection: DatabaseConnection) => inner.commitTransaction(connection),
      rollbackTransaction: (connection: DatabaseConnection) => inner.rollbackTransaction(connection),
      savepoint: (connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) =>
        inner.savepoint!(connection, name, compile),
      rollbackToSavepoint: (connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) =>
        inner.rollbackToSavepoint!(connection, name, compile),
      releaseSavepoint: (connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) =>
        inner.releaseSavepoint!(connection, name, compile),
      destroy: () => inner.destroy()
    }
  }
  createQueryCompiler(): QueryCompiler {
    return this.#inner.createQueryCompiler()
  }
  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return this.#inner.createIntrospector(db)
  }
}

for (const test of DIALECTS.filter((d) => d.supports.singleConnection)) {
  const dialect = () => test.dialect()
  describe(`${test.name}: single-connection driver`, () => {
    it("serializes transactions under a wrapper that turns Kysely's lock off", async () => {
      const db = new Kysely<Items>({ dialect: new PassThroughDialect(dialect()) })
      const table = uniqueTableName("wrapped")
      try {
        await createTestTable(db, test, table, addItemColumns)
        for (const order of ["commit first", "rollback first"] as const) {
          await db.deleteFrom(table).execute()
          const { committed, rolledBack, events } = await raceTransactions(db, table, order)
          expect(committed.status).toBe("fulfilled")
          expect(rolledBack.status).toBe("rejected")
          expect(await names(db, table)).toEqual(["c1", "c2"])
          const [first, second] = order === "commit first" ? ["commit", "rollback"] : ["rollback", "commit"]
          expect(events).toEqual([`${first}:start`, `${first}:end`, `${second}:start`, `${second}:end`])
        }
      } finally {
        await db.destroy()
      }
    })

    it("shares one database between every Kysely built from one dialect object", async () => {
      const shared = dialect()
      const first = new Kysely<Items>({ dialect: shared })
      const second = new Kysely<Items>({ dialect: new PassThroughDialect(shared) })
      const table = uniqueTableName("shared")
      try {
        await createTestTable(first, test, table, addItemColumns)
        await second.insertInto(table).values({ name: "from second", qty: 1 }).execute()
        expect(await names(first, table)).toEqual(["from second"])
        await first.destroy()
        // The database stays open while `second` still uses it.
        expect(await names(second, table)).toEqual(["from second"])
      } finally {
        await first.destroy()
        await second.destroy()
      }
    })

    it("returns the chunks streamQuery was asked for", async () => {
      const db = new Kysely<Items>({ dialect: dialect() })
      const table = uniqueTableName("chunks")
      try {
        await createTestTable(db, test, table, addItemColumns)
        await db
          .insertInto(table)
          .values(Array.from({ length: 25 }, (_, i) => ({ name: `n${i}`, qty: i })))
          .execute()
        const query = db.selectFrom(table).select("qty").orderBy("qty").compile()
        const sizes: Array<number> = []
        const seen: Array<number> = []
        for await (const chunk of db.getExecutor().stream(query, 10)) {
          sizes.push(chunk.rows.length)
          seen.push(...chunk.rows.map((row) => row.qty))
        }
        expect(sizes).toEqual([10, 10, 5])
        expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i))

        // A write with RETURNING streams too (PGlite cannot put it in a cursor and reads it at once).
        const returning = db.updateTable(table).set({ name: "up" }).where("qty", "<", 3).returning("qty").compile()
        const updated: Array<number> = []
        for await (const chunk of db.getExecutor().stream(returning, 2)) updated.push(...chunk.rows.map((r) => r.qty))
        expect(updated.sort()).toEqual([0, 1, 2])
        expect(await db.selectFrom(table).select("qty").where("name", "=", "up").execute()).toHaveLength(3)
      } finally {
        await db.destroy()
      }
    })

    it("runs a parameterless string of several statements whole", async () => {
      const db = new Kysely<Items>({ dialect: dialect() })
      const table = uniqueTableName("multi")
      try {
        await createTestTable(db, test, table, addItemColumns)
        await sql
          .raw(`insert into ${table} (name, qty) values ('m1', 1); insert into ${table} (name, qty) values ('m2', 2);`)
          .execute(db)
        expect(await names(db, table)).toEqual(["m1", "m2"])
      } finally {
        await db.destroy()
      }
    })
  })
}

describe("PGliteDialect", () => {
  let pglite: PGlite
  let db: Kysely<Items>
  const table = uniqueTableName("pglite_items")

  beforeAll(async () => {
    pglite = await makePGlite()
    db = new Kysely<Items>({ dialect: new PGliteDialect({ pglite }) })
    await db.schema
      .createTable(table)
      .addColumn("id", "serial", (col) => col.primaryKey())
      .$call(addItemColumns)
      .execute()
  })

  afterAll(async () => {
    await db.destroy()
    // An instance handed to the dialect stays open after destroy.
    expect(pglite.closed).toBe(false)
    await pglite.close()
  })

  beforeEach(async () => {
    await db.deleteFrom(table).execute()
    await db
      .insertInto(table)
      .values(Array.from({ length: 7 }, (_, i) => ({ name: `p${i}`, qty: i })))
      .execute()
  })

  const openCursors = async () =>
    (await pglite.query<{ name: string }>("select name from pg_cursors where name <> ''")).rows

  it("streams a SELECT through a server-side cursor inside its own transaction", async () => {
    const during: Array<Array<{ name: string }>> = []
    const inTransaction: Array<boolean> = []
    const seen: Array<number> = []
    for await (const row of db.selectFrom(table).select("qty").orderBy("qty").stream(3)) {
      seen.push(row.qty)
      during.push(await openCursors())
      inTransaction.push(pglite.isInTransaction())
    }
    expect(seen).toEqual([0, 1, 2, 3, 4, 5, 6])
    expect(
      during.every((cursors) => cursors.length === 1 && cursors[0]!.name.startsWith("kysely_pglite_cursor_"))
    ).toBe(true)
    expect(inTransaction.every(Boolean)).toBe(true)
    expect(await openCursors()).toEqual([])
    expect(pglite.isInTransaction()).toBe(false)
  })

  it("closes the cursor and ends its transaction when the consumer stops early", async () => {
    const seen: Array<number> = []
    for await (const row of db.selectFrom(table).select("qty").orderBy("qty").stream(2)) {
      seen.push(row.qty)
      if (seen.length === 3) break
    }
    expect(seen).toEqual([0, 1, 2])
    expect(await openCursors()).toEqual([])
    expect(pglite.isInTransaction()).toBe(false)
    expect(await names(db, table)).toHaveLength(7)
  })

  it("streams inside a transaction without ending it", async () => {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto(table).values({ name: "in trx", qty: 100 }).execute()
      const seen: Array<number> = []
      for await (const row of trx.selectFrom(table).select("qty").where("qty", ">=", 5).orderBy("qty").stream(1)) {
        seen.push(row.qty)
      }
      expect(seen).toEqual([5, 6, 100])
      expect(pglite.isInTransaction()).toBe(true)
      await trx.insertInto(table).values({ name: "after stream", qty: 101 }).execute()
    })
    expect((await names(db, table)).slice(-2)).toEqual(["in trx", "after stream"])
    expect(await openCursors()).toEqual([])
  })

  it("raises AbortedTransactionError when COMMIT finds the transaction failed", async () => {
    const trx = await db.startTransaction().execute()
    await trx.insertInto(table).values({ name: "doomed", qty: 1 }).execute()
    await expect(sql`select * from no_such_table`.execute(trx)).rejects.toThrow(/no_such_table/)
    await expect(trx.commit().execute()).rejects.toBeInstanceOf(AbortedTransactionError)
    expect(pglite.isInTransaction()).toBe(false)
    expect(await names(db, table)).not.toContain("doomed")
  })

  it("applies transaction settings", async () => {
    const readOnly = db
      .transaction()
      .setAccessMode("read only")
      .execute((trx) => trx.insertInto(table).values({ name: "ro", qty: 1 }).execute())
    await expect(readOnly).rejects.toThrow(/read-only/)
    const level = await db
      .transaction()
      .setIsolationLevel("serializable")
      .execute(
        async (trx) =>
          (await sql<{ transaction_isolation: string }>`show transaction_isolation`.execute(trx)).rows[0]
            ?.transaction_isolation
      )
    expect(level).toBe("serializable")
    expect(await names(db, table)).not.toContain("ro")
  })

  it("keeps two dialects over one instance from interleaving", async () => {
    const other = new Kysely<Items>({ dialect: new PGliteDialect({ pglite }) })
    const events: Array<string> = []
    try {
      await db.deleteFrom(table).execute()
      const slow = db.transaction().execute(async (trx) => {
        events.push("db:start")
        await trx.insertInto(table).values({ name: "db", qty: 1 }).execute()
        await sleep(20)
        events.push("db:end")
        throw new Error("db rolls back")
      })
      await sleep(1)
      const fast = other.transaction().execute(async (trx) => {
        events.push("other:start")
        await trx.insertInto(table).values({ name: "other", qty: 2 }).execute()
        events.push("other:end")
      })
      await expect(slow).rejects.toThrow("db rolls back")
      await fast
      expect(events).toEqual(["db:start", "db:end", "other:start", "other:end"])
      expect(await names(db, table)).toEqual(["other"])
    } finally {
      await other.destroy()
    }
    expect(pglite.closed).toBe(false)
  })

  it("closes an instance from a factory, and keeps a data directory's data across instances", async () => {
    let created: PGlite | undefined
    const fromFactory = new Kysely<Items>({
      dialect: new PGliteDialect({
        pglite: async () => {
          created = await makePGlite()
          return created
        }
      })
    })
    await sql`select 1`.execute(fromFactory)
    expect(created?.closed).toBe(false)
    await fromFactory.destroy()
    expect(created?.closed).toBe(true)

    const dataDir = await mkdtemp(join(tmpdir(), "cacheme-pglite-"))
    try {
      const first = new Kysely<Items>({ dialect: new PGliteDialect({ dataDir }) })
      await sql`create table kept (name text)`.execute(first)
      await sql`insert into kept values ('persisted')`.execute(first)
      await first.destroy()
      const second = new Kysely<Record<string, { name: string }>>({ dialect: new PGliteDialect({ dataDir }) })
      expect(await second.selectFrom("kept").select("name").execute()).toEqual([{ name: "persisted" }])
      await second.destroy()
    } finally {
      await rm(dataDir, { recursive: true, force: true })
    }
  })

  it("refuses both an instance and a data directory", () => {
    expect(() => new PGliteDialect({ pglite, dataDir: "/tmp/x" })).toThrow(/either/)
  })
})

describe("NodeSqliteDialect", () => {
  it("keeps a DatabaseSync it was given open, and closes one on request", async () => {
    const database = new DatabaseSync(":memory:")
    const db = new Kysely<Items>({ dialect: new NodeSqliteDialect({ database }) })
    await sql`create table t (name text)`.execute(db)
    await db.destroy()
    expect(database.isOpen).toBe(true)
    expect(database.prepare("select count(*) as n from t").get()).toEqual({ n: 0 })

    const closing = new Kysely<Items>({ dialect: new NodeSqliteDialect({ database, closeOnDestroy: true }) })
    await sql`select 1`.execute(closing)
    await closing.destroy()
    expect(database.isOpen).toBe(false)
  })

  it("opens a path itself and closes it on destroy, keeping the data on disk", async () => {
    const dir = await mkdtemp(join(tmpdir(), "cacheme-sqlite-"))
    try {
      const file = join(dir, "db.sqlite")
      const first = new Kysely<Record<string, { name: string }>>({ dialect: new NodeSqliteDialect({ database: file }) })
      await sql`create table kept (name text)`.execute(first)
      await first.insertInto("kept").values({ name: "persisted" }).execute()
      await first.destroy()
      const second = new Kysely<Record<string, { name: string }>>({
        dialect: new NodeSqliteDialect({ database: file })
      })
      expect(await second.selectFrom("kept").selectAll().execute()).toEqual([{ name: "persisted" }])
      await second.destroy()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it("binds booleans as 1 / 0, returns plain objects, and refuses values SQLite would store as NULL", async () => {
    const db = new Kysely<Items>({ dialect: new NodeSqliteDialect({ database: ":memory:" }) })
    try {
      const { rows } = await sql<{ yes: number; no: number }>`select ${true} as yes, ${false} as no`.execute(db)
      expect(rows).toEqual([{ yes: 1, no: 0 }])
      expect(Object.getPrototypeOf(rows[0])).toBe(Object.prototype)
      await expect(sql`select ${new Date(0)} as d`.execute(db)).rejects.toThrow(TypeError)
      await expect(sql`select ${{ a: 1 }} as o`.execute(db)).rejects.toThrow(/cannot bind parameter 1/)
    } finally {
      await db.destroy()
    }
  })

  it("refuses a second statement in a query with parameters instead of dropping it", async () => {
    const db = new Kysely<Items>({ dialect: new NodeSqliteDialect({ database: ":memory:" }) })
    try {
      await expect(sql`select ${1} as a; select 2 as b`.execute(db)).rejects.toThrow(/single statement/)
      expect((await sql<{ a: number }>`select ${1} as a; -- trailing comment`.execute(db)).rows).toEqual([{ a: 1 }])
    } finally {
      await db.destroy()
    }
  })

  it("reports the insert id of an insert without RETURNING", async () => {
    const db = new Kysely<Items>({ dialect: new NodeSqliteDialect({ database: ":memory:" }) })
    try {
      await sql`create table t (id integer primary key autoincrement, name text not null, qty integer not null)`.execute(
        db
      )
      await db.insertInto("t").values({ name: "a", qty: 1 }).execute()
      const second = await db.insertInto("t").values({ name: "b", qty: 2 }).executeTakeFirstOrThrow()
      expect(second.insertId).toBe(2n)
    } finally {
      await db.destroy()
    }
  })
})
