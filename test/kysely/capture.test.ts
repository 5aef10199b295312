/**
 * Write capture (`captureWrites`) against every dialect of `dialects.ts`: which events each kind of write
 * publishes, when (autocommit, COMMIT, never after ROLLBACK), with savepoints, failures, both publish modes, and
 * that the caller's results are untouched. Every assertion compares the exact list of published batches.
 */
import type { DatabaseConnection, Dialect, Driver, ExpressionBuilder, QueryCompiler, TransactionSettings } from "kysely"
import { Kysely, sql } from "kysely"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { type CaptureOptions, captureWrites } from "../../src/kysely/capture/CaptureDialect.ts"
import { analyzeSql } from "../../src/kysely/capture/RawSqlAnalysis.ts"
import type { InvalidationEvent, WriteOperation } from "../../src/kysely/InvalidationEvent.ts"
import { createTestTable, DIALECTS, dropTestTables, isMissing, type TestDialect, uniqueTableName } from "./dialects.ts"

type Row = Readonly<Record<string, unknown>>
type Batch = ReadonlyArray<InvalidationEvent>

const USER_COLUMNS = ["id", "email", "team"] as const
const NOTE_COLUMNS = ["a", "b"] as const

const rowOrder = (left: Row, right: Row) => {
  const a = JSON.stringify(left)
  const b = JSON.stringify(right)
  return a < b ? -1 : a > b ? 1 : 0
}

/** An event as the tests expect it, rows in a canonical order. */
const event = (table: string, operation: WriteOperation, rows: ReadonlyArray<Row>): InvalidationEvent => ({
  table,
  operation,
  rows: [...rows].sort(rowOrder),
  wholeTable: false
})

const wholeTable = (table: string, operation: WriteOperation): InvalidationEvent => ({
  table,
  operation,
  rows: [],
  wholeTable: true
})

/** Published batches with rows in the canonical order (row order within an event carries no meaning). */
const canonical = (batches: ReadonlyArray<Batch>) =>
  batches.map((batch) => batch.map((e) => ({ ...e, rows: [...e.rows].sort(rowOrder) })))

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const deferred = () => {
  let resolve!: () => void
  const promise = new Promise<void>((done) => {
    resolve = done
  })
  return { promise, resolve }
}

/**
 * A dialect whose COMMIT fails without committing (Kysely then rolls back): a failed COMMIT on every dialect,
 * including those where a real one is hard to provoke. Test-only helper, not part of `dialects.ts`.
 */
const refusingCommits = (dialect: Dialect): Dialect => ({
  createAdapter: () => dialect.createAdapter(),
  createQueryCompiler: () => dialect.createQueryCompiler(),
  createIntrospector: (db) => dialect.createIntrospector(db),
  createDriver: () => new RefusingCommitDriver(dialect.createDriver())
})

/** `dialect` whose connections record the SQL they run, as the capture rewrote it. */
const loggingSql =
  (log: Array<string>) =>
  (dialect: Dialect): Dialect => ({
    createAdapter: () => dialect.createAdapter(),
    createQueryCompiler: () => dialect.createQueryCompiler(),
    createIntrospector: (db) => dialect.createIntrospector(db),
    createDriver: () => {
      const driver = dialect.createDriver()
      const acquire = driver.acquireConnection.bind(driver)
      const patched = new WeakSet<DatabaseConnection>()
      driver.acquireConnection = async (options) => {
        const connection = await acquire(options)
        if (!patched.has(connection)) {
          patched.add(connection)
          const execute = connection.executeQuery.bind(connection)
          connection.executeQuery = (query, queryOptions) => {
            log.push(query.sql.toLowerCase())
            return execute(query, queryOptions)
          }
        }
        return connection
      }
      return driver
    }
  })

class RefusingCommitDriver implements Driver {
  readonly #driver: Driver
  constructor(driver: Driver) {
    this.#driver = driver
  }
  init() {
    return this.#driver.init()
  }
  acquireConnection() {
    return this.#driver.acquireConnection()
  }
  releaseConnection(connection: DatabaseConnection) {
    return this.#driver.releaseConnection(connection)
  }
  beginTransaction(connection: DatabaseConnection, settings: TransactionSettings) {
    return this.#driver.beginTransaction(connection, settings)
  }
  async commitTransaction(): Promise<void> {
    throw new Error("commit refused")
  }
  rollbackTransaction(connection: DatabaseConnection) {
    return this.#driver.rollbackTransaction(connection)
  }
  savepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    return this.#driver.savepoint!(connection, name, compile)
  }
  rollbackToSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    return this.#driver.rollbackToSavepoint!(connection, name, compile)
  }
  releaseSavepoint(connection: DatabaseConnection, name: string, compile: QueryCompiler["compileQuery"]) {
    return this.#driver.releaseSavepoint!(connection, name, compile)
  }
  destroy() {
    return this.#driver.destroy()
  }
}

