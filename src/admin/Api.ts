/**
 * The JSON API of the admin, as Schemas: what each route takes (query parameters and bodies are decoded with
 * them, and a mismatch is a `400` with the list of issues) and what it answers. `docs/admin.md` documents the
 * routes; the page routes use the same Schemas for their forms and query strings.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const noControlCharacters = Schema.isPattern(/^[^\u0000-\u001f\u007f]*$/, {
  message: "Expected no control characters"
})

/**
 * What an invalidation targets. `node` invalidates every entry of a node (its name is a tag); it is recorded in
 * the history as a `tag` invalidation.
 *
 * @category models
 * @since 0.1.0
 */
export const Target = Schema.Literals(["key", "node", "group", "tag", "pattern"])

/**
 * @category models
 * @since 0.1.0
 */
export type Target = typeof Target.Type

/**
 * What the history records (`node` invalidations are tag invalidations).
 *
 * @category models
 * @since 0.1.0
 */
export const HistoryTarget = Schema.Literals(["key", "group", "tag", "pattern"])

/**
 * @category models
 * @since 0.1.0
 */
export type HistoryTarget = typeof HistoryTarget.Type

/**
 * `hard` removes values, `soft` keeps them as stale values.
 *
 * @category models
 * @since 0.1.0
 */
export const Mode = Schema.Literals(["hard", "soft"])

/**
 * The longest key, group, tag or pattern the admin accepts.
 *
 * @category models
 * @since 0.1.0
 */
export const maxValueLength = 4096

/**
 * A key, group, tag, node name or pattern: non-empty, at most {@link maxValueLength} characters.
 *
 * @category models
 * @since 0.1.0
 */
export const TargetValue = Schema.String.check(Schema.isMinLength(1), Schema.isMaxLength(maxValueLength))

/**
 * A glob pattern of keys (Redis syntax), relative to the store prefix: no control characters, and it may not
 * start with `~` (where group and tag sets live).
 *
 * @category models
 * @since 0.1.0
 */
export const Pattern = Schema.String.check(
  Schema.isMinLength(1),
  Schema.isMaxLength(512),
  noControlCharacters,
  Schema.makeFilter((pattern: string) =>
    pattern.startsWith("~") ? "A pattern cannot start with ~ (reserved for group and tag sets)" : true
  )
)

/**
 * `POST /api/invalidate`.
 *
 * @category requests
 * @since 0.1.0
 */
export const InvalidateRequest = Schema.Struct({
  target: Target,
  value: TargetValue,
  mode: Schema.optional(Mode)
})

/**
 * @category requests
 * @since 0.1.0
 */
export type InvalidateRequest = typeof InvalidateRequest.Type

/**
 * The answer of `POST /api/invalidate`: `count` is how many keys held a value.
 *
 * @category responses
 * @since 0.1.0
 */
export const InvalidateResponse = Schema.Struct({
  target: Target,
  value: Schema.String,
  mode: Mode,
  count: Schema.Number
})

/**
 * @category responses
 * @since 0.1.0
 */
export type InvalidateResponse = typeof InvalidateResponse.Type

const IntFromString = (minimum: number, maximum: number) =>
  Schema.NumberFromString.check(Schema.isInt(), Schema.isBetween({ minimum, maximum }))

const maxRedisCursor = 18446744073709551615n

/**
 * A SCAN cursor as a store hands it out, in one of three shapes: a Redis cursor (a whole number from `0` to
 * 2^64 - 1, without leading zeros), a Redis Cluster cursor (`<master index>:<Redis cursor>`), or a cursor of the
 * memory store (`k` then base64url). Anything else (negative, signed, fractional, too large, another alphabet) is
 * refused with a `400` before it reaches the store; a cursor of the right shape that the store did not hand out
 * (a Cluster master index that does not exist, a memory cursor given to Redis) is refused by the store, also as a
 * `400`.
 *
 * @category models
 * @since 0.1.0
 */
export const Cursor = Schema.String.check(
  Schema.isMaxLength(8192),
  Schema.makeFilter((cursor: string) => {
    if (/^k[A-Za-z0-9_-]+$/.test(cursor)) return true
    const match = /^(?:(?:0|[1-9][0-9]{0,5}):)?(0|[1-9][0-9]{0,19})$/.exec(cursor)
    return match !== null && BigInt(match[1]!) <= maxRedisCursor
      ? true
      : "Expected a cursor returned by a previous page"
  })
)

