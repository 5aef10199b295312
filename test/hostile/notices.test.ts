/**
 * Hostile tests of completion notices (docs/concepts.md, "Herd waiting"): a process subscribes to a key's channel
 * "only while it waits for that key"; a missed notice only costs a poll. Attacked on a private Redis (port 6450):
 * many waits that end every way (a fill, a release then a failing load, an interrupt), then the subscriber
 * connection cut while an UNSUBSCRIBE's reply is in flight (a TCP proxy holds what Redis sends on that one
 * connection).
 *
 * Polls here are an hour apart, so only a notice (or the test's own action) moves a waiter.
 */
import { createServer, type Server, Socket } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Layer, Schema } from "effect"
import type { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import * as Codec from "../../src/internal/codec.ts"
import { tagSet } from "../../src/internal/keys.ts"
import * as Notices from "../../src/internal/notices.ts"
import { redisServerMissing, startRedis } from "../support/fault-redis.ts"
import { leaseAs } from "../support/store.ts"

const port = 6450
let counter = 0
const fresh = (name: string) => `${name}-hostile-n-${process.pid}-${counter++}`

const settings = {
  herdRetryCount: 1,
  herdRetryInterval: "1 hour",
  herdMaxWait: "2 hours",
  leaseTtl: "1 hour"
} as const

/** A proxy that can hold what Redis sends to the connection named `cacheme-notices`, or cut it. */
const noticesProxy = (targetPort: number) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{
          url: string
          hold: (on: boolean) => void
          cut: () => void
          close: () => Promise<void>
        }>((resolve) => {
          interface Link {
            notices: boolean
            client: Socket
            upstream: Socket
            held: Array<Buffer>
          }
          const links = new Set<Link>()
          let holding = false
          const server: Server = createServer((client) => {
            const upstream = new Socket()
            const link: Link = { notices: false, client, upstream, held: [] }
            links.add(link)
            for (const socket of [client, upstream]) {
              socket.on("error", () => {})
              socket.on("close", () => {
                links.delete(link)
                client.destroy()
                upstream.destroy()
              })
            }
            client.on("data", (chunk: Buffer) => {
              if (chunk.toString("latin1").includes("cacheme-notices")) link.notices = true
              upstream.write(chunk)
            })
            upstream.on("data", (chunk: Buffer) => {
              if (link.notices && (holding || link.held.length > 0)) link.held.push(chunk)
              else client.write(chunk)
            })
            upstream.connect(targetPort, "127.0.0.1")
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const listening = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              url: `redis://127.0.0.1:${listening}`,
              hold: (on) => {
                holding = on
                if (!on)
                  for (const link of links)
                    while (link.held.length > 0 && !link.client.destroyed) link.client.write(link.held.shift()!)
              },
              cut: () => {
                for (const link of links) {
                  if (!link.notices) continue
                  link.held.length = 0
                  link.client.destroy()
                  link.upstream.destroy()
                }
              },
              close: () =>
                new Promise<void>((done) => {
                  for (const link of links) {
                    link.client.destroy()
                    link.upstream.destroy()
                  }
                  server.close(() => done())
                })
            })
          })
        })
    ),
    (proxy) => Effect.promise(() => proxy.close())
  )

const numsub = (admin: IORedis, channel: string) =>
  Effect.promise(async () => {
    const [, count] = (await admin.pubsub("NUMSUB", channel)) as [string, number]
    return Number(count)
  })

/** Waits (event by event: each poll is one PUBSUB round trip) until `channel` has `count` subscribers. */
const untilNumsub = (admin: IORedis, channel: string, count: number) =>
  Effect.gen(function* () {
    while ((yield* numsub(admin, channel)) !== count) yield* Effect.sleep(5)
  })

const noticeChannels = (admin: IORedis, prefix: string) =>
  Effect.promise(() => admin.pubsub("CHANNELS", `${Notices.channel(prefix, "")}*`) as Promise<Array<string>>)

/** The ids of the connections named `cacheme-notices`. */
const noticesIds = (admin: IORedis) =>
  Effect.promise(async () =>
    String(await admin.client("LIST"))
      .split("\n")
      .filter((line) => line.includes("name=cacheme-notices"))
      .map((line) => /id=(\d+)/.exec(line)?.[1])
  )

const storeLayer = (url: string, prefix: string) =>
  CacheStore.layerRedis({ url, prefix }).pipe(
    Layer.provideMerge(CachemeConfig.layer({ ...settings, prefix })),
    Layer.orDie
  )

