/**
 * The demo: effect-cacheme on the embedded defaults (the in-process store and PGlite), nothing to install.
 * Run it with `npm run demo`. It caches a database read, shows hits, shows a write through Kysely invalidating
 * the cache by itself (and a rolled-back one not doing so), and 100 concurrent callers sharing one load.
 */
import { Effect, Layer, Schema } from "effect"
import { CachemeConfig, CacheStore, Memo, Metrics, Node } from "effect-cacheme"
import { Database, TableInvalidNode } from "effect-cacheme/kysely"
import { PGliteDialect } from "effect-cacheme/kysely/pglite"

interface DB {
  book: { id: number; title: string; author: string }
}
const Db = Database.typed<DB>()

class Book extends Schema.Class<Book>("Book")({ id: Schema.Number, title: Schema.String, author: Schema.String }) {}

// Writes to a `book` row invalidate the group of its id.
const BookGroup = TableInvalidNode.make("book", { table: "book", fields: { id: Schema.Number } })

const BookNode = Node.make("book", {
  fields: { id: Schema.Number },
  value: Schema.NullOr(Book),
  ttl: "10 minutes",
  invalidatedBy: ({ id }) => [BookGroup.make({ id })]
})

let loads = 0
const getBook = (id: number) =>
  Db.query((db) => db.selectFrom("book").selectAll().where("id", "=", id).executeTakeFirst()).pipe(
    Effect.tap(() => Effect.sync(() => loads++)),
    Effect.delay("20 millis"), // a slow query, so the herd has something to wait for
    Effect.map((row) => (row === undefined ? null : new Book(row))),
    Memo.cached(BookNode.make({ id }))
  )

const timed = <A, E, R>(label: string, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const before = loads
    const start = performance.now()
    const value = yield* effect
    const millis = (performance.now() - start).toFixed(2)
    const loaded = loads - before
    console.log(`${label.padEnd(44)} ${millis.padStart(7)} ms  loads: ${loaded}  -> ${JSON.stringify(value)}`)
    return value
  })

const program = Effect.gen(function* () {
  yield* Db.query((db) =>
    db.schema
      .createTable("book")
      .addColumn("id", "integer", (c) => c.primaryKey())
      .addColumn("title", "text", (c) => c.notNull())
      .addColumn("author", "text", (c) => c.notNull())
      .execute()
  )
  yield* Db.query((db) => db.insertInto("book").values({ id: 1, title: "Dune", author: "Frank Herbert" }).execute())

  console.log("effect-cacheme demo: in-process store + PGlite\n")
  yield* timed("first read (miss, loads from PGlite)", getBook(1))
  yield* timed("second read (hit)", getBook(1))
  yield* timed("a missing row is cached too (miss)", getBook(2))
  yield* timed("... and then a hit", getBook(2))

  yield* Db.query((db) => db.updateTable("book").set({ title: "Dune Messiah" }).where("id", "=", 1).execute())
  yield* timed("after UPDATE book 1 (invalidated by itself)", getBook(1))
  yield* Db.query((db) => db.insertInto("book").values({ id: 2, title: "Emma", author: "Jane Austen" }).execute())
  yield* timed("after INSERT book 2 (the cached null is gone)", getBook(2))

  yield* Effect.exit(
    Db.transaction(
      Effect.andThen(
        Db.query((db) => db.updateTable("book").set({ title: "never committed" }).where("id", "=", 1).execute()),
        Effect.fail("rolled back")
      )
    )
  )
  yield* timed("after a ROLLBACK (still a hit)", getBook(1))

  yield* Memo.invalidate(BookNode.make({ id: 1 }))
  yield* timed(
    "100 concurrent reads of a cold key",
    Effect.map(
      Effect.all(
        Array.from({ length: 100 }, () => getBook(1)),
        { concurrency: "unbounded" }
      ),
      (books) => `${books.length} books`
    )
  )

  const stats = yield* Metrics.stats("book")
  console.log(
    `\nnode "book": ${stats.hits} hits, ${stats.misses} misses, ${stats.loads} loads, hit ratio ${(stats.hitRatio * 100).toFixed(0)}%`
  )
})

const Live = Database.layer({ dialect: new PGliteDialect() }).pipe(
  Layer.provideMerge(CacheStore.layerMemory()),
  Layer.provideMerge(CachemeConfig.layer({ prefix: "demo:" }))
)

await Effect.runPromise(program.pipe(Effect.provide(Live)))
