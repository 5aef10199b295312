/**
 * Hostile review of the lookup batch (`internal/lookupBatch.ts`) across processes: three OS processes, each with
 * several fibers, run a seeded random mix of store steps on a few keys (lookups, several per turn so that they
 * batch, the same key among them; fills under leases; key and group invalidations), every MGET reply held back a
 * random while after it arrived. One shared clock (a Redis counter) orders the steps.
 *
 * Checked over the histories: every value a lookup returns was written by a fill of that key that was stored (or
 * whose outcome is unknown), and a lookup that started after an invalidation of its key or group resolved never
 * returns a value whose fill resolved before that invalidation started (read-your-writes, in one process and
 * across processes). On the tiered store, across processes, only once the staleness bound (and a margin) has
 * passed. `HOSTILE3_SEED=<n>` replays a run's steps.
 */
import { execFile } from "node:child_process"
import { promisify } from "node:util"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, lastJson, missing, Redis } from "../support/services.ts"
import type { Step } from "./fixtures/batch-mix-worker.ts"

const run = promisify(execFile)
const worker = "test/hostile3/fixtures/batch-mix-worker.ts"
const seed =
  process.env.HOSTILE3_SEED !== undefined && process.env.HOSTILE3_SEED !== ""
    ? Number(process.env.HOSTILE3_SEED) >>> 0
    : Math.floor(Math.random() * 2 ** 32) >>> 0
const groupOf = (key: string) => `g:grp${Number(key.slice(1)) % 2}`

/** Every violation of the rules above in `steps`. */
export const violations = (steps: ReadonlyArray<Step>, crossProcessAfterMillis: number | undefined) => {
  const fills = new Map<string, Step>()
  for (const step of steps) if (step.op === "fill" && step.value !== undefined) fills.set(step.value, step)
  const invalidations = steps.filter((step) => (step.op === "key" || step.op === "group") && step.failed === undefined)
  const found: Array<string> = []
  for (const read of steps) {
    if (read.op !== "lookup" || read.value === undefined) continue
    const fill = fills.get(read.value)
    if (fill === undefined || fill.key !== read.key || fill.stored === false) {
      found.push(`lookup of ${read.key} returned ${read.value}: ${JSON.stringify(fill)}`)
      continue
    }
    for (const inv of invalidations) {
      const covers = inv.op === "key" ? inv.key === read.key : inv.group === groupOf(read.key)
      if (!covers || inv.end >= read.start || fill.end >= inv.start) continue
      if (
        inv.process !== read.process &&
        crossProcessAfterMillis !== undefined &&
        read.startAt < inv.endAt + crossProcessAfterMillis
      )
        continue
      found.push(
        `lookup ${JSON.stringify(read)} returned a value filled (${JSON.stringify(fill)}) before an invalidation that resolved before it started: ${JSON.stringify(inv)}`
      )
    }
  }
  return found
}

describe.skipIf(await missing(Redis))("hostile3: the lookup batch in a seeded mix across processes", () => {
  for (const kind of ["redis", "tiered"] as const)
    it.live(
      `${kind} (seed ${seed})`,
      () =>
        Effect.gen(function* () {
          console.log(`hostile3 batch-mix ${kind} seed ${seed}`)
          const prefix = uniquePrefix()
          yield* Effect.addFinalizer(() => Effect.promise(() => deleteRedisPrefix(prefix).catch(() => 0)))
          const outputs = yield* Effect.all(
            [0, 1, 2].map((index) =>
              Effect.promise(() =>
                run(process.execPath, [worker, Redis.url, prefix, kind, String(seed), "60", "6", String(index)], {
                  maxBuffer: 64 * 1024 * 1024
                })
              )
            ),
            { concurrency: "unbounded" }
          )
          const steps = outputs.flatMap(({ stdout }) => lastJson<Array<Step>>(stdout))
          const lookups = steps.filter((step) => step.op === "lookup")
          const hits = lookups.filter((step) => step.value !== undefined)
          const failed = steps.filter((step) => step.failed !== undefined)
          console.log(
            `${kind}: ${steps.length} steps, ${lookups.length} lookups (${hits.length} hits), ${failed.length} failed`
          )
          // The mix must have exercised what it checks.
          assert.isAbove(hits.length, 20)
          assert.isAbove(steps.filter((step) => step.op === "key" || step.op === "group").length, 20)
          assert.deepStrictEqual(failed.slice(0, 3), [])
          assert.deepStrictEqual(violations(steps, kind === "tiered" ? 400 + 600 : undefined).slice(0, 5), [])
        }).pipe(Effect.scoped),
      180_000
    )
})
