/**
 * Redis-style glob patterns (`*`, `?`, `[abc]`, `[^a-c]`, `\x`) as regular expressions, for the in-process
 * store; and the escaping of literal text (a key prefix) inside a pattern, for the Redis store.
 */

const special = /[.+^${}()|\\/]/

export const globToRegExp = (pattern: string): RegExp => {
  let source = "^"
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i]!
    if (char === "*") source += "[\\s\\S]*"
    else if (char === "?") source += "[\\s\\S]"
    else if (char === "\\" && i + 1 < pattern.length) source += `\\${pattern[++i]}`
    else if (char === "[") {
      const end = pattern.indexOf("]", i + 1)
      if (end === -1) {
        source += "\\["
        continue
      }
      let body = pattern.slice(i + 1, end)
      const negated = body.startsWith("^")
      if (negated) body = body.slice(1)
      source += `[${negated ? "^" : ""}${body.replace(/\\/g, "\\\\").replace(/\]/g, "\\]")}]`
      i = end
    } else source += special.test(char) ? `\\${char}` : char
  }
  return new RegExp(`${source}$`)
}

/** Escapes text so that a Redis glob matches it literally. */
export const escapeGlob = (text: string): string => text.replace(/[*?[\]\\]/g, (char) => `\\${char}`)
