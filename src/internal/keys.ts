/**
 * How keys, groups and tags are spelled. Entries live at `prefix + key`; the protocol keys of a set (its stamp
 * and index) live under `prefix + "~"` (see `protocol.ts`), which is why an entry key may not start with `~`.
 */
import { setMarker } from "./protocol.ts"

/** The membership set of an `InvalidNode` group. */
export const groupSet = (groupKey: string): string => `g:${groupKey}`

/** The membership set of a tag (every node name is a tag). */
export const tagSet = (tag: string): string => `t:${tag}`

/** Whether a set is a tag's (tags are few and shared by many entries; groups may be one per row). */
export const isTagSet = (set: string): boolean => set.startsWith("t:")

/**
 * The epoch of a family of groups: a pseudo-set whose "stamp" every invalidation and hold of a group of the
 * family replaces (when it exists). Entries whose groups are named by their value record it, so that a read can
 * tell in its one round trip whether any group of the family changed since (see `protocol.ts`, "Value groups").
 */
export const epochSet = (family: string): string => `e:${family}`

/** Whether a set is a family's epoch (no index, never invalidated itself, kept for ever like a tag's stamp). */
export const isEpochSet = (set: string): boolean => set.startsWith("e:")

/**
 * The family of a group key: its part before the first `:` that is not escaped, which for a default key is its
 * `InvalidNode`'s name as the key writes it (`user:1` and `user` are of the family `user`; `a\:b:1` of `a\:b`).
 * Total on every key, so that whoever invalidates a group (by its instance, its key string, a captured write,
 * the admin) bumps the same epoch.
 */
export const familyOfGroupKey = (groupKey: string): string => {
  for (let i = 0; i < groupKey.length; i++) {
    const char = groupKey.charCodeAt(i)
    if (char === 92 /* \ */) i++
    else if (char === 58 /* : */) return groupKey.slice(0, i)
  }
  return groupKey
}

/** The family an `InvalidNode` name gives its default keys (the name, escaped as a key part). */
export const familyOfName = (name: string): string => escapePart(name)

/** The epoch set that a change of `set`'s stamp bumps: a group's family's; none for tags and epochs. */
export const epochOfSet = (set: string): string | undefined =>
  set.startsWith("g:") ? epochSet(familyOfGroupKey(set.slice(2))) : undefined

/** Checks a computed entry key: returns a reason when it cannot be used. */
export const invalidKeyReason = (key: string): string | undefined => reservedKeyReason(key) ?? notWellFormed(key)

/** {@link invalidKeyReason} for a key already known to be well-formed. */
export const reservedKeyReason = (key: string): string | undefined =>
  key.length === 0
    ? "a key cannot be empty"
    : key.startsWith(setMarker)
      ? `a key cannot start with "${setMarker}" (reserved for group and tag sets)`
      : undefined

/** Redis stores keys as UTF-8: a lone surrogate becomes U+FFFD, and two keys would become one. */
export const notWellFormed = (key: string): string | undefined =>
  key.isWellFormed() ? undefined : "a key must be well-formed Unicode (a lone surrogate would share a key with U+FFFD)"

/** Strings that could read as the rendering of another type (a number, a boolean, a date, JSON) are marked. */
const ambiguous = /^(?:[-\d{["]|true$|false$|NaN$|Infinity$)/

/** `\` and `:` escaped, so that `:` only ever separates parts. */
const escapePart = (text: string): string =>
  text.includes("\\") || text.includes(":") ? text.replace(/[\\:]/g, (char) => `\\${char}`) : text

/**
 * Writes a value that is not a primitive, injectively over the values field Schemas produce: strings quoted,
 * numbers as JavaScript writes them (`-0`, `NaN`, `Infinity` kept apart), arrays, plain objects (own keys in
 * order), `Map`, `Set`, dates, registered symbols. A function or an unregistered symbol cannot be told apart from
 * another: it throws (a typed error by the time it reaches the caller).
 */
const encode = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      return JSON.stringify(value)
    case "number":
      return Object.is(value, -0) ? "-0" : String(value)
    case "bigint":
      return `${value}n`
    case "boolean":
      return String(value)
    case "undefined":
      return "undefined"
    case "symbol": {
      const key = Symbol.keyFor(value)
      if (key === undefined)
        throw new Error("a field holds a symbol that is not registered (Symbol.for): it cannot be written in a key")
      return `Symbol.for(${JSON.stringify(key)})`
    }
    case "function":
      throw new Error("a field holds a function: it cannot be written in a key")
  }
  if (value === null) return "null"
  if (value instanceof Date) return `Date(${Number.isNaN(value.getTime()) ? "NaN" : value.toISOString()})`
  if (Array.isArray(value)) return `[${value.map(encode).join(",")}]`
  if (value instanceof Map) return `Map{${[...value].map(([k, v]) => `${encode(k)}:${encode(v)}`).join(",")}}`
  if (value instanceof Set) return `Set{${[...value].map(encode).join(",")}}`
  const record = value as Record<string, unknown>
  return `{${Object.keys(record)
    .map((key) => `${JSON.stringify(key)}:${encode(record[key])}`)
    .join(",")}}`
}

/**
 * How a field value is written in a default key, injectively: distinct values never give one part. Strings are
 * written as they are (escaped), unless they could read as another type's rendering (`"1"`, `"true"`, an ISO
 * date: marked `\'`) or are not well-formed Unicode (a lone surrogate, which Redis would store as U+FFFD: marked
 * `\u` and written with the surrogate escaped); `null` is `\0` and an absent field `\-`. Numbers, booleans and
 * bigints (`12n`) as JavaScript writes them (`-0` kept), dates as ISO strings, anything else marked `\~` and
 * written by {@link encode}.
 */
export const keyPart = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      if (!value.isWellFormed()) return `\\u${escapePart(JSON.stringify(value))}`
      return ambiguous.test(value) ? `\\'${escapePart(value)}` : escapePart(value)
    case "number":
      return Object.is(value, -0) ? "-0" : String(value)
    case "bigint":
      return `${value}n`
    case "boolean":
      return String(value)
    case "undefined":
      return "\\-"
  }
  if (value === null) return "\\0"
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString()
  return `\\~${escapePart(encode(value))}`
}

/**
 * The key of nodes and groups that give none: the name and the field values, in field order, joined by `:`, each
 * written by {@link keyPart} so that two different sets of values never share a key (`user:1`, `doc:acme\:x:2`).
 */
export const defaultKey =
  (name: string, fieldNames: ReadonlyArray<string>) =>
  (fields: Record<string, unknown>): string => {
    let key = escapePart(name)
    for (const field of fieldNames) key += `:${keyPart(fields[field])}`
    return key
  }