/** A captured database with its own tables and a record of what was published. */
interface Fixture {
  readonly db: Kysely<any>
  /** id (auto), email (unique), team, name; watched: id, email, team. */
  readonly users: string
  /** a, b, no primary key; watched: a, b. */
  readonly notes: string
  /** id, label; not watched. */
  readonly teams: string
  /** email, team; not watched (a MERGE source). */
  readonly staging: string
  readonly watched: Map<string, ReadonlyArray<string>>
  readonly batches: Array<Batch>
  readonly errors: Array<{ readonly error: unknown; readonly events: Batch }>
  /** What `publish` does; records into `batches` unless a test replaces it. */
  publish: (events: Batch) => Promise<void>
  readonly record: (events: Batch) => Promise<void>
  close(): Promise<void>
}

const openFixture = async (
  dialect: TestDialect,
  options: { readonly mode?: CaptureOptions["mode"]; readonly wrap?: (dialect: Dialect) => Dialect } = {}
): Promise<Fixture> => {
  const users = uniqueTableName("cap_users")
  const notes = uniqueTableName("cap_notes")
  const teams = uniqueTableName("cap_teams")
  const staging = uniqueTableName("cap_staging")
  const watched = new Map<string, ReadonlyArray<string>>([
    [users, USER_COLUMNS],
    [notes, NOTE_COLUMNS]
  ])
  const batches: Array<Batch> = []
  const errors: Array<{ error: unknown; events: Batch }> = []
  const record = async (events: Batch) => {
    batches.push(events)
  }
  const raw = dialect.dialect()
  const fixture: Fixture = {
    db: undefined as unknown as Kysely<any>,
    users,
    notes,
    teams,
    staging,
    watched,
    batches,
    errors,
    publish: record,
    record,
    close: async () => {
      await dropTestTables(fixture.db, users, notes, teams, staging)
      await fixture.db.destroy()
    }
  }
  const db = new Kysely<any>({
    dialect: captureWrites(options.wrap === undefined ? raw : options.wrap(raw), {
      watched: () => watched,
      publish: (events) => fixture.publish(events),
      onPublishError: (error, events) => {
        errors.push({ error, events })
      },
      ...(options.mode !== undefined && { mode: options.mode })
    })
  })
  ;(fixture as { db: Kysely<any> }).db = db
  await createTestTable(db, dialect, users, (t) =>
    t
      .addColumn("email", "varchar(100)", (c) => c.notNull().unique())
      .addColumn("team", "integer")
      .addColumn("name", "varchar(100)")
  )
  await createTestTable(db, dialect, teams, (t) => t.addColumn("label", "varchar(100)"))
  await dropTestTables(db, notes, staging)
  await db.schema.createTable(notes).addColumn("a", "integer").addColumn("b", "integer").execute()
  await db.schema.createTable(staging).addColumn("email", "varchar(100)").addColumn("team", "integer").execute()
  // In async mode publishing starts on the next turn of the event loop: let the setup's own events in first.
  await new Promise((resolve) => setImmediate(resolve))
  batches.length = 0
  return fixture
}

/** Empties the tables and the records, so each test starts from the same state. */
const reset = async (f: Fixture) => {
  for (const table of [f.users, f.notes, f.teams, f.staging]) await f.db.deleteFrom(table).execute()
  f.batches.length = 0
  f.errors.length = 0
  f.publish = f.record
}

interface NewUser {
  readonly email: string
  readonly team: number
  readonly name?: string
}

/** Inserts users outside the records (the seed's own events are cleared). */
const seedUsers = async (f: Fixture, users: ReadonlyArray<NewUser>) => {
  await f.db
    .insertInto(f.users)
    .values(users.map((u) => ({ name: "seed", ...u })))
    .execute()
  f.batches.length = 0
}

/** The watched columns of the users with these emails, as the database has them now. */
const watchedUsers = async (f: Fixture, ...emails: ReadonlyArray<string>): Promise<ReadonlyArray<Row>> => {
  const rows = await f.db.selectFrom(f.users).select(USER_COLUMNS).where("email", "in", emails).execute()
  expect(rows).toHaveLength(emails.length)
  return rows
}

const idOf = async (f: Fixture, email: string): Promise<number> =>
  (await f.db.selectFrom(f.users).select("id").where("email", "=", email).executeTakeFirstOrThrow()).id as number

const isPostgres = (d: TestDialect) => d.name === "postgres" || d.name === "pglite"

