/**
 * The torture suite (README.md, and "The torture suite" in docs/concepts.md): several OS processes read, write
 * and invalidate through `Memo` and `effect-cacheme/kysely` against the shared Redis and PostgreSQL (then a
 * shorter run on MariaDB, and one on the tiered store, each process with its own in-process tier), and every
 * invariant is checked over their histories. A failure prints the seed and
 * the history of the first violations; `CACHEME_TORTURE_SEED=<seed>` replays the same operations.
 */
import { assert, describe, it } from "@effect/vitest"
import { MariaDB, missing, Postgres, Redis } from "../support/services.ts"
import { type Options, opsOf, runTorture, seedOf } from "./harness.ts"

const noRedis = await missing(Redis)

const torture = async (options: Options) => {
  console.log(`[torture ${options.label}] seed ${options.seed} (replay: CACHEME_TORTURE_SEED=${options.seed})`)
  const outcome = await runTorture(options)
  console.log(outcome.summary)
  if (outcome.failure !== "") console.log(outcome.failure)
  assert.deepStrictEqual(outcome.errors, [], `seed ${options.seed}: operations failed unexpectedly`)
  assert.strictEqual(outcome.verdict.violations.length, 0, `seed ${options.seed}:\n${outcome.failure}`)
  // The final pass compared cached entries, not only misses; every entry key is one the run made.
  assert.isAbove(outcome.final.cached, 0, "the final pass found nothing cached")
  assert.deepStrictEqual(outcome.final.unknownKeys, [], "entry keys no instance of the run has")
  assert.isAbove(outcome.verdict.totals.served, 0, "no read was served from the store")
  assert.isAbove(outcome.verdict.totals.probes, 0)
  assert.isAbove(outcome.verdict.totals.readbacks, 0)
  // On the tiered store, the tiers answered lookups from local copies (the nodes' opt-in took effect).
  if (options.store === "tiered") assert.isAbove(outcome.tier?.localHits ?? 0, 0, "no lookup was answered locally")
}

describe.skipIf(noRedis || (await missing(Postgres)))("torture: PostgreSQL and Redis", () => {
  it(
    "3 processes x 3 fibers of seeded reads, writes, transactions and invalidations keep every invariant",
    () =>
      torture({
        label: "postgres",
        dialect: "postgres",
        workers: 3,
        fibers: 3,
        ops: opsOf(150),
        coldPhases: 2,
        seed: seedOf()
      }),
    170_000
  )
})

describe.skipIf(noRedis || (await missing(MariaDB)))("torture: MariaDB and Redis", () => {
  it(
    "2 processes x 2 fibers, a shorter run, keep every invariant",
    () =>
      torture({
        label: "mariadb",
        dialect: "mariadb",
        workers: 2,
        fibers: 2,
        ops: opsOf(80),
        coldPhases: 1,
        seed: seedOf()
      }),
    170_000
  )
})

describe.skipIf(noRedis || (await missing(Postgres)))("torture: the tiered store, PostgreSQL and Redis", () => {
  it(
    "3 processes x 3 fibers, each process with its own in-process tier in front of the shared Redis, keep every invariant",
    () =>
      torture({
        label: "tiered",
        dialect: "postgres",
        store: "tiered",
        workers: 3,
        fibers: 3,
        ops: opsOf(120),
        coldPhases: 2,
        // A local copy is made by the second read of an entry in a process and served from the third, until one
        // of its keys changes: with the mix above (48 % writes, a table-wide invalidation every half second) the
        // tiers answered about 1 % of the reads, nearly all counters. More reads, more of them of the hot rows
        // that every process writes: about 5-10 %, items, groups and counters.
        reads: 0.75,
        hot: 0.7,
        seed: seedOf()
      }),
    170_000
  )
})
