/**
 * The quick start of `docs/kysely.md`, as written there (package imports included), run on PGlite: the guide's
 * example compiles against the real API and does what the guide says.
 */
import { assert, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { CacheStore, Memo, Node } from "effect-cacheme"
import { Database, TableInvalidNode } from "effect-cacheme/kysely"
import { PGliteDialect } from "effect-cacheme/kysely/pglite"

// --- from docs/kysely.md, "Quick start" -------------------------------------------------------------------------

interface DB {
  book: { id: number; title: string; author_id: number }
}
const Db = Database.typed<DB>()

// "Entries that depend on the book row with this id."
const BookGroup = TableInvalidNode.make("book", { table: "book", fields: { id: Schema.Number } })

const BookTitle = Node.make("book-title", {
  fields: { id: Schema.Number },
  value: Schema.NullOr(Schema.String),
  invalidatedBy: ({ id }) => [BookGroup.make({ id })]
})

export const title = (id: number) =>
  Db.query((db) => db.selectFrom("book").select("title").where("id", "=", id).executeTakeFirst()).pipe(
    Effect.map((row) => row?.title ?? null),
    Memo.cached(BookTitle.make({ id }))
  )

// Invalidates `book:{id}` once the update committed, before `rename` completes.
export const rename = (id: number, title: string) =>
  Db.query((db) => db.updateTable("book").set({ title }).where("id", "=", id).execute())

export const Live = Database.layer({ dialect: new PGliteDialect() }).pipe(
  Layer.provideMerge(CacheStore.layerMemory()) // or CacheStore.layerRedis({ url: "redis://127.0.0.1:6379" })
)

// --- the guide's claims ---------------------------------------------------------------------------------------------

it.live("quick start: the second read after a rename loads the new title", () =>
  Effect.gen(function* () {
    yield* Db.query((db) =>
      db.schema
        .createTable("book")
        .addColumn("id", "integer", (c) => c.primaryKey())
        .addColumn("title", "text", (c) => c.notNull())
        .addColumn("author_id", "integer", (c) => c.notNull())
        .execute()
    )
    yield* Db.query((db) => db.insertInto("book").values({ id: 1, title: "Dun", author_id: 1 }).execute())
    assert.strictEqual(yield* title(1), "Dun")
    // A cached "not found", reached by the insert below.
    assert.strictEqual(yield* title(2), null)
    yield* rename(1, "Dune")
    assert.strictEqual(yield* title(1), "Dune")
    yield* Db.query((db) => db.insertInto("book").values({ id: 2, title: "Emma", author_id: 1 }).execute())
    assert.strictEqual(yield* title(2), "Emma")
    // The layer verified the group at startup: the table did not exist yet, so it was skipped; now it does.
    yield* Database.verify
  }).pipe(Effect.provide(Live))
)
