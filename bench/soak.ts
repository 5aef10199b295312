/**
 * The index soak (issue 8, "Memberships bounded"): 2 OS processes run a Zipf mix of reads with 3% lookups of ids
 * that do not exist (the loader fails, or returns null), invalidations, entries without a ttl and entries deleted
 * behind the store's back; every index is sampled (atomically) as it goes, and every set must stay within 2x the
 * live entries that list it. Once the load stops, one pass of the index sweep must leave no orphan member. See
 * `bench/soak-run.ts` for the mix and the check; `test/soak.test.ts` runs a 20 s version of it in CI.
 *
 *   node_modules/.bin/node bench/soak.ts [--minutes 5] [--seed N] [--processes 2] [--concurrency 32]
 *     [--sample-every 5000] [--deletes-per-second 1]
 *
 * Redis: CACHEME_BENCH_REDIS_URL (default redis://127.0.0.1:6379), keys under `bench:soak:<pid>:`, deleted at the
 * end. Prints a table of the samples and writes bench/results/soak.json; exits with 1 when a set went above 2x.
 */
import { Redis } from "ioredis"
import { deleteByPrefix, environment, redisUrl, redisVersionOf, writeJson } from "./environment.ts"
import { printTable } from "./harness.ts"
import { bound, runSoak } from "./soak-run.ts"

const argument = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  const value = at === -1 ? undefined : Number(process.argv[at + 1])
  return value === undefined || !Number.isFinite(value) ? fallback : value
}

const minutes = argument("minutes", 5)
const seed = argument("seed", Math.floor(Math.random() * 2 ** 31))
const prefix = `bench:soak:${process.pid}:`
const admin = new Redis(redisUrl)
const redisVersion = redisVersionOf(await admin.info("server"))

console.log(`soak: ${minutes} min, seed ${seed}, Redis ${redisVersion} at ${redisUrl}, prefix ${prefix}`)
const result = await runSoak({
  url: redisUrl,
  prefix,
  seconds: minutes * 60,
  seed,
  processes: argument("processes", 2),
  concurrency: argument("concurrency", 32),
  sampleEvery: argument("sample-every", 5000),
  deletesPerSecond: argument("deletes-per-second", 1),
  log: (line) => console.log(line)
})

printTable(
  "Index sizes (a set above 2x its live entries in two samples in a row fails the soak)",
  ["at", "live entries", "indexes", "members", "orphans", "worst set: size / live", "above 2x", "twice in a row"],
  [...result.samples, result.final].map((s, i) => [
    i === result.samples.length ? `${s.at.toFixed(0)} s, swept` : `${s.at.toFixed(0)} s`,
    String(s.entries),
    String(s.indexes),
    String(s.members),
    String(s.orphans),
    s.worst === undefined ? "-" : `${s.worst.set} ${s.worst.size} / ${s.worst.live}`,
    String(s.above.length),
    String(s.violations.length)
  ])
)
const totals = result.workers.reduce(
  (sum, w) => ({
    reads: sum.reads + w.reads,
    missing: sum.missing + w.missingFailed + w.missingNull,
    invalidations: sum.invalidations + w.invalidations,
    deletes: sum.deletes + w.deletes,
    errors: sum.errors + w.errors
  }),
  { reads: 0, missing: 0, invalidations: 0, deletes: 0, errors: 0 }
)
console.log(`\nworkers: ${JSON.stringify(totals)}`)
const violations = result.samples.flatMap((s) => s.violations.map((v) => ({ at: s.at, ...v })))
const ok = violations.length === 0 && result.final.orphans === 0 && result.final.violations.length === 0
console.log(
  ok
    ? "no set stayed above 2x its live entries; no orphan after one sweep pass"
    : `FAILED: ${violations.length} set samples above 2x twice in a row (bound: 2 x max(live, 1), e.g. ${bound(3)} for 3 live), ${result.final.orphans} orphans after the sweep: ${JSON.stringify(violations.slice(0, 10))}`
)

await writeJson(new URL("./results/soak.json", import.meta.url).pathname, {
  environment: environment(redisVersion),
  ...result,
  totals,
  ok
})
await deleteByPrefix(admin, prefix)
admin.disconnect()
process.exit(ok ? 0 : 1)
