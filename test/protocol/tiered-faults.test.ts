/**
 * The tiered store's staleness bound under faults of its invalidation channel, on a private redis-server (port
 * 6440, one test after the other): the subscriber or the reading connection killed (`CLIENT KILL`), the whole
 * server paused (`CLIENT PAUSE`), a restart, a channel stalled or silently losing messages (a proxy in front of
 * the tier's connections), `FLUSHALL`, and eviction under `maxmemory`.
 *
 * Each test warms a key into the reader's tier (served from process memory), injects the fault, has another
 * store (another process) invalidate the key, and then checks the one guarantee: no lookup that starts once the
 * bound has passed since the invalidation resolved answers the old value. Then the fault ends and the tier must
 * serve from process memory again. Nothing waits on a duration to pass an assertion: waits are on the tier's own
 * state (serving, sessions), with generous deadlines.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Scope } from "effect"
import { CacheStore } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { type ChannelProxy, channelProxy } from "../support/channel-proxy.ts"
import { type PrivateRedis, redisServerMissing, startRedis } from "../support/fault-redis.ts"
import { putRaw } from "../support/store.ts"
import { neverStaleAfter, redisStore, tier, tieredStore, until, untilLocal } from "../support/tiered.ts"

const port = 6440
const boundMillis = 500
const skip = redisServerMissing()
const on = CacheStore.sets(["g:a", "t:n"])

type Store = CacheStore.CacheStore["Service"]

/** The id of the private Redis's client named `name` (the tier names its connections). */
const clientId = (redis: PrivateRedis, name: string) =>
  Effect.promise(async () => {
    const list = (await redis.admin.client("LIST")) as string
    const line = list.split("\n").find((entry) => entry.includes(` name=${name} `))
    if (line === undefined) throw new Error(`no client named ${name}`)
    return /(?:^|\s)id=(\d+)/.exec(line)![1]!
  })

interface World {
  readonly redis: PrivateRedis
  readonly reader: Store
  readonly writer: Store
  readonly proxy: ChannelProxy
}

/** A reader (tiered, its connections through a proxy) and a writer on a private Redis, `k` warm in the tier. */
const world = (extraArgs: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const redis = yield* startRedis(port, extraArgs)
    const prefix = uniquePrefix()
    const proxy = yield* channelProxy(port)
    const reader = yield* tieredStore(proxy.url, prefix, { bound: boundMillis })
    const writer = yield* redisStore(redis.url, prefix)
    yield* putRaw(writer, "k", "v1", { names: on.names })
    yield* untilLocal(reader, "k", on, "v1")
    return { redis, reader, writer, proxy } satisfies World
  })

/** The writer invalidates `k`'s group; then no lookup past the bound answers the old value. */
const invalidateAndCheck = (w: World) =>
  Effect.gen(function* () {
    yield* w.writer.invalidateSet("g:a", "hard")
    const gone = yield* neverStaleAfter(w.reader, "k", on, "v1", performance.now(), boundMillis)
    return gone
  })

/** After the fault: a new value is served from process memory again. */
const recovers = (w: World) =>
  Effect.gen(function* () {
    yield* putRaw(w.writer, "k", "v2", { names: on.names })
    yield* untilLocal(w.reader, "k", on, "v2")
  })