/**
 * `GET /api/keys` query parameters.
 *
 * @category requests
 * @since 0.1.0
 */
export const KeysQuery = Schema.Struct({
  pattern: Schema.optional(Pattern),
  cursor: Schema.optional(Cursor),
  /** Keys wanted (1 to 200, default 50); a page may hold a few more or fewer. */
  count: Schema.optional(IntFromString(1, 200)),
  /** Only keys whose value was written by this node. */
  node: Schema.optional(TargetValue)
})

/**
 * An entry key (prefix excluded): never starting with `~`, where group and tag sets live.
 *
 * @category models
 * @since 0.1.0
 */
export const EntryKey = TargetValue.check(
  Schema.makeFilter((key: string) =>
    key.startsWith("~") ? "A key cannot start with ~ (reserved for group and tag sets)" : true
  )
)

/**
 * `GET /api/key` query parameters.
 *
 * @category requests
 * @since 0.1.0
 */
export const KeyQuery = Schema.Struct({ key: EntryKey })

/**
 * `GET /api/node` query parameters.
 *
 * @category requests
 * @since 0.1.0
 */
export const NodeQuery = Schema.Struct({ name: TargetValue })

/**
 * `GET /api/history` query parameters.
 *
 * @category requests
 * @since 0.1.0
 */
export const HistoryQuery = Schema.Struct({
  /** Rows wanted (1 to 500, default 50). */
  limit: Schema.optional(IntFromString(1, 500)),
  /** Only rows older than this id (the `next` of the previous page). */
  before: Schema.optional(IntFromString(1, Number.MAX_SAFE_INTEGER)),
  target: Schema.optional(HistoryTarget)
})

/**
 * The state of an entry: `fresh`, `stale` (past its freshness or softly invalidated) or `loading` (no value yet,
 * a caller holds the lease).
 *
 * @category models
 * @since 0.1.0
 */
export const EntryState = Schema.Literals(["fresh", "stale", "invalidated", "loading"])

/**
 * One key of a listing.
 *
 * @category responses
 * @since 0.1.0
 */
export const KeyRow = Schema.Struct({
  key: Schema.String,
  /** The node that wrote the value, read from its stamp. */
  node: Schema.NullOr(Schema.String),
  state: EntryState,
  /** Remaining life; `null`: no expiry. */
  ttlMillis: Schema.NullOr(Schema.Number),
  /** Length of the stored value in characters. */
  size: Schema.Number
})

/**
 * @category responses
 * @since 0.1.0
 */
export type KeyRow = typeof KeyRow.Type

/**
 * The answer of `GET /api/keys`.
 *
 * @category responses
 * @since 0.1.0
 */
export const KeysResponse = Schema.Struct({
  keys: Schema.Array(KeyRow),
  /** Pass it as `cursor` for the next page; `"0"` when the scan is complete. */
  cursor: Schema.String,
  complete: Schema.Boolean
})

/**
 * @category responses
 * @since 0.1.0
 */
export type KeysResponse = typeof KeysResponse.Type

/**
 * How the value of a key was read:
 * - `decoded`: its node is defined here and the value decodes with the node's Schema;
 * - `mismatch`: written under another stamp (older Schema or version) than the node's;
 * - `corrupt`: the stamp matches but the JSON does not decode;
 * - `raw`: no node of that name is defined in this process;
 * - `empty`: no value (a load is under way).
 *
 * @category models
 * @since 0.1.0
 */
export const ValueStatus = Schema.Literals(["decoded", "mismatch", "corrupt", "raw", "empty"])

/**
 * The answer of `GET /api/key`.
 *
 * @category responses
 * @since 0.1.0
 */
