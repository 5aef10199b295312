/**
 * A cache node: a typed family of cache entries. Its `fields` (Schema struct fields) name one entry, its `value`
 * Schema encodes what is cached, and its options say how long entries live, whether stale values are served,
 * which tags and dependency groups (`InvalidNode`s) each entry belongs to. It is the successor of cacheme's
 * `Node` class with its `Meta`.
 *
 * `UserNode.make({ id: 1 })` is one cache key (an {@link Instance}); its fields are checked against their
 * Schema and a mismatch is an {@link InvalidFields} error naming the field.
 *
 * **Example**
 *
 * ```ts
 * import { Schema } from "effect"
 * import { InvalidNode, Node } from "effect-cacheme"
 *
 * class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}
 *
 * const UserGroup = InvalidNode.make("user", { fields: { id: Schema.Number }, key: ({ id }) => `user:${id}` })
 *
 * const UserNode = Node.make("user", {
 *   fields: { id: Schema.Number },
 *   value: User,
 *   key: ({ id }) => `user:${id}`,
 *   ttl: "10 minutes",
 *   invalidatedBy: ({ id }) => [UserGroup.make({ id })]
 * })
 *
 * const key = UserNode.make({ id: 1 }).key // "user:1"
 * ```
 *
 * @since 0.1.0
 */
import { createHash } from "node:crypto"
import { Duration, type Effect, Exit, Schema, SchemaRepresentation } from "effect"
import type * as InvalidNode from "./InvalidNode.ts"
import {
  callbackRejected,
  callbackThrew,
  checkKey,
  type FieldsValidator,
  getOrThrow,
  InvalidFields,
  makeValidator,
  runCallback
} from "./internal/fields.ts"
import { defaultKey, epochSet, familyOfName, reservedKeyReason, tagSet } from "./internal/keys.ts"

export {
  /**
   * Fields that do not match their Schema, or a key that cannot be used.
   *
   * @category errors
   * @since 0.1.0
   */
  InvalidFields
}

/** A value Schema a node can cache: encodable to JSON without services. */
export type ValueSchema = Schema.Codec<any, any, never, never>

