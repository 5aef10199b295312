/**
 * The store contract: one suite, run unchanged against every `CacheStore` (see CacheStore.test.ts). It speaks
 * to the store directly, below `Memo`, so each guarantee is pinned to the store that must keep it.
 */
import { assert, describe } from "@effect/vitest"
import { Effect } from "effect"
import { CacheStore } from "../../src/index.ts"
import type { Backend } from "../support/backends.ts"

const fill = (value: string, sets: ReadonlyArray<string> = [], freshMillis?: number, lifeMillis?: number) => ({
  value,
  freshMillis,
  lifeMillis,
  sets
})

/** Loads `key` with `value` the way Memo does: lease, track, fill. */
const put = (key: string, value: string, sets: ReadonlyArray<string> = [], freshMillis?: number, lifeMillis?: number) =>
  Effect.gen(function* () {
    const store = yield* CacheStore.CacheStore
    const read = yield* store.read(key, `put-${key}`, 10_000)
    assert.strictEqual(read._tag, "Miss")
    yield* store.track(key, sets, lifeMillis)
    assert.isTrue(yield* store.fill(key, `put-${key}`, fill(value, sets, freshMillis, lifeMillis)))
  })

export const storeContract = (backend: Backend) =>
  describe.skipIf(backend.skip)(`CacheStore contract: ${backend.name}`, () => {
    const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
      backend.test(name, () => body.pipe(Effect.provide(backend.layer())))

    test(
      "a miss takes the lease atomically; a second reader is busy",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        assert.deepStrictEqual(yield* store.read("k", "t1", 10_000), { _tag: "Miss" })
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Busy" })
        assert.isTrue(yield* store.fill("k", "t1", fill("v1")))
        assert.deepStrictEqual(yield* store.read("k", "t3", 10_000), { _tag: "Hit", value: "v1" })
      })
    )

    test(
      "only the lease holder can fill",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.read("k", "t1", 10_000)
        assert.isFalse(yield* store.fill("k", "other", fill("v")))
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Busy" })
      })
    )

    test(
      "invalidation voids the lease: a load started before it is never stored",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.read("k", "t1", 10_000)
        assert.strictEqual(yield* store.invalidate(["k"], "hard"), 0)
        assert.isFalse(yield* store.fill("k", "t1", fill("loaded before the invalidation")))
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Miss" })
      })
    )

    test(
      "released leases let the next reader load at once",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.read("k", "t1", 10_000)
        yield* store.release("k", "t1")
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Miss" })
        yield* store.release("k", "not-the-holder")
        assert.deepStrictEqual(yield* store.read("k", "t3", 10_000), { _tag: "Busy" })
      })
    )

    test(
      "an expired lease can be taken over",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.read("k", "t1", 200)
        assert.deepStrictEqual(yield* store.read("k", "t2", 200), { _tag: "Busy" })
        yield* backend.advance(300)
        assert.deepStrictEqual(yield* store.read("k", "t2", 200), { _tag: "Miss" })
        assert.isFalse(yield* store.fill("k", "t1", fill("late")))
        assert.isTrue(yield* store.fill("k", "t2", fill("v2")))
      })
    )

    test(
      "invalidate counts keys that held a value",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1")
        yield* put("b", "2")
        assert.strictEqual(yield* store.invalidate(["a", "b", "missing"], "hard"), 2)
        assert.strictEqual(yield* store.invalidate(["a", "b"], "hard"), 0)
        assert.deepStrictEqual(yield* store.read("a", "t", 10_000), { _tag: "Miss" })
      })
    )

    test(
      "soft invalidation keeps the value as stale and hands the lease to one reader",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "old")
        assert.strictEqual(yield* store.invalidate(["k"], "soft"), 1)
        assert.deepStrictEqual(yield* store.read("k", "t1", 10_000), { _tag: "Stale", value: "old", lease: true })
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Stale", value: "old", lease: false })
        assert.isTrue(yield* store.fill("k", "t1", fill("new")))
        assert.deepStrictEqual(yield* store.read("k", "t3", 10_000), { _tag: "Hit", value: "new" })
      })
    )

    test(
      "freshness then stale window then gone",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "v", [], 1000, 2000)
        assert.deepStrictEqual(yield* store.read("k", "t1", 10_000), { _tag: "Hit", value: "v" })
        yield* backend.advance(1200)
        assert.deepStrictEqual(yield* store.read("k", "t1", 300), { _tag: "Stale", value: "v", lease: true })
        yield* store.release("k", "t1")
        yield* backend.advance(1000)
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Miss" })
      })
    )

    test(
      "a group set invalidates its members once, and only them",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["g:x", "t:node"])
        yield* put("b", "2", ["g:x", "t:node"])
        yield* put("c", "3", ["g:y", "t:node"])
        assert.strictEqual(yield* store.setSize("t:node"), 3)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 2)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 0)
        assert.strictEqual(yield* store.setSize("g:x"), 0)
        // Hard invalidation takes the keys out of their other sets too.
        assert.strictEqual(yield* store.setSize("t:node"), 1)
        assert.deepStrictEqual(yield* store.read("c", "t", 10_000), { _tag: "Hit", value: "3" })
      })
    )

    test(
      "soft set invalidation keeps memberships, so a later hard one still removes the stale values",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["t:n"])
        assert.strictEqual(yield* store.invalidateSet("t:n", "soft"), 1)
        assert.strictEqual(yield* store.setSize("t:n"), 1)
        assert.strictEqual(yield* store.invalidateSet("t:n", "hard"), 1)
        assert.deepStrictEqual(yield* store.read("a", "t", 10_000), { _tag: "Miss" })
      })
    )

    test(
      "set members are pruned when their entries' life is over",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("short", "1", ["t:n"], 100, 200)
        yield* put("long", "2", ["t:n"], 60_000, 60_000)
        assert.strictEqual(yield* store.setSize("t:n"), 2)
        yield* backend.advance(400)
        yield* put("other", "3", ["t:n"], 60_000, 60_000)
        assert.strictEqual(yield* store.setSize("t:n"), 2)
      })
    )

    test(
      "pattern invalidation matches globs and never touches sets",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("user:1", "a", ["t:user"])
        yield* put("user:2", "b", ["t:user"])
        yield* put("book:1", "c", ["t:book"])
        assert.strictEqual(yield* store.invalidatePattern("user:*", "hard"), 2)
        assert.strictEqual(yield* store.invalidatePattern("*", "hard"), 1)
        assert.strictEqual(yield* store.invalidatePattern("*", "hard"), 0)
      })
    )

    test(
      "scan pages through keys with a cursor and filters by pattern",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        for (let i = 0; i < 25; i++) yield* put(`item:${i}`, String(i), ["t:item"])
        yield* put("other", "x")
        const seen = new Set<string>()
        let cursor: string | undefined
        do {
          const page = yield* store.scan({ pattern: "item:*", cursor, count: 10 })
          for (const key of page.keys) seen.add(key)
          cursor = page.cursor
        } while (cursor !== "0")
        assert.strictEqual(seen.size, 25)
        assert.isFalse(seen.has("other"))
        assert.isTrue(seen.has("item:24"))
      })
    )

    test(
      "a hold invalidates the members of each set, and a load under way can no longer be stored",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["g:x", "t:n"])
        yield* put("b", "2", ["g:x"])
        yield* put("c", "3", ["g:y"])
        yield* put("d", "4", ["g:other"])
        // A load that registered before the hold, and one that took its lease but had not registered yet.
        assert.strictEqual((yield* store.read("tracked", "t1", 10_000))._tag, "Miss")
        assert.isTrue(yield* store.track("tracked", ["g:x"], undefined))
        assert.strictEqual((yield* store.read("untracked", "t2", 10_000))._tag, "Miss")
        assert.deepStrictEqual(yield* store.hold(["g:x", "g:y", "g:none"], "w1", 10_000), [2, 1, 0])
        assert.isFalse(yield* store.fill("tracked", "t1", fill("read before the commit", ["g:x"])))
        assert.isFalse(yield* store.track("untracked", ["g:x"], undefined))
        for (const key of ["a", "b", "c", "tracked"]) {
          assert.deepStrictEqual(yield* store.read(key, "t3", 10_000), { _tag: "Miss" }, key)
        }
        assert.deepStrictEqual(yield* store.read("d", "t3", 10_000), { _tag: "Hit", value: "4" })
        // Hard, like invalidateSet: the keys left their other sets too.
        assert.strictEqual(yield* store.setSize("t:n"), 0)
      })
    )

    test(
      "while a set is held, track refuses keys in it and the set does not list them; release lets them in",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 10_000)
        assert.strictEqual((yield* store.read("k", "t1", 10_000))._tag, "Miss")
        assert.isFalse(yield* store.track("k", ["t:n", "g:x"], undefined))
        assert.strictEqual(yield* store.setSize("g:x"), 0)
        // Other sets are not held.
        assert.strictEqual((yield* store.read("other", "t2", 10_000))._tag, "Miss")
        assert.isTrue(yield* store.track("other", ["t:m"], undefined))
        assert.strictEqual(yield* store.setSize("t:m"), 1)
        yield* store.releaseHold(["g:x"], "w1")
        assert.isTrue(yield* store.track("k", ["t:n", "g:x"], undefined))
        assert.strictEqual(yield* store.setSize("g:x"), 1)
        assert.isTrue(yield* store.fill("k", "t1", fill("v", ["t:n", "g:x"])))
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 1)
      })
    )

    test(
      "a set held by two writers stays held until both release",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 10_000)
        yield* store.hold(["g:x", "g:y"], "w2", 10_000)
        yield* store.read("k", "t1", 10_000)
        yield* store.releaseHold(["g:x"], "w1")
        assert.isFalse(yield* store.track("k", ["g:x"], undefined))
        yield* store.releaseHold(["g:x", "g:y"], "w2")
        assert.isTrue(yield* store.track("k", ["g:x"], undefined))
        assert.isTrue(yield* store.track("k", ["g:y"], undefined))
      })
    )

    test(
      "a lapsed hold no longer blocks, and releasing it invalidates the set again",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 300)
        yield* store.read("k", "t1", 10_000)
        assert.isFalse(yield* store.track("k", ["g:x"], undefined))
        yield* backend.advance(400)
        assert.isTrue(yield* store.track("k", ["g:x"], undefined))
        assert.isTrue(yield* store.fill("k", "t1", fill("filled after the hold lapsed", ["g:x"])))
        yield* store.releaseHold(["g:x"], "w1")
        assert.deepStrictEqual(yield* store.read("k", "t2", 10_000), { _tag: "Miss" })
        // A release with no hold behind it (never taken, or gone with the set) invalidates too.
        yield* put("m", "1", ["g:y"])
        yield* store.releaseHold(["g:y"], "nobody")
        assert.deepStrictEqual(yield* store.read("m", "t3", 10_000), { _tag: "Miss" })
      })
    )

    test(
      "holds survive set invalidation and are never counted or scanned",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("e", "1", ["t:n"])
        yield* store.hold(["g:x", "t:n"], "w1", 10_000)
        assert.strictEqual(yield* store.setSize("g:x"), 0)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 0)
        assert.strictEqual(yield* store.invalidateSet("g:x", "soft"), 0)
        assert.strictEqual(yield* store.invalidateSet("t:n", "soft"), 0)
        assert.strictEqual(yield* store.invalidateSet("t:n", "hard"), 0)
        yield* store.read("k", "t1", 10_000)
        assert.isFalse(yield* store.track("k", ["g:x"], undefined))
        assert.isFalse(yield* store.track("k", ["t:n"], undefined))
        yield* put("f", "2")
        const keys: Array<string> = []
        let cursor: string | undefined
        do {
          const page = yield* store.scan({ cursor, count: 1000 })
          keys.push(...page.keys)
          cursor = page.cursor
        } while (cursor !== "0")
        assert.deepStrictEqual(keys.sort(), ["f", "k"])
      })
    )

    test(
      "inspect shows the raw entry",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "raw value", ["g:a", "t:n"], 60_000, 120_000)
        const info = yield* store.inspect("k")
        assert.isDefined(info)
        assert.strictEqual(info!.value, "raw value")
        assert.deepStrictEqual([...info!.sets].sort(), ["g:a", "t:n"])
        assert.isFalse(info!.leased)
        assert.isTrue(info!.ttlMillis! > 100_000 && info!.ttlMillis! <= 120_000)
        assert.isUndefined(yield* store.inspect("missing"))
      })
    )
  })
