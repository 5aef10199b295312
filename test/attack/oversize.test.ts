/**
 * Guarantee 6 probe (HELD): values above maxValueBytes are returned, never stored, and leave no lease behind,
 * for a leader's load and for a background refresh of a stale value.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { Memo, Node } from "../../src/index.ts"
import { backends } from "./support.ts"

let counter = 0
for (const backend of backends) {
  describe(`oversized values: ${backend.name}`, () => {
    backend.test("returned, not stored, no lease left; a refresh too", () =>
      Effect.gen(function* () {
        const N = Node.make(`big-${process.pid}-${counter++}`, {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          stale: true
        })
        const size = yield* Ref.make(10)
        const loads = yield* Ref.make(0)
        const read = Effect.gen(function* () {
          const n = yield* Ref.updateAndGet(loads, (k) => k + 1)
          return `${n}:${"é".repeat(yield* Ref.get(size))}`
        }).pipe(Memo.cached(N.make({ id: 1 })))
        yield* Ref.set(size, 2000) // 4000 bytes of UTF-8 > 1000
        const a = yield* read
        const b = yield* read
        assert.notStrictEqual(a, b, "not stored")
        yield* Ref.set(size, 10)
        const c = yield* read
        const d = yield* read
        assert.strictEqual(c, d, "stored once small, no lease left behind")
        yield* Memo.invalidate(N.make({ id: 1 }), { mode: "soft" })
        yield* Ref.set(size, 2000)
        const e = yield* read // stale, refresh oversized
        yield* backend.advance(50)
        yield* Ref.set(size, 10)
        yield* read // stale again, refresh small
        yield* backend.advance(50)
        const f = yield* read
        console.log(`[oversize ${backend.name}] ${[a, b, c, d, e, f].map((v) => v.slice(0, 4)).join(" ")}`)
        assert.notStrictEqual(f.slice(0, 3), c.slice(0, 3), "refreshed after an oversized refresh")
      }).pipe(Effect.provide(backend.layer({ maxValueBytes: 1000 })))
    )
  })
}
