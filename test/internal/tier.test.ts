/**
 * The in-process tier's rules, step by step on a clock of our own: what a read may keep, what voids it, when
 * copies are served, and how the tier stays within its bounds. The tiered store feeds it the same events from
 * Redis (see test/store/Tiered.test.ts and test/protocol/tiered-faults.test.ts for the real channel).
 */
import { assert, describe, it } from "@effect/vitest"
import { LocalTier, type TierOptions } from "../../src/internal/tier.ts"

const make = (options: Partial<TierOptions> = {}) => {
  const tier = new LocalTier({ maxEntries: 100, maxBytes: 1_000_000, ttlMillis: 60_000, boundMillis: 1000, ...options })
  tier.channelUp()
  return tier
}

/** A tier that has proven its channel at `now`. */
const live = (now = 0, options: Partial<TierOptions> = {}) => {
  const tier = make(options)
  tier.heartbeat(now, now)
  assert.isTrue(tier.serving(now))
  return tier
}

/** A read of `keys` at `at`, answered with `values` (no expiry) at `at`. */
const readKept = (tier: LocalTier, keys: Array<string>, values: Array<string>, at: number) =>
  tier.endRead(tier.beginRead(keys, at), at, { values, lives: values.map(() => -1) })

describe("LocalTier", () => {
  it("keeps what a read returned, and serves it while the channel is proven", () => {
    const tier = live()
    assert.isTrue(readKept(tier, ["e", "s"], ["record", "stamp"], 1))
    assert.strictEqual(tier.get("e", 2), "record")
    assert.strictEqual(tier.get("s", 2), "stamp")
    assert.strictEqual(tier.size, 2)
  })

  it("an invalidation that overtakes the reply of a read in flight voids the read (the classic race)", () => {
    const tier = live()
    const ticket = tier.beginRead(["e", "s"], 1)
    // Redis ran the read, then a write of `s`: its invalidation arrives before the read's reply.
    tier.invalidate("s")
    assert.isFalse(tier.endRead(ticket, 2, { values: ["record", "old stamp"], lives: [-1, -1] }))
    assert.isUndefined(tier.get("s", 3))
    assert.isUndefined(tier.get("e", 3))
    assert.strictEqual(tier.stats.discarded, 1)
    // A read begun after the invalidation is kept.
    assert.isTrue(readKept(tier, ["e", "s"], ["record", "new stamp"], 4))
    assert.strictEqual(tier.get("s", 5), "new stamp")
  })

  it("two reads of one key in flight: an invalidation between them voids both, a later read is kept", () => {
    const tier = live()
    const first = tier.beginRead(["k"], 1)
    tier.invalidate("k")
    const second = tier.beginRead(["k"], 2)
    // The second began after the invalidation: its reply is current.
    assert.isTrue(tier.endRead(second, 3, { values: ["new"], lives: [-1] }))
    assert.isFalse(tier.endRead(first, 4, { values: ["old"], lives: [-1] }))
    assert.strictEqual(tier.get("k", 5), "new")
  })

  it("an invalidation after the copy is kept drops it", () => {
    const tier = live()
    readKept(tier, ["k"], ["v"], 1)
    tier.invalidate("k")
    assert.isUndefined(tier.get("k", 2))
    assert.strictEqual(tier.stats.invalidated, 1)
  })

  it("a flush voids every read in flight", () => {
    const tier = live()
    const ticket = tier.beginRead(["k"], 1)
    tier.flush()
    assert.isFalse(tier.endRead(ticket, 2, { values: ["v"], lives: [-1] }))
    assert.strictEqual(tier.size, 0)
  })

  it("a failed read keeps nothing and leaves no trace", () => {
    const tier = live()
    const ticket = tier.beginRead(["k"], 1)
    assert.isFalse(tier.endRead(ticket, 2))
    // Nothing pending: a later invalidation of `k` does not void a later read, and the later read is kept.
    assert.isTrue(readKept(tier, ["k"], ["v"], 3))
  })

  it("serves nothing until the channel has proven itself, and nothing once it is down", () => {
    const tier = make()
    assert.isFalse(tier.serving(0))
    assert.isFalse(readKept(tier, ["k"], ["v"], 0))
    tier.heartbeat(1, 2)
    assert.isTrue(tier.serving(3))
    assert.isTrue(readKept(tier, ["k"], ["v"], 3))
    const inFlight = tier.beginRead(["j"], 4)
    tier.channelDown()
    assert.isFalse(tier.serving(5))
    assert.strictEqual(tier.size, 0)
    assert.isFalse(tier.endRead(inFlight, 6, { values: ["v"], lives: [-1] }))
  })

  it("a proof older than the bound empties the tier once; a new proof brings serving back, empty", () => {
    const tier = live(0)
    readKept(tier, ["k"], ["v"], 10)
    const inFlight = tier.beginRead(["j"], 900)
    // Heartbeats stop coming back (the channel stalled): at the bound, nothing is served and the copies go.
    assert.isTrue(tier.serving(999))
    assert.isFalse(tier.serving(1000))
    assert.strictEqual(tier.size, 0)
    assert.strictEqual(tier.stats.flushes, 2)
    assert.isFalse(tier.serving(5000))
    assert.strictEqual(tier.stats.flushes, 2)
    assert.isFalse(tier.endRead(inFlight, 5001, { values: ["v"], lives: [-1] }))
    // A heartbeat sent during the stall, back now: it proves nothing recent.
    tier.heartbeat(500, 5002)
    assert.isFalse(tier.serving(5003))
    // A recent one does.
    tier.heartbeat(5000, 5004)
    assert.isTrue(tier.serving(5005))
    assert.isTrue(readKept(tier, ["k"], ["v2"], 5006))
  })

  it("a stall noticed only when the next heartbeat arrives still empties the tier", () => {
    const tier = live(0)
    readKept(tier, ["k"], ["v"], 10)
    // No lookup ran during the stall; the next proof arrives 3 s later, for a heartbeat just sent.
    tier.heartbeat(2999, 3000)
    assert.strictEqual(tier.size, 0)
    assert.isTrue(tier.serving(3001))
  })

  it("a copy expires with its key in Redis (the life read with it), and after the tier's ttl at most", () => {
    const tier = live(0, { ttlMillis: 10_000, boundMillis: 100_000 })
    const ticket = tier.beginRead(["short", "forever"], 100)
    // The reply came 50 ms after the read was sent: lives count from the send, never from the reply.
    tier.endRead(ticket, 150, { values: ["a", "b"], lives: [300, -1] })
    assert.strictEqual(tier.get("short", 399), "a")
    assert.isUndefined(tier.get("short", 400))
    assert.strictEqual(tier.get("forever", 10_149), "b")
    assert.isUndefined(tier.get("forever", 10_150))
  })

  it("stays within maxEntries, evicting copies not used since the last pass first", () => {
    const tier = live(0, { maxEntries: 3 })
    readKept(tier, ["a"], ["1"], 1)
    readKept(tier, ["b"], ["2"], 2)
    readKept(tier, ["c"], ["3"], 3)
    tier.get("a", 4)
    readKept(tier, ["d"], ["4"], 5)
    assert.strictEqual(tier.size, 3)
    // `b` was the oldest copy not used: it went; `a` was used and stayed.
    assert.isUndefined(tier.get("b", 6))
    assert.strictEqual(tier.get("a", 6), "1")
    assert.strictEqual(tier.stats.evicted, 1)
  })

  it("stays within maxBytes, and keeps no copy larger than a quarter of it", () => {
    const tier = live(0, { maxBytes: 4000 })
    for (let i = 0; i < 20; i++) readKept(tier, [`k${i}`], ["x".repeat(200)], i + 1)
    assert.isAtMost(tier.byteSize, 4000)
    assert.isAbove(tier.size, 0)
    assert.isBelow(tier.size, 20)
    const before = tier.size
    readKept(tier, ["huge"], ["y".repeat(600)], 30)
    assert.isUndefined(tier.get("huge", 31))
    assert.strictEqual(tier.size, before)
  })
})
