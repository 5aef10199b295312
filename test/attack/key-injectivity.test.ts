/**
 * ATTACK (guarantee 3): two node instances with different field values never share an entry.
 *
 * `keyPart` (src/internal/keys.ts) writes non-primitive field values as `JSON.stringify(value)`:
 * - a `ReadonlySet` / `ReadonlyMap` is always `{}`: every set of ids shares one entry;
 * - `NaN`, `Infinity`, `-Infinity` inside arrays or structs are all `null`, and `-0` is `0` (top-level -0 is kept
 *   on purpose, nested it is not);
 * - a `Symbol` (and anything JSON cannot write) is `\?`.
 * And on Redis: keys are sent as UTF-8, so a lone surrogate (`"\ud800"`, a valid `Schema.String`) becomes U+FFFD:
 * `"\ud800"`, `"\udfff"` and `"\ufffd"` share one Redis key (the in-process store keeps them apart).
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { Memo, Node } from "../../src/index.ts"
import { backends } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-inj-${process.pid}-${counter++}`

for (const backend of backends) {
  describe(`key injectivity: ${backend.name}`, () => {
    const pair = <F extends Schema.Struct.Fields>(
      title: string,
      fields: F,
      a: Schema.Struct.Type<F>,
      b: Schema.Struct.Type<F>,
      onlyOn?: "redis"
    ) =>
      backend.test(`${title}: two instances, two entries`, () =>
        Effect.gen(function* () {
          if (onlyOn !== undefined && onlyOn !== backend.name) return
          const N = Node.make(fresh("n"), { fields, value: Schema.String, ttl: null })
          const ia = N.make(a)
          const ib = N.make(b)
          const first = yield* Effect.succeed("value of A").pipe(Memo.cached(ia))
          const second = yield* Effect.succeed("value of B").pipe(Memo.cached(ib))
          console.log(
            `[injectivity ${backend.name} ${title}] keys ${JSON.stringify(ia.key)} / ${JSON.stringify(ib.key)}: A read ${first}, B read ${second}`
          )
          assert.strictEqual(second, "value of B", `instance B was served instance A's entry`)
        }).pipe(Effect.provide(backend.layer()))
      )

    pair("ReadonlySet of ids", { ids: Schema.ReadonlySet(Schema.Number) }, { ids: new Set([1]) }, { ids: new Set([2]) })
    pair(
      "ReadonlyMap",
      { m: Schema.ReadonlyMap(Schema.String, Schema.Number) },
      { m: new Map([["tenant", 1]]) },
      { m: new Map([["tenant", 2]]) }
    )
    pair("Array of numbers with Infinity", { xs: Schema.Array(Schema.Number) }, { xs: [Infinity] }, { xs: [-Infinity] })
    pair("Array of numbers with -0", { xs: Schema.Array(Schema.Number) }, { xs: [0] }, { xs: [-0] })
    pair(
      "Struct with NaN",
      { f: Schema.Struct({ min: Schema.Number }) },
      { f: { min: Number.NaN } },
      { f: { min: Infinity } }
    )
    pair("Symbol", { s: Schema.Symbol }, { s: Symbol.for("a") }, { s: Symbol.for("b") })
    pair("lone surrogate vs U+FFFD", { name: Schema.String }, { name: "\ud800" }, { name: "\ufffd" }, "redis")
    pair("two lone surrogates", { name: Schema.String }, { name: "\ud800" }, { name: "\udc00" }, "redis")
  })
}
