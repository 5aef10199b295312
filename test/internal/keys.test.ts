/**
 * Default keys are injective: two different sets of field values never share a key, whatever characters or
 * types they hold (`:` and `\` in strings, empty strings, null, an absent field, numbers and numeric strings).
 */
import { describe, expect, it } from "vitest"
import { defaultKey } from "../../src/internal/keys.ts"

/** A seeded PRNG (mulberry32), so a failure can be replayed. */
const random = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const pieces = [":", "\\", "a", "1", "-", "'", "0", "\u00e9", "\u{1f600}", " ", "true", "n", "{", '"', "\\'", "\\0"]

const value = (next: () => number): unknown => {
  const kind = Math.floor(next() * 9)
  switch (kind) {
    case 0:
      return null
    case 1:
      return undefined
    case 2:
      return [0, -0, 1, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 10][Math.floor(next() * 8)]
    case 3:
      return next() < 0.5
    case 4:
      return BigInt(Math.floor(next() * 3))
    case 5:
      return new Date(Math.floor(next() * 3) * 86_400_000)
    default: {
      let text = ""
      const length = Math.floor(next() * 4)
      for (let i = 0; i < length; i++) text += pieces[Math.floor(next() * pieces.length)]
      return text
    }
  }
}

/** Tells values apart by type and content (what two distinct field records differ in). */
const identity = (v: unknown): string =>
  v === undefined
    ? "u"
    : v === null
      ? "n"
      : typeof v === "number"
        ? `d${Object.is(v, -0) ? "-0" : String(v)}`
        : typeof v === "bigint"
          ? `b${v}`
          : v instanceof Date
            ? `t${v.getTime()}`
            : `${typeof v}:${String(v)}`

describe("default keys", () => {
  it("are injective over random values of every kind (seeded)", () => {
    for (const seed of [1, 2, 3]) {
      const next = random(seed)
      const key = defaultKey("doc", ["tenant", "id"])
      const seen = new Map<string, string>()
      for (let i = 0; i < 20_000; i++) {
        const record = { tenant: value(next), id: value(next) }
        const k = key(record)
        const id = `${identity(record.tenant)}|${identity(record.id)}`
        const before = seen.get(k)
        if (before !== undefined && before !== id) {
          expect.fail(`seed ${seed}: ${before} and ${id} share the key ${JSON.stringify(k)}`)
        }
        seen.set(k, id)
      }
    }
  })

  it("keep the cases the seed mixed up apart, and stay readable", () => {
    const key = defaultKey("doc", ["tenant", "doc"])
    expect(key({ tenant: "acme:secret", doc: "1" })).not.toBe(key({ tenant: "acme", doc: "secret:1" }))
    expect(key({ tenant: null, doc: "x" })).not.toBe(key({ tenant: "null", doc: "x" }))
    expect(key({ tenant: undefined, doc: "x" })).not.toBe(key({ tenant: "", doc: "x" }))
    expect(key({ tenant: 1, doc: "x" })).not.toBe(key({ tenant: "1", doc: "x" }))
    expect(key({ tenant: "acme", doc: "report" })).toBe("doc:acme:report")
    expect(defaultKey("user", ["id"])({ id: 42 })).toBe("user:42")
    expect(key({ tenant: "a:b", doc: "c\\d" })).toBe("doc:a\\:b:c\\\\d")
  })
})
