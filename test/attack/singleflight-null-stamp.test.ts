/**
 * ATTACK (guarantees 1 and 2): read-your-writes through single-flight when a set had no stamp at the leader's
 * lookup.
 *
 * `Memo.lead` records the *lookup's* stamps as the flight's source (`stamps: view.stamps`), not the stamps the
 * lease recorded. When a set had no stamp at the leader's lookup (`null`: a group never used, or one whose stamp a
 * hard invalidation or a hold release deleted), the lease makes one; a hard invalidation during the load deletes
 * it again, and a caller that starts after that invalidation resolved sees the same `null`, the leader's lease
 * (a group invalidation does not touch the entry key) and so the same view: `admissible` lets it join, and it
 * receives the value read before the invalidation.
 *
 * Variants: a group invalidation, a tag invalidation (Memo.invalidateNode) and a hold + release (the Kysely
 * path), on both stores.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { backends } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-nullstamp-${process.pid}-${counter++}`

for (const backend of backends) {
  describe(`single-flight admits a load from before an invalidation: ${backend.name}`, () => {
    const scenario = (how: "group" | "tag" | "hold") =>
      backend.test(`${how}: a caller that starts after the invalidation resolved never gets the old value`, () =>
        Effect.gen(function* () {
          const Group = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
          const Title = Node.make(fresh("title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            ttl: null,
            stale: false,
            invalidatedBy: ({ id }) => [Group.make({ id })]
          })
          const database = yield* Ref.make("old title")
          const loads = yield* Ref.make(0)
          const readRow = yield* Deferred.make<void>()
          const finish = yield* Deferred.make<void>()
          const load = Effect.gen(function* () {
            const n = yield* Ref.getAndUpdate(loads, (k) => k + 1)
            const title = yield* Ref.get(database)
            if (n === 1) {
              yield* Deferred.succeed(readRow, undefined)
              yield* Deferred.await(finish)
            }
            return title
          })
          const read = (id: number) => load.pipe(Memo.cached(Title.make({ id })))

          // Setup: the stamp of the set under attack is absent when the leader looks up, the other one exists.
          if (how === "tag") {
            // The group's stamp exists (a read of id 1 made it); the tag's is deleted by a hard tag invalidation.
            yield* read(1)
            yield* Memo.invalidateNode(Title)
          } else {
            // The tag's stamp exists (a read of another id made it); group 1 was never used.
            yield* read(2)
          }
          if (how === "tag") yield* Ref.set(loads, 1)

          const leader = yield* Effect.forkChild(read(1))
          yield* Deferred.await(readRow) // the leader read "old title" under its lease
          yield* Ref.set(database, "new title")
          if (how === "group") yield* InvalidNode.invalidate(Group.make({ id: 1 }))
          else if (how === "tag") yield* Memo.invalidateNode(Title)
          else {
            // The Kysely path: hold the group while the write commits, then release the hold.
            const store = yield* CacheStore.CacheStore
            const sets = [`g:${Group.make({ id: 1 }).key}`]
            yield* store.hold(sets, "writer-1", 10_000)
            yield* store.releaseHold(sets, "writer-1")
          }
          // The write and its invalidation have resolved. This caller must see the new title.
          const follower = yield* Effect.forkChild(read(1))
          yield* backend.advance(20)
          yield* Deferred.succeed(finish, undefined)
          assert.strictEqual(yield* Fiber.join(leader), "old title")
          const seen = yield* Fiber.join(follower)
          console.log(`[null-stamp ${backend.name} ${how}] follower started after the invalidation read: ${seen}`)
          assert.strictEqual(seen, "new title", "a caller that started after the invalidation got the old value")
        }).pipe(Effect.provide(backend.layer()))
      )
    scenario("group")
    scenario("tag")
    scenario("hold")
  })
}

/**
 * ATTACK (guarantee 2, the Kysely path): a load that started while a set was held (its lookup saw the hold
 * marker, so it read the rows before the COMMIT) is joined by a caller that starts after the write resolved.
 * `Invalidator.hold(...).commit` resolves the write and releases the hold *in the background* ("without waiting,
 * on the next turn of the event loop, once the write has resolved", docs/kysely.md); until the release lands the
 * marker is unchanged, so the joiner's lookup sees the leader's lease and the same stamps (`"!W"`), and
 * `admissible` lets it take the pre-commit value.
 */
for (const backend of backends) {
  describe(`single-flight joins a load made while held: ${backend.name}`, () => {
    backend.test(
      "a caller that starts after the write resolved (release pending) never gets the pre-commit value",
      () =>
        Effect.gen(function* () {
          const Group = InvalidNode.make(fresh("held-row"), { fields: { id: Schema.Number } })
          const Title = Node.make(fresh("held-title"), {
            fields: { id: Schema.Number },
            value: Schema.String,
            ttl: null,
            stale: false,
            invalidatedBy: ({ id }) => [Group.make({ id })]
          })
          const database = yield* Ref.make("old title")
          const loads = yield* Ref.make(0)
          const readRow = yield* Deferred.make<void>()
          const finish = yield* Deferred.make<void>()
          const load = Effect.gen(function* () {
            const n = yield* Ref.getAndUpdate(loads, (k) => k + 1)
            const title = yield* Ref.get(database)
            if (n === 1) {
              yield* Deferred.succeed(readRow, undefined)
              yield* Deferred.await(finish)
            }
            return title
          })
          const read = load.pipe(Memo.cached(Title.make({ id: 1 })))
          const store = yield* CacheStore.CacheStore
          const sets = [`g:${Group.make({ id: 1 }).key}`]

          yield* read // cached "old title"
          // The write: its groups are held just before its COMMIT.
          yield* store.hold(sets, "writer-1", 10_000)
          // A reader starts meanwhile: its lookup sees the hold; it reads the row before the COMMIT.
          const leader = yield* Effect.forkChild(read)
          yield* Deferred.await(readRow)
          // COMMIT; the write resolves. Its hold is released in the background, not yet landed.
          yield* Ref.set(database, "new title")
          const follower = yield* Effect.forkChild(read)
          yield* backend.advance(20)
          yield* Deferred.succeed(finish, undefined)
          yield* store.releaseHold(sets, "writer-1")
          assert.strictEqual(yield* Fiber.join(leader), "old title")
          const seen = yield* Fiber.join(follower)
          console.log(`[held ${backend.name}] follower started after the write resolved read: ${seen}`)
          assert.strictEqual(
            seen,
            "new title",
            "a caller that started after the write resolved got the pre-commit value"
          )
        }).pipe(Effect.provide(backend.layer()))
    )
  })
}
