/**
 * The tiered store on the shared Redis (the contract suite runs on it too, from CacheStore.test.ts): hits served
 * from process memory, copies dropped by writes of other processes, by writes made outside the library and by
 * key expiry, read-your-writes in the writing process while the invalidation channel is held back by a proxy,
 * refused fills kept out, and the options. Each test builds its stores side by side (each with connections of
 * its own, as separate processes have) under a fresh prefix.
 *
 * Failures of the channel itself (killed connections, pauses, restarts, a channel that drops messages, eviction)
 * are in test/protocol/tiered-faults.test.ts, on a private redis-server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { Cluster, Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { tierOf } from "../../src/store/Tiered.ts"
import { uniquePrefix } from "../support/backends.ts"
import { channelProxy } from "../support/channel-proxy.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"
import { leaseAs, plain, putRaw } from "../support/store.ts"
import { buildStore, neverStaleAfter, redisStore, tier, tieredStore, until, untilLocal } from "../support/tiered.ts"

const sets = (...names: Array<string>) => CacheStore.sets(names)

/** A fresh prefix on the shared Redis, a raw client, and cleanup of both. */
const withPrefix = <A, E>(body: (prefix: string, raw: IORedis) => Effect.Effect<A, E, any>) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const raw = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    return yield* body(prefix, raw)
  }).pipe(Effect.scoped) as Effect.Effect<A, E, never>
}