/**
 * What `Node.make` takes.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options<F extends Schema.Struct.Fields, V extends ValueSchema> {
  /** The fields that name one entry, as Schema struct fields. */
  readonly fields: F
  /** The Schema of the cached value; it encodes entries and checks them when read back. */
  readonly value: V
  /** The entry key (prefix excluded). Default: the node name and the field values joined by `:`. */
  readonly key?: ((fields: Schema.Struct.Type<F>) => string) | undefined
  /**
   * Time to live; `null` keeps entries until invalidated; absent uses the configured default. A function of the
   * loaded value (and the fields) decides it per entry; it returns a duration, `null` (no expiry) or `undefined`
   * (the configured default).
   */
  readonly ttl?: Duration.Input | null | TtlFunction<Schema.Struct.Type<F>, V["Type"]> | undefined
  /**
   * Serve the previous value while one caller refreshes it. `true` keeps a stale value for one more `ttl`
   * (for ever without ttl), a duration sets that window, `false` never serves stale. Absent: the configured default.
   */
  readonly stale?: boolean | Duration.Input | undefined
  /** Bump it to drop every entry written before (the value Schema's identity is checked as well). */
  readonly version?: string | number | undefined
  /** Tags to invalidate entries by; the node name is always one. */
  readonly tags?: ReadonlyArray<string> | undefined
  /** The dependency groups of an entry, known from its fields before the value is loaded. */
  readonly invalidatedBy?: ((fields: Schema.Struct.Type<F>) => ReadonlyArray<InvalidNode.Instance>) | undefined
  /**
   * Dependency groups named by the loaded value (django-cacheme's `invalid_keys` reading `cacheme_result`): the
   * group definitions (`families`) whose groups the value may name, and a function from the value (and the
   * fields) to those groups. An invalidation of one of them, or a committing write's hold on it, that lands
   * while the value loads keeps the value from ever being served, as for `invalidatedBy`. A group whose key is
   * not of a declared family (see {@link ValueGroups}) keeps the value from being stored, with an error logged.
   */
  readonly invalidatedByValue?: ValueGroups<Schema.Struct.Type<F>, V["Type"]> | undefined
  /** Store a loaded value only when this returns true (e.g. not an empty list); it is returned either way. */
  readonly cacheWhen?: ((value: V["Type"], fields: Schema.Struct.Type<F>) => boolean) | undefined
  /**
   * Runs on every read answered from the cache (fresh, stale or from another caller's load in this process).
   * It cannot fail the read: a failure or defect is logged and dropped.
   */
  readonly onHit?: ((event: Event<Schema.Struct.Type<F>, V["Type"]>) => Effect.Effect<void, unknown>) | undefined
  /** Runs after this caller loaded the value (a miss). It cannot fail the read either. */
  readonly onMiss?: ((event: Event<Schema.Struct.Type<F>, V["Type"]>) => Effect.Effect<void, unknown>) | undefined
  /**
   * Fail-safe: keep each value `window` beyond its life, and when a load fails (or runs longer than
   * `softTimeout`, if set) serve that last value instead, counted and logged; a timed-out load goes on in the
   * background and stores its value when it ends. A hard timeout is the loader's own (`Effect.timeout`): its
   * failure is answered from the fail-safe value too.
   */
  readonly failSafe?: { readonly window: Duration.Input; readonly softTimeout?: Duration.Input | undefined } | undefined
  /**
   * Whether hits may be served from the store's in-process tier (`CacheStore.layerTiered`): `false` always reads
   * Redis (values that must be seen the moment another process changes them), `true` uses the tier even where
   * the store's `local.only` would not. Absent: the store's default. Stores without a tier ignore it.
   */
  readonly local?: boolean | undefined
  /**
   * Whether a value decoded once may be handed to every later hit of the same stored copy (the in-process store
   * and the tiered store's local copies keep it beside the copy): hits then skip `JSON.parse` and the Schema
   * decode. Absent: when the value Schema's decoded type is readonly all the way down (no `Date`, no `mutable`
   * array or field, no `Unknown`); a caller that writes into such a value through a cast changes it for every
   * later hit. `true` shares a mutable type too (the callers promise not to change it); `false` never shares
   * (a Schema that builds its objects anew on each decode is then decoded from the kept parsed JSON). Stores
   * without values in process decode every hit.
   */
  readonly shareValues?: boolean | undefined
  /** Bypass the cache for all entries (`true`) or for the fields the predicate accepts. */
  readonly skip?: boolean | ((fields: Schema.Struct.Type<F>) => boolean) | undefined
  /** How long a loader's lease lasts; absent uses the configured `leaseTtl`. */
  readonly leaseTtl?: Duration.Input | undefined
  /**
   * Replace a node of the same name made before (tests, hot module reload). Without it, a second node with a
   * name already made throws {@link DuplicateNode}: two nodes of one name would share keys and tags.
   */
  readonly replace?: boolean | undefined
}

/**
 * Groups named by a loaded value. Each group belongs to the family its key starts with (the key's part before
 * its first `:`; a default key starts with its `InvalidNode`'s name): `families` must list the definitions of
 * every family the value may name, so that a read can tell, in the round trip it makes anyway, whether any group of
 * those families changed since the value was stored (see `docs/concepts.md`, "Groups named by the value"). The
 * tags of those definitions (a `TableInvalidNode`'s table tag) become the entry's tags.
 *
 * @category models
 * @since 0.4.0
 */
export interface ValueGroups<Fields, Value> {
  /** The `InvalidNode`s (or `effect-cacheme/kysely` `TableInvalidNode`s) whose groups `groups` may name. */
  readonly families: ReadonlyArray<InvalidNode.InvalidNode | { readonly group: InvalidNode.InvalidNode }>
  /** The groups of one loaded value, instances of the `families`. */
  readonly groups: (value: Value, fields: Fields) => ReadonlyArray<InvalidNode.Instance>
}

