/**
 * Herds across processes with slow loads: a cold key loads once however long its loader takes (the holder renews
 * its lease, the waiters wait while it is live), and a holder killed mid-load frees the key within one lease.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import { Redis as IORedis } from "ioredis"
import { uniquePrefix } from "./support/backends.ts"
import { deleteRedisPrefix, lastJson, missing, Redis } from "./support/services.ts"

const run = promisify(execFile)
const skip = await missing(Redis)
const worker = "test/fixtures/herd-slow-worker.ts"

interface Result {
  readonly value: number
  readonly ms: number
}

const percentile = (values: ReadonlyArray<number>, p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** Starts `count` workers, waits until every one has said `ready`, then sends them one start time. */
const herd = (count: number, args: ReadonlyArray<string>) =>
  new Promise<Array<string>>((resolve, reject) => {
    const outputs = Array.from({ length: count }, () => "")
    let ready = 0
    let exited = 0
    const children = outputs.map((_, index) => {
      const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "inherit"] })
      child.stdout.setEncoding("utf8")
      child.stdout.on("data", (chunk: string) => {
        const before = outputs[index]!.includes("ready\n")
        outputs[index] += chunk
        if (!before && outputs[index]!.includes("ready\n") && ++ready === count) {
          const startAt = String(Date.now() + 100)
          for (const each of children) each.stdin.end(`${startAt}\n`)
        }
      })
      child.on("error", reject)
      child.on("exit", (code) => {
        if (code !== 0) {
          for (const each of children) each.kill("SIGKILL")
          reject(new Error(`herd worker ${index} exited with ${code}`))
        } else if (++exited === count) resolve(outputs)
      })
      return child
    })
  })

const loaderRuns = (prefix: string) =>
  Effect.promise(async () => {
    const client = new IORedis(Redis.url)
    try {
      return Number((await client.get(`${prefix}loader-runs`)) ?? 0)
    } finally {
      client.disconnect()
    }
  })

describe.skipIf(skip)("Memo herds across processes, slow loads", () => {
  for (const loadMillis of [100, 250, 2000]) {
    it.live(
      `4 processes x 250 callers on a cold key with a ${loadMillis} ms loader run it once, with the default settings`,
      () =>
        Effect.gen(function* () {
          const prefix = uniquePrefix()
          // Each process warms up (20 herds on keys of its own), says it is ready, and is told when to start:
          // the herd is on a cold key, not in cold or still-booting processes.
          const stdouts = yield* Effect.promise(() =>
            herd(4, [worker, Redis.url, prefix, "250", "-", String(loadMillis), "20"])
          )
          const results = stdouts.flatMap((stdout) => lastJson<Array<Result>>(stdout))
          assert.strictEqual(results.length, 1000)
          assert.isTrue(results.every((result) => result.value === 99))
          assert.strictEqual(yield* loaderRuns(prefix), 1)
          const p50 = percentile(
            results.map((result) => result.ms),
            50
          )
          const p99 = percentile(
            results.map((result) => result.ms),
            99
          )
          console.log(`[herd ${loadMillis} ms loader] 1000 callers: p50 ${p50} ms, p99 ${p99} ms`)
          yield* Effect.promise(() => deleteRedisPrefix(prefix))
        }),
      120_000
    )
  }

  it.live(
    "a holder killed mid-load frees the key within about one lease; the others then load once",
    () => {
      const prefix = uniquePrefix()
      let holder: ChildProcess | undefined
      return Effect.gen(function* () {
        // A starts a load that would take a minute, and renews its lease meanwhile.
        holder = spawn(process.execPath, [worker, Redis.url, prefix, "1", String(Date.now()), "60000"], {
          stdio: "ignore"
        })
        for (let attempt = 0; attempt < 600 && (yield* loaderRuns(prefix)) === 0; attempt++) {
          yield* Effect.sleep(50)
        }
        assert.strictEqual(yield* loaderRuns(prefix), 1, "the first holder is loading")
        // B's callers find A's live lease and wait; A dies without a word.
        const b = yield* Effect.forkChild(
          Effect.promise(() => run(process.execPath, [worker, Redis.url, prefix, "50", String(Date.now()), "100"]))
        )
        yield* Effect.sleep(300)
        const killedAt = Date.now()
        holder.kill("SIGKILL")
        const { stdout } = yield* Fiber.join(b)
        const answeredAfter = Date.now() - killedAt
        const results = lastJson<Array<Result>>(stdout)
        assert.strictEqual(results.length, 50)
        assert.isTrue(results.every((result) => result.value === 99))
        // A's load, then one load of B's after A's lease lapsed: not one per caller.
        assert.strictEqual(yield* loaderRuns(prefix), 2)
        console.log(`[herd killed holder] B's 50 callers answered ${answeredAfter} ms after the kill (lease 5 s)`)
      }).pipe(
        Effect.ensuring(
          Effect.promise(async () => {
            holder?.kill("SIGKILL")
            await deleteRedisPrefix(prefix)
          })
        )
      )
    },
    120_000
  )
})