describe.skipIf(await missing(Redis))("tiered store", () => {
  it.live(
    "a hit is read from Redis once, then answered from process memory",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix)
          const on = sets("g:a", "t:n")
          yield* putRaw(store, "k", "v", { names: on.names })
          yield* untilLocal(store, "k", on, "v")
          const handle = tier(store)
          assert.isTrue(handle.has(`${prefix}k`))
          assert.isTrue(handle.has(Protocol.stampKey(prefix, "g:a")))
          const before = handle.stats.localHits
          for (let i = 0; i < 100; i++)
            assert.deepStrictEqual(plain(yield* store.lookup("k", on)), { _tag: "Hit", value: "v" })
          assert.strictEqual(handle.stats.localHits - before, 100)
          // Another caller's sets are not this entry's: never a hit, whatever the tier holds.
          assert.strictEqual((yield* store.lookup("k", sets("g:b", "t:n")))._tag, "Miss")
        })
      ),
    60_000
  )

  it.live(
    "Memo over the tiered store: the loader runs once, later calls are local hits",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix)
          const Title = Node.make(`tiered-title-${process.pid}`, {
            fields: { id: Schema.Number },
            value: Schema.String
          })
          let loads = 0
          const read = Effect.sync(() => `title ${++loads}`).pipe(Memo.cached(Title.make({ id: 1 })))
          const provided = Effect.provideService(read, CacheStore.CacheStore, store).pipe(
            Effect.provide(CachemeConfig.layer({ prefix }))
          )
          assert.strictEqual(yield* provided, "title 1")
          yield* until("the tier serves", () => tier(store).serving())
          const before = tier(store).stats.localHits
          for (let i = 0; i < 20; i++) assert.strictEqual(yield* provided, "title 1")
          assert.strictEqual(loads, 1)
          assert.isAtLeast(tier(store).stats.localHits - before, 18)
        })
      ),
    60_000
  )

  for (const change of ["key", "group", "tag", "soft group", "hold", "refill", "pattern"] as const) {
    it.live(
      `another process's ${change} invalidation drops the copy within the bound`,
      () =>
        withPrefix((prefix) =>
          Effect.gen(function* () {
            const boundMillis = 1000
            const reader = yield* tieredStore(Redis.url, prefix, { bound: boundMillis })
            const writer = yield* redisStore(Redis.url, prefix)
            const on = sets("g:a", "t:n")
            yield* putRaw(writer, "k", "v1", { names: on.names })
            yield* untilLocal(reader, "k", on, "v1")
            switch (change) {
              case "key":
                yield* writer.invalidate(["k"], "hard")
                break
              case "group":
                yield* writer.invalidateSet("g:a", "hard")
                break
              case "tag":
                yield* writer.invalidateSet("t:n", "hard")
                break
              case "soft group":
                yield* writer.invalidateSet("g:a", "soft")
                break
              case "hold":
                yield* writer.hold(["g:a"], "writer", 10_000)
                break
              case "refill": {
                yield* writer.invalidate(["k"], "hard")
                yield* putRaw(writer, "k", "v2", { names: on.names })
                break
              }
              case "pattern":
                yield* writer.invalidatePattern("k*", "hard")
                break
            }
            const since = performance.now()
            const gone = yield* neverStaleAfter(reader, "k", on, "v1", since, boundMillis)
            console.log(`[tiered] ${change}: the copy stopped being served ${gone?.toFixed(2)} ms after the write`)
            if (change === "refill") yield* untilLocal(reader, "k", on, "v2")
          })
        ),
      60_000
    )
  }

  for (const change of ["key", "group", "tag", "hold", "releaseHold", "pattern", "fill"] as const) {
    it.live(
      `read-your-writes: a ${change} write of this process drops its copies before it resolves, with the channel held back`,
      () =>
        withPrefix((prefix) =>
          Effect.gen(function* () {
            const proxy = yield* channelProxy(6379)
            // A bound far longer than the test: the tier keeps serving while the channel is held back, so only
            // the write's own drop can keep the old value from being served.
            const store = yield* tieredStore(proxy.url, prefix, { bound: "30 seconds" })
            const on = sets("g:a", "t:n")
            const other = sets("g:other", "t:m")
            yield* putRaw(store, "k", "v1", { names: on.names })
            yield* putRaw(store, "j", "j1", { names: other.names })
            yield* untilLocal(store, "k", on, "v1")
            yield* untilLocal(store, "j", other, "j1")
            proxy.set("subscribe", "hold")
            const beats = tier(store).stats.heartbeats
            switch (change) {
              case "key":
                yield* store.invalidate(["k"], "hard")
                break
              case "group":
                yield* store.invalidateSet("g:a", "hard")
                break
              case "tag":
                yield* store.invalidateSet("t:n", "soft")
                break
              case "hold":
                yield* store.hold(["g:a"], "w1", 10_000)
                break
              case "releaseHold": {
                // A hold that lapsed: its release invalidates the set again (a load may have been stored since).
                yield* store.hold(["g:a"], "w1", 1)
                yield* Effect.sleep(5)
                yield* putRaw(store, "k", "v1", { names: on.names })
                const found = yield* store.lookup("k", on)
                assert.strictEqual(found._tag, "Hit")
                yield* store.lookup("k", on)
                yield* store.releaseHold(["g:a"], "w1")
                break
              }
              case "pattern":
                yield* store.invalidatePattern("k", "hard")
                break
              case "fill": {
                // A refresh: a soft invalidation (stale), then a lease that keeps the value, then the fill.
                yield* store.invalidate(["k"], "soft")
                const stale = yield* store.lookup("k", on)
                if (stale._tag !== "Stale") return assert.fail(stale._tag)
                const leasing = yield* store.lease("k", "refresh", on, stale.view, "keep", 10_000)
                if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
                assert.isTrue(
                  yield* store.fill("k", "refresh", on, leasing.stamps, {
                    value: "v2",
                    freshMillis: undefined,
                    lifeMillis: undefined
                  })
                )
                break
              }
            }
            const after = yield* store.lookup("k", on)
            assert.isFalse(after._tag === "Hit" && after.value === "v1", JSON.stringify(after))
            if (change === "fill") assert.deepStrictEqual(plain(after), { _tag: "Hit", value: "v2" })
            // The channel was held back the whole time (no heartbeat came back), and the tier still serves
            // what no write touched: the old value was kept out by the write's own drop.
            if (change !== "pattern") yield* untilLocal(store, "j", other, "j1")
            assert.strictEqual(tier(store).stats.heartbeats, beats)
            proxy.set("subscribe", "pass")
          })
        ),
      60_000
    )
  }

  it.live(
    "the classic race: an invalidation that overtakes the reply of a read in flight keeps the read's value out",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const proxy = yield* channelProxy(6379)
          const store = yield* tieredStore(proxy.url, prefix, { bound: "30 seconds" })
          const writer = yield* redisStore(Redis.url, prefix)
          yield* until("the tier serves", () => tier(store).serving())
          for (let attempt = 0; ; attempt++) {
            const key = `race${attempt}`
            yield* putRaw(writer, key, "v1")
            // The tracked read reaches Redis and runs; its reply is held back by the proxy.
            proxy.set("read", "hold")
            const read = yield* Effect.forkChild(store.lookup(key, sets()))
            yield* Effect.sleep(50)
            // Another process replaces the value: its invalidation reaches the subscriber, before the reply.
            const invalidations = tier(store).stats.invalidations
            yield* writer.invalidate([key], "hard")
            yield* until("the invalidation has been handled", () => tier(store).stats.invalidations > invalidations)
            yield* putRaw(writer, key, "v2")
            proxy.set("read", "pass")
            const first = yield* Fiber.join(read)
            // The premise: the read ran before the write. On a machine too busy for 50 ms to suffice, try again.
            if (!(first._tag === "Hit" && first.value === "v1")) {
              assert.isBelow(attempt, 5, "the read never ran before the write")
              continue
            }
            assert.isFalse(tier(store).has(`${prefix}${key}`), "the overtaken read was kept")
            assert.deepStrictEqual(plain(yield* store.lookup(key, sets())), { _tag: "Hit", value: "v2" })
            yield* untilLocal(store, key, sets(), "v2")
            return
          }
        })
      ),
    60_000
  )

  it.live(
    "a refused fill never enters the tier, and an accepted one enters only through a read of Redis",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix)
          const other = yield* redisStore(Redis.url, prefix)
          yield* until("the tier serves", () => tier(store).serving())
          const leasing = yield* leaseAs(store, "k", "t1")
          if (leasing._tag !== "Leased") return assert.fail(leasing._tag)
          // Another process invalidates the key: the lease is void, the fill refused.
          yield* other.invalidate(["k"], "hard")
          const fill = { value: "loaded before the invalidation", freshMillis: undefined, lifeMillis: undefined }
          assert.isFalse(yield* store.fill("k", "t1", sets(), leasing.stamps, fill))
          assert.isFalse(tier(store).has(`${prefix}k`))
          assert.strictEqual((yield* store.lookup("k", sets()))._tag, "Miss")
          assert.isFalse(tier(store).has(`${prefix}k`))
          // An accepted fill: no copy until a lookup has read the value back from Redis.
          yield* putRaw(store, "k", "v")
          assert.isFalse(tier(store).has(`${prefix}k`))
          yield* untilLocal(store, "k", sets(), "v")
          assert.isTrue(tier(store).has(`${prefix}k`))
        })
      ),
    60_000
  )

  for (const write of ["SET entry", "DEL entry", "PEXPIRE entry", "DEL stamp", "SET stamp", "EXPIRE stamp"] as const) {
    it.live(
      `a write made outside the library (${write}) drops the copy within the bound`,
      () =>
        withPrefix((prefix, raw) =>
          Effect.gen(function* () {
            const boundMillis = 1000
            const store = yield* tieredStore(Redis.url, prefix, { bound: boundMillis })
            const on = sets("g:a")
            yield* putRaw(store, "k", "v1", { names: on.names })
            yield* untilLocal(store, "k", on, "v1")
            const entry = `${prefix}k`
            const stamp = Protocol.stampKey(prefix, "g:a")
            yield* Effect.promise((): Promise<unknown> => {
              switch (write) {
                case "SET entry":
                  return raw.set(entry, "garbage")
                case "DEL entry":
                  return raw.del(entry)
                case "PEXPIRE entry":
                  return raw.pexpire(entry, 1)
                case "DEL stamp":
                  return raw.del(stamp)
                case "SET stamp":
                  return raw.set(stamp, "forged")
                case "EXPIRE stamp":
                  return raw.pexpire(stamp, 1)
              }
            })
            yield* neverStaleAfter(store, "k", on, "v1", performance.now(), boundMillis)
          })
        ),
      60_000
    )
  }

  it.live(
    "a copy expires with its key in Redis even when no message says so (the life read with it)",
    () =>
      withPrefix((prefix, raw) =>
        Effect.gen(function* () {
          const proxy = yield* channelProxy(6379)
          const store = yield* tieredStore(proxy.url, prefix, { bound: "30 seconds" })
          yield* putRaw(store, "k", "v1")
          // The key gets a short life first; the next read brings that life along with the copy.
          yield* Effect.promise(() => raw.pexpire(`${prefix}k`, 1500))
          yield* untilLocal(store, "k", sets(), "v1")
          // The channel is held back: no message can say the key expired.
          proxy.set("subscribe", "hold")
          const beats = tier(store).stats.heartbeats
          yield* Effect.promise(async () => {
            while ((await raw.exists(`${prefix}k`)) === 1) await new Promise((resolve) => setTimeout(resolve, 20))
          })
          const found = yield* store.lookup("k", sets())
          assert.strictEqual(found._tag, "Miss")
          assert.strictEqual(tier(store).stats.heartbeats, beats, "the channel stayed held back")
          proxy.set("subscribe", "pass")
        })
      ),
    60_000
  )

  it.live(
    "keys the `only` predicate leaves out are always read from Redis",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix, { only: (key) => key.startsWith("hot:") })
          yield* putRaw(store, "hot:1", "h")
          yield* putRaw(store, "cold:1", "c")
          yield* untilLocal(store, "hot:1", sets(), "h")
          const before = tier(store).stats.localHits
          for (let i = 0; i < 10; i++)
            assert.deepStrictEqual(plain(yield* store.lookup("cold:1", sets())), { _tag: "Hit", value: "c" })
          assert.strictEqual(tier(store).stats.localHits, before)
          assert.isFalse(tier(store).has(`${prefix}cold:1`))
        })
      ),
    60_000
  )

  it.live(
    "a node's `local` option overrides the store's default: false always reads Redis, true uses the tier",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix, { only: (key) => key.startsWith("hot") })
          const name = `tiered-local-${process.pid}-${Date.now().toString(36)}`
          const Remote = Node.make(`${name}-remote`, {
            fields: { id: Schema.Number },
            value: Schema.String,
            key: ({ id }) => `hot-remote:${id}`,
            local: false
          })
          const Local = Node.make(`${name}-local`, {
            fields: { id: Schema.Number },
            value: Schema.String,
            key: ({ id }) => `cold-local:${id}`,
            local: true
          })
          const read = (instance: Node.Instance) =>
            Effect.succeed("v").pipe(Memo.cached(instance), Effect.provideService(CacheStore.CacheStore, store))
          yield* until("the tier serves", () => tier(store).serving())
          // The `local: true` node is kept and served locally although `only` leaves its keys out.
          // A miss stores through Redis; the next read (a hit read from Redis) keeps the copy.
          yield* read(Local.make({ id: 1 }))
          yield* read(Local.make({ id: 1 }))
          yield* until("a local copy", () => tier(store).has(`${prefix}cold-local:1`))
          const before = tier(store).stats.localHits
          yield* read(Local.make({ id: 1 }))
          assert.strictEqual(tier(store).stats.localHits, before + 1)
          // The `local: false` node is never served from the tier although `only` takes its keys.
          for (let i = 0; i < 5; i++) yield* read(Remote.make({ id: 1 }))
          assert.strictEqual(tier(store).stats.localHits, before + 1)
          assert.isFalse(tier(store).has(`${prefix}hot-remote:1`))
        })
      ),
    60_000
  )

  it.live(
    "a key that is not well-formed UTF-16 (a lone surrogate) is never kept: Redis would name it otherwise",
    () =>
      withPrefix((prefix) =>
        Effect.gen(function* () {
          const store = yield* tieredStore(Redis.url, prefix)
          const key = "user:\ud800"
          yield* putRaw(store, key, "v")
          yield* until("the tier serves", () => tier(store).serving())
          for (let i = 0; i < 3; i++)
            assert.deepStrictEqual(plain(yield* store.lookup(key, sets())), { _tag: "Hit", value: "v" })
          assert.strictEqual(tier(store).size(), 0)
        })
      ),
    60_000
  )

  it.live("bad tier options are a CachemeConfigError naming the setting", () =>
    Effect.gen(function* () {
      for (const [local, setting] of [
        [{ maxEntries: 0 }, "local.maxEntries"],
        [{ maxEntries: 1.5 }, "local.maxEntries"],
        [{ maxBytes: -1 }, "local.maxBytes"],
        [{ bound: "soon" }, "local.bound"],
        [{ ttl: 0 }, "local.ttl"]
      ] as const) {
        const exit = yield* Effect.exit(
          Effect.scoped(
            buildStore(
              CacheStore.layerTiered({ url: Redis.url, local: local as any }).pipe(Layer.provide(CachemeConfig.layer()))
            )
          )
        )
        assert.isTrue(Exit.isFailure(exit))
        if (Exit.isFailure(exit)) {
          const error = Cause.squash(exit.cause) as CachemeConfig.CachemeConfigError
          assert.strictEqual(error._tag, "CachemeConfigError")
          assert.strictEqual(error.setting, setting)
        }
      }
    })
  )

  it.live(
    "over a Redis Cluster client, a client with a keyPrefix, or with the tier off, the store is the Redis store",
    () =>
      Effect.gen(function* () {
        const cluster = yield* Effect.acquireRelease(
          Effect.sync(() => {
            const client = new Cluster([{ host: "127.0.0.1", port: 6449 }], { lazyConnect: true })
            client.on("error", () => {})
            return client
          }),
          (client) => Effect.sync(() => client.disconnect())
        )
        const overCluster = yield* Effect.scoped(
          Effect.map(
            buildStore(
              CacheStore.layerTiered({ client: cluster, prefix: "test:cluster:" }).pipe(
                Layer.provide(CachemeConfig.layer())
              )
            ),
            (store) => [store.kind, tierOf(store)] as const
          )
        )
        assert.deepStrictEqual(overCluster, ["redis", undefined])
        const off = yield* Effect.scoped(
          Effect.map(
            buildStore(
              CacheStore.layerTiered({ url: Redis.url, local: { enabled: false } }).pipe(
                Layer.provide(CachemeConfig.layer())
              )
            ),
            (store) => [store.kind, tierOf(store)] as const
          )
        )
        assert.deepStrictEqual(off, ["redis", undefined])
        const prefixed = yield* Effect.acquireRelease(
          Effect.sync(() => new IORedis(Redis.url, { keyPrefix: "app:", lazyConnect: true })),
          (client) => Effect.sync(() => client.disconnect())
        )
        const overPrefixed = yield* Effect.scoped(
          Effect.map(
            buildStore(CacheStore.layerTiered({ client: prefixed }).pipe(Layer.provide(CachemeConfig.layer()))),
            (store) => [store.kind, tierOf(store)] as const
          )
        )
        assert.deepStrictEqual(overPrefixed, ["redis", undefined])
      })
  )
})