for (const d of DIALECTS) {
  describe.skipIf(await isMissing(d))(`captureWrites on ${d.name}`, () => {
    let f: Fixture

    beforeAll(async () => {
      f = await openFixture(d)
    })
    afterAll(async () => {
      await f?.close()
    })
    beforeEach(async () => {
      await reset(f)
    })

    describe("autocommit writes", () => {
      it("insert: the watched columns of every inserted row", async () => {
        await f.db
          .insertInto(f.users)
          .values([
            { email: "a@x", team: 1, name: "A" },
            { email: "b@x", team: 2, name: "B" }
          ])
          .execute()
        const rows = await watchedUsers(f, "a@x", "b@x")
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", rows)]])
      })

      it("insert with every watched column given (MariaDB reads them from VALUES)", async () => {
        await f.db.insertInto(f.users).values({ id: 1000, email: "v@x", team: 4, name: "V" }).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", [{ id: 1000, email: "v@x", team: 4 }])]])
      })

      it("update of a watched column: the old and the new values", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        const id = await idOf(f, "a@x")
        await f.db.updateTable(f.users).set({ email: "a2@x", team: 5 }).where("id", "=", id).execute()
        expect(canonical(f.batches)).toEqual([
          [
            event(f.users, "update", [
              { id, email: "a@x", team: 1 },
              { id, email: "a2@x", team: 5 }
            ])
          ]
        ])
      })

      it("update of unwatched columns: the matched rows, once, even when nothing changed", async () => {
        await seedUsers(f, [
          { email: "a@x", team: 1, name: "same" },
          { email: "b@x", team: 1, name: "same" }
        ])
        await f.db.updateTable(f.users).set({ name: "same" }).where("team", "=", 1).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "update", await watchedUsers(f, "a@x", "b@x"))]])
      })

      it("update matching no row publishes nothing", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        const result = await f.db.updateTable(f.users).set({ email: "z@x" }).where("id", "=", -1).executeTakeFirst()
        expect(result.numUpdatedRows).toBe(0n)
        expect(f.batches).toEqual([])
      })

      it("bulk update without ids, by an expression: every matched row, old and new", async () => {
        await seedUsers(f, [
          { email: "a@x", team: 1 },
          { email: "b@x", team: 1 },
          { email: "c@x", team: 2 }
        ])
        const before = await watchedUsers(f, "a@x", "b@x")
        await f.db
          .updateTable(f.users)
          .set((eb) => ({ team: eb("team", "+", 10) }))
          .where("team", "=", 1)
          .execute()
        const after = await watchedUsers(f, "a@x", "b@x")
        expect(after.map((row) => row.team)).toEqual([11, 11])
        expect(canonical(f.batches)).toEqual([[event(f.users, "update", [...before, ...after])]])
      })

      it("update of a table without primary key: plain values are followed, expressions need RETURNING", async () => {
        await f.db
          .insertInto(f.notes)
          .values([
            { a: 1, b: 1 },
            { a: 2, b: 2 }
          ])
          .execute()
        f.batches.length = 0
        await f.db.updateTable(f.notes).set({ b: 5 }).where("a", "=", 1).execute()
        await f.db
          .updateTable(f.notes)
          .set((eb) => ({ b: eb("b", "+", 1) }))
          .where("a", "=", 2)
          .execute()
        expect(canonical(f.batches)).toEqual([
          [
            event(f.notes, "update", [
              { a: 1, b: 1 },
              { a: 1, b: 5 }
            ])
          ],
          d.supports.returning
            ? [
                event(f.notes, "update", [
                  { a: 2, b: 2 },
                  { a: 2, b: 3 }
                ])
              ]
            : [wholeTable(f.notes, "update")]
        ])
      })

      it("past 10,000 rows a write is whole-table", async () => {
        const many = Array.from({ length: 10_001 }, (_, index) => ({ a: index, b: 0 }))
        await f.db.insertInto(f.notes).values(many).execute()
        await f.db
          .updateTable(f.notes)
          .set((eb) => ({ b: eb("b", "+", 1) }))
          .execute()
        await f.db.deleteFrom(f.notes).where("a", "<", 3).execute()
        expect(canonical(f.batches)).toEqual([
          [wholeTable(f.notes, "insert")],
          [wholeTable(f.notes, "update")],
          [
            event(
              f.notes,
              "delete",
              [0, 1, 2].map((a) => ({ a, b: 1 }))
            )
          ]
        ])
      })

      it("delete: the values of every deleted row", async () => {
        await seedUsers(f, [
          { email: "a@x", team: 1 },
          { email: "b@x", team: 2 },
          { email: "c@x", team: 2 }
        ])
        const gone = await watchedUsers(f, "b@x", "c@x")
        await f.db.deleteFrom(f.users).where("team", "=", 2).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "delete", gone)]])
      })

      it("upsert: the inserted row, and the updated row's old and new values", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        const id = await idOf(f, "a@x")
        const values = [
          { email: "a@x", team: 7, name: "A" },
          { email: "c@x", team: 3, name: "C" }
        ]
        if (d.name === "mariadb") {
          await f.db.insertInto(f.users).values(values).onDuplicateKeyUpdate({ team: sql`values(team)` }).execute()
        } else {
          await f.db
            .insertInto(f.users)
            .values(values)
            .onConflict((oc) => oc.column("email").doUpdateSet((eb) => ({ team: eb.ref("excluded.team") })))
            .execute()
        }
        const [inserted] = await watchedUsers(f, "c@x")
        expect(canonical(f.batches)).toEqual([
          [event(f.users, "upsert", [{ id, email: "a@x", team: 1 }, { id, email: "a@x", team: 7 }, inserted!])]
        ])
      })

      it.skipIf(d.name === "mariadb")("on conflict do nothing: only the rows actually inserted", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        await f.db
          .insertInto(f.users)
          .values([
            { email: "a@x", team: 9 },
            { email: "n@x", team: 2 }
          ])
          .onConflict((oc) => oc.column("email").doNothing())
          .execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "n@x"))]])
      })

      it.skipIf(isPostgres(d))("replace: the replaced row and its replacement", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        const id = await idOf(f, "a@x")
        const row = { id, email: "a@x", team: 8, name: "R" }
        if (d.name === "mariadb") await f.db.replaceInto(f.users).values(row).execute()
        else await f.db.insertInto(f.users).orReplace().values(row).execute()
        expect(canonical(f.batches)).toEqual([
          [
            event(f.users, "upsert", [
              { id, email: "a@x", team: 1 },
              { id, email: "a@x", team: 8 }
            ])
          ]
        ])
      })

      it.skipIf(!isPostgres(d))(
        "merge: exact rows with MERGE ... RETURNING (PostgreSQL 17+), else whole-table",
        async () => {
          await seedUsers(f, [{ email: "a@x", team: 1 }])
          const id = await idOf(f, "a@x")
          await f.db
            .insertInto(f.staging)
            .values([
              { email: "a@x", team: 6 },
              { email: "m@x", team: 2 }
            ])
            .execute()
          const version = Number(
            (await sql<{ server_version_num: string }>`show server_version_num`.execute(f.db)).rows[0]!
              .server_version_num
          )
          await f.db
            .mergeInto(`${f.users} as t`)
            .using(`${f.staging} as s`, "s.email", "t.email")
            .whenMatched()
            .thenUpdateSet((eb: ExpressionBuilder<any, any>) => ({ team: eb.ref("s.team") }))
            .whenNotMatched()
            .thenInsertValues((eb: ExpressionBuilder<any, any>) => ({
              email: eb.ref("s.email"),
              team: eb.ref("s.team"),
              name: "M"
            }))
            .execute()
          const [merged] = await watchedUsers(f, "m@x")
          const expected =
            version >= 170000
              ? event(f.users, "merge", [{ id, email: "a@x", team: 1 }, { id, email: "a@x", team: 6 }, merged!])
              : wholeTable(f.users, "merge")
          expect(canonical(f.batches)).toEqual([[expected]])
        }
      )

      it("writes to tables outside the watched map publish nothing; the map is read on every write", async () => {
        await f.db.insertInto(f.teams).values({ label: "t" }).execute()
        expect(f.batches).toEqual([])
        f.watched.delete(f.users)
        try {
          await f.db.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
          expect(f.batches).toEqual([])
        } finally {
          f.watched.set(f.users, USER_COLUMNS)
        }
        await f.db.insertInto(f.users).values({ email: "b@x", team: 2 }).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "b@x"))]])
      })

      it("an update joining another table is whole-table", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        await f.db.insertInto(f.teams).values({ id: 1, label: "one" }).execute()
        if (d.name === "mariadb") {
          // MySQL's multi-table update: `update users, teams set ... where ...`.
          await f.db
            .updateTable([f.users, f.teams])
            .set(`${f.users}.name`, "joined")
            .whereRef(`${f.users}.team`, "=", `${f.teams}.id`)
            .execute()
        } else {
          await f.db
            .updateTable(f.users)
            .from(f.teams)
            .set({ name: "joined" })
            .whereRef(`${f.users}.team`, "=", `${f.teams}.id`)
            .execute()
        }
        expect(f.batches).toEqual([[wholeTable(f.users, "update")]])
      })

      it.skipIf(!isPostgres(d))("a data-modifying CTE is a whole-table write", async () => {
        await f.db.insertInto(f.notes).values({ a: 1, b: 1 }).execute()
        f.batches.length = 0
        await f.db
          .with("gone", (qb) => qb.deleteFrom(f.notes).where("a", "=", 1).returning("a"))
          .selectFrom("gone")
          .selectAll()
          .execute()
        expect(f.batches).toEqual([[wholeTable(f.notes, "delete")]])
      })
    })

    describe("raw SQL", () => {
      it("a write in SQL text is whole-table for its table", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        await sql`update ${sql.table(f.users)} set name = ${"raw"} where email = ${"a@x"}`.execute(f.db)
        await sql`delete from ${sql.table(f.notes)}`.execute(f.db)
        expect(f.batches).toEqual([[wholeTable(f.users, "raw")], [wholeTable(f.notes, "raw")]])
      })

      it("reads and writes to unwatched tables in SQL text publish nothing", async () => {
        await sql`select * from ${sql.table(f.users)} where name = ${"update x set"}`.execute(f.db)
        await sql`insert into ${sql.table(f.teams)} (label) values (${"delete from x"})`.execute(f.db)
        expect(f.batches).toEqual([])
      })

      it.skipIf(d.name === "sqlite")("TRUNCATE is whole-table", async () => {
        await sql`truncate table ${sql.table(f.notes)}`.execute(f.db)
        expect(f.batches).toEqual([[wholeTable(f.notes, "raw")]])
      })

      it.skipIf(!isPostgres(d))(
        "a write to a table the text does not name invalidates every watched table",
        async () => {
          await sql.raw(`do $$ begin update "${f.users}" set name = 'do'; end $$`).execute(f.db)
          expect(f.batches).toHaveLength(1)
          expect([...f.batches[0]!].sort((a, b) => a.table.localeCompare(b.table))).toEqual(
            [wholeTable(f.users, "raw"), wholeTable(f.notes, "raw")].sort((a, b) => a.table.localeCompare(b.table))
          )
        }
      )

      it("BEGIN / COMMIT in SQL text hold the events until the commit", async () => {
        await f.db.connection().execute(async (conn) => {
          await sql`begin`.execute(conn)
          await conn.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
          await sql`update ${sql.table(f.notes)} set b = 1`.execute(conn)
          expect(f.batches).toEqual([])
          await sql`commit`.execute(conn)
        })
        expect(canonical(f.batches)).toEqual([
          [event(f.users, "insert", await watchedUsers(f, "a@x")), wholeTable(f.notes, "raw")]
        ])
      })

      it("ROLLBACK in SQL text drops the events", async () => {
        await f.db.connection().execute(async (conn) => {
          await sql`begin`.execute(conn)
          await conn.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
          await sql`rollback`.execute(conn)
        })
        await f.db.insertInto(f.users).values({ email: "b@x", team: 2 }).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "b@x"))]])
      })
    })

    describe("transactions", () => {
      it("publish once, after COMMIT, one event per table and operation", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        const id = await idOf(f, "a@x")
        await f.db.transaction().execute(async (trx) => {
          await trx.insertInto(f.users).values({ email: "b@x", team: 2 }).execute()
          await trx.insertInto(f.users).values({ email: "c@x", team: 3 }).execute()
          await trx.updateTable(f.users).set({ team: 4 }).where("id", "=", id).execute()
          expect(f.batches).toEqual([])
        })
        expect(canonical(f.batches)).toEqual([
          [
            event(f.users, "insert", await watchedUsers(f, "b@x", "c@x")),
            event(f.users, "update", [
              { id, email: "a@x", team: 1 },
              { id, email: "a@x", team: 4 }
            ])
          ]
        ])
      })

      it("ROLLBACK publishes nothing", async () => {
        await expect(
          f.db.transaction().execute(async (trx) => {
            await trx.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
            throw new Error("abandon")
          })
        ).rejects.toThrow("abandon")
        const trx = await f.db.startTransaction().execute()
        await trx.insertInto(f.users).values({ email: "b@x", team: 1 }).execute()
        await trx.rollback().execute()
        expect(f.batches).toEqual([])
        expect(await f.db.selectFrom(f.users).selectAll().execute()).toEqual([])
      })

      it("savepoints: RELEASE keeps the savepoint's events, ROLLBACK TO drops what followed it", async () => {
        const trx = await f.db.startTransaction().execute()
        await trx.insertInto(f.users).values({ email: "u1@x", team: 1 }).execute()
        const sp1 = await trx.savepoint("sp1").execute()
        await sp1.insertInto(f.users).values({ email: "u2@x", team: 2 }).execute()
        const sp2 = await sp1.savepoint("sp2").execute()
        await sp2.insertInto(f.users).values({ email: "u3@x", team: 3 }).execute()
        await sp2.rollbackToSavepoint("sp2").execute()
        await sp2.insertInto(f.users).values({ email: "u4@x", team: 4 }).execute()
        const sp1Again = await sp2.releaseSavepoint("sp2").execute()
        const done = await sp1Again.releaseSavepoint("sp1").execute()
        expect(f.batches).toEqual([])
        await done.commit().execute()
        expect(canonical(f.batches)).toEqual([
          [event(f.users, "insert", await watchedUsers(f, "u1@x", "u2@x", "u4@x"))]
        ])
      })

      it("savepoints: ROLLBACK TO an outer savepoint drops the inner, released ones too", async () => {
        const trx = await f.db.startTransaction().execute()
        await trx.insertInto(f.users).values({ email: "u1@x", team: 1 }).execute()
        const sp1 = await trx.savepoint("sp1").execute()
        await sp1.insertInto(f.users).values({ email: "u2@x", team: 2 }).execute()
        const sp2 = await sp1.savepoint("sp2").execute()
        await sp2.insertInto(f.users).values({ email: "u3@x", team: 3 }).execute()
        const released = await sp2.releaseSavepoint("sp2").execute()
        const back = await released.rollbackToSavepoint("sp1").execute()
        await back.commit().execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "u1@x"))]])
      })

      it("a failing statement records nothing", async () => {
        await seedUsers(f, [{ email: "a@x", team: 1 }])
        await expect(f.db.insertInto(f.users).values({ email: "a@x", team: 2 }).execute()).rejects.toThrow()
        await expect(
          f.db.updateTable(f.users).set({ email: "a@x" }).where("email", "=", "nobody").execute()
        ).resolves.toBeDefined()
        await seedUsers(f, [{ email: "b@x", team: 1 }])
        // A failing update that read its rows first (in a short transaction of its own where the dialect locks).
        await expect(
          f.db.updateTable(f.users).set({ email: "a@x" }).where("email", "=", "b@x").execute()
        ).rejects.toThrow()
        expect(f.batches).toEqual([])
        // The connection is not left inside that short transaction: autocommit publishes at once again.
        await f.db.insertInto(f.users).values({ email: "c@x", team: 3 }).execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "c@x"))]])
      })

      it("a failing statement inside a transaction records nothing", async () => {
        const run = f.db.transaction().execute(async (trx) => {
          await trx.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
          await expect(trx.insertInto(f.users).values({ email: "a@x", team: 2 }).execute()).rejects.toThrow()
        })
        if (isPostgres(d)) {
          // PostgreSQL aborts the transaction at the error: COMMIT is a rollback, and nothing is published.
          await expect(run).rejects.toThrow()
          expect(f.batches).toEqual([])
        } else {
          await run
          expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "a@x"))]])
        }
      })

      it("two transactions at once keep their events apart", async () => {
        await Promise.all([
          f.db.transaction().execute(async (trx) => {
            await trx.insertInto(f.users).values({ email: "kept@x", team: 1 }).execute()
            await sleep(20)
            await trx.insertInto(f.users).values({ email: "kept2@x", team: 1 }).execute()
          }),
          f.db
            .transaction()
            .execute(async (trx) => {
              await trx.insertInto(f.users).values({ email: "dropped@x", team: 2 }).execute()
              await sleep(10)
              throw new Error("abandon")
            })
            .catch(() => undefined)
        ])
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "kept@x", "kept2@x"))]])
      })

      it.skipIf(d.supports.singleConnection)("interleaved transactions on two pooled connections", async () => {
        const first = await f.db.startTransaction().execute()
        const second = await f.db.startTransaction().execute()
        await first.insertInto(f.users).values({ email: "first@x", team: 1 }).execute()
        await second.insertInto(f.users).values({ email: "second@x", team: 2 }).execute()
        await first.insertInto(f.notes).values({ a: 1, b: 1 }).execute()
        await second.commit().execute()
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "second@x"))]])
        await first.rollback().execute()
        expect(f.batches).toHaveLength(1)
      })
    })

    describe("publishing", () => {
      it("sync mode: the write resolves only after publish resolved", async () => {
        const gate = deferred()
        f.publish = async (events) => {
          await gate.promise
          await f.record(events)
        }
        let settled = false
        const write = f.db
          .insertInto(f.users)
          .values({ email: "a@x", team: 1 })
          .execute()
          .then(() => {
            settled = true
          })
        await sleep(100)
        expect(settled).toBe(false)
        gate.resolve()
        await write
        expect(settled).toBe(true)
        expect(f.batches).toHaveLength(1)
      })

      it("sync mode: COMMIT resolves only after publish resolved", async () => {
        const gate = deferred()
        f.publish = async (events) => {
          await gate.promise
          await f.record(events)
        }
        let settled = false
        const transaction = f.db
          .transaction()
          .execute((trx) => trx.insertInto(f.users).values({ email: "a@x", team: 1 }).execute())
          .then(() => {
            settled = true
          })
        await sleep(100)
        expect(settled).toBe(false)
        gate.resolve()
        await transaction
        expect(canonical(f.batches)).toEqual([[event(f.users, "insert", await watchedUsers(f, "a@x"))]])
      })

      it("a failing publish never fails the write and reaches onPublishError with the events", async () => {
        const failure = new Error("bus down")
        f.publish = () => Promise.reject(failure)
        await f.db.insertInto(f.users).values({ email: "a@x", team: 1 }).execute()
        f.publish = () => {
          throw failure
        }
        await f.db.transaction().execute((trx) => trx.insertInto(f.users).values({ email: "b@x", team: 2 }).execute())
        expect(f.errors.map(({ error, events }) => ({ error, events: canonical([events])[0] }))).toEqual([
          { error: failure, events: [event(f.users, "insert", await watchedUsers(f, "a@x"))] },
          { error: failure, events: [event(f.users, "insert", await watchedUsers(f, "b@x"))] }
        ])
        expect(await f.db.selectFrom(f.users).select("email").orderBy("email").execute()).toEqual([
          { email: "a@x" },
          { email: "b@x" }
        ])
      })
    })

    describe("caller results are unchanged", () => {
      it("insert without RETURNING: no rows, numAffectedRows, insertId", async () => {
        const result = await f.db.insertInto(f.users).values({ email: "a@x", team: 1 }).executeTakeFirstOrThrow()
        const id = await idOf(f, "a@x")
        expect(result.numInsertedOrUpdatedRows).toBe(1n)
        expect(result.insertId).toBe(isPostgres(d) ? undefined : BigInt(id))
        const raw = await f.db.executeQuery(f.db.insertInto(f.users).values({ email: "b@x", team: 1 }).compile())
        expect(raw.rows).toEqual([])
        expect(raw.numAffectedRows).toBe(1n)
        expect(raw.insertId).toBe(isPostgres(d) ? undefined : BigInt(await idOf(f, "b@x")))
      })

      it("update and delete without RETURNING: no rows, the affected counts", async () => {
        await seedUsers(f, [
          { email: "a@x", team: 1 },
          { email: "b@x", team: 1 }
        ])
        const updated = await f.db.executeQuery(
          f.db.updateTable(f.users).set({ team: 2 }).where("team", "=", 1).compile()
        )
        expect(updated.rows).toEqual([])
        expect(updated.numAffectedRows).toBe(2n)
        const deleted = await f.db.deleteFrom(f.users).where("email", "=", "a@x").executeTakeFirstOrThrow()
        expect(deleted.numDeletedRows).toBe(1n)
      })

      it.skipIf(!d.supports.returning)(
        "RETURNING of the caller: exactly the caller's columns, aliases kept",
        async () => {
          const inserted = await f.db
            .insertInto(f.users)
            .values({ email: "a@x", team: 1, name: "A" })
            .returning(["id", "email as team"])
            .executeTakeFirstOrThrow()
          const id = await idOf(f, "a@x")
          expect(inserted).toStrictEqual({ id, team: "a@x" })
          const updated = await f.db.updateTable(f.users).set({ team: 5 }).where("id", "=", id).returningAll().execute()
          expect(updated).toStrictEqual([{ id, email: "a@x", team: 5, name: "A" }])
          const deleted = await f.db.deleteFrom(f.users).where("id", "=", id).returning("name").execute()
          expect(deleted).toStrictEqual([{ name: "A" }])
          expect(canonical(f.batches)).toEqual([
            [event(f.users, "insert", [{ id, email: "a@x", team: 1 }])],
            [
              event(f.users, "update", [
                { id, email: "a@x", team: 1 },
                { id, email: "a@x", team: 5 }
              ])
            ],
            [event(f.users, "delete", [{ id, email: "a@x", team: 5 }])]
          ])
        }
      )
    })

    describe("writes whose statement pins their rows by number", () => {
      it("run as they are (no RETURNING, no reads): the events come from the statement", async () => {
        const log: Array<string> = []
        const g = await openFixture(d, { wrap: loggingSql(log) })
        try {
          await g.db.insertInto(g.notes).values({ a: 1, b: 2 }).execute()
          await g.db.updateTable(g.notes).set({ b: 3 }).where("a", "=", 1).where("b", "=", 2).execute()
          await g.db.deleteFrom(g.notes).where("a", "in", [1, 7]).where("b", "=", 3).execute()
          // Nothing matched: nothing to publish.
          await g.db.deleteFrom(g.notes).where("a", "=", 9).where("b", "=", 9).execute()
          const statements = log.filter((sql) => sql.includes(g.notes) && !/^(create|drop)/.test(sql))
          // The rows the WHERE names, whether they exist or not (a=7): a reload at worst, never a stale value. On
          // MariaDB only because a and b are integer columns (it compares '05' and 5 as equal).
          expect(g.batches).toEqual([
            [event(g.notes, "insert", [{ a: 1, b: 2 }])],
            [
              event(g.notes, "update", [
                { a: 1, b: 2 },
                { a: 1, b: 3 }
              ])
            ],
            [
              event(g.notes, "delete", [
                { a: 1, b: 3 },
                { a: 7, b: 3 }
              ])
            ]
          ])
          // MariaDB outside strict mode clamps out-of-range values: there only the delete's keys come from its WHERE
          // alone, the insert and the update (which assigns b) are read back as usual.
          expect(statements.filter((sql) => !sql.startsWith("select"))).toEqual([
            expect.stringMatching(/^insert/),
            expect.stringMatching(/^update/),
            expect.stringMatching(/^delete/),
            expect.stringMatching(/^delete/)
          ])
          expect(statements.filter((sql) => sql.startsWith("select")).length).toBe(d.supports.returning ? 0 : 1)
          expect(statements.filter((sql) => sql.includes("returning"))).toEqual([])
          // A string key may meet a collation: read back (RETURNING, or a select on MariaDB).
          log.length = 0
          await g.db
            .updateTable(g.users)
            .set({ name: "x" })
            .where("id", "=", 1)
            .where("email", "=", "a@x")
            .where("team", "=", 1)
            .execute()
          expect(log.some((sql) => (d.supports.returning ? sql.includes("returning") : sql.startsWith("select")))).toBe(
            true
          )
        } finally {
          await g.close()
        }
      })
    })

    describe("with other options", () => {
      it("async mode: the write does not wait for publish", async () => {
        const g = await openFixture(d, { mode: "async" })
        try {
          const never = deferred()
          g.publish = async (events) => {
            await g.record(events)
            await never.promise
          }
          await g.db.insertInto(g.users).values({ email: "a@x", team: 1 }).execute()
          await g.db.transaction().execute((trx) => trx.insertInto(g.users).values({ email: "b@x", team: 2 }).execute())
          // Publishing starts on the next turn of the event loop, once the write has resolved.
          await new Promise((resolve) => setImmediate(resolve))
          expect(canonical(g.batches)).toEqual([
            [event(g.users, "insert", await watchedUsers(g, "a@x"))],
            [event(g.users, "insert", await watchedUsers(g, "b@x"))]
          ])
          never.resolve()
        } finally {
          await g.close()
        }
      })

      it("a failed COMMIT publishes nothing", async () => {
        const g = await openFixture(d, { wrap: refusingCommits })
        try {
          await expect(
            g.db.transaction().execute((trx) => trx.insertInto(g.users).values({ email: "a@x", team: 1 }).execute())
          ).rejects.toThrow("commit refused")
          const trx = await g.db.startTransaction().execute()
          await trx.insertInto(g.users).values({ email: "b@x", team: 1 }).execute()
          await expect(trx.commit().execute()).rejects.toThrow("commit refused")
          await trx.rollback().execute()
          expect(g.batches).toEqual([])
          // Autocommit writes still publish.
          await g.db.insertInto(g.users).values({ email: "c@x", team: 1 }).execute()
          expect(canonical(g.batches)).toEqual([[event(g.users, "insert", await watchedUsers(g, "c@x"))]])
        } finally {
          await g.close()
        }
      })
    })
  })
}

