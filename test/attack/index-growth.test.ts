/**
 * ATTACK (guarantee 5): "index sets never grow beyond about 2x the live entries from repeated normal use (reads,
 * failed loads, invalidations, refills)".
 *
 * Index members are per fill (`fillToken + key`), scored by the entry's end of life (`+inf` for entries without
 * ttl, the default). A member is removed only by a hard key invalidation of *that* incarnation, by a reclaim that
 * finds its record, or by score pruning. Each of these normal sequences leaves one member behind per round, for
 * ever when the node has no ttl:
 *
 * 1. soft key invalidation, then the stale value is refreshed in the background: the refresh's fill adds a member
 *    and nothing removes the old one (the record it named is overwritten);
 * 2. a fill that lands after a hard group invalidation resolved (the fill no longer compares stamps, see commit
 *    cbfccfa; docs/concepts.md still says it does): the dead value is stored with its members after the reclaim
 *    ran; the next reader's lease replaces it, orphaning its members in every index (and a later reclaim of a set
 *    answers Gone, removing the member from that set's index only, never from the others);
 * 3. the in-process store's LRU (`maxEntries`) evicts entries but never their index members or their stamps.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Fiber, Ref, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { gated } from "./gate.ts"
import { backends, memory } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-index-${process.pid}-${counter++}`
const rounds = 40

for (const backend of backends) {
  describe(`index growth: ${backend.name}`, () => {
    backend.test("1. soft key invalidation + background refresh, one live entry", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("soft"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          stale: true
        })
        const loads = yield* Ref.make(0)
        const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
          Effect.map((n) => `load ${n}`),
          Memo.cached(Title.make({ id: 1 }))
        )
        const store = yield* CacheStore.CacheStore
        yield* read
        for (let i = 0; i < rounds; i++) {
          yield* Memo.invalidate(Title.make({ id: 1 }), { mode: "soft" })
          yield* read // stale, refreshes in the background
          yield* backend.advance(30)
        }
        const size = yield* store.setSize(`t:${Title.name}`)
        console.log(
          `[index ${backend.name} soft+refresh] ${rounds} rounds, loads ${yield* Ref.get(loads)}, 1 live entry, index size ${size}`
        )
        assert.isAtMost(size, 2, "the tag's index grew with every refresh")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("2. a fill that lands after a hard group invalidation, then a refill", () =>
      Effect.gen(function* () {
        const Group = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
        const Title = Node.make(fresh("race"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          stale: false,
          invalidatedBy: ({ id }) => [Group.make({ id })]
        })
        let gate: Deferred.Deferred<void> | undefined
        let arrived: Deferred.Deferred<void> | undefined
        const layer = gated(backend.layer(), (op) =>
          Effect.suspend(() =>
            op === "fill" && gate !== undefined
              ? Effect.andThen(Deferred.succeed(arrived!, undefined), Deferred.await(gate))
              : Effect.void
          )
        )
        yield* Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const loads = yield* Ref.make(0)
          const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
            Effect.map((n) => `load ${n}`),
            Memo.cached(Title.make({ id: 1 }))
          )
          for (let i = 0; i < rounds; i++) {
            // The live entry goes (a hard key invalidation removes its index members), so the loader misses.
            yield* Memo.invalidate(Title.make({ id: 1 }))
            gate = yield* Deferred.make<void>()
            arrived = yield* Deferred.make<void>()
            const loader = yield* Effect.forkChild(read)
            yield* Deferred.await(arrived) // loaded, about to fill
            yield* InvalidNode.invalidate(Group.make({ id: 1 })) // resolved before the fill is sent
            const open = gate
            gate = undefined
            yield* Deferred.succeed(open, undefined)
            yield* Fiber.join(loader)
            yield* read // the dead value is replaced by a new fill
          }
          const tag = yield* store.setSize(`t:${Title.name}`)
          const group = yield* store.setSize(`g:${Group.make({ id: 1 }).key}`)
          console.log(
            `[index ${backend.name} fill-after-invalidation] ${rounds} rounds, 1 live entry: tag index ${tag}, group index ${group}`
          )
          assert.isAtMost(tag, 2, "the tag's index grew with every round")
        }).pipe(Effect.provide(layer))
      })
    )
  })
}

describe("index growth: memory LRU", () => {
  memory.test("3. maxEntries 10: index members of evicted entries go with them", () =>
    Effect.gen(function* () {
      const Group = InvalidNode.make(fresh("lru-row"), { fields: { id: Schema.Number } })
      const Title = Node.make(fresh("lru"), {
        fields: { id: Schema.Number },
        value: Schema.String,
        ttl: null,
        invalidatedBy: ({ id }) => [Group.make({ id })]
      })
      const store = yield* CacheStore.CacheStore
      for (let id = 0; id < 2000; id++) yield* Effect.succeed(`v${id}`).pipe(Memo.cached(Title.make({ id })))
      const size = yield* store.setSize(`t:${Title.name}`)
      const groupIndex = yield* store.setSize(`g:${Group.make({ id: 0 }).key}`)
      const live = (yield* store.scan({ count: 1000 })).keys.length
      console.log(
        `[index memory LRU] 2000 reads with maxEntries 10: ${live} live entries, tag index ${size}, evicted id 0's group index ${groupIndex}`
      )
      assert.isAtMost(size, 2 * live)
    }).pipe(Effect.provide(CacheStore.layerMemory({ maxEntries: 10 })))
  )
})
