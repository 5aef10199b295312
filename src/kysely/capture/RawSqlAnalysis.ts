/**
 * Best-effort reading of SQL text Kysely did not build (`sql\`...\``, `CompiledQuery.raw`): which statements
 * control the transaction (BEGIN, COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO) and which write to which
 * tables.
 *
 * The text is split into statements at top-level semicolons after string literals, dollar-quoted bodies and
 * comments are masked out, so their contents never look like statements. Writes are then found by their leading
 * keywords anywhere in a statement, which also catches data-modifying CTEs (`with d as (delete from t ...)`):
 * INSERT, REPLACE, UPDATE, DELETE, MERGE, TRUNCATE, DROP TABLE, COPY ... FROM and LOAD DATA name their table;
 * CALL, DO and EXECUTE (and multi-table DELETE) are writes to unknown tables. Since the rows are never known,
 * every write found here becomes a whole-table invalidation; a write whose table cannot be read invalidates every
 * watched table. DDL (CREATE, ALTER, ...) is not a write: the rows it might touch (triggers' bodies aside) are
 * not cache contents.
 *
 * @internal
 */
import type { WriteOperation } from "../InvalidationEvent.ts"
import type { SqlFlavor } from "./Capabilities.ts"

/** A write captured without its rows: whole-table events for `tables` ("every": every watched table). */
export interface BlindWrite {
  readonly operation: WriteOperation
  readonly tables: ReadonlyArray<string> | "every"
}

export type TransactionControl =
  | { readonly _tag: "Begin" }
  | { readonly _tag: "Commit" }
  | { readonly _tag: "Rollback" }
  | { readonly _tag: "Savepoint"; readonly name: string }
  | { readonly _tag: "ReleaseSavepoint"; readonly name: string }
  | { readonly _tag: "RollbackToSavepoint"; readonly name: string }

/** What one statement of a script does, in script order. */
export type ScriptStep =
  | { readonly _tag: "Control"; readonly control: TransactionControl }
  | { readonly _tag: "Write"; readonly write: BlindWrite }

/** The transaction-control and write steps of a SQL script, in order; empty for reads and DDL. */
export const analyzeSql = (sql: string, flavor: SqlFlavor): ReadonlyArray<ScriptStep> =>
  splitStatements(sql, flavor).flatMap(analyzeStatement)

// One identifier part: "quoted", `quoted`, [quoted] or bare.
const PART = String.raw`(?:"(?:[^"]|"")+"|\`(?:[^\`]|\`\`)+\`|\[[^\]]+\]|[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*)`
// A possibly qualified name: table, schema.table, catalog.schema.table.
const NAME = String.raw`${PART}(?:\s*\.\s*${PART}){0,2}`
const NAME_LIST = String.raw`${NAME}(?:\s*,\s*(?:only\s+)?${NAME}\s*\*?)*`

/** Words that can follow a write keyword without being a table name (`after update on t`, `do update set`). */
const NOT_A_TABLE = new Set(["set", "on", "of", "or", "to", "nowait", "skip", "cascade", "restrict", "from", "into"])

const CONTROL: ReadonlyArray<readonly [RegExp, (name: string) => TransactionControl]> = [
  [/^(?:begin|start\s+transaction)\b/i, () => ({ _tag: "Begin" })],
  [/^(?:commit|end)\b/i, () => ({ _tag: "Commit" })],
  [
    new RegExp(String.raw`^(?:rollback|abort)(?:\s+(?:work|transaction))?\s+to\s+(?:savepoint\s+)?(${PART})`, "i"),
    (name) => ({ _tag: "RollbackToSavepoint", name: unquote(name) })
  ],
  [/^(?:rollback|abort)\b/i, () => ({ _tag: "Rollback" })],
  [new RegExp(String.raw`^savepoint\s+(${PART})`, "i"), (name) => ({ _tag: "Savepoint", name: unquote(name) })],
  [
    new RegExp(String.raw`^release\s+(?:savepoint\s+)?(${PART})`, "i"),
    (name) => ({ _tag: "ReleaseSavepoint", name: unquote(name) })
  ]
]

/** Writes found anywhere in a statement; the capture group holds the table name. */
const WRITES: ReadonlyArray<RegExp> = [
  new RegExp(
    String.raw`\binsert\s+(?:(?:low_priority|delayed|high_priority|ignore)\s+)*(?:or\s+\w+\s+)?(?:into\s+)?(${NAME})`,
    "gi"
  ),
  // `replace(` is the string function; the statement has a name (or `into`) after the keyword.
  new RegExp(String.raw`(?:^|[^\w$.])replace\s+(?:(?:low_priority|delayed)\s+)?(?:into\s+)?(${NAME})`, "gi"),
  // Not `for update`, `for no key update`, `on duplicate key update`, `do update`, `on update`.
  new RegExp(
    String.raw`(?<!\b(?:for|key|do|on)\s+)\bupdate\s+(?:(?:only|low_priority|ignore)\s+)*(?:or\s+\w+\s+)?(${NAME})`,
    "gi"
  ),
  new RegExp(String.raw`\bdelete\s+(?:(?:low_priority|quick|ignore)\s+)*from\s+(?:only\s+)?(${NAME})`, "gi"),
  new RegExp(String.raw`\bmerge\s+into\s+(${NAME})`, "gi")
]

