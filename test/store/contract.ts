/**
 * The store contract: one suite, run unchanged against every `CacheStore` (see CacheStore.test.ts). It speaks
 * to the store directly, below `Memo`, so each guarantee is pinned to the store that must keep it. The
 * interleavings Memo cannot force (an invalidation between a lookup and its lease, between a lease and its
 * fill, a refill between two invalidations) are forced here, one step at a time.
 */
import { assert, describe } from "@effect/vitest"
import { Effect } from "effect"
import { CacheStore } from "../../src/index.ts"
import type { Backend } from "../support/backends.ts"
import { plain } from "../support/store.ts"

type Store = CacheStore.CacheStore["Service"]

const fill = (value: string, freshMillis?: number, lifeMillis?: number): CacheStore.Fill => ({
  value,
  freshMillis,
  lifeMillis
})

const sets = (...names: Array<string>) => CacheStore.sets(names)

/** Looks `key` up and takes its lease, expecting a miss. */
const leaseMiss = (store: Store, key: string, token: string, on: CacheStore.Sets = sets(), leaseMillis = 10_000) =>
  Effect.gen(function* () {
    const found = yield* store.lookup(key, on)
    assert.strictEqual(found._tag, "Miss", `${key}: ${JSON.stringify(found)}`)
    const leasing = yield* store.lease(
      key,
      token,
      on,
      (found as Extract<CacheStore.Lookup, { _tag: "Miss" }>).view,
      "replace",
      leaseMillis
    )
    return leasing
  })

/** Loads `key` with `value` the way Memo does: lookup, lease, fill. */
const put = (
  key: string,
  value: string,
  names: ReadonlyArray<string> = [],
  freshMillis?: number,
  lifeMillis?: number
) =>
  Effect.gen(function* () {
    const store = yield* CacheStore.CacheStore
    const on = CacheStore.sets(names)
    const leasing = yield* leaseMiss(store, key, `put-${key}`.slice(0, 16), on)
    assert.strictEqual(leasing._tag, "Leased")
    if (leasing._tag !== "Leased") return
    assert.isTrue(
      yield* store.fill(key, `put-${key}`.slice(0, 16), on, leasing.stamps, fill(value, freshMillis, lifeMillis))
    )
  })

const tagOf = (lookup: CacheStore.Lookup) => lookup._tag

/**
 * The store as the suite sees it: lookups without their cells, and every single lookup checked against the
 * store's `hitNow` where it has one: a hit answered at once must be the hit the lookup found.
 */
const observed = (store: Store): Store => ({
  ...store,
  lookup: (key, on, leaseMillis, local) =>
    Effect.flatMap(store.lookup(key, on, leaseMillis, local), (found) =>
      Effect.clockWith((clock) =>
        Effect.sync(() => {
          const atOnce = store.hitNow?.(key, on, leaseMillis, local, clock)
          if (atOnce !== undefined)
            assert.deepStrictEqual({ _tag: "Hit", value: atOnce.value }, plain(found), `hitNow(${key})`)
          return plain(found)
        })
      )
    ),
  lookupMany: (requests, leaseMillis, local) =>
    Effect.map(store.lookupMany(requests, leaseMillis, local), (found) => found.map(plain))
})

