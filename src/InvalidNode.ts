/**
 * A dependency group (cacheme's `InvalidNode`): a name, Schema fields and a key function. Nodes list the groups
 * each entry depends on in `invalidatedBy`; invalidating a group instance invalidates every entry registered
 * under it, whatever node it belongs to. Membership is registered when a loader takes its lease, before the
 * value is loaded, so an invalidation that races the load still reaches it.
 *
 * **Example**
 *
 * ```ts
 * import { Effect, Schema } from "effect"
 * import { InvalidNode } from "effect-cacheme"
 *
 * const UserGroup = InvalidNode.make("user", { fields: { id: Schema.Number }, key: ({ id }) => `user:${id}` })
 *
 * // after user 1 changed:
 * const program = InvalidNode.invalidate(UserGroup.make({ id: 1 })) // Effect<number, CacheStoreError, CacheStore>
 * ```
 *
 * @since 0.1.0
 */
import { type Effect, Exit, Schema } from "effect"
import type { CacheStore, CacheStoreError } from "./CacheStore.ts"
import { checkKey, getOrThrow, InvalidFields, makeValidator, runCallback } from "./internal/fields.ts"
import * as Invalidation from "./Invalidation.ts"
import { defaultKey } from "./internal/keys.ts"

const TypeId = "~effect-cacheme/InvalidNode" as const

/**
 * A group definition.
 *
 * @category models
 * @since 0.1.0
 */
export interface InvalidNode<F extends Schema.Struct.Fields = any> {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly fields: Schema.Struct<F>
  readonly key: (fields: Schema.Struct.Type<F>) => string
  /** Tags every entry of every group of this definition carries (a table-wide handle for `TableInvalidNode`). */
  readonly tags: ReadonlyArray<string>
  /** One group; throws {@link InvalidFields} when the fields do not match their Schema. */
  make(fields: Schema.Struct.Type<F>): Instance<F>
  /** Like {@link make} with the typed error in an Exit. */
  makeExit(fields: Schema.Struct.Type<F>): Exit.Exit<Instance<F>, InvalidFields>
  /** One group from untrusted (encoded) input. */
  decode(input: unknown): Effect.Effect<Instance<F>, InvalidFields>
}

/**
 * One group: its fields and its key.
 *
 * @category models
 * @since 0.1.0
 */
export interface Instance<F extends Schema.Struct.Fields = any> {
  readonly group: InvalidNode<F>
  readonly fields: Schema.Struct.Type<F>
  readonly key: string
}

/**
 * Defines a group. Without `key`, the key is the name and the field values joined by `:`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <const F extends Schema.Struct.Fields>(
  name: string,
  options: {
    readonly fields: F
    readonly key?: ((fields: Schema.Struct.Type<F>) => string) | undefined
    readonly tags?: ReadonlyArray<string> | undefined
  }
): InvalidNode<F> => {
  const fields = Schema.Struct(options.fields)
  const validator = makeValidator(name, fields as any)
  const key =
    options.key ?? (defaultKey(name, Object.keys(options.fields)) as (values: Schema.Struct.Type<F>) => string)
  const fromExit = (exit: Exit.Exit<Schema.Struct.Type<F>, InvalidFields>): Exit.Exit<Instance<F>, InvalidFields> =>
    Exit.isFailure(exit)
      ? (exit as Exit.Exit<never, InvalidFields>)
      : Exit.map(
          runCallback(name, "key function", () => key(exit.value), checkKey),
          (k) => ({
            group,
            fields: exit.value,
            key: k
          })
        )
  const group: InvalidNode<F> = {
    [TypeId]: TypeId,
    name,
    fields,
    key,
    tags: options.tags ?? [],
    make: (values) => getOrThrow(fromExit(validator.type(values))),
    makeExit: (values) => fromExit(validator.type(values)),
    decode: (input) => fromExit(validator.decode(input))
  }
  return group
}

/**
 * Invalidates every entry registered under the group; returns how many held a value.
 *
 * @category invalidation
 * @since 0.1.0
 */
export const invalidate = (
  instance: Instance,
  options?: Invalidation.Options
): Effect.Effect<number, CacheStoreError, CacheStore> => Invalidation.group(instance.key, options)

export {
  /**
   * Fields that do not match their Schema.
   *
   * @category errors
   * @since 0.1.0
   */
  InvalidFields
}
