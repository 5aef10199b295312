/**
 * Hostile tests of the tiered store's coherence against raw Redis commands and server settings, on a private
 * redis-server (port 6460). Each warms `k` into a reader's tier, changes Redis behind the library's back, and
 * checks the documented bound: no lookup that starts `bound` or more after the change resolved answers the old
 * value. (`SWAPDB`, which Redis 7 reports to no tracking client, is a documented limit of the tier instead.)
 */
import { spawnSync } from "node:child_process"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { CacheStore } from "../../src/index.ts"
import { uniquePrefix } from "../support/backends.ts"
import { redisServerMissing, startRedis } from "../support/fault-redis.ts"
import { putRaw } from "../support/store.ts"
import { neverStaleAfter, redisStore, tier, tieredStore, until, untilLocal } from "../support/tiered.ts"

const port = 6460
const boundMillis = 500
const skip = redisServerMissing()
const on = CacheStore.sets(["g:a", "t:n"])

describe.skipIf(skip)("hostile2: the tiered store against raw Redis commands", () => {
  it.live(
    "a tracking table far smaller than the tier (tracking-table-max-keys 10): copies Redis stops tracking are never served stale",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port, ["--tracking-table-max-keys", "10"])
        const prefix = uniquePrefix()
        const reader = yield* tieredStore(redis.url, prefix, { bound: boundMillis })
        const writer = yield* redisStore(redis.url, prefix)
        const ids = Array.from({ length: 60 }, (_, i) => i)
        const setsOf = (id: number) => CacheStore.sets([`g:${id}`, "t:n"])
        for (const id of ids) yield* putRaw(writer, `e${id}`, `old${id}`, { names: setsOf(id).names })
        yield* until("the tier serves", () => tier(reader).serving())
        for (let round = 0; round < 3; round++) for (const id of ids) yield* reader.lookup(`e${id}`, setsOf(id))
        // Every group invalidated, then a fresh value for each: nothing old may be served past the bound.
        for (const id of ids) yield* writer.invalidateSet(`g:${id}`, "hard")
        for (const id of ids) yield* putRaw(writer, `e${id}`, `new${id}`, { names: setsOf(id).names })
        const since = performance.now()
        yield* until("the bound passed", () => performance.now() - since > boundMillis)
        for (let round = 0; round < 5; round++) {
          for (const id of ids) {
            const found = yield* reader.lookup(`e${id}`, setsOf(id))
            assert.isFalse(found._tag === "Hit" && found.value === `old${id}`, `e${id} served its old value`)
          }
        }
      }),
    120_000
  )

  it.live(
    "the subscriber's output buffer limit is hit while this process is blocked, the invalidation lost with the cut: no stale value past the bound",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port, ["--client-output-buffer-limit", "pubsub 256kb 128kb 1"])
        const prefix = uniquePrefix()
        const reader = yield* tieredStore(redis.url, prefix, { bound: boundMillis })
        const writer = yield* redisStore(redis.url, prefix)
        yield* putRaw(writer, "k", "v1", { names: on.names })
        yield* untilLocal(reader, "k", on, "v1")
        // The reader reads (so Redis tracks) 3,000 keys with 1,000-character names: 3 MB of messages when they
        // all change.
        const long = "x".repeat(1000)
        const none = CacheStore.sets([])
        for (let from = 0; from < 3000; from += 250) {
          yield* reader.lookupMany(Array.from({ length: 250 }, (_, i) => ({ key: `${long}${from + i}`, sets: none })))
        }
        const sessions = tier(reader).sessions()
        // Another process changes them all, then deletes k's group stamp, while this process is blocked (spawnSync):
        // the subscriber reads nothing, Redis's output buffer for it passes the limit, the connection is cut and
        // the stamp's message is never sent.
        const lua = `for i = 0, 2999 do redis.call('SET', ARGV[1] .. ARGV[2] .. i, '1') end
redis.call('DEL', ARGV[1] .. '~s:g:a')
return 1`
        const result = spawnSync("redis-cli", ["-p", String(port), "EVAL", lua, "0", prefix, long], {
          encoding: "utf8"
        })
        assert.strictEqual(result.stdout.trim(), "1", result.stderr)
        const since = performance.now()
        assert.strictEqual((yield* writer.lookup("k", on))._tag, "Miss")
        yield* neverStaleAfter(reader, "k", on, "v1", since, boundMillis)
        yield* until("a new session (the subscriber was cut)", () => tier(reader).sessions() > sessions)
        yield* putRaw(writer, "k", "v2", { names: on.names })
        yield* untilLocal(reader, "k", on, "v2")
      }),
    120_000
  )

  it.live(
    "DEBUG SLEEP longer than the bound, with a group invalidation queued behind it: no stale value past the bound",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const reader = yield* tieredStore(redis.url, prefix, { bound: boundMillis })
        const writer = yield* redisStore(redis.url, prefix)
        yield* putRaw(writer, "k", "v1", { names: on.names })
        yield* untilLocal(reader, "k", on, "v1")
        const sleeper = redis.admin.duplicate()
        yield* Effect.addFinalizer(() => Effect.sync(() => sleeper.disconnect()))
        const sleeping = sleeper.call("DEBUG", "SLEEP", "1.5")
        // Sent once the sleep is on the server: it runs when the sleep ends.
        yield* Effect.sleep(50)
        yield* writer.invalidateSet("g:a", "hard")
        yield* neverStaleAfter(reader, "k", on, "v1", performance.now(), boundMillis)
        yield* Effect.promise(() => sleeping)
        yield* putRaw(writer, "k", "v2", { names: on.names })
        yield* untilLocal(reader, "k", on, "v2")
      }),
    120_000
  )

  it.live(
    "CLIENT KILL TYPE pubsub, then a raw SET of the entry: the old value is not served past the bound",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(port)
        const prefix = uniquePrefix()
        const reader = yield* tieredStore(redis.url, prefix, { bound: boundMillis })
        const writer = yield* redisStore(redis.url, prefix)
        yield* putRaw(writer, "k", "v1", { names: on.names })
        yield* untilLocal(reader, "k", on, "v1")
        const sessions = tier(reader).sessions()
        yield* Effect.promise(async () => {
          await redis.admin.call("CLIENT", "KILL", "TYPE", "pubsub")
          await redis.admin.set(`${prefix}k`, "garbage")
        })
        yield* neverStaleAfter(reader, "k", on, "v1", performance.now(), boundMillis)
        yield* until("a new session", () => tier(reader).sessions() > sessions && tier(reader).serving())
      }),
    120_000
  )
})
