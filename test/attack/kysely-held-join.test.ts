/**
 * ATTACK (guarantee 2, end to end through effect-cacheme/kysely on PostgreSQL and Redis): read-your-writes after
 * a transaction whose groups were held.
 *
 * 1. A transaction updates book 1 ("old" -> "new"); at COMMIT its group is held (CaptureDriver.commitTransaction)
 *    and the COMMIT is slow (a driver wrapper delays it until a gate opens).
 * 2. Meanwhile a reader of this process looks book 1 up: its lookup sees the hold, it takes the lease and reads
 *    the row: "old" (the transaction has not committed). Its load then takes a while.
 * 3. COMMIT; `Database.transaction` resolves. The hold is released without waiting (Invalidator.hold ... commit:
 *    `inBackground(release(...))`, sent on the next turn of the event loop), so the marker still stands.
 * 4. The writing fiber reads book 1 back at once (`yield* rename(...); yield* title(1)`, the documented
 *    read-your-writes pattern): its lookup goes out in the same turn, before the release, finds the first reader's
 *    lease with the same stamps (the marker) and joins its load (`admissible` in src/Memo.ts): it returns "old".
 * No latency is injected (ATTACK_RELEASE_DELAY=<ms> adds some to the release, it is not needed).
 */
import { assert, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { type DatabaseConnection, type Dialect, type Driver, PostgresDialect } from "kysely"
import { Pool } from "pg"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"
import { gated } from "./gate.ts"
import { attackPrefix, deletePrefix, redisUrl } from "./support.ts"

const table = `attack_book_${process.pid}`
const releaseDelay = Number(process.env.ATTACK_RELEASE_DELAY ?? 0)

/** A PostgreSQL dialect whose COMMIT waits for `gate` (after telling `arrived`). */
const slowCommit = (inner: Dialect, arrived: () => void, gate: Promise<void>): Dialect => ({
  createAdapter: () => inner.createAdapter(),
  createIntrospector: (db) => inner.createIntrospector(db),
  createQueryCompiler: () => inner.createQueryCompiler(),
  createDriver: (): Driver => {
    const driver = inner.createDriver()
    return new Proxy(driver, {
      get(target, property) {
        if (property === "commitTransaction") {
          return async (connection: DatabaseConnection) => {
            arrived()
            await gate
            return target.commitTransaction(connection)
          }
        }
        const value = (target as any)[property]
        return typeof value === "function" ? value.bind(target) : value
      }
    })
  }
})

it.live("a read started after the transaction resolved never joins a load that read the row before its COMMIT", () =>
  Effect.gen(function* () {
    const prefix = attackPrefix()
    yield* Effect.addFinalizer(() => Effect.promise(() => deletePrefix(prefix)))
    let openCommit!: () => void
    const commitGate = new Promise<void>((resolve) => {
      openCommit = resolve
    })
    const commitArrived = yield* Deferred.make<void>()
    let armed = false
    const dialect = slowCommit(
      new PostgresDialect({
        pool: new Pool({ host: "127.0.0.1", port: 5432, user: "postgres", database: "test", max: 4 })
      }),
      () => {
        if (armed) Deferred.doneUnsafe(commitArrived, Effect.void)
      },
      commitGate
    )
    const BookGroup = TableInvalidNode.make(`attack-book-${process.pid}`, { table, fields: { id: Schema.Number } })
    const BookTitle = Node.make(`attack-book-title-${process.pid}`, {
      fields: { id: Schema.Number },
      value: Schema.String,
      ttl: null,
      stale: false,
      invalidatedBy: ({ id }) => [BookGroup.make({ id })]
    })
    const readRow = yield* Deferred.make<void>()
    const finishLoad = yield* Deferred.make<void>()
    let slowLoads = 0
    const title = (id: number) =>
      Database.query((db) => db.selectFrom(table).select("title").where("id", "=", id).executeTakeFirstOrThrow()).pipe(
        Effect.map((row) => row.title as string),
        Effect.tap(() =>
          slowLoads-- > 0
            ? Effect.andThen(Deferred.succeed(readRow, undefined), Deferred.await(finishLoad))
            : Effect.void
        ),
        Memo.cached(BookTitle.make({ id }))
      )
    // The store, with its hold releases 30 ms late on the wire (a busy link; the write does not wait for them).
    const store = gated(
      CacheStore.layerRedis({ url: redisUrl, prefix }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "5 seconds", stale: false })),
        Layer.orDie
      ),
      (op) => (op === "releaseHold" && releaseDelay > 0 ? Effect.sleep(releaseDelay) : Effect.void),
      (op, args, result) =>
        process.env.ATTACK_DEBUG
          ? Effect.sync(() => console.log("DEBUG", op, JSON.stringify(args).slice(0, 200), JSON.stringify(result)))
          : Effect.void
    )
    const live = Database.layer({ dialect }).pipe(Layer.provideMerge(store))
    const admin = new Pool({ host: "127.0.0.1", port: 5432, user: "postgres", database: "test", max: 1 })
    yield* Effect.addFinalizer(() =>
      Effect.promise(async () => {
        await admin.query(`drop table if exists ${table}`).catch(() => undefined)
        await admin.end()
      })
    )
    yield* Effect.promise(() => admin.query(`drop table if exists ${table}`))
    yield* Effect.promise(() => admin.query(`create table ${table} (id integer primary key, title text)`))
    yield* Effect.gen(function* () {
      yield* Database.query((db) => db.insertInto(table).values({ id: 1, title: "old" }).execute())
      yield* Effect.sleep(100) // the insert's hold is released
      assert.strictEqual(yield* title(1), "old") // cached (and the node's tags have their stamps)

      // 1. The write: its COMMIT holds the group and waits. Then, in the same fiber (a request handler that
      //    writes, then reads back), a read of book 1: `yield* rename(1, ...); yield* title(1)`.
      armed = true
      const writerThenReader = yield* Effect.forkChild(
        Effect.gen(function* () {
          yield* Database.transaction(
            Database.query((db) => db.updateTable(table).set({ title: "new" }).where("id", "=", 1).execute())
          )
          // 4. The write resolved: this read must see "new".
          return yield* title(1)
        })
      )
      yield* Deferred.await(commitArrived)
      yield* Effect.sleep(50) // the hold has landed
      // 2. Another request's reader: sees the hold, reads the row before the COMMIT.
      slowLoads = 1
      const first = yield* Effect.forkChild(title(1))
      yield* Deferred.await(readRow)
      // 3. COMMIT; the transaction resolves.
      openCommit()
      yield* Effect.sleep(50)
      yield* Deferred.succeed(finishLoad, undefined)
      const firstValue = yield* Fiber.join(first)
      const secondValue = yield* Fiber.join(writerThenReader)
      const third = yield* title(1)
      console.log(
        `[kysely held join] first reader ${firstValue}; read started after the COMMIT resolved: ${secondValue}; later read ${third}`
      )
      assert.strictEqual(secondValue, "new", "a read that started after the write resolved returned the pre-commit row")
    }).pipe(Effect.provide(live))
  })
)
