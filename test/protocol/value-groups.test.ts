/**
 * Groups named by the value, across two OS processes sharing one Redis: one app instance on the Redis store, one
 * on the tiered store (test/fixtures/value-groups-worker.ts), each running a seeded random mix of cached reads
 * (single and batched) of lists whose value names their items' groups, and writes of items (invalidated hard or
 * soft after the write, or held around it, the hold released before the write resolves or after), with
 * invalidations of another family's groups and of list keys in between.
 *
 * Checked over the two histories (ticks of one shared clock, taken by a read before it starts and by a write
 * once it resolved):
 *
 * - **No older reads**: a read that started after a write to one of its items resolved never returns that item
 *   at an older version, whichever process wrote or read. For a read answered by the tiered process of a write
 *   by the other one, the tier's staleness bound applies: only writes that resolved that long before count.
 * - **Final state**: once both are done, every list the cache serves equals the database.
 *
 * A failure prints the seed: `CACHEME_VG_SEED=<seed>` replays the same choices (the interleavings differ).
 * Without the fill's epoch check, or with reads that skip the verification of the value's groups, this fails in
 * every run (tens of older reads); without the fill's hold check, in two runs of three (a load under a hold whose
 * release left after its write resolved).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, Memo } from "../../src/index.ts"
import {
  boundMillis,
  ListNode,
  lists,
  loadLists,
  type Read,
  settings,
  type Write
} from "../fixtures/value-groups-worker.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, lastJson, missing, Redis } from "../support/services.ts"

const skip = await missing(Redis)
const seed = Number(process.env.CACHEME_VG_SEED ?? Math.floor(Math.random() * 1e9))

interface History {
  readonly writes: ReadonlyArray<Write>
  readonly reads: ReadonlyArray<Read>
  readonly itemReads: number
}

const runWorker = (prefix: string, db: string, worker: number, kind: "redis" | "tiered", ops: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const child = spawn(
        process.execPath,
        [
          "test/fixtures/value-groups-worker.ts",
          Redis.url,
          prefix,
          db,
          String(seed),
          String(worker),
          kind,
          String(ops),
          "4"
        ],
        { stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      child.stdout!.on("data", (chunk) => {
        stdout += String(chunk)
      })
      child.stderr!.on("data", (chunk) => {
        stderr += String(chunk)
      })
      const done = new Promise<History>((resolve, reject) =>
        child.once("exit", (code) =>
          code === 0
            ? resolve(lastJson<History>(stdout))
            : reject(new Error(`worker ${worker} exited with ${code}: ${stderr.slice(-2000)}`))
        )
      )
      return { child, done }
    }),
    ({ child }) =>
      Effect.sync(() => {
        if (child.exitCode === null) (child as ChildProcess).kill("SIGKILL")
      })
  ).pipe(Effect.flatMap(({ done }) => Effect.promise(() => done)))

/** The reads that returned an item older than a write that resolved before they started. */
const olderReads = (histories: ReadonlyArray<History>, tiered: number) => {
  const writes = histories.flatMap((h) => h.writes)
  const violations: Array<string> = []
  for (const read of histories.flatMap((h) => h.reads)) {
    for (const [item, version] of read.items) {
      const before = writes.filter(
        (w) =>
          w.item === item &&
          w.tick < read.tick &&
          // The tier of the other process may hold a copy up to its bound after a write it did not make.
          !(read.worker === tiered && w.worker !== tiered && w.wall + boundMillis >= read.wall)
      )
      const latest = before.reduce((max, w) => Math.max(max, w.version), 0)
      if (version < latest) {
        const write = before.find((w) => w.version === latest)!
        violations.push(
          `worker ${read.worker} ${read.how} of list ${read.list} at tick ${read.tick}: item ${item} at version ${version}, but version ${latest} was written (${write.how}) by worker ${write.worker} and resolved at tick ${write.tick}`
        )
      }
    }
  }
  return violations
}

describe.skipIf(skip)("groups named by the value across two processes (Redis and tiered stores)", () => {
  it.live(
    "no read returns an item older than a write that resolved before it started; the cache ends equal to the database",
    () =>
      Effect.gen(function* () {
        const prefix = uniquePrefix()
        const db = `vgdb:${process.pid}:${Date.now().toString(36)}:`
        const raw = yield* Effect.acquireRelease(
          Effect.sync(() => new IORedis(Redis.url)),
          (client) =>
            Effect.promise(async () => {
              await deleteRedisPrefix(prefix).catch(() => 0)
              await deleteRedisPrefix(db).catch(() => 0)
              client.disconnect()
            })
        )
        const ops = 300
        const histories = yield* Effect.all(
          [runWorker(prefix, db, 0, "redis", ops), runWorker(prefix, db, 1, "tiered", ops)],
          { concurrency: 2 }
        )
        const writes = histories.flatMap((h) => h.writes)
        const reads = histories.flatMap((h) => h.reads)
        console.log(
          `[value groups, seed ${seed}] ${reads.length} reads, ${writes.length} writes (${["hard", "soft", "hold", "hold, released after"].map((how) => `${writes.filter((w) => w.how === how).length} ${how}`).join(", ")}), ${histories.reduce((n, h) => n + h.itemReads, 0)} item reads by loaders`
        )
        const violations = olderReads(histories, 1)
        assert.deepStrictEqual(violations.slice(0, 10), [], `seed ${seed}: ${violations.length} older reads`)
        assert.isTrue(reads.length > 500 && writes.length > 200, "the mix ran")

        // Final state: what the cache serves for every list is what the database holds.
        const final = yield* Effect.forEach(
          Array.from({ length: lists }, (_, list) => list),
          (list) =>
            Effect.map(
              loadLists(raw, db, [list], () => 0),
              (all) => all[0]!
            ).pipe(Memo.cached(ListNode.make({ list })))
        ).pipe(
          Effect.provide(
            CacheStore.layerRedis({ url: Redis.url, prefix }).pipe(
              Layer.provideMerge(CachemeConfig.layer(settings)),
              Layer.orDie
            )
          )
        )
        const truth = yield* Effect.forEach(
          Array.from({ length: lists }, (_, list) => list),
          (list) =>
            Effect.map(
              loadLists(raw, db, [list], () => 0),
              (all) => all[0]!
            )
        )
        assert.deepStrictEqual(final, truth, `seed ${seed}: the cache ends different from the database`)
      }).pipe(Effect.scoped),
    180_000
  )
})