const TypeId = "~effect-cacheme/Node" as const

/**
 * A cache node definition.
 *
 * @category models
 * @since 0.1.0
 */
export interface Node<F extends Schema.Struct.Fields = any, V extends ValueSchema = ValueSchema> {
  readonly [TypeId]: typeof TypeId
  readonly name: string
  readonly fields: Schema.Struct<F>
  readonly value: V
  /** `undefined`: the configured default (or decided per value by {@link ttlOf}); `null`: no expiry. */
  readonly ttl: Duration.Duration | null | undefined
  /** The time to live as a function of the value, when the node has one. */
  readonly ttlOf: TtlFunction<any, V["Type"]> | undefined
  /** The fail-safe window and soft timeout, when the node has them. */
  readonly failSafe:
    | { readonly window: Duration.Duration; readonly softTimeout: Duration.Duration | undefined }
    | undefined
  /** `undefined`: the configured default. */
  readonly stale: boolean | Duration.Duration | undefined
  readonly version: string
  /** Every tag of the node, its name first. */
  readonly tags: ReadonlyArray<string>
  /**
   * The sets every entry carries for the groups its value may name (`invalidatedByValue`): the tags of their
   * families and the families' epochs (`e:family`). Empty without.
   */
  readonly valueSets: ReadonlyArray<string>
  readonly leaseTtl: Duration.Duration | undefined
  /** Identifies the value Schema and version; an entry written under another stamp is a miss. */
  readonly stamp: string
  /** The JSON codec of the value Schema. */
  readonly codec: Schema.Codec<V["Type"], unknown>
  /** The options the node was made with (typed loosely: its callbacks are called by the cache only). */
  readonly options: Options<any, any>
  /** One entry of this node; throws {@link InvalidFields} when the fields do not match their Schema. */
  make(fields: Schema.Struct.Type<F>): Instance<F, V>
  /** One entry from untrusted (encoded) input, with a typed error instead of a throw. */
  decode(input: unknown): Effect.Effect<Instance<F, V>, InvalidFields>
  /** Like {@link make} but returns the typed error in an Exit. */
  makeExit(fields: Schema.Struct.Type<F>): Exit.Exit<Instance<F, V>, InvalidFields>
}

/**
 * One entry of a node: its fields, its key and its groups.
 *
 * @category models
 * @since 0.1.0
 */
export interface Instance<F extends Schema.Struct.Fields = any, V extends ValueSchema = ValueSchema> {
  readonly node: Node<F, V>
  readonly fields: Schema.Struct.Type<F>
  readonly key: string
  readonly groups: ReadonlyArray<InvalidNode.Instance>
  /** Whether this entry bypasses the cache (`skip`). */
  readonly skip: boolean
}

/**
 * A time to live decided from the loaded value: a duration, `null` (no expiry) or `undefined` (the default).
 *
 * @category models
 * @since 0.2.0
 */
export type TtlFunction<Fields, Value> = (value: Value, fields: Fields) => Duration.Input | null | undefined

/**
 * What `onHit` and `onMiss` receive.
 *
 * @category models
 * @since 0.2.0
 */
export interface Event<Fields, Value> {
  readonly node: string
  readonly key: string
  readonly fields: Fields
  readonly value: Value
}

/** The cached value type of a node or instance. */
export type Value<N> = N extends Node<any, infer V> ? V["Type"] : N extends Instance<any, infer V> ? V["Type"] : never

/** The fields type of a node. */
export type Fields<N> = N extends Node<infer F, any> ? Schema.Struct.Type<F> : never

const registry = new Map<string, Node>()

/**
 * A node was made with a name another node already has (their entries would share keys and tags).
 *
 * @category errors
 * @since 0.2.0
 */
export class DuplicateNode extends Schema.TaggedError<DuplicateNode>()("DuplicateNode", {
  name: Schema.String,
  message: Schema.String
}) {}

/**
 * Every node made so far, by name (the latest definition wins); the admin page uses it to decode values.
 *
 * @category getters
 * @since 0.1.0
 */
