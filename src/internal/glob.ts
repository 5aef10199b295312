/**
 * Redis-style glob patterns (`*`, `?`, `[abc]`, `[^a-c]`, `\x`) for the in-process store, matched the way
 * Redis's `stringmatchlen` (util.c) matches them; and the escaping of literal text (a key prefix) inside a
 * pattern, for the Redis store.
 */

/** A compiled pattern: `test` tells whether a key matches it. */
export interface Glob {
  readonly _tag: "Glob"
  readonly test: (key: string) => boolean
}

/** A pattern that cannot be compiled, and why. */
export interface GlobError {
  readonly _tag: "GlobError"
  readonly reason: string
}

/** The longest pattern {@link compileGlob} accepts, in UTF-16 code units. */
export const maxGlobLength = 1024

const encoder = new TextEncoder()

const BACKSLASH = 0x5c
const CARET = 0x5e
const CLOSE = 0x5d
const DASH = 0x2d
const OPEN = 0x5b
const QUESTION = 0x3f
const STAR = 0x2a

/**
 * A compiled pattern, `count` tokens long: token `p` is `*` when `stars[p]` is 1 (runs of `*` are one token);
 * any other token matches exactly one byte, the bytes `b` for which `bytes[p * 256 + b]` is 1 (a literal, `?`
 * or a class).
 */
interface Tokens {
  readonly count: number
  readonly stars: Uint8Array
  readonly bytes: Uint8Array
}

/** Redis compares class ranges as C `char`s, signed on x86-64: bytes 0x80-0xFF sort before 0x00. */
const signed = (byte: number) => (byte >= 0x80 ? byte - 0x100 : byte)

/**
 * Reads the class whose `[` is at `start` into `table`, as `stringmatchlen` does: `^` first negates (`!` does
 * not); `\x` is `x`; `a-z` is a range, reversed ends swapped, and its end may be `]`; `]` closes the class, even
 * first (`[]` matches nothing, `[^]` any byte); without a `]` the class runs to the end of the pattern (`[`
 * alone matches nothing). Returns the index after the class.
 */
const readClass = (pattern: Uint8Array, start: number, table: Uint8Array): number => {
  const length = pattern.length
  let i = start + 1
  const negated = i < length && pattern[i] === CARET
  if (negated) i++
  while (i < length) {
    const byte = pattern[i]!
    const rest = length - i
    if (byte === BACKSLASH && rest >= 2) {
      table[pattern[i + 1]!] = 1
      i += 2
    } else if (byte === CLOSE) {
      i++
      break
    } else if (rest >= 3 && pattern[i + 1] === DASH) {
      let low = signed(byte)
      let high = signed(pattern[i + 2]!)
      if (low > high) [low, high] = [high, low]
      for (let b = 0; b < 256; b++) if (signed(b) >= low && signed(b) <= high) table[b] = 1
      i += 3
    } else {
      table[byte] = 1
      i++
    }
  }
  if (negated) for (let b = 0; b < 256; b++) table[b] ^= 1
  return i
}

const tokenize = (pattern: Uint8Array): Tokens => {
  // Every token takes at least one byte of the pattern.
  const stars = new Uint8Array(pattern.length)
  const bytes = new Uint8Array(pattern.length * 256)
  let count = 0
  let i = 0
  while (i < pattern.length) {
    const byte = pattern[i]!
    const table = bytes.subarray(count * 256, count * 256 + 256)
    if (byte === STAR) {
      if (count === 0 || stars[count - 1] === 0) stars[count++] = 1
      i++
      continue
    }
    if (byte === QUESTION) {
      table.fill(1)
      i++
    } else if (byte === OPEN) {
      i = readClass(pattern, i, table)
    } else if (byte === BACKSLASH && i + 1 < pattern.length) {
      table[pattern[i + 1]!] = 1
      i += 2
    } else {
      // A lone trailing backslash matches a backslash.
      table[byte] = 1
      i++
    }
    count++
  }
  return { count, stars: stars.slice(0, count), bytes: bytes.slice(0, count * 256) }
}

