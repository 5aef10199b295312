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

/** Checks a computed entry key: returns a reason when it cannot be used. */
export const invalidKeyReason = (key: string): string | undefined =>
  key.length === 0
    ? "a key cannot be empty"
    : key.startsWith(setMarker)
      ? `a key cannot start with "${setMarker}" (reserved for group and tag sets)`
      : undefined

/** Strings that could read as the rendering of another type (a number, a boolean, a date, JSON) are marked. */
const ambiguous = /^(?:[-\d{["]|true$|false$|NaN$|Infinity$)/

/** `\` and `:` escaped, so that `:` only ever separates parts. */
const escapePart = (text: string): string =>
  text.includes("\\") || text.includes(":") ? text.replace(/[\\:]/g, (char) => `\\${char}`) : text

/**
 * How a field value is written in a default key, injectively: distinct values never give one part. Strings are
 * written as they are (escaped), unless they could read as another type's rendering (`"1"`, `"true"`, an ISO
 * date), which are marked with a leading `\'`; `null` is `\0` and an absent field `\-`. Numbers, booleans and
 * bigints (`12n`) as JavaScript writes them (`-0` kept), dates as ISO strings, anything else as JSON.
 */
export const keyPart = (value: unknown): string => {
  switch (typeof value) {
    case "string":
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
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? "\\d" : value.toISOString()
  return escapePart(JSON.stringify(value) ?? "\\?")
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