describe.skipIf(redisServerMissing())("hostile notices: private Redis", () => {
  it.live(
    "held: 60 keys' waits ending by fill, by release and a failing load, and by interrupt leave no subscription",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = `hn:${counter++}:`
        yield* Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
          const names = [tagSet(Title.name)]
          const sets = CacheStore.sets(names)
          const entries = Array.from({ length: 60 }, (_, id) => Title.make({ id }))
          const leases = []
          for (const entry of entries) {
            const leasing = yield* leaseAs(store, entry.key, `other-${entry.fields.id}`, names, 3_600_000)
            assert.strictEqual(leasing._tag, "Leased")
            if (leasing._tag !== "Leased") return
            leases.push(leasing)
          }
          const readers = yield* Effect.forEach(entries, (entry) =>
            Effect.forEach([0, 1, 2], () =>
              Effect.forkChild(
                (entry.fields.id % 3 === 1 ? Effect.fail("database down") : Effect.succeed("mine")).pipe(
                  Memo.cached(entry)
                )
              )
            )
          )
          for (const entry of entries) yield* untilNumsub(redis.admin, Notices.channel(prefix, entry.key), 1)
          const encoded = Codec.encode(Title, "theirs")
          if (encoded._tag !== "Success") return assert.fail("encode")
          for (const [i, entry] of entries.entries()) {
            const leasing = leases[i]!
            const token = `other-${entry.fields.id}`
            if (i % 3 === 0) yield* Effect.forEach(readers[i]!, Fiber.interrupt)
            else if (i % 3 === 1) yield* store.release(entry.key, token, sets, leasing.stamps, leasing.created)
            else
              yield* store.fill(entry.key, token, sets, leasing.stamps, {
                value: encoded.value,
                freshMillis: undefined,
                lifeMillis: undefined
              })
          }
          for (const [i, group] of readers.entries()) {
            for (const fiber of group) {
              const exit = yield* Fiber.await(fiber)
              if (i % 3 === 1) assert.isTrue(Exit.isFailure(exit))
              if (i % 3 === 2) assert.deepStrictEqual(exit, Exit.succeed("theirs"))
            }
          }
          // Barrier: one more subscription on the same connection; every UNSUBSCRIBE before it has run by then.
          const barrier = store.watch!("barrier")
          yield* untilNumsub(redis.admin, Notices.channel(prefix, "barrier"), 1)
          barrier.close()
          yield* untilNumsub(redis.admin, Notices.channel(prefix, "barrier"), 0)
          assert.deepStrictEqual(yield* noticeChannels(redis.admin, prefix), [])
          const clients = String(yield* Effect.promise(() => redis.admin.client("LIST")))
          assert.strictEqual(clients.split("\n").filter((line) => line.includes("name=cacheme-notices")).length, 1)
        }).pipe(Effect.provide(storeLayer(redis.url, prefix)))
      }),
    60_000
  )

  it.live(
    "the notices connection lost while an UNSUBSCRIBE reply is in flight: the key is not subscribed again",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const proxy = yield* noticesProxy(port)
        const prefix = `hn:${counter++}:`
        yield* Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
          const entry = Title.make({ id: 1 })
          const channel = Notices.channel(prefix, entry.key)
          const leasing = yield* leaseAs(store, entry.key, "other-process", [tagSet(Title.name)], 3_600_000)
          assert.strictEqual(leasing._tag, "Leased")
          const waiter = yield* Effect.forkChild(Effect.succeed("mine").pipe(Memo.cached(entry)))
          yield* untilNumsub(redis.admin, channel, 1)
          // Redis's replies to the notices connection are held; the waiter gives up (a request timeout, a
          // client gone): its watch closes and the UNSUBSCRIBE runs on Redis, its reply held.
          const before = yield* noticesIds(redis.admin)
          proxy.hold(true)
          yield* Fiber.interrupt(waiter)
          yield* untilNumsub(redis.admin, channel, 0)
          // The connection drops (a network blip) before the reply arrives; ioredis reconnects by itself.
          proxy.cut()
          proxy.hold(false)
          // Once the new notices connection is there (ioredis reconnected it by itself)...
          while (true) {
            const ids = yield* noticesIds(redis.admin)
            if (ids.length === 1 && ids[0] !== before[0]) break
            yield* Effect.sleep(5)
          }
          // Barrier: a new watch subscribes after the reconnect's own subscriptions.
          const barrier = store.watch!("barrier")
          yield* untilNumsub(redis.admin, Notices.channel(prefix, "barrier"), 1)
          barrier.close()
          yield* untilNumsub(redis.admin, Notices.channel(prefix, "barrier"), 0)
          assert.deepStrictEqual(
            yield* noticeChannels(redis.admin, prefix),
            [],
            "nobody waits for the key, yet the process is subscribed to its channel again (autoResubscribe of a channel whose UNSUBSCRIBE reply was lost), and stays so"
          )
        }).pipe(Effect.provide(storeLayer(proxy.url, prefix)))
      }),
    60_000
  )
})
