/**
 * How a node's values are written in a store: `stamp + "\n" + JSON`, the JSON being the value encoded with the
 * node's Schema codec. The stamp (node name, version and a digest of the value Schema) is compared before the
 * JSON is parsed, so an entry written under another Schema is a miss, never a wrong shape.
 */
import { Cause, Exit, Schema } from "effect"
import { SchemaJITCompiler } from "effect/schema"
import type { Node } from "../Node.ts"

interface Codec {
  readonly encode: (value: unknown) => Exit.Exit<unknown, Schema.SchemaError>
  readonly decode: (json: unknown) => Exit.Exit<unknown, Schema.SchemaError>
}

const codecs = new WeakMap<Node, Codec>()

const codecOf = (node: Node): Codec => {
  let codec = codecs.get(node)
  if (codec === undefined) {
    // Hits decode a value each: a compiled decoder is several times faster than the interpreter (where
    // `new Function` is not allowed, Effect falls back to the interpreter by itself).
    SchemaJITCompiler.enable(node.codec.ast)
    codec = { encode: Schema.encodeUnknownExit(node.codec), decode: Schema.decodeUnknownExit(node.codec) }
    codecs.set(node, codec)
  }
  return codec
}

export type Decoded<A> =
  | { readonly _tag: "Value"; readonly value: A }
  | { readonly _tag: "Mismatch"; readonly stamp: string }
  | { readonly _tag: "Corrupt"; readonly reason: string }

export const decode = <A>(node: Node, raw: string): Decoded<A> => {
  const newline = raw.indexOf("\n")
  const stamp = newline === -1 ? raw : raw.slice(0, newline)
  if (stamp !== node.stamp) return { _tag: "Mismatch", stamp }
  let json: unknown
  try {
    json = JSON.parse(raw.slice(newline + 1))
  } catch (error) {
    return { _tag: "Corrupt", reason: `invalid JSON: ${(error as Error).message}` }
  }
  const exit = codecOf(node).decode(json)
  return Exit.isSuccess(exit)
    ? { _tag: "Value", value: exit.value as A }
    : { _tag: "Corrupt", reason: String(Cause.squash(exit.cause)) }
}

/** Encodes a value, or says why the value does not match the node's Schema. */
export const encode = (node: Node, value: unknown): Exit.Exit<string, Schema.SchemaError> =>
  Exit.map(codecOf(node).encode(value), (json) => `${node.stamp}\n${JSON.stringify(json)}`)

/** Decodes the JSON part of a stored value regardless of its stamp (for the admin page's raw view). */
export const splitStamp = (raw: string): { readonly stamp: string; readonly json: string } => {
  const newline = raw.indexOf("\n")
  return newline === -1 ? { stamp: "", json: raw } : { stamp: raw.slice(0, newline), json: raw.slice(newline + 1) }
}
