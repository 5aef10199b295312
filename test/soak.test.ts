/**
 * The short index soak (about 20 s, seeded), the CI version of `bench/soak.ts`: 2 OS processes run the mix of
 * `bench/soak-run.ts` (Zipf reads, 3% lookups of ids that do not exist, the loader failing or returning null,
 * invalidations, entries without a ttl, entries deleted behind the store's back) against a private
 * `redis-server` (port 6487); no set may be above 2x the live entries that list it in two atomic samples in a row
 * (one may land inside an invalidation's reclaim), and after the load one pass of the index sweep must leave no
 * orphan member and no set above 2x.
 *
 * `CACHEME_SOAK_SEED=<seed>` replays another mix.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { runSoak } from "../bench/soak-run.ts"
import { uniquePrefix } from "./support/backends.ts"
import { redisServerMissing, startRedis } from "./support/fault-redis.ts"

const skip = redisServerMissing()
const seed = Number(process.env.CACHEME_SOAK_SEED ?? 20261206)

describe.skipIf(skip)("index soak (2 processes, private redis-server)", () => {
  it.live(
    `every set stays within 2x its live entries; no orphan after one sweep pass (seed ${seed})`,
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6487)
        const result = yield* Effect.promise(() =>
          runSoak({
            url: redis.url,
            prefix: uniquePrefix(),
            seconds: 20,
            seed,
            processes: 2,
            concurrency: 16,
            sampleEvery: 2000,
            // Faster than the bench's 1 a second, so that 20 s leave the sweep something to do.
            deletesPerSecond: 5,
            log: (line) => console.log(`[soak] ${line}`)
          })
        )
        const totals = result.workers.reduce(
          (sum, w) => ({
            reads: sum.reads + w.reads,
            missingFailed: sum.missingFailed + w.missingFailed,
            missingNull: sum.missingNull + w.missingNull,
            invalidations: sum.invalidations + w.invalidations,
            deletes: sum.deletes + w.deletes,
            errors: sum.errors + w.errors
          }),
          { reads: 0, missingFailed: 0, missingNull: 0, invalidations: 0, deletes: 0, errors: 0 }
        )
        console.log(`[soak] workers: ${JSON.stringify(totals)}`)
        // The mix ran (a busy machine only makes it smaller).
        assert.isAtLeast(result.samples.length, 3)
        assert.isAbove(totals.reads, 1000)
        assert.isAbove(totals.missingFailed, 0)
        assert.isAbove(totals.missingNull, 0)
        assert.isAbove(totals.invalidations, 0)
        assert.isAbove(totals.deletes, 0)
        for (const sample of result.samples) {
          assert.deepStrictEqual(
            sample.violations,
            [],
            `at ${sample.at.toFixed(1)} s, sets above 2x their live entries`
          )
        }
        assert.strictEqual(result.final.orphans, 0, "orphan members left after one sweep pass")
        assert.deepStrictEqual(result.final.violations, [])
        assert.isAbove(result.final.entries, 0)
      }),
    180_000
  )
})
