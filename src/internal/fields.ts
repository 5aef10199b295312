/**
 * Validation of the fields that name a cache key or a group, shared by `Node`, `InvalidNode` and
 * `TableInvalidNode`: the typed error names the first offending field and lists every issue.
 */
import { Cause, Exit, Schema, SchemaIssue } from "effect"
import { SchemaJITCompiler } from "effect/schema"
import { notWellFormed } from "./keys.ts"

/**
 * Fields that do not match their Schema.
 *
 * @category errors
 * @since 0.1.0
 */
export class InvalidFields extends Schema.TaggedError<InvalidFields>()("InvalidFields", {
  /** The node or group whose fields were given. */
  node: Schema.String,
  /** The first field at fault (dotted path), or "" when the input is not an object at all. */
  field: Schema.String,
  message: Schema.String,
  issues: Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String }))
}) {}

const formatter = SchemaIssue.makeFormatterStandardSchemaV1()

/** Every issue of a failed decode as `{ path, message }` (path dotted, "" at the root). */
export const issuesOf = (error: unknown): Array<{ readonly path: string; readonly message: string }> =>
  Schema.isSchemaError(error)
    ? formatter(error.issue).issues.map((issue) => ({
        path: (issue.path ?? [])
          .map((segment) => String(typeof segment === "object" ? segment.key : segment))
          .join("."),
        message: issue.message
      }))
    : [{ path: "", message: String(error) }]

const toInvalidFields = (node: string, error: unknown): InvalidFields => {
  const issues = issuesOf(error)
  const first = issues[0] ?? { path: "", message: "invalid fields" }
  return new InvalidFields({
    node,
    field: first.path,
    message: `${node}: invalid field ${first.path === "" ? "input" : JSON.stringify(first.path)}: ${first.message}`,
    issues
  })
}

/** A validator of a fields struct: `type` checks typed input, `decode` parses untrusted (encoded) input. */
export interface FieldsValidator<A> {
  /** Whether typed input is valid as it is (no error built). */
  readonly is: (input: unknown) => input is A
  readonly type: (input: unknown) => Exit.Exit<A, InvalidFields>
  readonly decode: (input: unknown) => Exit.Exit<A, InvalidFields>
}

export const makeValidator = <S extends Schema.Codec<any, any, never, never>>(
  node: string,
  schema: S
): FieldsValidator<S["Type"]> => {
  const check =
    (parse: (input: unknown) => Exit.Exit<S["Type"], Schema.SchemaError>) =>
    (input: unknown): Exit.Exit<S["Type"], InvalidFields> => {
      const exit = parse(input)
      return Exit.isSuccess(exit)
        ? Exit.succeed(exit.value)
        : Exit.fail(toInvalidFields(node, Cause.squash(exit.cause)))
    }
  const typeSchema = Schema.toType(schema) as unknown as S
  // Every call of `Node.make` checks its fields: a compiled guard answers the valid case, and the parser runs
  // only to name what is wrong.
  SchemaJITCompiler.enable(typeSchema.ast)
  const isType = Schema.is(typeSchema)
  const typeParser = Schema.decodeUnknownExit(typeSchema)
  const decodeParser = Schema.decodeUnknownExit(schema)
  const checkType = check((input) => typeParser(input, { errors: "all" }))
  return {
    is: isType as (input: unknown) => input is S["Type"],
    type: (input) => (isType(input) ? Exit.succeed(input as S["Type"]) : checkType(input)),
    decode: check((input) => decodeParser(input, { errors: "all" }))
  }
}

/** Runs a validation synchronously, throwing the typed error (Schema classes' `make` does the same). */
export const getOrThrow = <A>(exit: Exit.Exit<A, InvalidFields>): A => {
  if (Exit.isSuccess(exit)) return exit.value
  throw Cause.squash(exit.cause)
}

/** A failure of the user's own key, `invalidatedBy` or `skip` function, named for the node. */
const callbackFailed = (node: string, what: string, message: string) =>
  new InvalidFields({ node, field: "", message: `${node}: ${what} ${message}`, issues: [{ path: "", message }] })

/** The failure {@link runCallback} gives for a callback that threw `error`. */
export const callbackThrew = (node: string, what: string, error: unknown): Exit.Exit<never, InvalidFields> =>
  Exit.fail(callbackFailed(node, what, `threw: ${error instanceof Error ? error.message : String(error)}`))

/** The failure {@link runCallback} gives for a callback whose result `check` rejected with `problem`. */
export const callbackRejected = (node: string, what: string, problem: string): Exit.Exit<never, InvalidFields> =>
  Exit.fail(callbackFailed(node, what, problem))

/**
 * Runs a function the user gave a node or group (its key, `invalidatedBy`, `skip`): a throw, or a result that
 * `check` rejects, becomes a typed `InvalidFields` naming the node, in the error channel.
 */
export const runCallback = <A>(
  node: string,
  what: string,
  f: () => A,
  check: (value: A) => string | undefined = () => undefined
): Exit.Exit<A, InvalidFields> => {
  let value: A
  try {
    value = f()
  } catch (error) {
    return callbackThrew(node, what, error)
  }
  const problem = check(value)
  return problem === undefined ? Exit.succeed(value) : callbackRejected(node, what, problem)
}

/** The check of a key function's result. */
export const checkKey = (key: unknown): string | undefined =>
  typeof key !== "string" ? `returned ${key === null ? "null" : typeof key}, not a string` : notWellFormed(key)
