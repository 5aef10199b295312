/**
 * Invalidations that database writes trigger (effect-cacheme/kysely) reach the admin's history when the program
 * provides `History.layerListener` to the captured database: the admin's JSON API then lists them with the actor
 * `kysely`.
 */
import { Effect, Layer, Schema } from "effect"
import { Kysely } from "kysely"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { History, Migration } from "../../src/admin/index.ts"
import { Memo, Node } from "../../src/index.ts"
import { Database, TableInvalidNode } from "../../src/kysely/index.ts"
import { PGliteDialect } from "../../src/kysely/pglite.ts"
import { bearer, type Started, startAdmin } from "./support.ts"

const BookGroup = TableInvalidNode.make("admin_kysely_book", {
  table: "admin_kysely_book",
  fields: { id: Schema.Number }
})
const BookTitle = Node.make("admin_kysely_book_title", {
  fields: { id: Schema.Number },
  value: Schema.NullOr(Schema.String),
  invalidatedBy: ({ id }) => [BookGroup.make({ id })]
})

describe("Kysely-driven invalidations in the admin's history", () => {
  let historyDb: Kysely<any>
  let admin: Started

  beforeAll(async () => {
    historyDb = new Kysely<any>({ dialect: new PGliteDialect() })
    await Effect.runPromise(Migration.migrate(historyDb))
    admin = await startAdmin("memory", { history: History.layerKysely({ db: historyDb }) })
  })
  afterAll(async () => {
    await admin?.close()
    await historyDb?.destroy()
  })

  it("lists the group a database write invalidated, with the actor kysely", async () => {
    const title = (id: number) =>
      Database.query((db) =>
        db.selectFrom("admin_kysely_book").select("title").where("id", "=", id).executeTakeFirst()
      ).pipe(
        Effect.map((row) => (row?.title as string | undefined) ?? null),
        Memo.cached(BookTitle.make({ id }))
      )
    const program = Effect.gen(function* () {
      yield* Database.query((db) =>
        db.schema
          .createTable("admin_kysely_book")
          .addColumn("id", "integer", (column) => column.primaryKey())
          .addColumn("title", "text")
          .execute()
      )
      yield* Database.query((db) => db.insertInto("admin_kysely_book").values({ id: 1, title: "Dune" }).execute())
      expect(yield* title(1)).toBe("Dune")
      yield* Database.query((db) =>
        db.updateTable("admin_kysely_book").set({ title: "Dune Messiah" }).where("id", "=", 1).execute()
      )
      expect(yield* title(1)).toBe("Dune Messiah")
      // The application's own invalidations go through the same listener.
      expect(yield* Memo.invalidate(BookTitle.make({ id: 1 }))).toBe(1)
    })
    await admin.run(
      program.pipe(
        Effect.provide(Database.layer({ dialect: new PGliteDialect() }).pipe(Layer.provideMerge(History.layerListener)))
      )
    )

    // Kysely-driven rows are recorded in the background (the write still holds its connection): poll briefly.
    type Row = { actor: string; target: string; value: string; mode: string; count: number }
    let rows: Array<Row> = []
    for (let attempt = 0; attempt < 50 && rows.length < 3; attempt++) {
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50))
      const response = await fetch(`${admin.url}/api/history`, { headers: bearer })
      const body = (await response.json()) as { entries: Array<Row> }
      rows = body.entries.map(({ actor, target, value, mode, count }) => ({ actor, target, value, mode, count }))
    }
    const group = BookGroup.make({ id: 1 }).key
    // The insert invalidated the group too (nothing cached yet); the update removed the cached title.
    expect(rows).toContainEqual({ actor: "kysely", target: "group", value: group, mode: "hard", count: 0 })
    expect(rows).toContainEqual({
      actor: "app",
      target: "key",
      value: BookTitle.make({ id: 1 }).key,
      mode: "hard",
      count: 1
    })
    expect(rows).toContainEqual({
      actor: "kysely",
      target: "group",
      value: group,
      mode: "hard",
      count: 1
    })
  })
})
