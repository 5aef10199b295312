/**
 * Invalidating what the admin names (a key, a node, a group, a tag or a pattern): the checks a name must pass and
 * the invalidation itself, shared by the HTTP routes and the CLI, which only word their failures differently.
 *
 * @internal
 */
import type { Effect } from "effect"
import type { CacheStore, CacheStoreError } from "../../CacheStore.ts"
import * as Invalidation from "../../Invalidation.ts"
import * as Node from "../../Node.ts"
import type { Target } from "../Api.ts"
import { patternProblem } from "./inspect.ts"

/** Why a target cannot be invalidated as named: a name it refuses, or a node no module defined. */
export interface TargetProblem {
  readonly _tag: "Invalid" | "UnknownNode"
  readonly message: string
}

/** The problem with invalidating `value` as `target` under the store's `prefix`, or undefined. */
export const targetProblem = (target: Target, value: string, prefix: string): TargetProblem | undefined => {
  switch (target) {
    case "key":
      return value.startsWith("~") ? { _tag: "Invalid", message: "a key cannot start with ~" } : undefined
    case "node":
      return Node.get(value) === undefined
        ? { _tag: "UnknownNode", message: `no node named ${value} is defined` }
        : undefined
    case "pattern": {
      const problem = patternProblem(value, prefix)
      return problem === undefined ? undefined : { _tag: "Invalid", message: problem }
    }
    case "group":
    case "tag":
      return undefined
  }
}

/** Invalidates a target that passed {@link targetProblem}: a node is its tag. */
export const invalidateTarget = (
  target: Target,
  value: string,
  options: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => {
  switch (target) {
    case "key":
      return Invalidation.key(value, options)
    case "node":
    case "tag":
      return Invalidation.tag(value, options)
    case "group":
      return Invalidation.group(value, options)
    case "pattern":
      return Invalidation.pattern(value, options)
  }
}
