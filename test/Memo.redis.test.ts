/**
 * What only a real Redis shows: herd protection across processes, and failing open while Redis is down.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schedule, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Metrics, Node } from "../src/index.ts"
import { uniquePrefix } from "./support/backends.ts"
import { lastJson, missing, Redis } from "./support/services.ts"

const run = promisify(execFile)
const skip = await missing(Redis)

describe.skipIf(skip)("Memo on Redis", () => {
  it.live(
    "200 concurrent calls on a cold key in two processes run the loader once",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        const startAt = Date.now() + 1500
        const worker = (calls: number) =>
          Effect.promise(() =>
            run(process.execPath, ["test/fixtures/herd-worker.ts", Redis.url, prefix, String(calls), String(startAt)])
          )
        const [a, b] = yield* Effect.all([worker(100), worker(100)], { concurrency: 2 })
        const values = [...lastJson<Array<number>>(a.stdout), ...lastJson<Array<number>>(b.stdout)]
        assert.strictEqual(values.length, 200)
        assert.isTrue(values.every((value) => value === 99))
        const client = new IORedis(Redis.url)
        const runs = yield* Effect.promise(() => client.get(`${prefix}loader-runs`))
        client.disconnect()
        assert.strictEqual(runs, "1")
      }),
    30_000
  )

  describe("while Redis is down", () => {
    const port = 6391
    let server: ChildProcess | undefined

    const startServer = Effect.promise(async () => {
      server = spawn(
        "redis-server",
        ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        {
          stdio: "ignore"
        }
      )
      const client = new IORedis({ port, lazyConnect: true, retryStrategy: () => null })
      client.on("error", () => {})
      for (let attempt = 0; attempt < 100; attempt++) {
        const ok = await client.connect().then(
          () => true,
          () => false
        )
        if (ok) {
          client.disconnect()
          return
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      throw new Error("redis-server did not start on port 6391")
    })

    const stopServer = Effect.promise(
      () =>
        new Promise<void>((resolve) => {
          if (server === undefined || server.exitCode !== null) return resolve()
          server.once("exit", () => resolve())
          server.kill("SIGKILL")
        })
    )

    const Flaky = Node.make("flaky-redis", { fields: { id: Schema.Number }, value: Schema.Number })

    it.live(
      "calls still succeed, then the cache recovers when Redis is back",
      () =>
        Effect.gen(function* () {
          yield* startServer
          // The layer's client was made before this server started: wait until it has reconnected.
          const store = yield* CacheStore.CacheStore
          yield* store.ping.pipe(Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 100 }))
          const runs = yield* Ref.make(0)
          const get = Effect.as(
            Ref.update(runs, (n) => n + 1),
            7
          ).pipe(Memo.cached(Flaky.make({ id: 1 })))
          assert.strictEqual(yield* get, 7)
          assert.strictEqual(yield* get, 7)
          assert.strictEqual(yield* Ref.get(runs), 1)

          yield* stopServer
          const before = (yield* Metrics.stats("flaky-redis")).storeErrors
          assert.strictEqual(yield* get, 7)
          assert.strictEqual(yield* get, 7)
          assert.strictEqual(yield* Ref.get(runs), 3, "each call loads while the store is down")
          assert.isTrue((yield* Metrics.stats("flaky-redis")).storeErrors > before)
          const strict = yield* Effect.flip(Effect.succeed(1).pipe(Memo.cachedStrict(Flaky.make({ id: 2 }))))
          assert.strictEqual(strict._tag, "CacheStoreError")

          yield* startServer
          // ioredis reconnects on its own; within a few seconds a value is stored and read back again.
          let recovered = false
          for (let attempt = 0; attempt < 50 && !recovered; attempt++) {
            yield* Effect.sleep(100)
            const runsBefore = yield* Ref.get(runs)
            yield* get
            yield* get
            recovered = (yield* Ref.get(runs)) - runsBefore <= 1
          }
          assert.isTrue(recovered, "the cache serves hits again once Redis is back")
        }).pipe(
          Effect.ensuring(stopServer),
          Effect.provide(
            CacheStore.layerRedis({ url: `redis://127.0.0.1:${port}`, prefix: uniquePrefix() }).pipe(
              Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "2 seconds" }))
            )
          )
        ),
      30_000
    )
  })
})
