/**
 * How a node's values are written in a store: `stamp + "\n" + JSON`, the JSON being the value encoded with the
 * node's Schema codec. The stamp (node name, version and a digest of the value Schema) is compared before the
 * JSON is parsed, so an entry written under another Schema is a miss, never a wrong shape.
 *
 * ## Decoding a value once
 *
 * A store that keeps values in process (the in-process store, the tiered store's local copies) hands a hit the
 * {@link ValueCell} of the copy it read; the first decode of that copy is kept in it, and later hits of the same
 * copy take it from there. What is kept depends on the node ({@link reuseOf}):
 *
 * - `value`: the decoded value itself, handed to every hit of the copy. Only for a Schema whose decoded type is
 *   readonly all the way down (structs, arrays, records and tuples not made `mutable`, primitives, literals, and
 *   the immutable declarations of Effect: `Option`, `Result`, `DateTime`, `Duration`, `ReadonlyMap`, ...), or when
 *   the node says `shareValues: true`. The type system then keeps a caller from changing what the next one gets;
 *   a caller that writes through a cast changes it for every later hit (as with bentocache's `serialize: false`
 *   L1 and Effect's own `Cache`, which hand out the object they hold).
 * - `json`: the parsed JSON, with the Schema decode run on every hit: for a Schema with a mutable part (a `Date`,
 *   a `mutable` array, a class with mutable fields...) whose decode builds every object it returns (structs,
 *   arrays, dates and classes are built anew by each decode). Saves `JSON.parse`, and each caller gets its own
 *   objects.
 *   With `shareValues: false`, a readonly Schema is kept this way too.
 * - `none`: a Schema whose decode may pass a parsed object through as it is (`Unknown`, `Any`, `object`, `Json`,
 *   a declaration not known here): every hit decodes the stored string, as a store without a cell does.
 *
 * A cell is the copy's own: the store gives a new copy (with an empty cell) whenever the value changes; a cell is
 * filled once, by the first node object that decodes the copy, and used only by that node object (the stamp was
 * checked when it was filled). Decoding is assumed to be a pure function of the stored string, as it must be for
 * the cache to be correct at all.
 */
import { Cause, Exit, Schema, SchemaAST } from "effect"
import { SchemaJITCompiler } from "effect/schema"
import type { ValueCell } from "../CacheStore.ts"
import type { Node } from "../Node.ts"

interface Codec {
  readonly encode: (value: unknown) => Exit.Exit<unknown, Schema.SchemaError>
  readonly decode: (json: unknown) => Exit.Exit<unknown, Schema.SchemaError>
  readonly reuse: Reuse
}

/** What a {@link ValueCell} keeps for a node (see the module's documentation). */
export type Reuse = "value" | "json" | "none"

const codecs = new WeakMap<Node, Codec>()

const codecOf = (node: Node): Codec => {
  let codec = codecs.get(node)
  if (codec === undefined) {
    // Hits decode a value each: a compiled decoder is several times faster than the interpreter (where
    // `new Function` is not allowed, Effect falls back to the interpreter by itself).
    SchemaJITCompiler.enable(node.codec.ast)
    codec = {
      encode: Schema.encodeUnknownExit(node.codec),
      decode: Schema.decodeUnknownExit(node.codec),
      reuse: reuseFor(node.value.ast, node.options.shareValues)
    }
    codecs.set(node, codec)
  }
  return codec
}

/** What a cell keeps for `node`'s values. */
export const reuseOf = (node: Node): Reuse => codecOf(node).reuse

export type Decoded<A> =
  | { readonly _tag: "Value"; readonly value: A }
  | { readonly _tag: "Mismatch"; readonly stamp: string }
  | { readonly _tag: "Corrupt"; readonly reason: string }

/** Decodes a stored value (`stamp + "\n" + JSON`). */
export const decode = <A>(node: Node, raw: string): Decoded<A> => decodeIn<A>(node, { value: raw })

/** A value a lookup found (a hit or a stale value), with the cell of its copy when the store keeps one. */
export interface Found {
  /** The stored value; read only when the cell cannot answer (a store may make it again on demand). */
  readonly value: string
  readonly cell?: ValueCell | undefined
}

/**
 * Decodes a value a lookup found: from its cell when `node` filled it, else from the stored string, leaving in
 * the cell what the node's {@link Reuse} says.
 */
