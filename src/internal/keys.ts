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
