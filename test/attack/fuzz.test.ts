/**
 * Cross-process fuzz of guarantee 1 on a private redis-server (port 6420): `FUZZ_WORKERS` OS processes
 * (test/attack/fixtures/fuzz-worker.ts) read and write seeded mixes (group / tag / key / pattern invalidations,
 * hard and soft, holds that may lapse, two writers per process) over a few ids, while this process injects a
 * fault: `none`, `kill` (CLIENT KILL TYPE normal every 150-400 ms: ioredis reconnects and resends), `sleep`
 * (DEBUG SLEEP 20-80 ms now and then) or `evict` (maxmemory 2 MB, allkeys-lru, junk written all along).
 *
 * Each reader fiber has a store (and single-flight table) of its own unless FUZZ_SHARED=1.
 *
 *   FUZZ_FAULT=kill ATTACK_SEED=123 vitest run -c vitest.attack.config.ts test/attack/fuzz.test.ts
 */
import { spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import { assert, it } from "@effect/vitest"
import { Effect } from "effect"
import { startRedis } from "../support/fault-redis.ts"
import { random, seedOf } from "./support.ts"

const worker = fileURLToPath(new URL("./fixtures/fuzz-worker.ts", import.meta.url))
const fault = (process.env.FUZZ_FAULT ?? "none") as "none" | "kill" | "sleep" | "evict"
const workers = Number(process.env.FUZZ_WORKERS ?? 3)
const durationMs = Number(process.env.FUZZ_MS ?? 20_000)
const shared = process.env.FUZZ_SHARED === "1" ? "1" : "0"

const runWorker = (args: ReadonlyArray<string>) =>
  new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [worker, ...args], { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (c) => (out += c))
    child.stderr.on("data", (c) => (err = (err + c).slice(-3000)))
    child.on("exit", (code) => (code === 0 ? resolve(out) : reject(new Error(`worker exit ${code}: ${err}`))))
  })

it.live(
  `fuzz: ${workers} processes, fault ${fault}, shared single-flight ${shared}`,
  () =>
    Effect.gen(function* () {
      const seed = seedOf()
      const next = random(seed)
      const extra = fault === "evict" ? ["--maxmemory", "6mb", "--maxmemory-policy", "allkeys-lru"] : []
      const redis = yield* startRedis(6420, extra)
      const run = `fz${seed.toString(36)}`
      const prefix = `attack:${process.pid}:fuzz:`
      let stop = false
      const injector = Effect.promise(async () => {
        let junk = 0
        while (!stop) {
          const wait = 150 + Math.floor(next() * 250)
          await new Promise((r) => setTimeout(r, fault === "evict" ? 20 : wait))
          if (stop) break
          try {
            if (fault === "kill") await redis.admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
            if (fault === "sleep")
              await redis.admin.call("DEBUG", "SLEEP", String((20 + Math.floor(next() * 60)) / 1000))
            if (fault === "evict") {
              const batch = redis.admin.pipeline()
              for (let i = 0; i < 20; i++) batch.set(`junk:${junk++}`, "j".repeat(2048))
              await batch.exec()
            }
          } catch {}
        }
      })
      const jobs = Array.from({ length: workers }, (_, w) =>
        runWorker([redis.url, prefix, run, String((seed + w * 7919) >>> 0), String(durationMs), "4", "2", "4", shared])
      )
      const fiber = yield* Effect.forkChild(injector)
      const outputs = yield* Effect.promise(() => Promise.all(jobs))
      stop = true
      yield* Effect.promise(() => new Promise((r) => setTimeout(r, 500)))
      const results = outputs.map(
        (o) =>
          JSON.parse(
            o
              .split("\n")
              .find((line) => line.startsWith("RESULT "))!
              .slice(7)
          ) as { reads: number; writes: number; failedInvalidations: number; violations: Array<string> }
      )
      const evicted = fault === "evict" ? yield* redis.infoNumber("stats", "evicted_keys") : 0
      const all = results.flatMap((r) => r.violations)
      console.log(
        `[fuzz seed ${seed} fault ${fault} shared ${shared}] reads ${results.map((r) => r.reads).join("/")}, writes ${results
          .map((r) => r.writes)
          .join(
            "/"
          )}, failed invalidations ${results.map((r) => r.failedInvalidations).join("/")}, evicted ${evicted}; ` +
          `violations ${all.length}: ${all.slice(0, 6).join(" | ")}`
      )
      void fiber
      assert.strictEqual(all.length, 0, `seed ${seed}: stale reads after an invalidation resolved`)
    }),
  180_000
)