export const all = (): ReadonlyArray<Node> => [...registry.values()]

/**
 * The node of that name, if one was made.
 *
 * @category getters
 * @since 0.1.0
 */
export const get = (name: string): Node | undefined => registry.get(name)

/** A short, stable digest of the value Schema's representation and the node version. */
const stampOf = (name: string, value: Schema.Top, version: string): string => {
  let representation: string
  try {
    representation = JSON.stringify(SchemaRepresentation.toJson(SchemaRepresentation.toRepresentation(value.ast)))
  } catch {
    // Schemas without a representation (opaque declarations) fall back to their printed form.
    representation = String(value.ast)
  }
  const digest = createHash("sha256").update(representation).digest("base64url").slice(0, 12)
  return `${name}@${version}#${digest}`
}

const toDuration = (name: string, option: string, input: Duration.Input): Duration.Duration => {
  const duration = Duration.fromInputUnsafe(input)
  if (!Duration.isFinite(duration) || Duration.toMillis(duration) <= 0) {
    throw new Error(`Node ${name}: ${option} must be a finite duration above zero`)
  }
  // Records keep times in 13-digit millis, and leases are timers: ten years is plenty for either.
  if (Duration.toMillis(duration) > 10 * 365 * 24 * 3600 * 1000) {
    throw new Error(`Node ${name}: ${option} must be at most ten years`)
  }
  return duration
}