/** Statements that write whole tables, anchored at the statement's start; the group holds a list of names. */
const TABLE_WRITES: ReadonlyArray<RegExp> = [
  new RegExp(String.raw`^truncate\s+(?:table\s+)?(?:only\s+)?(${NAME_LIST})`, "i"),
  new RegExp(String.raw`^drop\s+table\s+(?:if\s+exists\s+)?(${NAME_LIST})`, "i"),
  new RegExp(String.raw`^copy\s+(${NAME})(?:\s*\([^)]*\))?\s+from\b`, "i"),
  new RegExp(String.raw`^load\s+(?:data|xml)\b[\s\S]*?\binto\s+table\s+(${NAME})`, "i")
]

/** MySQL's `delete t1, t2 from ...`: the deleted tables are aliases we do not resolve. */
const MULTI_TABLE_DELETE = new RegExp(
  String.raw`\bdelete\s+(?:(?:low_priority|quick|ignore)\s+)*(?!from\b)${NAME}\s*(?:,|\bfrom\b)`,
  "i"
)
const UNKNOWN_WRITE = /^(?:call|do|exec|execute)\b/i
const NOT_WRITING = /^(?:create|alter|comment|grant|revoke|set|show|describe|desc|pragma|vacuum|analy[sz]e)\b/i

const analyzeStatement = (statement: string): ReadonlyArray<ScriptStep> => {
  for (const [pattern, make] of CONTROL) {
    const match = pattern.exec(statement)
    if (match !== null) return [{ _tag: "Control", control: make(match[1] ?? "") }]
  }
  if (NOT_WRITING.test(statement)) return []
  if (/^explain\b/i.test(statement) && !/\banaly[sz]e\b/i.test(statement)) return []
  if (UNKNOWN_WRITE.test(statement) || MULTI_TABLE_DELETE.test(statement)) {
    return [{ _tag: "Write", write: { operation: "raw", tables: "every" } }]
  }
  const tables: Array<string> = []
  for (const pattern of TABLE_WRITES) {
    const match = pattern.exec(statement)
    if (match !== null) tables.push(...splitNameList(match[1]!))
  }
  for (const pattern of WRITES) {
    for (const match of statement.matchAll(pattern)) {
      const name = tableName(match[1]!)
      if (name !== undefined) tables.push(name)
    }
  }
  if (tables.length === 0) return []
  return [{ _tag: "Write", write: { operation: "raw", tables: [...new Set(tables)] } }]
}

const splitNameList = (list: string): ReadonlyArray<string> =>
  [...list.matchAll(new RegExp(NAME, "g"))]
    .map((match) => tableName(match[0]))
    .filter((name): name is string => name !== undefined && name.toLowerCase() !== "only")

/** The table part of a possibly qualified name, unquoted; undefined for keywords that are not tables. */
const tableName = (qualified: string): string | undefined => {
  const parts = [...qualified.matchAll(new RegExp(PART, "g"))].map((match) => match[0])
  const last = parts.at(-1)
  if (last === undefined) return undefined
  if (NOT_A_TABLE.has(last.toLowerCase())) return undefined
  return unquote(last)
}

/** An identifier without its quotes; bare identifiers are folded to lower case, as PostgreSQL does. */
const unquote = (identifier: string): string => {
  const first = identifier[0]
  if (first === '"') return identifier.slice(1, -1).replaceAll('""', '"')
  if (first === "`") return identifier.slice(1, -1).replaceAll("``", "`")
  if (first === "[") return identifier.slice(1, -1)
  return identifier.toLowerCase()
}

/**
 * The statements of a script, trimmed, with string literals emptied and comments removed. Quoted identifiers are
 * kept (they name tables); a semicolon inside a literal, comment or identifier does not split.
 */
export const splitStatements = (sql: string, flavor: SqlFlavor): ReadonlyArray<string> => {
  const statements: Array<string> = []
  let current = ""
  let index = 0
  const backslashEscapes = flavor === "mysql"
  const closing = (quote: string, from: number, escapes: boolean): number => {
    let at = from
    while (at < sql.length) {
      const char = sql[at]!
      if (escapes && char === "\\") {
        at += 2
        continue
      }
      if (char === quote) {
        if (sql[at + 1] === quote) {
          at += 2
          continue
        }
        return at
      }
      at++
    }
    return sql.length
  }
  while (index < sql.length) {
    const char = sql[index]!
    const next = sql[index + 1]
    if (char === "-" && next === "-") {
      const end = sql.indexOf("\n", index)
      index = end === -1 ? sql.length : end
      current += " "
      continue
    }
    if (char === "#" && flavor === "mysql") {
      const end = sql.indexOf("\n", index)
      index = end === -1 ? sql.length : end
      current += " "
      continue
    }
    if (char === "/" && next === "*") {
      const end = sql.indexOf("*/", index + 2)
      index = end === -1 ? sql.length : end + 2
      current += " "
      continue
    }
    if (char === "'") {
      const escapes = backslashEscapes || /[eE]$/.test(current)
      index = closing("'", index + 1, escapes) + 1
      current += "''"
      continue
    }
    if (char === '"' || char === "`") {
      const end = closing(char, index + 1, false)
      current += sql.slice(index, end + 1)
      index = end + 1
      continue
    }
    if (char === "$" && flavor !== "mysql") {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(index, index + 64))
      if (tag !== null) {
        const end = sql.indexOf(tag[0], index + tag[0].length)
        index = end === -1 ? sql.length : end + tag[0].length
        current += "''"
        continue
      }
    }
    if (char === ";") {
      statements.push(current)
      current = ""
      index++
      continue
    }
    current += char
    index++
  }
  statements.push(current)
  return statements.map((statement) => statement.trim().replace(/^\(+\s*/, "")).filter((s) => s.length > 0)
}