export const storeContract = (backend: Backend) =>
  describe.skipIf(backend.skip)(`CacheStore contract: ${backend.name}`, () => {
    const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
      backend.test(name, () =>
        body.pipe(Effect.updateService(CacheStore.CacheStore, observed), Effect.provide(backend.layer()))
      )

    test(
      "a miss takes the lease; a second caller finds it busy; the fill is then a hit",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const first = yield* leaseMiss(store, "k", "t1")
        assert.strictEqual(first._tag, "Leased")
        const second = yield* store.lookup("k", sets())
        assert.strictEqual(second._tag, "Miss")
        if (second._tag === "Miss") assert.isDefined(second.view.holder)
        const busy = yield* leaseMiss(store, "k", "t2")
        assert.strictEqual(busy._tag, "Busy")
        assert.isTrue(yield* store.fill("k", "t1", sets(), [], fill("v1")))
        assert.deepStrictEqual(yield* store.lookup("k", sets()), { _tag: "Hit", value: "v1" })
      })
    )

    test(
      "only the lease holder can fill",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* leaseMiss(store, "k", "t1")
        assert.isFalse(yield* store.fill("k", "other", sets(), [], fill("v")))
        assert.strictEqual((yield* leaseMiss(store, "k", "t2"))._tag, "Busy")
      })
    )

    test(
      "key invalidation voids the lease: a load started before it is never stored",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* leaseMiss(store, "k", "t1")
        assert.strictEqual(yield* store.invalidate(["k"], "hard"), 0)
        assert.isFalse(yield* store.fill("k", "t1", sets(), [], fill("loaded before the invalidation")))
        assert.strictEqual((yield* leaseMiss(store, "k", "t2"))._tag, "Leased")
      })
    )

    test(
      "a released lease lets the next caller load at once; a release by another token does nothing",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* leaseMiss(store, "k", "t1")
        yield* store.release("k", "t1", sets(), [], [])
        assert.strictEqual((yield* leaseMiss(store, "k", "t2"))._tag, "Leased")
        yield* store.release("k", "not-the-holder", sets(), [], [])
        assert.strictEqual((yield* leaseMiss(store, "k", "t3"))._tag, "Busy")
      })
    )

    test(
      "an expired lease can be taken over, and its holder can no longer fill",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* leaseMiss(store, "k", "t1", sets(), 200)
        assert.strictEqual((yield* leaseMiss(store, "k", "t2", sets(), 200))._tag, "Busy")
        yield* backend.advance(300)
        assert.strictEqual((yield* leaseMiss(store, "k", "t2", sets(), 200))._tag, "Leased")
        assert.isFalse(yield* store.fill("k", "t1", sets(), [], fill("late")))
        assert.isTrue(yield* store.fill("k", "t2", sets(), [], fill("v2")))
      })
    )

    test(
      "a renewed lease outlives its first term; a renewal by another token fails",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* leaseMiss(store, "k", "t1", sets(), 300)
        for (let i = 0; i < 4; i++) {
          yield* backend.advance(150)
          assert.isTrue(yield* store.renew("k", "t1", 300))
        }
        assert.isFalse(yield* store.renew("k", "other", 300))
        assert.strictEqual((yield* leaseMiss(store, "k", "t2", sets(), 300))._tag, "Busy")
        assert.isTrue(yield* store.fill("k", "t1", sets(), [], fill("slow but alive")))
        assert.deepStrictEqual(yield* store.lookup("k", sets()), { _tag: "Hit", value: "slow but alive" })
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
        assert.strictEqual(tagOf(yield* store.lookup("a", sets())), "Miss")
      })
    )

    test(
      "soft invalidation keeps the value as stale and hands the refresh lease to one caller",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "old", ["t:n"])
        assert.strictEqual(yield* store.invalidate(["k"], "soft"), 1)
        const stale = yield* store.lookup("k", sets("t:n"))
        assert.strictEqual(stale._tag, "Stale")
        if (stale._tag !== "Stale") return
        assert.strictEqual(stale.value, "old")
        const refresh = yield* store.lease("k", "t1", sets("t:n"), stale.view, "keep", 10_000)
        assert.strictEqual(refresh._tag, "Leased")
        // The stale value stays for others while the refresh runs.
        const meanwhile = yield* store.lookup("k", sets("t:n"))
        assert.strictEqual(meanwhile._tag, "Stale")
        if (meanwhile._tag === "Stale") {
          assert.isDefined(meanwhile.view.holder)
          assert.strictEqual((yield* store.lease("k", "t2", sets("t:n"), meanwhile.view, "keep", 10_000))._tag, "Busy")
        }
        if (refresh._tag !== "Leased") return
        assert.isTrue(yield* store.fill("k", "t1", sets("t:n"), refresh.stamps, fill("new")))
        assert.deepStrictEqual(yield* store.lookup("k", sets("t:n")), { _tag: "Hit", value: "new" })
      })
    )

    test(
      "freshness, then the stale window, then gone",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "v", [], 1000, 2000)
        assert.deepStrictEqual(yield* store.lookup("k", sets()), { _tag: "Hit", value: "v" })
        yield* backend.advance(1200)
        assert.strictEqual(tagOf(yield* store.lookup("k", sets())), "Stale")
        yield* backend.advance(1000)
        assert.strictEqual(tagOf(yield* store.lookup("k", sets())), "Miss")
      })
    )

    test(
      "a set invalidates its entries once, and only them",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["g:x", "t:node"])
        yield* put("b", "2", ["g:x", "t:node"])
        yield* put("c", "3", ["g:y", "t:node"])
        assert.strictEqual(yield* store.setSize("t:node"), 3)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 2)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 0)
        assert.strictEqual(yield* store.setSize("g:x"), 0)
        // The removed entries left their other indexes too.
        assert.strictEqual(yield* store.setSize("t:node"), 1)
        assert.strictEqual(tagOf(yield* store.lookup("a", sets("g:x", "t:node"))), "Miss")
        assert.deepStrictEqual(yield* store.lookup("c", sets("g:y", "t:node")), { _tag: "Hit", value: "3" })
      })
    )

    test(
      "an entry refilled between two invalidations of its sets is reached by the second (no lost membership)",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const on = sets("g:1", "g:2", "t:n")
        yield* put("k", "v1", on.names)
        for (let round = 0; round < 3; round++) {
          assert.strictEqual(yield* store.invalidateSet("g:1", "hard"), 1, `round ${round}: g:1`)
          const leasing = yield* leaseMiss(store, "k", `r${round}`, on)
          if (leasing._tag !== "Leased") return assert.fail(`round ${round}: ${leasing._tag}`)
          assert.isTrue(yield* store.fill("k", `r${round}`, on, leasing.stamps, fill(`v${round + 2}`)))
          assert.strictEqual(yield* store.invalidateSet("g:2", "hard"), 1, `round ${round}: g:2`)
          assert.strictEqual(tagOf(yield* store.lookup("k", on)), "Miss")
          yield* put("k", `again ${round}`, on.names)
        }
        assert.strictEqual(yield* store.invalidateSet("t:n", "hard"), 1)
      })
    )

    test(
      "a set invalidated between a lookup and the fill: the value loaded meanwhile is never served",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const on = sets("g:x", "t:n")
        yield* put("warm", "w", on.names)
        // Between the lease and the fill.
        const leasing = yield* leaseMiss(store, "k", "t1", on)
        if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
        yield* store.invalidateSet("g:x", "hard")
        yield* store.fill("k", "t1", on, leasing.stamps, fill("read before the invalidation"))
        assert.strictEqual(tagOf(yield* store.lookup("k", on)), "Miss")
        // Between the lookup and the lease (the stamp made again first, so that the lookup sees one).
        yield* put("warm again", "w", on.names)
        const found = yield* store.lookup("k2", on)
        if (found._tag !== "Miss") return assert.fail(found._tag)
        yield* store.invalidateSet("g:x", "hard")
        const late = yield* store.lease("k2", "t2", on, found.view, "replace", 10_000)
        if (late._tag !== "Leased") return assert.fail(late._tag)
        yield* store.fill("k2", "t2", on, late.stamps, fill("read before the invalidation"))
        assert.strictEqual(tagOf(yield* store.lookup("k2", on)), "Miss")
        // A tag the same way.
        const third = yield* leaseMiss(store, "k3", "t3", on)
        if (third._tag !== "Leased") return assert.fail(third._tag)
        yield* store.invalidateSet("t:n", "soft")
        yield* store.fill("k3", "t3", on, third.stamps, fill("read before the invalidation"))
        assert.notStrictEqual(tagOf(yield* store.lookup("k3", on)), "Hit")
      })
    )

    test(
      "a value filled after its set was invalidated is dead on arrival, and leaves the indexes when it is replaced",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const on = sets("g:x", "t:n")
        yield* put("warm", "w", on.names)
        const leasing = yield* leaseMiss(store, "k", "t1", on)
        if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 1)
        yield* store.fill("k", "t1", on, leasing.stamps, fill("read before the invalidation"))
        assert.isAtMost(yield* store.setSize("t:n"), 1)
        const again = yield* leaseMiss(store, "k", "t2", on)
        if (again._tag !== "Leased") return assert.fail(again._tag)
        assert.strictEqual(yield* store.setSize("t:n"), 0)
        assert.isTrue(yield* store.fill("k", "t2", on, again.stamps, fill("fresh")))
        assert.strictEqual(yield* store.setSize("t:n"), 1)
        assert.deepStrictEqual(yield* store.lookup("k", on), { _tag: "Hit", value: "fresh" })
      })
    )

    test(
      "soft set invalidation keeps values as stale; a later hard one removes them",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["t:n"])
        assert.strictEqual(yield* store.invalidateSet("t:n", "soft"), 1)
        assert.strictEqual(yield* store.setSize("t:n"), 1)
        const stale = yield* store.lookup("a", sets("t:n"))
        assert.deepStrictEqual(stale._tag === "Stale" ? stale.value : stale._tag, "1")
        assert.strictEqual(yield* store.invalidateSet("t:n", "hard"), 1)
        assert.strictEqual(tagOf(yield* store.lookup("a", sets("t:n"))), "Miss")
      })
    )

    test(
      "an entry listing other sets than the caller's is not served",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "v", ["g:old"])
        assert.strictEqual(tagOf(yield* store.lookup("k", sets("g:new"))), "Miss")
      })
    )

    test(
      "set names are data: newlines, commas and separators in them change nothing",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const names = ["g:a\nb", "g:a,b", "g:a", "g:a:b", "g:", "g:\u00e9\u{1f600}", "t:n"]
        yield* put("k", "v", names)
        for (const name of names) {
          assert.strictEqual(yield* store.invalidateSet(name, "hard"), 1, JSON.stringify(name))
          assert.strictEqual(tagOf(yield* store.lookup("k", sets(...names))), "Miss")
          yield* put("k", "v", names)
        }
        assert.strictEqual(yield* store.invalidate(["k"], "hard"), 1)
      })
    )

    test(
      "a failed load leaves nothing behind: no index member, and the next caller loads at once",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const on = sets("g:missing-1", "t:n")
        const leasing = yield* leaseMiss(store, "k", "t1", on)
        if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
        yield* store.release("k", "t1", on, leasing.stamps, leasing.created)
        assert.strictEqual(yield* store.setSize("g:missing-1"), 0)
        assert.strictEqual(yield* store.setSize("t:n"), 0)
        assert.strictEqual((yield* leaseMiss(store, "k", "t2", on))._tag, "Leased")
      })
    )

    test(
      "index members are pruned when their entries' life is over",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("short", "1", ["t:n"], 100, 200)
        yield* put("long", "2", ["t:n"], 60_000, 60_000)
        assert.strictEqual(yield* store.setSize("t:n"), 2)
        yield* backend.advance(400)
        assert.strictEqual(yield* store.setSize("t:n"), 1)
      })
    )

    test(
      "pattern invalidation matches globs",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("user:1", "a", ["t:user"])
        yield* put("user:2", "b", ["t:user"])
        yield* put("book:1", "c", ["t:book"])
        assert.strictEqual(yield* store.invalidatePattern("user:*", "hard"), 2)
        assert.strictEqual(yield* store.invalidatePattern("*", "hard"), 1)
        assert.strictEqual(yield* store.invalidatePattern("*", "hard"), 0)
        assert.strictEqual(yield* store.invalidatePattern("[z-a]*", "hard"), 0)
      })
    )

    test(
      "a malformed pattern is a typed error and changes nothing; a backtracking one is answered at once",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a".repeat(400), "v")
        const tooLong = yield* Effect.flip(store.invalidatePattern("*".repeat(2000), "hard"))
        assert.strictEqual(tooLong.reason, "InvalidInput")
        assert.strictEqual((yield* Effect.flip(store.scan({ pattern: "?".repeat(2000) }))).reason, "InvalidInput")
        assert.strictEqual(yield* store.invalidatePattern("*a*a*a*a*a*a*a*a*b", "hard"), 0)
        assert.strictEqual(yield* store.invalidatePattern("*a*a*a*a*a*a*a*a*a", "hard"), 1)
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
      "a hold invalidates the entries of each set, and a load under way can no longer be stored",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("a", "1", ["g:x", "t:n"])
        yield* put("b", "2", ["g:x"])
        yield* put("c", "3", ["g:y"])
        yield* put("d", "4", ["g:other"])
        const before = yield* leaseMiss(store, "loading", "t1", sets("g:x"))
        assert.deepStrictEqual(yield* store.hold(["g:x", "g:y", "g:none"], "w1", 10_000), [2, 1, 0])
        if (before._tag !== "Leased") return assert.fail(before._tag)
        yield* store.fill("loading", "t1", sets("g:x"), before.stamps, fill("read before the commit"))
        assert.strictEqual(tagOf(yield* store.lookup("loading", sets("g:x"))), "Miss")
        for (const [key, on] of [
          ["a", sets("g:x", "t:n")],
          ["b", sets("g:x")],
          ["c", sets("g:y")]
        ] as const) {
          const found = yield* store.lookup(key, on)
          assert.strictEqual(found._tag, "Miss", key)
          if (found._tag === "Miss") assert.isTrue(found.view.held, key)
        }
        assert.deepStrictEqual(yield* store.lookup("d", sets("g:other")), { _tag: "Hit", value: "4" })
        // Hard, like invalidateSet: the entries left their other indexes too.
        assert.strictEqual(yield* store.setSize("t:n"), 0)
      })
    )

    test(
      "while a set is held, a lease says so; release lets loads be stored again",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 10_000)
        const during = yield* leaseMiss(store, "k", "t1", sets("t:n", "g:x"))
        assert.isTrue(during._tag === "Leased" && during.held)
        yield* store.release("k", "t1", sets("t:n", "g:x"), [], [])
        // Other sets are not held.
        const other = yield* leaseMiss(store, "other", "t2", sets("t:m"))
        assert.isTrue(other._tag === "Leased" && !other.held)
        yield* store.releaseHold(["g:x"], "w1")
        yield* put("k", "v", ["t:n", "g:x"])
        assert.strictEqual(yield* store.setSize("g:x"), 1)
        assert.strictEqual(yield* store.invalidateSet("g:x", "hard"), 1)
      })
    )

    test(
      "a set held by two writers stays held until both release",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 10_000)
        yield* store.hold(["g:x", "g:y"], "w2", 10_000)
        yield* store.releaseHold(["g:x"], "w1")
        const found = yield* store.lookup("k", sets("g:x"))
        assert.isTrue(found._tag === "Miss" && found.view.held)
        yield* store.releaseHold(["g:x", "g:y"], "w2")
        const after = yield* store.lookup("k", sets("g:x", "g:y"))
        assert.isTrue(after._tag === "Miss" && !after.view.held)
      })
    )

    test(
      "a lapsed hold no longer blocks, and releasing it invalidates the set again",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:x"], "w1", 300)
        const during = yield* store.lookup("k", sets("g:x"))
        assert.isTrue(during._tag === "Miss" && during.view.held)
        yield* backend.advance(400)
        yield* put("k", "filled after the hold lapsed", ["g:x"])
        yield* store.releaseHold(["g:x"], "w1")
        assert.strictEqual(tagOf(yield* store.lookup("k", sets("g:x"))), "Miss")
        // A release with no hold behind it (never taken, or gone) invalidates too.
        yield* put("m", "1", ["g:y"])
        yield* store.releaseHold(["g:y"], "nobody")
        assert.strictEqual(tagOf(yield* store.lookup("m", sets("g:y"))), "Miss")
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
        const found = yield* store.lookup("k", sets("g:x"))
        assert.isTrue(found._tag === "Miss" && found.view.held)
        const tagged = yield* store.lookup("k", sets("t:n"))
        assert.isTrue(tagged._tag === "Miss" && tagged.view.held)
        yield* put("f", "2")
        const keys: Array<string> = []
        let cursor: string | undefined
        do {
          const page = yield* store.scan({ cursor, count: 1000 })
          keys.push(...page.keys)
          cursor = page.cursor
        } while (cursor !== "0")
        assert.deepStrictEqual(keys.sort(), ["f"])
      })
    )

    test(
      "inspect shows the entry, its sets and its freshness",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("k", "raw value", ["g:a", "t:n"], 60_000, 120_000)
        const info = yield* store.inspect("k")
        assert.isDefined(info)
        assert.strictEqual(info!.value, "raw value")
        assert.deepStrictEqual([...info!.sets].sort(), ["g:a", "t:n"])
        assert.isFalse(info!.leased)
        assert.strictEqual(info!.freshness?._tag, "Until")
        assert.isTrue(info!.ttlMillis! > 100_000 && info!.ttlMillis! <= 120_000)
        yield* store.invalidateSet("g:a", "soft")
        assert.strictEqual((yield* store.inspect("k"))!.freshness?._tag, "Invalidated")
        yield* store.invalidate(["k"], "hard")
        assert.isUndefined(yield* store.inspect("missing"))
        assert.isUndefined(yield* store.inspect("k"))
      })
    )

    test(
      "a batched lookup answers each request, in order, as its own lookup would (duplicates included)",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* put("hit", "1", ["t:n"])
        yield* put("bare", "2")
        yield* put("stale", "3", ["t:n"])
        yield* store.invalidate(["stale"], "soft")
        yield* put("dead", "4", ["g:dead", "t:n"])
        yield* store.invalidateSet("g:dead", "hard")
        yield* put("held", "5", ["g:held", "t:n"])
        yield* store.hold(["g:held"], "writer", 60_000)
        assert.strictEqual((yield* leaseMiss(store, "leased", "loader", sets("t:n")))._tag, "Leased")
        const requests: ReadonlyArray<CacheStore.LookupRequest> = [
          { key: "hit", sets: sets("t:n") },
          { key: "missing", sets: sets("g:new", "t:n") },
          { key: "bare", sets: sets() },
          { key: "stale", sets: sets("t:n") },
          { key: "leased", sets: sets("t:n") },
          { key: "dead", sets: sets("g:dead", "t:n") },
          { key: "held", sets: sets("g:held", "t:n") },
          { key: "hit", sets: sets("t:n") },
          // The same key under other sets than it recorded: not its value.
          { key: "hit", sets: sets("t:other") }
        ]
        const batched = yield* store.lookupMany(requests, 10_000)
        const single = yield* Effect.forEach(requests, ({ key, sets }) => store.lookup(key, sets, 10_000))
        assert.deepStrictEqual(batched, single)
        assert.deepStrictEqual(batched.map(tagOf), [
          "Hit",
          "Miss",
          "Hit",
          "Stale",
          "Miss",
          "Miss",
          "Miss",
          "Hit",
          "Miss"
        ])
        const leased = batched[4]!
        assert.isTrue(leased._tag === "Miss" && leased.view.holder !== undefined)
        const held = batched[6]!
        assert.isTrue(held._tag === "Miss" && held.view.held)
        assert.deepStrictEqual(yield* store.lookupMany([]), [])
      })
    )

    test(
      "a batched lookup never answers what a write of this process replaced (hit, invalidated, refilled)",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const requests = ["a", "b", "c"].map((key) => ({ key, sets: sets(`g:${key}`, "t:n") }))
        for (const { key, sets } of requests) yield* put(key, `${key}1`, sets.names)
        // Twice: the second may be answered by the in-process tier.
        for (let i = 0; i < 2; i++) {
          const found = yield* store.lookupMany(requests)
          assert.deepStrictEqual(
            found.map((lookup) => (lookup._tag === "Hit" ? lookup.value : lookup._tag)),
            ["a1", "b1", "c1"]
          )
        }
        yield* store.invalidateSet("g:b", "hard")
        yield* store.invalidate(["c"], "hard")
        const after = yield* store.lookupMany(requests)
        assert.deepStrictEqual(after.map(tagOf), ["Hit", "Miss", "Miss"])
        yield* put("c", "c2", ["g:c", "t:n"])
        const refilled = yield* store.lookupMany(requests)
        assert.deepStrictEqual(
          refilled.map((lookup) => (lookup._tag === "Hit" ? lookup.value : lookup._tag)),
          ["a1", "Miss", "c2"]
        )
      })
    )

    test(
      "a value filled with a held set's marker as its stamp is never served (the hold marker is no stamp)",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* store.hold(["g:held"], "writer", 60_000)
        const leasing = yield* leaseMiss(store, "k", "t1", sets("g:held"))
        assert.strictEqual(leasing._tag, "Leased")
        if (leasing._tag !== "Leased") return
        assert.isTrue(leasing.held)
        // A caller that stores anyway (Memo never does): the store may keep the record, never serve it.
        yield* store.fill("k", "t1", sets("g:held"), leasing.stamps, fill("loaded during the hold"))
        assert.strictEqual(tagOf(yield* store.lookup("k", sets("g:held"))), "Miss")
        assert.strictEqual(tagOf((yield* store.lookupMany([{ key: "k", sets: sets("g:held") }]))[0]!), "Miss")
        yield* store.releaseHold(["g:held"], "writer")
        assert.strictEqual(tagOf(yield* store.lookup("k", sets("g:held"))), "Miss")
      })
    )

    // Groups named by the value (`Fill.groups`): a node whose value names groups of the family `book` carries the
    // family's epoch among its sets.
    const open = sets("t:n", "e:book")
    const putOpen = (key: string, value: string, groups: ReadonlyArray<string>, on: CacheStore.Sets = open) =>
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const token = `po-${key}`.slice(0, 16)
        const leasing = yield* leaseMiss(store, key, token, on)
        assert.strictEqual(leasing._tag, "Leased")
        if (leasing._tag !== "Leased") return
        assert.isTrue(yield* store.fill(key, token, on, leasing.stamps, { ...fill(value), groups }), `${key} stored`)
      })
    const answerOf = (lookup: CacheStore.Lookup) => (lookup._tag === "Miss" ? "Miss" : `${lookup._tag}:${lookup.value}`)

    test(
      "groups named by the value: invalidating one makes the entry a miss (softly: stale); another group of the family leaves it a hit",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* putOpen("k", "v", ["g:book:1", "g:book:2"])
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Hit:v")
        // Another group of the family: the epoch moves, the read checks the value's own groups, still current.
        assert.strictEqual(yield* store.invalidateSet("g:book:3", "hard"), 0)
        for (let i = 0; i < 3; i++) assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Hit:v")
        assert.strictEqual(yield* store.invalidateSet("g:book:2", "soft"), 1)
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Stale:v")
        assert.strictEqual(answerOf((yield* store.lookupMany([{ key: "k", sets: open }]))[0]!), "Stale:v")
        assert.strictEqual(yield* store.invalidateSet("g:book:1", "hard"), 1)
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Miss")
        assert.strictEqual(answerOf((yield* store.lookupMany([{ key: "k", sets: open }]))[0]!), "Miss")
      })
    )

    for (const mode of ["hard", "soft"] as const)
      test(
        `an invalidation (${mode}) of a value's group between the lease and the fill refuses the fill and gives the lease up`,
        Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const leasing = yield* leaseMiss(store, "k", "t1", open)
          assert.strictEqual(leasing._tag, "Leased")
          if (leasing._tag !== "Leased") return
          // The load runs; meanwhile the group its value will name is invalidated (it has no stamp yet).
          yield* store.invalidateSet("g:book:1", mode)
          assert.isFalse(
            yield* store.fill("k", "t1", open, leasing.stamps, { ...fill("loaded before"), groups: ["g:book:1"] })
          )
          const after = yield* store.lookup("k", open)
          assert.isTrue(after._tag === "Miss" && after.view.holder === undefined, JSON.stringify(after))
          const again = yield* leaseMiss(store, "k", "t2", open)
          if (again._tag !== "Leased") return assert.fail(again._tag)
          assert.isTrue(yield* store.fill("k", "t2", open, again.stamps, { ...fill("v2"), groups: ["g:book:1"] }))
          assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Hit:v2")
        })
      )

    test(
      "a hold on a value's group refuses the fill, whether it came during the load or stood before the lookup",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const during = yield* leaseMiss(store, "k", "t1", open)
        assert.strictEqual(during._tag, "Leased")
        if (during._tag !== "Leased") return
        yield* store.hold(["g:book:1"], "writer", 60_000)
        const loaded = { ...fill("read while the write commits"), groups: ["g:book:1"] }
        assert.isFalse(yield* store.fill("k", "t1", open, during.stamps, loaded))
        // The hold stands before the next lookup: the group is held, and the family's epoch lists the hold, so the
        // lease already knows that this load may not be stored (and nobody may join it).
        const before = yield* leaseMiss(store, "k", "t2", open)
        assert.strictEqual(before._tag, "Leased")
        if (before._tag !== "Leased") return
        assert.isTrue(before.held, "the family's epoch lists the hold")
        assert.isFalse(yield* store.fill("k", "t2", open, before.stamps, loaded))
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Miss")
        yield* store.releaseHold(["g:book:1"], "writer")
        yield* putOpen("k", "after the commit", ["g:book:1"])
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Hit:after the commit")
      })
    )

    test(
      "an invalidation of a value's group that lands before the lookup keeps the fill (the load saw its data)",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        // Without an epoch yet, and with one (made by another entry's lease).
        yield* store.invalidateSet("g:book:1", "hard")
        yield* putOpen("a", "va", ["g:book:1"])
        yield* store.invalidateSet("g:book:1", "hard")
        yield* store.hold(["g:book:2"], "writer", 60_000)
        yield* store.releaseHold(["g:book:2"], "writer")
        yield* putOpen("b", "vb", ["g:book:1", "g:book:2"])
        assert.strictEqual(answerOf(yield* store.lookup("a", open)), "Miss")
        assert.strictEqual(answerOf(yield* store.lookup("b", open)), "Hit:vb")
      })
    )

    test(
      "during a load, an invalidation of another group of the family refuses the fill (the epoch moved); one of another family does not",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        const first = yield* leaseMiss(store, "k", "t1", open)
        if (first._tag !== "Leased") return assert.fail(first._tag)
        yield* store.invalidateSet("g:user:1", "hard")
        yield* store.invalidateSet("t:n2", "hard")
        assert.isTrue(yield* store.fill("k", "t1", open, first.stamps, { ...fill("v1"), groups: ["g:book:1"] }))
        yield* store.invalidate(["k"], "hard")
        const second = yield* leaseMiss(store, "k", "t2", open)
        if (second._tag !== "Leased") return assert.fail(second._tag)
        yield* store.invalidateSet("g:book:9", "hard")
        assert.isFalse(yield* store.fill("k", "t2", open, second.stamps, { ...fill("v2"), groups: ["g:book:1"] }))
        // A value that names no group does not depend on the epoch.
        const third = yield* leaseMiss(store, "k", "t3", open)
        if (third._tag !== "Leased") return assert.fail(third._tag)
        yield* store.invalidateSet("g:book:9", "hard")
        assert.isTrue(yield* store.fill("k", "t3", open, third.stamps, { ...fill("v3"), groups: [] }))
        assert.strictEqual(answerOf(yield* store.lookup("k", open)), "Hit:v3")
      })
    )

    test(
      "a batched lookup judges value groups as single lookups do; inspect lists them and sees them die",
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        yield* putOpen("a", "va", ["g:book:1"])
        yield* putOpen("b", "vb", ["g:book:2"])
        yield* putOpen("c", "vc", [])
        yield* store.invalidateSet("g:book:2", "hard")
        const requests = ["a", "b", "c"].map((key) => ({ key, sets: open }))
        const batched = yield* store.lookupMany(requests)
        assert.deepStrictEqual(batched.map(answerOf), ["Hit:va", "Miss", "Hit:vc"])
        assert.deepStrictEqual(batched, yield* Effect.forEach(requests, ({ key, sets }) => store.lookup(key, sets)))
        const info = yield* store.inspect("a")
        assert.deepStrictEqual([...info!.sets].sort(), ["g:book:1", "t:n"])
        assert.strictEqual(info!.freshness?._tag, "Forever")
        yield* store.invalidateSet("g:book:1", "soft")
        assert.strictEqual((yield* store.inspect("a"))!.freshness?._tag, "Invalidated")
        yield* store.hold(["g:book:1"], "writer", 60_000)
        assert.isUndefined(yield* store.inspect("a"), "a hold reclaims the entry")
        yield* store.releaseHold(["g:book:1"], "writer")
      })
    )
  })
