/**
 * Read-your-writes through single-flight: a caller that starts after an invalidation resolved never receives a
 * value loaded before it, even when a load of its key is under way in its own process. Forced interleavings:
 * the loader reads "the database" (a Ref), then waits on a gate while the invalidation runs and resolves; a
 * second caller starts only after that. Public API only, on both stores.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref, Schema } from "effect"
import { type CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import { backends } from "./support/backends.ts"

let counter = 0
const fresh = (name: string) => `${name}-consistency-${process.pid}-${counter++}`

for (const backend of backends) {
  describe.skipIf(backend.skip)(`Memo read-your-writes: ${backend.name}`, () => {
    const scenario = (invalidation: "key" | "group" | "tag") =>
      backend.test(`a caller that starts after a ${invalidation} invalidation never joins a load from before it`, () =>
        Effect.gen(function* () {
          const Group = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
          const Title = Node.make(fresh("title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            invalidatedBy: ({ id }) => [Group.make({ id })]
          })
          const database = yield* Ref.make("old title")
          const loads = yield* Ref.make(0)
          const readRow = yield* Deferred.make<void>()
          const finish = yield* Deferred.make<void>()
          // The first load reads the row, then waits; later loads run straight through.
          const load = Effect.gen(function* () {
            const n = yield* Ref.getAndUpdate(loads, (k) => k + 1)
            const title = yield* Ref.get(database)
            if (n === 0) {
              yield* Deferred.succeed(readRow, undefined)
              yield* Deferred.await(finish)
            }
            return title
          })
          const read = load.pipe(Memo.cached(Title.make({ id: 1 })))

          const first = yield* Effect.forkChild(read)
          yield* Deferred.await(readRow)
          yield* Ref.set(database, "new title")
          if (invalidation === "key") yield* Memo.invalidate(Title.make({ id: 1 }))
          else if (invalidation === "group") yield* InvalidNode.invalidate(Group.make({ id: 1 }))
          else yield* Memo.invalidateNode(Title)
          // The write and its invalidation have resolved: this caller must see the new title.
          const second = yield* Effect.forkChild(read)
          yield* backend.advance(10)
          yield* Deferred.succeed(finish, undefined)
          // The first caller started before the invalidation: the old title is a fine answer for it.
          assert.strictEqual(yield* Fiber.join(first), "old title")
          yield* backend.advance(500)
          assert.strictEqual(yield* Fiber.join(second), "new title")
          // And nothing loaded before the invalidation was stored.
          assert.strictEqual(yield* read, "new title")
        }).pipe(Effect.provide(backend.layer()))
      )

    scenario("key")
    scenario("group")
    scenario("tag")

    backend.test("two tenants whose field values join to the same text never share an entry", () =>
      Effect.gen(function* () {
        const Doc = Node.make(fresh("doc"), {
          fields: { tenant: Schema.String, doc: Schema.String },
          value: Schema.String
        })
        const read = (tenant: string, doc: string) =>
          Effect.succeed(`${tenant}/${doc}`).pipe(Memo.cached(Doc.make({ tenant, doc })))
        assert.strictEqual(yield* read("acme:secret", "1"), "acme:secret/1")
        assert.strictEqual(yield* read("acme", "secret:1"), "acme/secret:1")
        const Nullable = Node.make(fresh("nullable"), {
          fields: { tenant: Schema.NullOr(Schema.String) },
          value: Schema.String
        })
        const byTenant = (tenant: string | null) =>
          Effect.succeed(`tenant ${JSON.stringify(tenant)}`).pipe(Memo.cached(Nullable.make({ tenant })))
        assert.strictEqual(yield* byTenant(null), "tenant null")
        assert.strictEqual(yield* byTenant("null"), 'tenant "null"')
        assert.strictEqual(yield* byTenant(""), 'tenant ""')
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("callers that start while a load is under way, with no invalidation, share it", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("shared"), { fields: { id: Schema.Number }, value: Schema.String })
        const loads = yield* Ref.make(0)
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const read = Effect.gen(function* () {
          yield* Ref.update(loads, (k) => k + 1)
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(finish)
          return "title"
        }).pipe(Memo.cached(Title.make({ id: 1 })))
        const first = yield* Effect.forkChild(read)
        yield* Deferred.await(started)
        const others = yield* Effect.forkChild(
          Effect.all(
            Array.from({ length: 20 }, () => read),
            { concurrency: 20 }
          )
        )
        yield* backend.advance(10)
        yield* Deferred.succeed(finish, undefined)
        assert.strictEqual(yield* Fiber.join(first), "title")
        yield* backend.advance(200)
        assert.deepStrictEqual(
          yield* Fiber.join(others),
          Array.from({ length: 20 }, () => "title")
        )
        assert.strictEqual(yield* Ref.get(loads), 1)
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}

// Keeps the store service in the module's types (the layer above provides it).
export type _Store = CacheStore.CacheStore
