/**
 * `compileGlob` against Redis's own matcher (`stringmatchlen`, behind `SCAN … MATCH`): a table of every construct
 * and edge case (each checked against a real Redis 7.0 with `KEYS` and `SCAN`), and a seeded property test that
 * compares the two on random patterns and keys.
 */
import { Redis } from "ioredis"
import { describe, expect, it } from "vitest"
import { compileGlob, escapeGlob, maxGlobLength } from "../../src/internal/glob.ts"
import { missing, Redis as RedisService } from "../support/services.ts"

const matches = (pattern: string, key: string): boolean => {
  const glob = compileGlob(pattern)
  if (glob._tag === "GlobError") throw new Error(`${pattern}: ${glob.reason}`)
  return glob.test(key)
}

/** Mulberry32: a small seeded PRNG, so a failure reproduces. */
const prng = (seed: number) => () => {
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}

const randomString = (random: () => number, alphabet: ReadonlyArray<string>, maxLength: number): string => {
  const length = Math.floor(random() * (maxLength + 1))
  let text = ""
  for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)]
  return text
}

/** Up to 8 pieces, each a character of `alphabet` or, one time in four, a range between two ASCII ones. */
const randomPattern = (random: () => number, alphabet: ReadonlyArray<string>): string => {
  const ascii = alphabet.filter((char) => char.charCodeAt(0) < 0x80)
  const pick = (chars: ReadonlyArray<string>) => chars[Math.floor(random() * chars.length)]!
  const length = Math.floor(random() * 9)
  let pattern = ""
  for (let i = 0; i < length; i++) pattern += random() < 0.25 ? `${pick(ascii)}-${pick(ascii)}` : pick(alphabet)
  return pattern
}

// [pattern, key, whether Redis matches]
const cases: ReadonlyArray<readonly [string, string, boolean]> = [
  // literals, case-sensitive
  ["hello", "hello", true],
  ["hello", "hell", false],
  ["hello", "hello!", false],
  ["A", "a", false],
  // *
  ["*", "anything", true],
  ["h*llo", "hllo", true],
  ["h*llo", "heeello", true],
  ["h*llo", "hello!", false],
  ["a*", "a", true],
  ["a*b*", "ab", true],
  ["**", "ab", true],
  ["*a*a*a*b", "aaaaaaaaab", true],
  ["*a*a*a*b", "aaaaaaaaa", false],
  // ?
  ["h?llo", "hello", true],
  ["h?llo", "hllo", false],
  // classes
  ["[abc]", "b", true],
  ["[abc]", "d", false],
  ["h[ae]llo", "hallo", true],
  ["[^abc]", "d", true],
  ["[^abc]", "a", false],
  ["h[^e]llo", "hello", false],
  ["[!abc]", "!", true], // `!` is a member, not a negation
  ["[!abc]", "a", true],
  ["[!abc]", "d", false],
  ["[a-z]", "m", true],
  ["[a-z]", "-", false],
  ["[A-Z]", "a", false],
  ["[z-a]", "m", true], // a reversed range is swapped
  ["[z-a]", "A", false],
  ["[z-a]*", "zoo", true],
  ["[--a]", "0", true],
  ["[a-b-c]", "-", true], // a range, then `-` and `c`
  ["[a-b-c]", "c", true],
  ["[a-]", "^", true], // the range a-] is ]-a, and the class then runs to the end
  ["[a-]", "]", true],
  ["[a-]", "b", false],
  ["[a-]", "-", false],
  ["[a-]b", "b", true],
  ["[a-]b", "]b", false],
  ["[]", "]", false], // `]` first closes an empty class
  ["[]a]", "]a]", false],
  ["[]a]", "a", false],
  ["[^]", "x", true],
  ["[^]", "]", true],
  // escapes, inside and outside classes
  ["\\*", "*", true],
  ["\\*", "a", false],
  ["\\a", "a", true],
  ["\\\\", "\\", true],
  ["[\\-a]", "-", true],
  ["[\\-a]", "b", false],
  ["[\\]]", "]", true],
  ["[\\]]", "\\", false],
  ["[a-\\]", "^", true], // the range a-\ is \-a
  ["[a-\\]", "b", false],
  // a trailing lone backslash matches a backslash, in and out of a class
  ["\\", "\\", true],
  ["a\\", "a\\", true],
  ["a\\", "a", false],
  ["[\\", "\\", true],
  ["[a\\", "\\", true],
  ["[a\\", "a", true],
  // an unterminated class runs to the end of the pattern
  ["[abc", "a", true],
  ["[abc", "c", true],
  ["[abc", "[", false],
  ["[^ab", "c", true],
  ["[^ab", "a", false],
  ["[^", "x", true],
  ["[", "[", false],
  ["[", "a", false],
  ["a[", "a[", false],
  // the empty key: only the empty pattern and `*` match it
  ["", "", true],
  ["", "a", false],
  ["*", "", true],
  ["**", "", false],
  ["?", "", false],
  ["[^", "", false],
  // bytes: Redis matches UTF-8 bytes, so `?` is one byte and é is two
  ["?", "é", false],
  ["??", "é", true],
  ["*é", "aé", true],
  ["[é]", "é", false],
  ["[é]?", "é", true],
  // ranges compare signed chars (x86-64): a-\xC3 is \xC3..\xFF plus \x00..a, then \xA9
  ["[a-é]", "\u0001", true],
  ["[a-é]", "b", false],
  ["[a-é]", "é", false]
]