describe.skipIf(skip)("tiered store: the staleness bound under channel faults (private redis-server)", () => {
  for (const role of ["subscribe", "read"] as const) {
    it.live(
      `CLIENT KILL of the ${role === "subscribe" ? "subscriber" : "reading"} connection: the tier empties itself, then comes back`,
      () =>
        Effect.gen(function* () {
          const w = yield* world()
          const sessions = tier(w.reader).sessions()
          yield* Effect.promise(async () =>
            w.redis.admin.client("KILL", "ID", await Effect.runPromise(clientId(w.redis, `cacheme-tier-${role}`)))
          )
          yield* until("the tier stops serving", () => !tier(w.reader).serving())
          assert.strictEqual(tier(w.reader).size(), 0)
          yield* invalidateAndCheck(w)
          yield* until("a new session", () => tier(w.reader).sessions() > sessions)
          yield* recovers(w)
        }),
      120_000
    )
  }

  for (const mode of ["ALL", "WRITE"] as const) {
    it.live(
      `CLIENT PAUSE ${mode}: heartbeats stop, the tier empties itself within the bound, and comes back after`,
      () =>
        Effect.gen(function* () {
          const w = yield* world()
          yield* Effect.promise(() => w.redis.admin.call("CLIENT", "PAUSE", "3000", mode))
          yield* until("the tier stops serving", () => !tier(w.reader).serving())
          assert.strictEqual(tier(w.reader).size(), 0)
          // The invalidation waits for the pause to end; the check starts once it resolved.
          yield* invalidateAndCheck(w)
          yield* recovers(w)
        }),
      120_000
    )
  }

  it.live(
    "a Redis restart (every key lost): nothing from before is served past the bound, and the tier comes back",
    () =>
      Effect.gen(function* () {
        const first = yield* Scope.make()
        const redis = yield* startRedis(port).pipe(Scope.provide(first))
        const prefix = uniquePrefix()
        const reader = yield* tieredStore(redis.url, prefix, { bound: boundMillis })
        const writer = yield* redisStore(redis.url, prefix)
        yield* putRaw(writer, "k", "v1", { names: on.names })
        yield* untilLocal(reader, "k", on, "v1")
        const sessions = tier(reader).sessions()
        yield* Scope.close(first, Exit.void)
        const since = performance.now()
        yield* startRedis(port)
        yield* neverStaleAfter(reader, "k", on, "v1", since, boundMillis)
        yield* until("a new session", () => tier(reader).sessions() > sessions && tier(reader).serving())
        assert.strictEqual((yield* reader.lookup("k", on))._tag, "Miss")
        yield* putRaw(writer, "k", "v2", { names: on.names })
        yield* untilLocal(reader, "k", on, "v2")
      }),
    120_000
  )

  it.live(
    "a stalled channel (a proxy stops forwarding the subscriber's messages): no stale value past the bound",
    () =>
      Effect.gen(function* () {
        const w = yield* world()
        w.proxy.set("subscribe", "hold")
        yield* invalidateAndCheck(w)
        assert.isFalse(tier(w.reader).serving())
        // The held messages arrive: the invalidation among them, then heartbeats again.
        w.proxy.set("subscribe", "pass")
        yield* recovers(w)
      }),
    120_000
  )

  it.live(
    "a channel that silently loses messages: the tier empties itself at the bound and never serves the lost change",
    () =>
      Effect.gen(function* () {
        const w = yield* world()
        w.proxy.set("subscribe", "drop")
        yield* invalidateAndCheck(w)
        yield* until("the tier stops serving", () => !tier(w.reader).serving())
        // The invalidation message is lost for good; the channel forwards again and heartbeats come back.
        w.proxy.set("subscribe", "pass")
        const beats = tier(w.reader).stats.heartbeats
        yield* until("heartbeats come back", () => tier(w.reader).stats.heartbeats > beats && tier(w.reader).serving())
        for (let i = 0; i < 20; i++) {
          const found = yield* w.reader.lookup("k", on)
          assert.isFalse(found._tag === "Hit" && found.value === "v1", `lookup ${i}: ${JSON.stringify(found)}`)
        }
        yield* recovers(w)
      }),
    120_000
  )

  it.live(
    "FLUSHALL (a null invalidation message) empties the tier",
    () =>
      Effect.gen(function* () {
        const w = yield* world()
        const flushes = tier(w.reader).stats.flushes
        yield* Effect.promise(() => w.redis.admin.flushall())
        yield* neverStaleAfter(w.reader, "k", on, "v1", performance.now(), boundMillis)
        assert.isAbove(tier(w.reader).stats.flushes, flushes)
        yield* recovers(w)
      }),
    120_000
  )

  it.live(
    "eviction under maxmemory (allkeys-lru): no evicted entry or stamp is served past the bound",
    () =>
      Effect.gen(function* () {
        const w = yield* world(["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"])
        const ids = Array.from({ length: 300 }, (_, i) => i)
        const setsOf = (id: number) => CacheStore.sets([`g:${id % 30}`, "t:n"])
        const value = (id: number) => `${id}|${"p".repeat(2000)}`
        for (const id of ids) yield* putRaw(w.writer, `e${id}`, value(id), { names: setsOf(id).names })
        yield* until("the tier serves", () => tier(w.reader).serving())
        for (const id of ids) yield* w.reader.lookup(`e${id}`, setsOf(id))
        const held = tier(w.reader).size()
        // Junk outside the prefix until Redis has evicted a good share of the entries and stamps.
        const junk = "j".repeat(1024)
        let written = 0
        while ((yield* w.redis.infoNumber("stats", "evicted_keys")) < 150 && written < 20_000) {
          const batch = w.redis.admin.pipeline()
          for (let i = 0; i < 50; i++) batch.set(`tier-junk:${written++}`, junk)
          yield* Effect.promise(() => batch.exec())
        }
        // What Redis no longer holds (nothing refills it): the reader must not serve it past the bound.
        const gone = yield* Effect.promise(async () => {
          const result: Array<number> = []
          for (const id of ids) {
            const keys = [`e${id}`, ...setsOf(id).names.map((set) => `~s:${set}`)]
            const prefix = (w.writer.prefix as string) ?? ""
            const exists = await w.redis.admin.exists(...keys.map((key) => prefix + key))
            if (exists < keys.length) result.push(id)
          }
          return result
        })
        const since = performance.now()
        console.log(`[tiered eviction] ${held} copies held; ${gone.length} of 300 entries lost a key to eviction`)
        assert.isAbove(gone.length, 0)
        yield* until("the bound passed", () => performance.now() - since > boundMillis)
        const served: Array<number> = []
        for (const id of gone) {
          const found = yield* w.reader.lookup(`e${id}`, setsOf(id))
          if (found._tag === "Hit") served.push(id)
        }
        assert.deepStrictEqual(served, [], "evicted entries served from the tier")
      }),
    120_000
  )
})
