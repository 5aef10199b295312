/**
 * How keys, groups and tags are spelled in a store. Entries live at `prefix + key`; membership sets live at
 * `prefix + "~" + setId`, which is why an entry key may not start with `~`.
 */

/** The membership set of an `InvalidNode` group. */
export const groupSet = (groupKey: string): string => `g:${groupKey}`

/** The membership set of a tag (every node name is a tag). */
export const tagSet = (tag: string): string => `t:${tag}`

/** The character that separates membership sets from entries under the prefix. */
export const setMarker = "~"

/** Checks a computed entry key: returns a reason when it cannot be used. */
export const invalidKeyReason = (key: string): string | undefined =>
  key.length === 0
    ? "a key cannot be empty"
    : key.startsWith(setMarker)
      ? `a key cannot start with "${setMarker}" (reserved for group and tag sets)`
      : undefined

/** How a field value is written in a default key. */
const keyPart = (value: unknown): string =>
  typeof value === "string" || typeof value === "number" || typeof value === "bigint" || typeof value === "boolean"
    ? String(value)
    : value instanceof Date
      ? value.toISOString()
      : JSON.stringify(value)

/** The key of nodes and groups that give none: the name and the field values, in field order, joined by `:`. */
export const defaultKey =
  (name: string, fieldNames: ReadonlyArray<string>) =>
  (fields: Record<string, unknown>): string =>
    [name, ...fieldNames.map((field) => keyPart(fields[field]))].join(":")