describe("compileGlob", () => {
  it.each(cases)("%j on %j is %s", (pattern, key, expected) => {
    expect(matches(pattern, key)).toBe(expected)
  })

  it("takes [z-a] as [a-z] instead of throwing", () => {
    const glob = compileGlob("[z-a]")
    expect(glob._tag).toBe("Glob")
    expect(matches("[z-a]", "m")).toBe(true)
  })

  it("does not backtrack exponentially", () => {
    expect(matches("*a*a*a*b", "a".repeat(400))).toBe(false)
    expect(matches("*a*a*a*a*a*a*a*a*a*a*b", "a".repeat(10_000))).toBe(false)
    const longest = `${"*a".repeat((maxGlobLength - 2) / 2)}*b`
    expect(longest.length).toBe(maxGlobLength)
    expect(matches(longest, "a".repeat(10_000))).toBe(false)
    expect(matches(longest, `${"a".repeat(10_000)}b`)).toBe(true)
  })

  it("reports a pattern longer than 1024 characters as a GlobError", () => {
    expect(compileGlob("a".repeat(maxGlobLength))._tag).toBe("Glob")
    const error = compileGlob("a".repeat(maxGlobLength + 1))
    expect(error._tag).toBe("GlobError")
    if (error._tag === "GlobError") expect(error.reason).toMatch(/1025 characters long, longer than the 1024 allowed/)
  })

  it("matches escaped text literally, and only that text", () => {
    const random = prng(7)
    const alphabet = ["a", "b", "*", "?", "[", "]", "^", "-", "\\", "é"]
    for (let i = 0; i < 500; i++) {
      const text = randomString(random, alphabet, 8)
      const other = randomString(random, alphabet, 8)
      expect(matches(escapeGlob(text), text)).toBe(true)
      expect(matches(escapeGlob(text), other)).toBe(other === text)
      expect(matches(`${escapeGlob(text)}*`, `${text}${other}`)).toBe(true)
    }
  })
})

const skip = await missing(RedisService)

describe.skipIf(skip)("compileGlob against Redis SCAN MATCH", () => {
  it("agrees on 200 random patterns over a few hundred random keys", async () => {
    const random = prng(20240611)
    // `!` to check that `[!` is not a negation; é for multi-byte keys.
    const alphabet = ["a", "b", "*", "?", "[", "]", "^", "-", "\\", "!", "é"]
    const prefix = `test:${process.pid}:glob:${Date.now().toString(36)}:`
    const keys = new Set<string>()
    while (keys.size < 300) keys.add(prefix + randomString(random, alphabet, 6))
    const client = new Redis(RedisService.url)
    try {
      const pipeline = client.pipeline()
      for (const key of keys) pipeline.set(key, "1")
      await pipeline.exec()
      let tested = 0
      while (tested < 200) {
        const tail = randomPattern(random, alphabet)
        // A range with a non-ASCII end compares C chars, signed on some platforms and unsigned on others (arm64
        // Linux): leave those out so the comparison holds on any Redis.
        if (/é-|-é/.test(tail)) continue
        tested++
        const pattern = escapeGlob(prefix) + tail
        const fromRedis = new Set<string>()
        let cursor = "0"
        do {
          const [next, found] = await client.scan(cursor, "MATCH", pattern, "COUNT", 1000)
          cursor = next
          for (const key of found) fromRedis.add(key)
        } while (cursor !== "0")
        const glob = compileGlob(pattern)
        if (glob._tag === "GlobError") throw new Error(glob.reason)
        const fromGlob = new Set([...keys].filter((key) => glob.test(key)))
        expect([...fromGlob].sort(), `pattern ${JSON.stringify(tail)}`).toEqual([...fromRedis].sort())
      }
    } finally {
      await client.unlink(...keys)
      client.disconnect()
    }
  })
})
