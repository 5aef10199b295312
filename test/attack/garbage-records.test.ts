/**
 * ATTACK (guarantee 6): garbage at an entry's name must give a repaired miss, never a stuck key.
 *
 * A table of garbage strings and keys of other types is planted at the entry's name; then the key is read three
 * times. A repaired key loads once and then hits. The record `2V<header><token>\n<sets>` (one or two newlines, not
 * three) is read as Foreign by `Protocol.parse` (view.seen = "") but the Lua `lease` script's `fillToken` finds a
 * token before the first newline and answers Changed; `Memo.lead` relooks twice and then loads without storing:
 * every call, for ever (7 round trips and an uncached load each time).
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schema } from "effect"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { attackPrefix, deletePrefix, rawRedis, redisUrl } from "./support.ts"

const header = `2V${"0".repeat(13)}${"-".repeat(16)}${"0".repeat(13)}`

const strings: Record<string, string> = {
  empty: "",
  "format only": "2",
  "2V short": "2V",
  "2L short": "2L00000",
  "2S short": "2Sabc",
  "2X header": `2X${"0".repeat(60)}`,
  "V header only": header,
  "V header, token, 1 newline": `${header}tokentokentoken1\n["t:x"]`,
  "V header, token, 2 newlines": `${header}tokentokentoken1\n["t:x"]\nstamp`,
  "V header, empty token, 2 newlines": `${header}\n["t:x"]\nstamp`,
  "V non-numeric times": `2Vxxxxxxxxxxxxx${"-".repeat(16)}yyyyyyyyyyyyytokentokentoken1\n[]\n\nvalue`,
  "V with NaN fresh and sets []": `${header}tokentokentoken1\n[]\n\nvalue`,
  "binary junk": "\u0000\u0001\u00ff2V\n\n\n",
  "format 1 record": `1V${"0".repeat(42)}tokentokentoken1\n[]\n\nvalue`
}

const layer = (prefix: string) =>
  Layer.merge(
    CacheStore.layerRedis({ url: redisUrl, prefix }).pipe(
      Layer.provideMerge(CachemeConfig.layer({ commandTimeout: "5 seconds", herdRetryInterval: "5 millis" })),
      Layer.orDie
    ),
    Layer.effectDiscard(Effect.acquireRelease(Effect.void, () => Effect.promise(() => deletePrefix(prefix))))
  )

let counter = 0
describe("garbage at an entry's name (redis)", () => {
  const check = (name: string, plant: (raw: import("ioredis").Redis, key: string) => Promise<unknown>) =>
    it.live(`${name}: repaired after one load`, () =>
      Effect.gen(function* () {
        const prefix = attackPrefix()
        const raw = yield* rawRedis()
        const Title = Node.make(`garbage-${process.pid}-${counter++}`, {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null
        })
        const loads = yield* Ref.make(0)
        const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
          Effect.map((n) => `load ${n}`),
          Memo.cached(Title.make({ id: 1 }))
        )
        yield* Effect.gen(function* () {
          yield* Effect.promise(() => plant(raw, `${prefix}${Title.make({ id: 1 }).key}`))
          const values = [yield* read, yield* read, yield* read]
          const record = yield* Effect.promise(() => raw.type(`${prefix}${Title.make({ id: 1 }).key}`))
          console.log(`[garbage ${name}] reads: ${values.join(", ")} (key type now ${record})`)
          assert.deepStrictEqual(values, ["load 1", "load 1", "load 1"], `${name}: the key is stuck`)
        }).pipe(Effect.provide(layer(prefix)))
      })
    )
  for (const [name, text] of Object.entries(strings)) check(name, (raw, key) => raw.set(key, text))
  check("list", (raw, key) => raw.rpush(key, "a"))
  check("hash", (raw, key) => raw.hset(key, "a", "b"))
  check("set", (raw, key) => raw.sadd(key, "a"))
  check("zset", (raw, key) => raw.zadd(key, 1, "a"))
  check("stream", (raw, key) => raw.xadd(key, "*", "a", "b"))
})