/**
 * Defines a cache node.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = <const F extends Schema.Struct.Fields, V extends ValueSchema>(
  name: string,
  options: Options<F, V>
): Node<F, V> => {
  if (!/^[^\s@#]+$/.test(name)) throw new Error(`Node name must be non-empty, without spaces, "@" or "#": ${name}`)
  if (registry.has(name) && options.replace !== true) {
    throw new DuplicateNode({
      name,
      message: `a node named ${JSON.stringify(name)} exists already: its entries would share keys and tags (pass replace: true to replace it)`
    })
  }
  const fields = Schema.Struct(options.fields)
  const validator: FieldsValidator<Schema.Struct.Type<F>> = makeValidator(name, fields as any)
  const keyOf =
    (options.key as ((fields: Record<string, unknown>) => string) | undefined) ??
    defaultKey(name, Object.keys(options.fields))
  const version = options.version === undefined ? "0" : String(options.version)
  const tags = [name, ...(options.tags ?? []).filter((tag) => tag !== name)]
  const skip = options.skip ?? false
  const ttl =
    options.ttl === undefined || typeof options.ttl === "function"
      ? undefined
      : options.ttl === null
        ? null
        : toDuration(name, "ttl", options.ttl)
  // The stale window of `stale: true` is the entry's own ttl, which a ttl function decides per value where no
  // read can see it; a fail-safe keeps entries longer than that window, so a read could not bound it.
  if (typeof options.ttl === "function" && options.stale === true && options.failSafe !== undefined) {
    throw new Error(`Node ${name}: with a ttl function and a fail-safe, give stale a duration instead of true`)
  }
  const failSafe =
    options.failSafe === undefined
      ? undefined
      : {
          window: toDuration(name, "failSafe.window", options.failSafe.window),
          softTimeout:
            options.failSafe.softTimeout === undefined
              ? undefined
              : toDuration(name, "failSafe.softTimeout", options.failSafe.softTimeout)
        }
  const stale =
    options.stale === undefined || typeof options.stale === "boolean"
      ? options.stale
      : toDuration(name, "stale", options.stale)
  const valueSets = valueSetsOf(name, options.invalidatedByValue)

  const invalidatedBy = options.invalidatedBy
  const noGroups: ReadonlyArray<InvalidNode.Instance> = []
  // Every read makes an instance: the common case (a key function that returns a good key, no groups, a fixed
  // `skip`) allocates the instance and nothing else.
  const build = (values: Schema.Struct.Type<F>): Instance<F, V> | Exit.Exit<never, InvalidFields> => {
    let key: unknown
    try {
      key = keyOf(values as Record<string, unknown>)
    } catch (error) {
      return callbackThrew(name, "key function", error)
    }
    const bad = checkKey(key)
    if (bad !== undefined) return callbackRejected(name, "key function", bad)
    // `checkKey` found it well-formed.
    const reason = reservedKeyReason(key as string)
    if (reason !== undefined) {
      return Exit.fail(
        new InvalidFields({
          node: name,
          field: "",
          message: `${name}: ${reason}`,
          issues: [{ path: "", message: reason }]
        })
      )
    }
    let groups = noGroups
    if (invalidatedBy !== undefined) {
      const made = runCallback(
        name,
        "invalidatedBy",
        () => invalidatedBy(values) ?? [],
        (groups) => (Array.isArray(groups) ? undefined : "did not return an array of groups")
      )
      if (Exit.isFailure(made)) return made as Exit.Exit<never, InvalidFields>
      groups = made.value
    }
    let skipped: boolean
    if (typeof skip === "boolean") skipped = skip
    else {
      const made = runCallback(name, "skip", () => skip(values))
      if (Exit.isFailure(made)) return made as Exit.Exit<never, InvalidFields>
      skipped = made.value === true
    }
    return { node, fields: values, key: key as string, groups, skip: skipped }
  }
  const instantiate = (values: Schema.Struct.Type<F>): Exit.Exit<Instance<F, V>, InvalidFields> => {
    const built = build(values)
    return Exit.isExit(built) ? built : Exit.succeed(built)
  }
  const fromExit = (exit: Exit.Exit<Schema.Struct.Type<F>, InvalidFields>) =>
    Exit.isSuccess(exit) ? instantiate(exit.value) : (exit as Exit.Exit<never, InvalidFields>)

  const node: Node<F, V> = {
    [TypeId]: TypeId,
    name,
    fields,
    value: options.value,
    ttl,
    ttlOf: typeof options.ttl === "function" ? options.ttl : undefined,
    failSafe,
    stale,
    version,
    tags,
    valueSets,
    leaseTtl: options.leaseTtl === undefined ? undefined : toDuration(name, "leaseTtl", options.leaseTtl),
    stamp: stampOf(name, options.value, version),
    codec: Schema.toCodecJson(options.value) as unknown as Schema.Codec<V["Type"], unknown>,
    options,
    make: (values) => {
      // Valid fields (the common case) go straight to the instance.
      if (!validator.is(values)) return getOrThrow(fromExit(validator.type(values)))
      const built = build(values)
      return Exit.isExit(built) ? getOrThrow(built) : built
    },
    makeExit: (values) => (validator.is(values) ? instantiate(values) : fromExit(validator.type(values))),
    decode: (input) => fromExit(validator.decode(input))
  }
  registry.set(name, node)
  return node
}

/** The family tags and epochs of `invalidatedByValue`'s families; checks its shape at `Node.make`. */
const valueSetsOf = (name: string, valueGroups: ValueGroups<any, any> | undefined): ReadonlyArray<string> => {
  if (valueGroups === undefined) return []
  const families = Array.isArray(valueGroups.families) ? valueGroups.families : []
  if (families.length === 0 || typeof valueGroups.groups !== "function") {
    throw new Error(`Node ${name}: invalidatedByValue needs families (InvalidNodes) and a groups function`)
  }
  const tags: Array<string> = []
  const epochs: Array<string> = []
  for (const family of families) {
    const group = "group" in family ? family.group : family
    if (typeof group?.name !== "string")
      throw new Error(`Node ${name}: invalidatedByValue's families must be InvalidNodes`)
    for (const tag of group.tags) tags.push(tagSet(tag))
    epochs.push(epochSet(familyOfName(group.name)))
  }
  return [...new Set([...tags, ...epochs])]
}

/**
 * Whether a value is a node definition.
 *
 * @category guards
 * @since 0.1.0
 */
export const isNode = (u: unknown): u is Node => typeof u === "object" && u !== null && TypeId in u
