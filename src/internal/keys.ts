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