export const decodeIn = <A>(node: Node, found: Found): Decoded<A> => {
  const codec = codecOf(node)
  const cell = found.cell
  if (cell !== undefined && cell.decodedBy === node) {
    if (codec.reuse === "value") return { _tag: "Value", value: cell.decoded as A }
    return fromExit(codec.decode(cell.decoded))
  }
  const raw = found.value
  const newline = raw.indexOf("\n")
  const stamp = newline === -1 ? raw : raw.slice(0, newline)
  if (stamp !== node.stamp) return { _tag: "Mismatch", stamp }
  let json: unknown
  try {
    json = JSON.parse(raw.slice(newline + 1))
  } catch (error) {
    return { _tag: "Corrupt", reason: `invalid JSON: ${(error as Error).message}` }
  }
  const decoded = fromExit<A>(codec.decode(json))
  // A cell is filled once, by the first node that decodes the copy: what a store derived from it (a record
  // without its JSON) stays true for the copy's life.
  if (cell !== undefined && cell.decodedBy === undefined && decoded._tag === "Value" && codec.reuse !== "none") {
    cell.decodedBy = node
    // A decoded value that is the parsed JSON itself, shape for shape (plain objects and arrays, the same
    // primitives), is kept as the parsed JSON: V8 builds it tighter than a decode does (a 10-field record took
    // 450 bytes parsed, 625 decoded). Equal values, so a hit gets exactly what a decode gives.
    const kept = codec.reuse === "json" || sameShape(decoded.value, json, 0) ? json : decoded.value
    cell.decoded = kept
    cell.kept?.()
    // This read shares the kept value too.
    if (codec.reuse === "value" && kept !== decoded.value) return { _tag: "Value", value: kept as A }
  }
  return decoded
}

/** Whether `decoded` is `json` again: the same primitives, plain objects with the same keys in order, arrays. */
const sameShape = (decoded: unknown, json: unknown, depth: number): boolean => {
  if (decoded === json) return true
  if (typeof decoded !== "object" || typeof json !== "object" || decoded === null || json === null || depth > 64)
    return false
  if (Array.isArray(decoded)) {
    if (!Array.isArray(json) || decoded.length !== json.length || Object.getPrototypeOf(decoded) !== Array.prototype)
      return false
    for (let i = 0; i < decoded.length; i++) if (!sameShape(decoded[i], json[i], depth + 1)) return false
    return true
  }
  if (Array.isArray(json) || Object.getPrototypeOf(decoded) !== Object.prototype) return false
  const keys = Object.keys(decoded)
  const jsonKeys = Object.keys(json)
  if (keys.length !== jsonKeys.length) return false
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i]!
    if (key !== jsonKeys[i]) return false
    if (!sameShape((decoded as Record<string, unknown>)[key], (json as Record<string, unknown>)[key], depth + 1))
      return false
  }
  // Symbols and non-enumerable properties a decode may add make it another value.
  return (
    Object.getOwnPropertySymbols(decoded).length === 0 && Object.getOwnPropertyNames(decoded).length === keys.length
  )
}

/**
 * The stored value (`stamp + "\n" + JSON`) made again from what a cell of `node` keeps: its decoded value encoded
 * again, or its parsed JSON written again; `undefined` if the value no longer encodes. A store that drops the
 * stored value once a cell holds it first checks that this gives it back exactly.
 */
export const storedOf = (node: Node, kept: unknown): string | undefined => {
  const codec = codecOf(node)
  if (codec.reuse === "json") return `${node.stamp}\n${JSON.stringify(kept)}`
  if (codec.reuse !== "value") return undefined
  const encoded = codec.encode(kept)
  return Exit.isSuccess(encoded) ? `${node.stamp}\n${JSON.stringify(encoded.value)}` : undefined
}

const fromExit = <A>(exit: Exit.Exit<unknown, Schema.SchemaError>): Decoded<A> =>
  Exit.isSuccess(exit)
    ? { _tag: "Value", value: exit.value as A }
    : { _tag: "Corrupt", reason: String(Cause.squash(exit.cause)) }

/** Encodes a value, or says why the value does not match the node's Schema. */
export const encode = (node: Node, value: unknown): Exit.Exit<string, Schema.SchemaError> =>
  Exit.map(codecOf(node).encode(value), (json) => `${node.stamp}\n${JSON.stringify(json)}`)

/** Decodes the JSON part of a stored value regardless of its stamp (for the admin page's raw view). */
export const splitStamp = (raw: string): { readonly stamp: string; readonly json: string } => {
  const newline = raw.indexOf("\n")
  return newline === -1 ? { stamp: "", json: raw } : { stamp: raw.slice(0, newline), json: raw.slice(newline + 1) }
}