/**
 * The classic wildcard match with one backtrack point, the last `*` seen: every other token matches exactly
 * one byte, so a failure after a later `*` never needs an earlier one to take more. O(key × pattern) at worst,
 * never exponential. Runs on the key's UTF-16 code units while they are ASCII (one UTF-8 byte each), and
 * returns -1 at the first one that is not, for {@link matchBytes} to take over.
 */
const matchAscii = ({ count, stars, bytes }: Tokens, key: string): 0 | 1 | -1 => {
  const length = key.length
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  while (s < length) {
    if (p < count && stars[p] === 1) {
      starP = p++
      starS = s
      continue
    }
    const code = key.charCodeAt(s)
    if (code > 0x7f) return -1
    if (p < count && bytes[p * 256 + code] === 1) {
      p++
      s++
    } else if (starP >= 0) {
      p = starP + 1
      s = ++starS
    } else return 0 // decided by the key's first bytes, all ASCII
  }
  while (p < count && stars[p] === 1) p++
  return p === count ? 1 : 0
}

/** {@link matchAscii} on the first `length` bytes of `key`. */
const matchBytes = ({ count, stars, bytes }: Tokens, key: Uint8Array, length: number): boolean => {
  let p = 0
  let s = 0
  let starP = -1
  let starS = 0
  while (s < length) {
    if (p < count && stars[p] === 1) {
      starP = p++
      starS = s
    } else if (p < count && bytes[p * 256 + key[s]!] === 1) {
      p++
      s++
    } else if (starP >= 0) {
      p = starP + 1
      s = ++starS
    } else return false
  }
  while (p < count && stars[p] === 1) p++
  return p === count
}

/** Reused for the keys that are not ASCII: UTF-8 takes at most 3 bytes per UTF-16 code unit. */
let scratch = new Uint8Array(1024)

const matchKey = (tokens: Tokens, key: string): boolean => {
  const ascii = matchAscii(tokens, key)
  if (ascii !== -1) return ascii === 1
  if (scratch.length < key.length * 3) scratch = new Uint8Array(key.length * 3)
  const { written } = encoder.encodeInto(key, scratch)
  return matchBytes(tokens, scratch, written)
}

/**
 * Compiles a Redis glob pattern, to match keys as Redis's `SCAN … MATCH` and `KEYS` do (`stringmatchlen` in
 * util.c): on the UTF-8 bytes of the key (`?` is one byte), case-sensitively, with `*`, `?`, `[abc]`, `[^abc]`,
 * ranges (`[z-a]` is `[a-z]`), `\x` escapes in and out of classes, an unterminated `[` running to the end of the
 * pattern and a trailing lone backslash matching a backslash. As in Redis, the empty key matches only the empty
 * pattern and `*` (which `SCAN` and `KEYS` take as "every key"), not `**`. Compiling takes O(pattern); `test`
 * takes O(key × pattern) at worst. A pattern longer than {@link maxGlobLength} is a `GlobError`.
 */
export const compileGlob = (pattern: string): Glob | GlobError => {
  if (pattern.length > maxGlobLength)
    return {
      _tag: "GlobError",
      reason: `pattern is ${pattern.length} characters long, longer than the ${maxGlobLength} allowed`
    }
  if (pattern === "*") return { _tag: "Glob", test: () => true }
  if (pattern === "") return { _tag: "Glob", test: (key) => key === "" }
  const tokens = tokenize(encoder.encode(pattern))
  return { _tag: "Glob", test: (key) => key !== "" && matchKey(tokens, key) }
}

/** Escapes text so that a Redis glob matches it literally. */
export const escapeGlob = (text: string): string => text.replace(/[*?[\]\\]/g, (char) => `\\${char}`)
