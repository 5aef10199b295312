/**
 * The attempt limiter on its own: the budget arithmetic (a burst of `attempts`, then one per `window / attempts`),
 * giving units back, the bound on the in-process map, the fallback when the primary backend fails, and client
 * keys. The in-process backend runs on the TestClock; the Redis backend on a real Redis (its time is the server's).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { TestClock } from "effect/testing"
import { Redis as IORedis } from "ioredis"
import { afterAll } from "vitest"
import * as Limiter from "../../src/admin/internal/limiter.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"

const budget: Limiter.Budget = { attempts: 3, windowMillis: 60_000 }

const takes = (backend: Limiter.Backend, key: string, n: number) =>
  Effect.forEach(Array.from({ length: n }), () => backend.take(key, budget))

const tags = (outcomes: ReadonlyArray<Limiter.Take>) => outcomes.map((outcome) => outcome._tag)

describe("in-process backend", () => {
  it.effect("a burst of `attempts`, then refused until one interval has passed", () =>
    Effect.gen(function* () {
      const backend = Limiter.makeMemory()
      const outcomes = yield* takes(backend, "k", 4)
      assert.deepStrictEqual(tags(outcomes), ["Allowed", "Allowed", "Allowed", "Refused"])
      const refused = outcomes[3]!
      assert.strictEqual(refused._tag === "Refused" ? refused.retryAfterMillis : -1, 20_000)
      yield* TestClock.adjust("19999 millis")
      assert.strictEqual((yield* backend.take("k", budget))._tag, "Refused")
      yield* TestClock.adjust("1 millis")
      assert.strictEqual((yield* backend.take("k", budget))._tag, "Allowed")
      assert.strictEqual((yield* backend.take("k", budget))._tag, "Refused")
      // A refused take changes nothing: the whole window later the full burst is back.
      yield* TestClock.adjust("60 seconds")
      assert.deepStrictEqual(tags(yield* takes(backend, "k", 4)), ["Allowed", "Allowed", "Allowed", "Refused"])
    })
  )

  it.effect("keys are independent, and a unit given back can be taken again", () =>
    Effect.gen(function* () {
      const backend = Limiter.makeMemory()
      yield* takes(backend, "a", 3)
      assert.strictEqual((yield* backend.take("b", budget))._tag, "Allowed")
      assert.strictEqual((yield* backend.take("a", budget))._tag, "Refused")
      yield* backend.give("a", budget)
      assert.strictEqual((yield* backend.take("a", budget))._tag, "Allowed")
      assert.strictEqual((yield* backend.take("a", budget))._tag, "Refused")
      // Giving back more than was taken never banks extra units.
      for (let i = 0; i < 10; i++) yield* backend.give("c", budget)
      assert.deepStrictEqual(tags(yield* takes(backend, "c", 4)), ["Allowed", "Allowed", "Allowed", "Refused"])
    })
  )

  it.effect("keeps at most maxKeys keys, dropping the one untouched the longest", () =>
    Effect.gen(function* () {
      const backend = Limiter.makeMemory(3)
      yield* takes(backend, "old", 3)
      yield* takes(backend, "x", 1)
      yield* takes(backend, "y", 1)
      // "old" is touched again (refused takes do not touch), "x" is now the oldest.
      yield* backend.give("old", budget)
      yield* takes(backend, "z", 1)
      assert.strictEqual((yield* backend.take("old", budget))._tag, "Allowed")
      assert.strictEqual((yield* backend.take("old", budget))._tag, "Refused")
      // Thousands of keys (an attacker varying names) never grow it past the bound: "old" was pushed out.
      for (let i = 0; i < 5000; i++) yield* backend.take(`spray${i}`, budget)
      assert.deepStrictEqual(tags(yield* takes(backend, "old", 3)), ["Allowed", "Allowed", "Allowed"])
    })
  )
})

describe("make", () => {
  const budgets = { perClient: budget, perUser: { attempts: 2, windowMillis: 60_000 } }

  it.effect("takes from the client's and the user's budgets, and gives both back on success", () =>
    Effect.gen(function* () {
      const limiter = Limiter.make(Limiter.makeMemory(), budgets)
      for (let i = 0; i < 5; i++) {
        const gate = yield* limiter.gate("10.0.0.1", "user:alice")
        assert.strictEqual(gate._tag, "Open")
        if (gate._tag === "Open") yield* gate.settle(true)
      }
      const failed = yield* limiter.gate("10.0.0.1", "user:alice")
      if (failed._tag === "Open") yield* failed.settle(false)
      const failedAgain = yield* limiter.gate("10.0.0.2", "user:alice")
      if (failedAgain._tag === "Open") yield* failedAgain.settle(false)
      // Alice's budget (2) is spent, from any client; the first client's own budget is not.
      const shut = yield* limiter.gate("10.0.0.3", "user:alice")
      assert.strictEqual(shut._tag, "Shut")
      assert.strictEqual(shut._tag === "Shut" ? shut.retryAfterSeconds : 0, 30)
      assert.strictEqual((yield* limiter.gate("10.0.0.1", "user:bob"))._tag, "Open")
      assert.strictEqual((yield* limiter.gate("10.0.0.1", undefined))._tag, "Open")
    })
  )

  it.effect("a user's refusal gives the client's unit back", () =>
    Effect.gen(function* () {
      const limiter = Limiter.make(Limiter.makeMemory(), budgets)
      for (const client of ["a", "b"]) {
        const gate = yield* limiter.gate(client, "user:alice")
        if (gate._tag === "Open") yield* gate.settle(false)
      }
      for (let i = 0; i < 10; i++) assert.strictEqual((yield* limiter.gate("c", "user:alice"))._tag, "Shut")
      // Client "c" was refused ten times for alice's sake, and still has its three attempts.
      const outcomes: Array<string> = []
      for (let i = 0; i < 4; i++) {
        const gate = yield* limiter.gate("c", undefined)
        outcomes.push(gate._tag)
        if (gate._tag === "Open") yield* gate.settle(false)
      }
      assert.deepStrictEqual(outcomes, ["Open", "Open", "Open", "Shut"])
    })
  )

  it.effect("counts in process when the primary backend fails", () =>
    Effect.gen(function* () {
      const failing: Limiter.Backend = {
        kind: "redis",
        take: () => Effect.fail(new Limiter.LimiterUnavailable({ message: "down" })),
        give: () => Effect.fail(new Limiter.LimiterUnavailable({ message: "down" }))
      }
      const limiter = Limiter.make(failing, budgets)
      const outcomes: Array<string> = []
      for (let i = 0; i < 4; i++) {
        const gate = yield* limiter.gate("10.0.0.9", undefined)
        outcomes.push(gate._tag)
        if (gate._tag === "Open") yield* gate.settle(false)
      }
      assert.deepStrictEqual(outcomes, ["Open", "Open", "Open", "Shut"])
    })
  )
})

describe("clientKey", () => {
  it("IPv4 as is, IPv4-mapped IPv6 as IPv4, IPv6 cut to its /64, unknown and junk kept apart", () => {
    assert.strictEqual(Limiter.clientKey(Option.some("203.0.113.7")), "203.0.113.7")
    assert.strictEqual(Limiter.clientKey(Option.some("::ffff:203.0.113.7")), "203.0.113.7")
    assert.strictEqual(
      Limiter.clientKey(Option.some("2001:db8:1:2:aaaa::1")),
      Limiter.clientKey(Option.some("2001:db8:1:2:bbbb:cccc:dddd:eeee"))
    )
    assert.notStrictEqual(
      Limiter.clientKey(Option.some("2001:db8:1:2::1")),
      Limiter.clientKey(Option.some("2001:db8:1:3::1"))
    )
    assert.strictEqual(Limiter.clientKey(Option.some("[2001:db8:1:2::1]")), "2001:db8:1:2::/64")
    assert.strictEqual(Limiter.clientKey(Option.none()), "unknown")
    assert.match(Limiter.clientKey(Option.some("not an address")), /^raw:/)
  })
})

describe.skipIf(await missing(Redis))("Redis backend", () => {
  const prefix = `cmlimit${Math.random().toString(36).slice(2, 8)}:`
  const client = new IORedis(Redis.url)
  afterAll(async () => {
    await deleteRedisPrefix(prefix)
    client.disconnect()
  })

  it.live("the same arithmetic on the server's clock, one key per budget, expiring with its state", () =>
    Effect.gen(function* () {
      const backend = Limiter.makeRedis(client, prefix)
      const outcomes = yield* takes(backend, "k", 4)
      assert.deepStrictEqual(tags(outcomes), ["Allowed", "Allowed", "Allowed", "Refused"])
      const refused = outcomes[3]!
      const wait = refused._tag === "Refused" ? refused.retryAfterMillis : -1
      assert.isTrue(wait > 0 && wait <= 20_000, `retry after ${wait}`)
      const ttl = yield* Effect.promise(() => client.pttl(`${prefix}k`))
      assert.isTrue(ttl > 40_000 && ttl <= 60_000, `pttl ${ttl}`)
      yield* backend.give("k", budget)
      assert.strictEqual((yield* backend.take("k", budget))._tag, "Allowed")
      for (let i = 0; i < 5; i++) yield* backend.give("k", budget)
      assert.strictEqual(yield* Effect.promise(() => client.exists(`${prefix}k`)), 0)
    })
  )

  it.live("parallel takes never pass the budget", () =>
    Effect.gen(function* () {
      const backend = Limiter.makeRedis(client, prefix)
      const outcomes = yield* Effect.forEach(Array.from({ length: 40 }), () => backend.take("p", budget), {
        concurrency: "unbounded"
      })
      assert.strictEqual(outcomes.filter((outcome) => outcome._tag === "Allowed").length, 3)
    })
  )
})
