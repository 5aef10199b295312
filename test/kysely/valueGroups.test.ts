/**
 * Groups named by the loaded value, bound to a table (`TableInvalidNode` as a family of `invalidatedByValue`),
 * invalidated by the writes a captured Kysely makes (PostgreSQL, on every store). A cached list of the table's rows
 * names each row's group from the rows it read, so:
 *
 * 1. a write to one of its rows whose hold lands while the list loads (an autocommit UPDATE: held, committed,
 *    released) keeps the list it loaded out of the cache: the next read sees the write;
 * 2. a write whose hold stands when the list's fill arrives (a transaction whose COMMIT is held back by a driver
 *    wrapper while the list loads, reading the rows before the COMMIT) refuses the fill: the read that starts once
 *    the write resolved sees it, even though the hold's release is sent after the write resolves;
 * 3. a write whose rows cannot be known (raw SQL) reaches the list through the table tag the family brings.
 *
 * Without the fill's epoch and hold checks, 1 and 2 fail on every store (the list read before the write is
 * stored and served after it).
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { type DatabaseConnection, type Dialect, type Driver, PostgresDialect, sql } from "kysely"
import { Pool } from "pg"
import { CachemeConfig, Memo, Node } from "../../src/index.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"
import { gated } from "../attack/gate.ts"
import { backends } from "../support/backends.ts"
import { missing, Postgres } from "../support/services.ts"

const noPostgres = await missing(Postgres)

let counter = 0
const fresh = (name: string) => `${name}_vg_${process.pid}_${counter++}`

const Row = Schema.Struct({ id: Schema.Number, title: Schema.String })

/** A dialect whose COMMITs wait for `gate.wait()` while `gate.armed` (after telling `gate.arrived`). */
const slowCommit = (inner: Dialect, gate: { armed: boolean; arrived: () => void; wait: () => Promise<void> }) =>
  ({
    createAdapter: () => inner.createAdapter(),
    createIntrospector: (db) => inner.createIntrospector(db),
    createQueryCompiler: () => inner.createQueryCompiler(),
    createDriver: (): Driver => {
      const driver = inner.createDriver()
      return new Proxy(driver, {
        get(target, property) {
          if (property === "commitTransaction") {
            return async (connection: DatabaseConnection) => {
              if (gate.armed) {
                gate.armed = false
                gate.arrived()
                await gate.wait()
              }
              return target.commitTransaction(connection)
            }
          }
          const value = (target as any)[property]
          return typeof value === "function" ? value.bind(target) : value
        }
      })
    }
  }) satisfies Dialect