describe("SQL text analysis", () => {
  const writes = (text: string, flavor: "postgres" | "mysql" | "sqlite" = "postgres") =>
    analyzeSql(text, flavor).map((step) => (step._tag === "Write" ? step.write.tables : step.control._tag))

  it("finds the written tables, quoted or qualified, in CTEs too", () => {
    expect(writes(`update "Users" set a = 1`)).toEqual([["Users"]])
    expect(writes("UPDATE public.users SET a = 1")).toEqual([["users"]])
    expect(writes("insert into `db`.`users` (a) values (1) on duplicate key update a = 2", "mysql")).toEqual([
      ["users"]
    ])
    expect(writes("with d as (delete from a returning *) insert into b select * from d")).toEqual([["b", "a"]])
    expect(writes("truncate table a, only b restart identity")).toEqual([["a", "b"]])
    expect(writes("replace into t (a) values (1)", "mysql")).toEqual([["t"]])
    expect(writes("merge into t using s on t.id = s.id when matched then delete")).toEqual([["t"]])
  })

  it("ignores reads, literals, comments and locking clauses", () => {
    expect(writes("select replace(name, 'a', 'b') from t")).toEqual([])
    expect(writes("select * from t where x = 'update a set b = 1' -- delete from t")).toEqual([])
    expect(writes("select * from t for update of t")).toEqual([])
    expect(writes("select $$ insert into t $$")).toEqual([])
    expect(writes("insert into t (a) values (1) on conflict (a) do update set a = 2")).toEqual([["t"]])
    expect(writes("create table t (id int references u on delete cascade on update cascade)")).toEqual([])
  })

  it("writes to unnamed tables and transaction control", () => {
    expect(writes("call refresh()")).toEqual(["every"])
    expect(writes("do $$ begin delete from t; end $$")).toEqual(["every"])
    expect(writes("begin; update t set a = 1; savepoint s; rollback to savepoint s; release s; commit")).toEqual([
      "Begin",
      ["t"],
      "Savepoint",
      "RollbackToSavepoint",
      "ReleaseSavepoint",
      "Commit"
    ])
    expect(writes("start transaction", "mysql")).toEqual(["Begin"])
    expect(writes("rollback")).toEqual(["Rollback"])
  })
})
