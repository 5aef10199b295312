/**
 * Guarantee 6 probes: hostile group keys and malformed glob patterns, on both stores.
 *
 * - Group keys with newlines, commas, backslashes, `~`, glob characters, the empty key: invalidating one counts its
 *   entry, the entry reloads, and a neighbour group is untouched (held).
 * - A group key with a lone surrogate: Redis keys are UTF-8, so `"\ud800"` and `"\udc00"` would share one stamp
 *   (and the Lua reclaim cannot decode such sets): a key function's key must be well-formed, a typed error.
 * - Malformed patterns (`[`, `[^`, `\`, `a[b-`, `[]`, `*\`, ...): both stores must remove the same keys.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Ref, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { backends } from "./support.ts"

let counter = 0
const fresh = (name: string) => `${name}-hostile-${process.pid}-${counter++}`

const hostile = [
  "a\nb",
  "a,b",
  ",",
  "\\",
  "\\,",
  "~",
  "~s:g:x",
  "*",
  "[a-z]?",
  "",
  "x\r\n~m:y",
  "\u0000",
  "é,ü",
  "a\\\nb"
]

for (const backend of backends) {
  describe(`hostile input: ${backend.name}`, () => {
    backend.test("hostile group keys: counted, reloaded, neighbours untouched", () =>
      Effect.gen(function* () {
        const G = InvalidNode.make(fresh("g"), { fields: { k: Schema.String }, key: ({ k }) => k })
        const N = Node.make(fresh("n"), {
          fields: { k: Schema.String },
          value: Schema.Number,
          ttl: null,
          stale: false,
          invalidatedBy: ({ k }) => [G.make({ k })]
        })
        const loads = yield* Ref.make(0)
        const read = (k: string) => Ref.updateAndGet(loads, (n) => n + 1).pipe(Memo.cached(N.make({ k })))
        const problems: Array<string> = []
        for (const k of hostile) {
          const first = yield* read(k)
          const neighbours = yield* Effect.forEach(
            hostile.filter((o) => o !== k),
            read
          )
          const count = yield* InvalidNode.invalidate(G.make({ k }))
          const again = yield* read(k)
          const neighboursAfter = yield* Effect.forEach(
            hostile.filter((o) => o !== k),
            read
          )
          if (count !== 1) problems.push(`${JSON.stringify(k)}: count ${count}`)
          if (again === first) problems.push(`${JSON.stringify(k)}: not reloaded`)
          if (JSON.stringify(neighbours) !== JSON.stringify(neighboursAfter))
            problems.push(`${JSON.stringify(k)}: a neighbour was invalidated`)
        }
        console.log(`[hostile groups ${backend.name}] problems: ${problems.join("; ") || "none"}`)
        assert.deepStrictEqual(problems, [])
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("a group key with a lone surrogate is a typed error, never a stamp shared with U+FFFD", () =>
      Effect.gen(function* () {
        const G = InvalidNode.make(fresh("sg"), { fields: { k: Schema.String }, key: ({ k }) => k })
        const N = Node.make(fresh("sn"), {
          fields: { id: Schema.Number },
          value: Schema.Number,
          ttl: null,
          stale: false,
          invalidatedBy: ({ id }) => [G.make({ k: id === 1 ? "\ud800" : "\udc00" })]
        })
        const error = yield* Effect.flip(N.decode({ id: 1 }))
        assert.strictEqual(error._tag, "InvalidFields")
        assert.match(error.message, /well-formed/)
        assert.strictEqual((yield* Effect.flip(G.makeExit({ k: "\ud800" })))._tag, "InvalidFields")
        // A well-formed neighbour is untouched by all this.
        const loads = yield* Ref.make(0)
        const Fine = Node.make(fresh("sf"), { fields: { id: Schema.Number }, value: Schema.Number })
        const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(Memo.cached(Fine.make({ id: 1 })))
        assert.strictEqual(yield* read, 1)
        assert.strictEqual(yield* read, 1)
        yield* CacheStore.CacheStore
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}

describe("malformed glob patterns: both stores remove the same keys", () => {
  const keys = ["a", "b", "[", "]", "\\", "a[b", "ab", "a-b", "^", "x*y", "x?y", "*", "é", "a\\b", "-", "[]", "a]"]
  const patterns = [
    "[",
    "[^",
    "\\",
    "a[b-",
    "[]",
    "[^]",
    "*\\",
    "[\\",
    "a[",
    "[]]",
    "[a-]",
    "\\[",
    "x\\*y",
    "[z-a]",
    "[^a]*",
    "é",
    "?",
    "[-]"
  ]
  const removed = (backend: (typeof backends)[number]) =>
    Effect.gen(function* () {
      const result: Record<string, Array<string>> = {}
      for (const pattern of patterns) {
        const N = Node.make(fresh("glob"), {
          fields: { k: Schema.String },
          value: Schema.String,
          key: ({ k }) => `p${counter}-${k}`
        })
        const base = `p${counter}-`
        yield* Effect.forEach(keys, (k) => Effect.succeed("v").pipe(Memo.cached(N.make({ k }))), { discard: true })
        const exit = yield* Effect.exit(Memo.invalidatePattern(base.replace(/[*?[\]\\]/g, "\\$&") + pattern))
        const store = yield* CacheStore.CacheStore
        const left = new Set(
          (yield* store.scan({ pattern: `${base.replace(/[*?[\]\\]/g, "\\$&")}*`, count: 1000 })).keys
        )
        result[pattern] = exit._tag === "Failure" ? ["<error>"] : keys.filter((k) => !left.has(`${base}${k}`))
      }
      return result
    }).pipe(Effect.provide(backend.layer()))
  backends[1]!.test("memory vs redis", () =>
    Effect.gen(function* () {
      const onMemory = yield* removed(backends[0]!)
      const onRedis = yield* removed(backends[1]!)
      const differ = patterns.filter((p) => JSON.stringify(onMemory[p]) !== JSON.stringify(onRedis[p]))
      console.log(
        `[glob] ${differ.length} of ${patterns.length} patterns differ: ${differ
          .map((p) => `${JSON.stringify(p)} memory ${JSON.stringify(onMemory[p])} redis ${JSON.stringify(onRedis[p])}`)
          .join("; ")}`
      )
      assert.deepStrictEqual(differ, [])
    })
  )
})
