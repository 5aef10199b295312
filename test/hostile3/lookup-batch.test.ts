/**
 * Hostile review of the lookup batch (`internal/lookupBatch.ts`) in one process, through `Memo.cached` on the Redis
 * store with the client's MGET wrapped:
 *
 * - callers interrupted while their batch is unsent or while its read is in flight: the others of the batch are
 *   answered as alone, the interrupted ones leave nothing behind (no lease, no waiter kept), later batches work;
 * - a batch whose read fails, or never answers, fails every caller of it (each fails open: loads, stores nothing)
 *   and the store works again for the next batch;
 * - the batcher itself: two identical lookups of one turn share one read, an interrupted one is not resumed, a
 *   lookup made while a read is in flight starts a new read, and `send` throwing fails the batch.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Deferred, Effect, Exit, Fiber, Layer, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo, Metrics, Node } from "../../src/index.ts"
import * as LookupBatch from "../../src/internal/lookupBatch.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, missing, Redis } from "../support/services.ts"

const withStore = <A, E>(
  commandTimeout: number,
  body: (client: IORedis, context: Context.Context<CacheStore.CacheStore>) => Effect.Effect<A, E, any>
) => {
  const prefix = uniquePrefix()
  return Effect.gen(function* () {
    const client = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url, { enableAutoPipelining: true, autoResendUnfulfilledCommands: false })),
      (client) =>
        Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)).pipe(
          Effect.andThen(Effect.sync(() => client.disconnect()))
        )
    )
    const context = yield* Layer.build(
      CacheStore.layerRedis({ client, prefix, commandTimeout }).pipe(
        Layer.provideMerge(CachemeConfig.layer({ prefix, herdMaxWait: "1 minute" }))
      )
    )
    return yield* body(client, context)
  }).pipe(Effect.scoped) as Effect.Effect<A, E, never>
}

let counter = 0
const freshNode = () =>
  Node.make(`h3-batch-${process.pid}-${counter++}`, { fields: { id: Schema.Number }, value: Schema.String })

describe.skipIf(await missing(Redis))("hostile3: the lookup batch under interruption and failure", () => {
  it.live(
    "callers interrupted while their batch's read is in flight: the others are answered, nothing is left behind",
    () =>
      withStore(5000, (client, context) =>
        Effect.gen(function* () {
          const Items = freshNode()
          const store = Context.get(context, CacheStore.CacheStore)
          const mget = client.mget.bind(client)
          const sent = yield* Deferred.make<void>()
          const gate = yield* Deferred.make<void>()
          let calls = 0
          client.mget = ((...keys: Array<string>) => {
            calls++
            const reply = mget(...keys)
            if (calls > 1) return reply
            Deferred.doneUnsafe(sent, Exit.void)
            return reply.then((value) => Effect.runPromise(Deferred.await(gate)).then(() => value))
          }) as typeof client.mget
          let loads = 0
          const read = (id: number) =>
            Effect.sync(() => {
              loads++
              return `v${id}`
            }).pipe(Memo.cached(Items.make({ id })), Effect.provide(context))
          // Ten reads of one turn (ids 0-4, twice each): one MGET, held.
          // (Forked by this fiber, one after the other: they start in one turn.)
          const fibers = yield* Effect.all(Array.from({ length: 10 }, (_, i) => Effect.forkChild(read(i % 5))))
          yield* Deferred.await(sent)
          // Interrupt the first read of every id, and both reads of id 4.
          const interrupted = fibers.filter((_, i) => i < 5 || i === 9)
          yield* Effect.forEach(interrupted, Fiber.interrupt, { discard: true })
          yield* Deferred.succeed(gate, undefined)
          const answers = yield* Effect.forEach([5, 6, 7, 8], (i) => Fiber.join(fibers[i]!))
          assert.deepStrictEqual(answers, ["v0", "v1", "v2", "v3"])
          assert.strictEqual(loads, 4)
          // Nothing left behind: every key is a value (0-3) or empty (4), and no lease holds any of them.
          for (let id = 0; id < 5; id++) {
            const found = yield* store.lookup(Items.make({ id }).key, Memo.setsOf(Items.make({ id })), 5000)
            if (id < 4) assert.strictEqual(found._tag, "Hit", `id ${id}`)
            else assert.isTrue(found._tag === "Miss" && found.view.holder === undefined, JSON.stringify(found))
          }
          // Later reads work, id 4 included, and hit what was stored.
          assert.deepStrictEqual(yield* Effect.all([0, 1, 2, 3, 4].map(read), { concurrency: "unbounded" }), [
            "v0",
            "v1",
            "v2",
            "v3",
            "v4"
          ])
          assert.strictEqual(loads, 5)
        })
      ),
    60_000
  )

  it.live(
    "a batch whose read fails, or never answers, fails every caller of it (each loads, stores nothing); the next batch works",
    () =>
      withStore(200, (client, context) =>
        Effect.gen(function* () {
          const Items = freshNode()
          const mget = client.mget.bind(client)
          let mode: "reject" | "hang" | "pass" = "reject"
          const asked: Array<number> = []
          client.mget = ((...keys: Array<string>) => {
            asked.push(keys.length)
            if (mode === "reject") return Promise.reject(new Error("Connection is closed."))
            if (mode === "hang") return new Promise(() => {})
            return mget(...keys)
          }) as typeof client.mget
          let loads = 0
          const read = (id: number) =>
            Effect.sync(() => {
              loads++
              return `v${id}`
            }).pipe(Memo.cached(Items.make({ id })), Effect.provide(context))
          const all = () => Effect.all([0, 1, 2, 0, 1].map(read), { concurrency: "unbounded" })
          for (const failing of ["reject", "hang"] as const) {
            mode = failing
            asked.length = 0
            loads = 0
            assert.deepStrictEqual(yield* all(), ["v0", "v1", "v2", "v0", "v1"], failing)
            // One read for the batch, failed: every caller loaded by itself (no lease, so no single-flight).
            assert.deepStrictEqual(asked, [4], failing)
            assert.strictEqual(loads, 5, failing)
          }
          const stats = yield* Metrics.stats(Items.name)
          assert.strictEqual(stats.storeErrors, 10)
          // The store answers again: the values were not stored (fail open), so they load once and are then hits.
          mode = "pass"
          loads = 0
          assert.deepStrictEqual(yield* all(), ["v0", "v1", "v2", "v0", "v1"])
          assert.strictEqual(loads, 3)
          assert.deepStrictEqual(yield* all(), ["v0", "v1", "v2", "v0", "v1"])
          assert.strictEqual(loads, 3)
        })
      ),
    60_000
  )
})

describe("hostile3: the batcher", () => {
  const sets = CacheStore.sets(["t:x"])
  const miss: CacheStore.Lookup = {
    _tag: "Miss",
    view: { stamps: [null], seen: "", present: false, holder: undefined, held: false }
  }

  it.live(
    "identical lookups of one turn share a read; an interrupted one is not resumed; a later one reads again",
    () =>
      Effect.gen(function* () {
        const sends: Array<{ readonly queries: ReadonlyArray<LookupBatch.Query>; readonly answer: () => void }> = []
        const batch = LookupBatch.make(
          (queries) =>
            new Promise((resolve) => {
              sends.push({ queries, answer: () => resolve(queries.map(() => miss)) })
            })
        )
        const q = { key: "a", sets, leaseMillis: 100 }
        const [first, second, third] = yield* Effect.all(
          [batch(q), batch(q), batch({ ...q, leaseMillis: 200 })].map((lookup) => Effect.forkChild(lookup))
        )
        yield* Effect.sleep(10)
        // Three lookups of one turn: one send, two queries (the lease horizon differs).
        assert.strictEqual(sends.length, 1)
        assert.strictEqual(sends[0]!.queries.length, 2)
        yield* Fiber.interrupt(second!)
        // While that read is in flight, the same lookup is its own read.
        const fourth = yield* Effect.forkChild(batch(q))
        yield* Effect.sleep(10)
        assert.strictEqual(sends.length, 2)
        sends[0]!.answer()
        assert.strictEqual((yield* Fiber.join(first!))._tag, "Miss")
        assert.strictEqual((yield* Fiber.join(third!))._tag, "Miss")
        assert.isTrue(Exit.hasInterrupts(yield* Fiber.await(second!)))
        assert.isUndefined(fourth.pollUnsafe())
        sends[1]!.answer()
        assert.strictEqual((yield* Fiber.join(fourth))._tag, "Miss")
      })
  )

  it.live("a send that throws fails the batch's callers, and the next batch is sent", () =>
    Effect.gen(function* () {
      let throwing = true
      const batch = LookupBatch.make((queries) => {
        if (throwing) throw new Error("boom")
        return Promise.resolve(queries.map(() => miss))
      })
      const q = { key: "a", sets, leaseMillis: 100 }
      const failed = yield* Effect.all([Effect.exit(batch(q)), Effect.exit(batch({ ...q, key: "b" }))], {
        concurrency: "unbounded"
      })
      assert.isTrue(failed.every(Exit.isFailure))
      throwing = false
      assert.strictEqual((yield* batch(q))._tag, "Miss")
    })
  )
})