for (const backend of backends) {
  describe.skipIf(backend.skip || noPostgres)(`groups named by the value, from a table: ${backend.name}`, () => {
    const setup = Effect.gen(function* () {
      const table = fresh("vg_book")
      const BookGroup = TableInvalidNode.make(fresh("vg-book"), { table, fields: { id: Schema.Number } })
      const Books = Node.make(fresh("vg-books"), {
        fields: {},
        value: Schema.Array(Row),
        ttl: null,
        stale: false,
        invalidatedByValue: { families: [BookGroup], groups: (rows) => rows.map(({ id }) => BookGroup.make({ id })) }
      })
      const readGate = { next: undefined as undefined | { read: Deferred.Deferred<void>; go: Deferred.Deferred<void> } }
      let loads = 0
      const books = Database.query((db) => db.selectFrom(table).select(["id", "title"]).orderBy("id").execute()).pipe(
        Effect.map((rows) => rows.map((row) => ({ id: Number(row.id), title: String(row.title) }))),
        Effect.tap(() => {
          loads++
          const gate = readGate.next
          readGate.next = undefined
          return gate === undefined
            ? Effect.void
            : Effect.andThen(Deferred.succeed(gate.read, undefined), Deferred.await(gate.go))
        }),
        Memo.cached(Books.make({}))
      )
      const gateNextLoad = Effect.gen(function* () {
        const gate = { read: yield* Deferred.make<void>(), go: yield* Deferred.make<void>() }
        readGate.next = gate
        return gate
      })
      const titles = (rows: ReadonlyArray<typeof Row.Type>) => rows.map((row) => `${row.id}:${row.title}`).join(" ")
      return { table, books, gateNextLoad, titles, loads: () => loads }
    })

    const commitGate = { armed: false, arrived: () => {}, wait: () => Promise.resolve() }
    /** Hooks on the store: after each hold it answered, before and after each release of a hold. */
    const holds = {
      landed: () => {},
      releasing: Effect.void as Effect.Effect<void>,
      released: () => {}
    }
    const withDatabase = <A, E>(table: string, body: Effect.Effect<A, E, any>) =>
      Effect.gen(function* () {
        yield* Database.query((db) =>
          db.schema
            .createTable(table)
            .addColumn("id", "integer", (c) => c.primaryKey())
            .addColumn("title", "text")
            .execute()
        )
        yield* Database.query((db) =>
          db
            .insertInto(table)
            .values([
              { id: 1, title: "a" },
              { id: 2, title: "b" }
            ])
            .execute()
        )
        return yield* body.pipe(
          Effect.ensuring(Database.query((db) => db.schema.dropTable(table).ifExists().execute()).pipe(Effect.ignore))
        )
      }).pipe(
        Effect.provide(
          Database.layer({
            dialect: slowCommit(
              new PostgresDialect({
                pool: new Pool({ host: "127.0.0.1", port: 5432, user: "postgres", database: "test", max: 4 })
              }),
              commitGate
            )
          }).pipe(
            Layer.provideMerge(
              Layer.merge(
                gated(
                  backend.layer({ leaseTtl: "1 minute" }),
                  (op) => (op === "releaseHold" ? Effect.suspend(() => holds.releasing) : Effect.void),
                  (op) =>
                    op === "hold"
                      ? Effect.sync(() => holds.landed())
                      : op === "releaseHold"
                        ? Effect.sync(() => holds.released())
                        : Effect.void
                ),
                Layer.orDie(CachemeConfig.layer({ leaseTtl: "1 minute" }))
              )
            )
          )
        )
      )

    backend.test(
      "a write to a row the list names, whose hold lands while the list loads: the next read sees the write",
      () =>
        Effect.gen(function* () {
          const lib = yield* setup
          yield* withDatabase(
            lib.table,
            Effect.gen(function* () {
              const gate = yield* lib.gateNextLoad
              const first = yield* Effect.forkChild(lib.books)
              yield* Deferred.await(gate.read)
              const released = yield* Deferred.make<void>()
              holds.released = () => Deferred.doneUnsafe(released, Effect.void)
              yield* Database.query((db) =>
                db.updateTable(lib.table).set({ title: "b2" }).where("id", "=", 2).execute()
              )
              // Held, committed and released before the list's fill: only the family's epoch tells the fill.
              yield* Deferred.await(released)
              yield* Deferred.succeed(gate.go, undefined)
              assert.strictEqual(lib.titles(yield* Fiber.join(first)), "1:a 2:b")
              assert.strictEqual(lib.titles(yield* lib.books), "1:a 2:b2")
              assert.strictEqual(lib.titles(yield* lib.books), "1:a 2:b2")
              assert.strictEqual(lib.loads(), 2)
            })
          )
        }),
      60_000
    )

    backend.test(
      "a write whose hold stands when the list's fill arrives (COMMIT held back): refused; the read after the write sees it",
      () =>
        Effect.gen(function* () {
          const lib = yield* setup
          const releaseGate = yield* Deferred.make<void>()
          yield* withDatabase(
            lib.table,
            Effect.gen(function* () {
              assert.strictEqual(lib.titles(yield* lib.books), "1:a 2:b") // cached, the family's epoch made
              const arrived = yield* Deferred.make<void>()
              const held = yield* Deferred.make<void>()
              holds.landed = () => Deferred.doneUnsafe(held, Effect.void)
              // The hold's release leaves after the write resolved (as it does, in the background): held here
              // until the read below is done, so that only the hold itself can keep the list out.
              holds.releasing = Deferred.await(releaseGate)
              const release = yield* Deferred.make<void>()
              commitGate.arrived = () => Deferred.doneUnsafe(arrived, Effect.void)
              commitGate.wait = () => Effect.runPromise(Deferred.await(release))
              commitGate.armed = true
              // The write: its COMMIT holds book 2's group, then waits.
              const writer = yield* Effect.forkChild(
                Database.transaction(
                  Database.query((db) => db.updateTable(lib.table).set({ title: "b2" }).where("id", "=", 2).execute())
                )
              )
              yield* Deferred.await(arrived)
              yield* Deferred.await(held) // the hold has landed (and removed the cached list, which named book 2)
              // A read whose lookup comes after the hold: it cannot know the list names book 2; it reads the
              // rows before the COMMIT.
              const gate = yield* lib.gateNextLoad
              const reader = yield* Effect.forkChild(lib.books)
              yield* Deferred.await(gate.read)
              yield* Deferred.succeed(gate.go, undefined)
              assert.strictEqual(lib.titles(yield* Fiber.join(reader)), "1:a 2:b")
              yield* Deferred.succeed(release, undefined)
              yield* Fiber.join(writer)
              // The write resolved (its hold's release is still on its way): this read must see it.
              assert.strictEqual(lib.titles(yield* lib.books), "1:a 2:b2")
            }).pipe(
              Effect.ensuring(
                Effect.suspend(() => {
                  holds.releasing = Effect.void
                  return Deferred.succeed(releaseGate, undefined)
                })
              )
            )
          )
        }),
      60_000
    )

    backend.test("a write whose rows cannot be known (raw SQL) reaches the list through the family's table tag", () =>
      Effect.gen(function* () {
        const lib = yield* setup
        yield* withDatabase(
          lib.table,
          Effect.gen(function* () {
            assert.strictEqual(lib.titles(yield* lib.books), "1:a 2:b")
            yield* Database.query((db) => sql`update ${sql.table(lib.table)} set title = title || '!'`.execute(db))
            assert.strictEqual(lib.titles(yield* lib.books), "1:a! 2:b!")
            assert.strictEqual(lib.loads(), 2)
          })
        )
      })
    )
  })
}