// ---------------------------------------------------------------------------------------------------------------
// Which values may be shared
// ---------------------------------------------------------------------------------------------------------------

/** Declarations of Effect whose values are immutable (their type parameters permitting). */
const immutableDeclarations = new Set(
  [
    "BigDecimal",
    "Chunk",
    "DateTimeUtc",
    "DateTimeZoned",
    "Duration",
    "HashMap",
    "HashSet",
    "Json",
    "Option",
    "ReadonlyMap",
    "ReadonlySet",
    "Redacted",
    "Result",
    "TimeZone",
    "TimeZoneNamed",
    "TimeZoneOffset"
  ].map((name) => `effect/schema/${name}`)
)

/**
 * Declarations whose JSON decode builds a new value from what it parsed (never passes a parsed object through):
 * mutable ones, for the `json` reuse. The immutable ones above are listed too, `Json` excepted (it is the parsed
 * JSON itself).
 */
const freshDeclarations = new Set([
  ...[...immutableDeclarations].filter((id) => id !== "effect/schema/Json"),
  ...["Date", "Uint8Array", "URL", "URLSearchParams", "RegExp"].map((name) => `effect/schema/${name}`)
])

interface Verdict {
  /** The decoded type is readonly all the way down. */
  readonly immutable: boolean
  /** Each decode builds every object it returns (no parsed object is passed through). */
  readonly fresh: boolean
}

const both: Verdict = { immutable: true, fresh: true }
const neither: Verdict = { immutable: false, fresh: false }

const and = (verdicts: ReadonlyArray<Verdict>): Verdict => ({
  immutable: verdicts.every((v) => v.immutable),
  fresh: verdicts.every((v) => v.fresh)
})

const declarationId = (ast: SchemaAST.Declaration): string | undefined => {
  const representation = ast.annotations?.representation as { readonly id?: unknown } | undefined
  return typeof representation?.id === "string" ? representation.id : undefined
}

/** Judges the decoded (type) side of a Schema. */
const judgeType = (ast: SchemaAST.AST, seen: Set<SchemaAST.AST>): Verdict => {
  if (seen.has(ast)) return both
  seen.add(ast)
  switch (ast._tag) {
    case "Null":
    case "Undefined":
    case "Void":
    case "Never":
    case "String":
    case "Number":
    case "Boolean":
    case "BigInt":
    case "Symbol":
    case "UniqueSymbol":
    case "Literal":
    case "Enum":
    case "TemplateLiteral":
      return both
    case "Unknown":
    case "Any":
    case "ObjectKeyword":
      return neither
    case "Arrays": {
      const inner = and([...ast.elements, ...ast.rest].map((element) => judgeType(element, seen)))
      return { immutable: inner.immutable && !ast.isMutable, fresh: inner.fresh }
    }
    case "Objects": {
      const types = [
        ...ast.propertySignatures.map((property) => property.type),
        ...ast.indexSignatures.map((index) => index.type)
      ]
      const inner = and(types.map((type) => judgeType(type, seen)))
      return {
        immutable: inner.immutable && !types.some((type) => type.context?.isMutable === true),
        fresh: inner.fresh
      }
    }
    case "Union":
      return and(ast.types.map((type) => judgeType(type, seen)))
    case "Suspend":
      return judgeType(ast.thunk(), seen)
    case "Declaration": {
      const inner = and(ast.typeParameters.map((type) => judgeType(type, seen)))
      // A Schema class: a new instance per decode, its fields readonly unless made mutable.
      if (ast.annotations?.["~constructor"] !== undefined) return inner
      const id = declarationId(ast)
      if (id === undefined) return neither
      return {
        immutable: inner.immutable && immutableDeclarations.has(id),
        fresh: inner.fresh && freshDeclarations.has(id)
      }
    }
    default:
      return neither
  }
}

/** What a cell keeps for values of the Schema `ast`, given a node's `shareValues` option. */
export const reuseFor = (ast: SchemaAST.AST, shareValues: boolean | undefined): Reuse => {
  if (shareValues === true) return "value"
  let verdict: Verdict
  try {
    verdict = judgeType(SchemaAST.toType(ast), new Set())
  } catch {
    verdict = neither
  }
  return verdict.immutable && shareValues !== false ? "value" : verdict.fresh ? "json" : "none"
}