export const KeyResponse = Schema.Struct({
  key: Schema.String,
  node: Schema.NullOr(Schema.String),
  stamp: Schema.NullOr(Schema.String),
  state: EntryState,
  status: ValueStatus,
  /** Why the value did not decode (`mismatch`, `corrupt`). */
  message: Schema.NullOr(Schema.String),
  /** The value as JSON (the node's encoded form), when it parses. */
  value: Schema.optional(Schema.Unknown),
  /** The stored text after the stamp line, cut at 64 KiB. */
  raw: Schema.NullOr(Schema.String),
  truncated: Schema.Boolean,
  ttlMillis: Schema.NullOr(Schema.Number),
  /** ISO time until which the value is fresh; `null`: for ever or invalidated (see `state`). */
  freshUntil: Schema.NullOr(Schema.String),
  leased: Schema.Boolean,
  groups: Schema.Array(Schema.String),
  tags: Schema.Array(Schema.String)
})

/**
 * @category responses
 * @since 0.1.0
 */
export type KeyResponse = typeof KeyResponse.Type

/**
 * Store health.
 *
 * @category responses
 * @since 0.1.0
 */
export const StoreInfo = Schema.Struct({
  kind: Schema.String,
  prefix: Schema.String,
  healthy: Schema.Boolean,
  latencyMillis: Schema.NullOr(Schema.Number),
  error: Schema.NullOr(Schema.String)
})

/**
 * @category responses
 * @since 0.1.0
 */
export type StoreInfo = typeof StoreInfo.Type

/**
 * One node with its counters (of the process serving the admin) and its approximate key count.
 *
 * @category responses
 * @since 0.1.0
 */
export const NodeStats = Schema.Struct({
  name: Schema.String,
  tags: Schema.Array(Schema.String),
  version: Schema.String,
  stamp: Schema.String,
  /** Time to live in millis; `null`: none; absent: the configured default. */
  ttlMillis: Schema.optional(Schema.NullOr(Schema.Number)),
  /** Keys listed in the node's tag set (entries already gone may count until pruned). */
  keys: Schema.NullOr(Schema.Number),
  hits: Schema.Number,
  misses: Schema.Number,
  staleServed: Schema.Number,
  loads: Schema.Number,
  herdWaits: Schema.Number,
  storeErrors: Schema.Number,
  hitRatio: Schema.Number,
  meanLoadMillis: Schema.Number
})

/**
 * @category responses
 * @since 0.1.0
 */
export type NodeStats = typeof NodeStats.Type

/**
 * The answer of `GET /api/stats`.
 *
 * @category responses
 * @since 0.1.0
 */
export const StatsResponse = Schema.Struct({
  store: StoreInfo,
  nodes: Schema.Array(NodeStats)
})

/**
 * @category responses
 * @since 0.1.0
 */
export type StatsResponse = typeof StatsResponse.Type

/**
 * One row of the invalidation history.
 *
 * @category responses
 * @since 0.1.0
 */
export const HistoryEntry = Schema.Struct({
  id: Schema.Number,
  /** ISO time. */
  createdAt: Schema.String,
  actor: Schema.String,
  target: HistoryTarget,
  value: Schema.String,
  mode: Mode,
  count: Schema.Number
})

/**
 * The answer of `GET /api/history`.
 *
 * @category responses
 * @since 0.1.0
 */
export const HistoryResponse = Schema.Struct({
  entries: Schema.Array(HistoryEntry),
  /** Pass it as `before` for older rows; `null` on the last page. */
  next: Schema.NullOr(Schema.Number)
})

/**
 * @category responses
 * @since 0.1.0
 */
export type HistoryResponse = typeof HistoryResponse.Type

/**
 * The answer of `GET /api/session`.
 *
 * @category responses
 * @since 0.1.0
 */
export const SessionResponse = Schema.Struct({
  user: Schema.String,
  via: Schema.Literals(["session", "bearer", "basic"]),
  csrfToken: Schema.String
})

/**
 * Every error answer: `error` is the kind (`BadRequest`, `Unauthorized`, `Forbidden`, `NotFound`,
 * `UnsupportedMediaType`, `PayloadTooLarge`, `StoreUnavailable`, `HistoryUnavailable`), `issues` lists what
 * failed validation.
 *
 * @category responses
 * @since 0.1.0
 */
export const ErrorResponse = Schema.Struct({
  error: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })))
})

/**
 * @category responses
 * @since 0.1.0
 */
export type ErrorResponse = typeof ErrorResponse.Type
