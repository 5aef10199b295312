/**
 * Spans exported through `@effect/opentelemetry` to an in-memory OpenTelemetry exporter: a miss (read, load,
 * fill), a hit, a captured Kysely write (its hold, then the invalidation after COMMIT) and a direct invalidation,
 * with the attributes `docs/concepts.md` lists.
 */
import * as NodeSdk from "@effect/opentelemetry/NodeSdk"
import { assert, describe, it } from "@effect/vitest"
import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base"
import { Effect, Layer, Schema } from "effect"
import { CacheStore, Memo, Node } from "../src/index.ts"
import { Database, TableInvalidNode } from "../src/kysely/index.ts"
import { PGliteDialect } from "../src/kysely/pglite.ts"

interface DB {
  traced_book: { id: number; title: string }
}
const Db = Database.typed<DB>()

const BookGroup = TableInvalidNode.make("traced-book", { table: "traced_book", fields: { id: Schema.Number } })
const BookTitle = Node.make("traced-book-title", {
  fields: { id: Schema.Number },
  value: Schema.NullOr(Schema.String),
  invalidatedBy: ({ id }) => [BookGroup.make({ id })]
})

const title = (id: number) =>
  Db.query((db) => db.selectFrom("traced_book").select("title").where("id", "=", id).executeTakeFirst()).pipe(
    Effect.map((row) => row?.title ?? null),
    Memo.cached(BookTitle.make({ id }))
  )

describe("tracing through @effect/opentelemetry", () => {
  it.live(
    "reads, loads, fills, holds and invalidations are spans with their attributes",
    () => {
      const exporter = new InMemorySpanExporter()
      const Tracing = NodeSdk.layer(() => ({
        resource: { serviceName: "cacheme-test" },
        spanProcessor: new SimpleSpanProcessor(exporter)
      }))
      const Live = Database.layer({ dialect: new PGliteDialect() }).pipe(
        Layer.provideMerge(CacheStore.layerMemory()),
        Layer.provideMerge(Tracing)
      )
      return Effect.gen(function* () {
        yield* Db.query((db) =>
          db.schema
            .createTable("traced_book")
            .addColumn("id", "integer", (c) => c.primaryKey())
            .addColumn("title", "text")
            .execute()
        )
        yield* Db.query((db) => db.insertInto("traced_book").values({ id: 1, title: "Dune" }).execute())
        exporter.reset()

        assert.strictEqual(yield* title(1), "Dune") // miss
        assert.strictEqual(yield* title(1), "Dune") // hit
        yield* Db.query((db) => db.updateTable("traced_book").set({ title: "Emma" }).where("id", "=", 1).execute())
        assert.strictEqual(yield* title(1), "Emma") // miss again
        yield* Memo.invalidateNode(BookTitle, { source: "test" })

        const spans = exporter.getFinishedSpans()
        const byName = (name: string) => spans.filter((span) => span.name === name)
        const outcomes = byName("cacheme.read").map((span) => span.attributes["cacheme.outcome"])
        assert.deepStrictEqual(outcomes, ["miss", "hit", "miss"])
        for (const span of [...byName("cacheme.read"), ...byName("cacheme.load"), ...byName("cacheme.fill")]) {
          assert.strictEqual(span.attributes["cacheme.node"], "traced-book-title")
          assert.strictEqual(span.attributes["cacheme.key"], BookTitle.make({ id: 1 }).key)
        }
        assert.strictEqual(byName("cacheme.load").length, 2)
        assert.deepStrictEqual(
          byName("cacheme.fill").map((span) => span.attributes["cacheme.stored"]),
          [true, true]
        )
        // The write held the book's group (invalidating the cached title) and released it after COMMIT.
        const holds = byName("cacheme.hold")
        assert.strictEqual(holds.length, 1)
        assert.strictEqual(holds[0]!.attributes["cacheme.source"], "kysely")
        assert.strictEqual(holds[0]!.attributes["cacheme.count"], 1)
        const invalidations = byName("cacheme.invalidate").filter(
          (span) => span.attributes["cacheme.source"] === "test"
        )
        assert.strictEqual(invalidations.length, 1)
        assert.strictEqual(invalidations[0]!.attributes["cacheme.target"], "tag")
        assert.strictEqual(invalidations[0]!.attributes["cacheme.value"], "traced-book-title")
        assert.strictEqual(invalidations[0]!.attributes["cacheme.count"], 1)
        // A load is a child of its read.
        const read = byName("cacheme.read")[0]!
        const load = byName("cacheme.load")[0]!
        assert.strictEqual(load.parentSpanContext?.spanId, read.spanContext().spanId)
      }).pipe(Effect.provide(Live))
    },
    120_000
  )
})
