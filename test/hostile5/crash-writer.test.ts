/**
 * Issue 10 end to end, with a real crash: a Kysely writer (a child process, PostgreSQL, sync mode, the Redis store)
 * holds row 2's group, COMMITs and is killed (SIGKILL) before its hold's release goes out. A reader in this process,
 * whose value (every row) names each row's group, looked the list up while the hold stood, read the rows before the
 * COMMIT (PostgreSQL's MVCC: the old row), and fills after the hold lapsed.
 *
 * - When the family's epoch existed before the write (any read of the list before), the epoch listed the hold, the
 *   reader recorded it, and nothing is stored: held.
 * - When it did not (the first read of the family since deployment, or since the epoch key was evicted or lost),
 *   the reader's lease makes the epoch, listing no hold; the lapse changes nothing; the fill stores the row read
 *   before the COMMIT, served for ever after (ttl none). The break of ./epoch-absent.test.ts, with nothing
 *   simulated but the moment of the crash.
 */
import { spawn } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Layer, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { Pool } from "pg"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { TableInvalidNode } from "../../src/kysely/index.ts"
import { deleteRedisPrefix, missing, Postgres, Redis } from "../support/services.ts"

const skip = (await missing(Redis)) || (await missing(Postgres))
const worker = "test/hostile5/fixtures/crash-writer.ts"

let counter = 0
const fresh = (name: string) => `${name}_h5_${process.pid}_${counter++}`
const Row = Schema.Struct({ id: Schema.Number, title: Schema.String })

const poll = (what: string, check: () => Promise<boolean>) =>
  Effect.promise(async () => {
    for (let i = 0; i < 3_000; i++) {
      if (await check()) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error(`timed out waiting for ${what}`)
  })

const scenario = (epochFirst: boolean) =>
  Effect.scoped(
    Effect.gen(function* () {
      const prefix = `test:h5c:${process.pid}:${counter++}:`
      const control = `${prefix}control:`
      const table = fresh("h5_book")
      const family = fresh("h5-book")
      const pool = yield* Effect.acquireRelease(
        Effect.sync(() => new Pool({ host: "127.0.0.1", port: 5432, user: "postgres", database: "test", max: 2 })),
        (pool) => Effect.promise(() => pool.end())
      )
      const raw = yield* Effect.acquireRelease(
        Effect.sync(() => new IORedis(Redis.url)),
        (client) => Effect.sync(() => client.disconnect())
      )
      yield* Effect.addFinalizer(() =>
        Effect.promise(async () => {
          await pool.query(`drop table if exists ${table}`).catch(() => undefined)
          await deleteRedisPrefix(prefix).catch(() => 0)
        })
      )
      yield* Effect.promise(async () => {
        await pool.query(`create table ${table} (id integer primary key, title text)`)
        await pool.query(`insert into ${table} values (1, 'a'), (2, 'old')`)
      })
      const BookGroup = TableInvalidNode.make(family, { table, fields: { id: Schema.Number } })
      const Books = Node.make(fresh("h5-books"), {
        fields: {},
        value: Schema.Array(Row),
        ttl: null,
        stale: false,
        invalidatedByValue: { families: [BookGroup], groups: (rows) => rows.map(({ id }) => BookGroup.make({ id })) }
      })
      const gate = { next: undefined as undefined | { read: Deferred.Deferred<void>; go: Deferred.Deferred<void> } }
      const books = Effect.promise(() => pool.query(`select id, title from ${table} order by id`)).pipe(
        Effect.map((result) => result.rows.map((row) => `${row.id}:${row.title}`).join(" ")),
        Effect.tap(() => {
          const next = gate.next
          gate.next = undefined
          return next === undefined
            ? Effect.void
            : Effect.andThen(Deferred.succeed(next.read, undefined), Deferred.await(next.go))
        }),
        Effect.map((titles) =>
          titles.split(" ").map((t) => ({ id: Number(t.split(":")[0]), title: t.split(":")[1]! }))
        ),
        Memo.cached(Books.make({}))
      )
      const text = (rows: ReadonlyArray<typeof Row.Type>) => rows.map((row) => `${row.id}:${row.title}`).join(" ")
      const layer = CacheStore.layerRedis({ url: Redis.url, prefix, sweepInterval: null }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ prefix, leaseTtl: "1 minute", commandTimeout: "10 seconds" })),
        Layer.orDie
      )
      yield* Effect.gen(function* () {
        if (epochFirst) assert.strictEqual(text(yield* books), "1:a 2:old") // the family's epoch exists
        const child = spawn(process.execPath, [worker, Redis.url, prefix, control, table, family, "500"], {
          stdio: ["ignore", "ignore", "inherit"]
        })
        yield* Effect.addFinalizer(() => Effect.sync(() => child.kill("SIGKILL")))
        const stampKey = Protocol.stampKey(prefix, `g:${BookGroup.make({ id: 2 }).key}`)
        // The writer is at its COMMIT, its hold on row 2 in place.
        yield* poll("the writer's COMMIT", async () => (await raw.get(`${control}at-commit`)) !== null)
        yield* poll("the hold", async () => (await raw.get(stampKey))?.startsWith("!") === true)
        const next = { read: yield* Deferred.make<void>(), go: yield* Deferred.make<void>() }
        gate.next = next
        const reader = yield* Effect.forkChild(books)
        yield* Deferred.await(next.read) // read the rows before the COMMIT
        yield* Effect.promise(() => raw.set(`${control}go-commit`, "1"))
        yield* poll("the COMMIT", async () => (await raw.get(`${control}committed`)) !== null)
        child.kill("SIGKILL") // between its COMMIT and its release
        yield* poll("the hold's lapse", async () => (await raw.exists(stampKey)) === 0)
        yield* Deferred.succeed(next.go, undefined)
        assert.strictEqual(text(yield* Fiber.join(reader)), "1:a 2:old", "its caller gets what it read")
        assert.strictEqual(
          text(yield* books),
          "1:a 2:new",
          "a read after the write resolved (and its writer died) never gets the row read before its COMMIT"
        )
      }).pipe(Effect.provide(layer))
    })
  )

describe.skipIf(skip)("hostile5, a Kysely writer killed between COMMIT and release (PostgreSQL, Redis)", () => {
  it.live(
    "the family's epoch existed before the write: the row read before the COMMIT is never stored",
    () => scenario(true),
    60_000
  )
  it.live(
    "the family's first read comes during the write: the row read before the COMMIT is never stored",
    () => scenario(false),
    60_000
  )
})
