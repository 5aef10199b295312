/**
 * The TypeScript blocks of the documentation, taken out of their Markdown (README.md, docs/*.md) and out of the
 * JSDoc of src/, and compiled together with the TypeScript compiler, the way a reader would paste them into a
 * project: strict, no DOM library, `effect-cacheme`, `effect-cacheme/kysely` and `effect-cacheme/admin`
 * resolved to this repository's sources.
 *
 * A block is a fenced block whose language is `ts` or `typescript`. Its info string may carry:
 *
 * - `name=<name>`: names it, so that a later block of the same file can continue it;
 * - `continues=<name>`: it is a fragment; it is compiled after the named block (and whatever that one
 *   continues), as one module. It may repeat imports of the blocks it continues (they are dropped from the
 *   module, not from the page), so that every block can show all the imports a reader needs.
 *
 * A block right after `<!-- not-compiled: reason -->` (blank lines between allowed) is not compiled; the reason
 * is required. Any other `key=value` in the info string, an unknown name, a duplicate name, an unclosed fence or
 * a marker that no block follows is a problem, reported like a compile error.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import ts from "typescript"

/** One fenced TypeScript block. */
export interface Block {
  /** The document, relative to the repository root (`docs/kysely.md`, `src/Memo.ts`). */
  readonly file: string
  /** The 1-based line of the opening fence. */
  readonly fenceLine: number
  readonly name: string | undefined
  readonly continues: string | undefined
  /** Set when the block is marked `<!-- not-compiled: reason -->`. */
  readonly notCompiled: string | undefined
  /** The code, its lines unindented by the fence's indentation. */
  readonly code: string
}

/** A malformed marker or fence. */
export interface Problem {
  readonly file: string
  readonly line: number
  readonly message: string
}

export interface Extracted {
  readonly blocks: ReadonlyArray<Block>
  readonly problems: ReadonlyArray<Problem>
}

const TYPESCRIPT = new Set(["ts", "typescript"])
const OPENING = /^(\s*)(`{3,}|~{3,})(.*)$/
const NOT_COMPILED = /^\s*<!--\s*not-compiled:(.*?)-->\s*$/
const NAME = /^[A-Za-z0-9][\w.-]*$/

/**
 * The fenced TypeScript blocks of a document given as lines (line 1 is `lines[0]`). JSDoc sources pass their
 * comment text here, one entry per source line, so that line numbers stay those of the source.
 */
export const blocksOfLines = (file: string, lines: ReadonlyArray<string>): Extracted => {
  const blocks: Array<Block> = []
  const problems: Array<Problem> = []
  const names = new Set<string>()
  let marker: { readonly line: number; readonly reason: string } | undefined
  let index = 0
  while (index < lines.length) {
    const text = lines[index]!
    const opening = OPENING.exec(text)
    if (opening === null || (opening[2]!.startsWith("`") && opening[3]!.includes("`"))) {
      const notCompiled = NOT_COMPILED.exec(text)
      if (notCompiled !== null) {
        if (marker !== undefined)
          problems.push({ file, line: marker.line, message: "not-compiled marker without a block after it" })
        marker = { line: index + 1, reason: notCompiled[1]!.trim() }
      } else if (text.trim() !== "" && marker !== undefined) {
        problems.push({ file, line: marker.line, message: "not-compiled marker without a block after it" })
        marker = undefined
      }
      index++
      continue
    }
    const [, indent, fence, info] = opening as unknown as [string, string, string, string]
    const fenceLine = index + 1
    const closing = new RegExp(`^\\s*${fence[0] === "`" ? "`" : "~"}{${fence.length},}\\s*$`)
    const body: Array<string> = []
    index++
    while (index < lines.length && !closing.test(lines[index]!)) {
      const line = lines[index]!
      // Content lines lose the fence's indentation (a block inside a list item), no more.
      let strip = 0
      while (strip < indent.length && line[strip] === " ") strip++
      body.push(line.slice(strip))
      index++
    }
    if (index >= lines.length) {
      problems.push({ file, line: fenceLine, message: "fence never closed" })
      break
    }
    index++
    const words = info
      .trim()
      .split(/\s+/)
      .filter((word) => word !== "")
    const language = (words[0] ?? "").toLowerCase()
    const current = marker
    marker = undefined
    if (!TYPESCRIPT.has(language)) {
      if (current !== undefined) {
        problems.push({
          file,
          line: current.line,
          message: "not-compiled marker before a block that is not TypeScript"
        })
      }
      continue
    }
    let name: string | undefined
    let continues: string | undefined
    for (const word of words.slice(1)) {
      const [key, value, ...rest] = word.split("=")
      if (value === undefined) continue // a bare label, like README's `readme`
      if (rest.length > 0 || !NAME.test(value) || (key !== "name" && key !== "continues")) {
        problems.push({
          file,
          line: fenceLine,
          message: `unknown block attribute ${JSON.stringify(word)} (name=..., continues=...)`
        })
      } else if (key === "name") {
        name = value
      } else {
        continues = value
      }
    }
    if (current !== undefined) {
      if (current.reason === "")
        problems.push({ file, line: current.line, message: "not-compiled marker without a reason" })
      if (name !== undefined || continues !== undefined) {
        problems.push({ file, line: fenceLine, message: "a not-compiled block can neither be named nor continue one" })
      }
    }
    if (continues !== undefined && !names.has(continues)) {
      problems.push({
        file,
        line: fenceLine,
        message: `continues=${continues}: no block named so earlier in this file`
      })
    }
    if (name !== undefined) {
      if (names.has(name))
        problems.push({ file, line: fenceLine, message: `name=${name} is taken by an earlier block` })
      names.add(name)
    }
    blocks.push({
      file,
      fenceLine,
      name,
      continues,
      notCompiled: current === undefined ? undefined : current.reason,
      code: body.join("\n")
    })
  }
  if (marker !== undefined)
    problems.push({ file, line: marker.line, message: "not-compiled marker without a block after it" })
  return { blocks, problems }
}

/** The blocks of a Markdown document. */
export const blocksOfMarkdown = (file: string, text: string): Extracted => blocksOfLines(file, text.split(/\r?\n/))

/**
 * The blocks in the doc comments (`/** ... *\/`) of a TypeScript source: each comment line without its leading
 * `*`, every other line blank, so that line numbers stay the source's.
 */
export const blocksOfSource = (file: string, text: string): Extracted => {
  const lines = text.split(/\r?\n/)
  const comment: Array<string> = []
  let inside = false
  for (const line of lines) {
    if (!inside) {
      const start = line.indexOf("/**")
      if (start !== -1 && !line.includes("*/", start + 3)) inside = true
      comment.push("")
    } else if (line.includes("*/")) {
      inside = false
      comment.push("")
    } else {
      comment.push(line.replace(/^\s*\*( |$)?/, ""))
    }
  }
  return blocksOfLines(file, comment)
}

const walk = (directory: string, accept: (file: string) => boolean): Array<string> =>
  readdirSync(directory, { withFileTypes: true })
    .flatMap((entry) => {
      const full = path.join(directory, entry.name)
      if (entry.isDirectory()) return walk(full, accept)
      return accept(entry.name) ? [full] : []
    })
    .sort()

/** The documents whose blocks are compiled: README.md, docs/*.md and the sources under src/. */
export const documents = (root: string): ReadonlyArray<string> => [
  path.join(root, "README.md"),
  ...walk(path.join(root, "docs"), (name) => name.endsWith(".md")),
  ...walk(path.join(root, "src"), (name) => name.endsWith(".ts"))
]

/** Every block of every document under `root`. */
export const extract = (root: string, files: ReadonlyArray<string> = documents(root)): Extracted => {
  const blocks: Array<Block> = []
  const problems: Array<Problem> = []
  for (const full of files) {
    const file = path.relative(root, full).split(path.sep).join("/")
    const text = readFileSync(full, "utf8")
    const extracted = file.endsWith(".md") ? blocksOfMarkdown(file, text) : blocksOfSource(file, text)
    blocks.push(...extracted.blocks)
    problems.push(...extracted.problems)
  }
  return { blocks, problems }
}

/** A compiler diagnostic mapped back to the document. */
export interface Finding {
  readonly block: Block
  /** The document and line the diagnostic points at (a line of `block`, or of a block it continues). */
  readonly file: string
  readonly line: number
  readonly column: number
  readonly code: number
  readonly message: string
}

/** `docs/kysely.md:93:5 (block at line 91): TS2304 Cannot find name 'Database'.` */
export const formatFinding = (finding: Finding): string => {
  const where = `${finding.file}:${finding.line}:${finding.column}`
  const block = `${finding.block.file}:${finding.block.fenceLine}`
  const context =
    finding.file === finding.block.file && finding.line > finding.block.fenceLine
      ? `block at line ${finding.block.fenceLine}`
      : `in the block it continues, compiled with the fragment at ${block}`
  return `${where} (${context}): TS${finding.code} ${finding.message}`
}

export const formatProblem = (problem: Problem): string => `${problem.file}:${problem.line}: ${problem.message}`

/** The compiler options of the generated tsconfig.json: a reader's strict project, no DOM. */
export const compilerOptions = (root: string) => {
  const source = (file: string) => [path.join(root, "src", file).split(path.sep).join("/")]
  return {
    target: "ES2023",
    lib: ["ES2024"],
    module: "NodeNext",
    moduleResolution: "NodeNext",
    moduleDetection: "force",
    strict: true,
    noImplicitOverride: true,
    noImplicitReturns: true,
    noFallthroughCasesInSwitch: true,
    verbatimModuleSyntax: true,
    isolatedModules: true,
    // The package's sources import each other with `.ts` extensions.
    allowImportingTsExtensions: true,
    skipLibCheck: true,
    noEmit: true,
    types: ["node"],
    paths: {
      "effect-cacheme": source("index.ts"),
      "effect-cacheme/kysely": source("kysely/index.ts"),
      "effect-cacheme/kysely/pglite": source("kysely/pglite.ts"),
      "effect-cacheme/admin": source("admin/index.ts")
    }
  }
}

interface Binding {
  /** The module, type-only or not, the name imported and the local name. */
  readonly key: string
  readonly kind: "default" | "namespace" | "named"
  /** How it reads inside the import clause. */
  readonly text: string
}

const bindingsOf = (declaration: ts.ImportDeclaration): ReadonlyArray<Binding> => {
  const module = (declaration.moduleSpecifier as ts.StringLiteral).text
  const clause = declaration.importClause
  if (clause === undefined) return [] // a side-effect import binds nothing
  const typeOnly = clause.isTypeOnly ? "type " : ""
  const bindings: Array<Binding> = []
  if (clause.name !== undefined) {
    const local = clause.name.text
    bindings.push({ key: `${module}|${typeOnly}default|${local}`, kind: "default", text: local })
  }
  const named = clause.namedBindings
  if (named !== undefined && ts.isNamespaceImport(named)) {
    const local = named.name.text
    bindings.push({ key: `${module}|${typeOnly}*|${local}`, kind: "namespace", text: `* as ${local}` })
  } else if (named !== undefined) {
    for (const element of named.elements) {
      const imported = (element.propertyName ?? element.name).text
      const type = typeOnly || (element.isTypeOnly ? "type " : "")
      bindings.push({
        key: `${module}|${type}${imported}|${element.name.text}`,
        kind: "named",
        text: element.getText()
      })
    }
  }
  return bindings
}

/** An import declaration binding only `kept` (empty when none is left). */
const importOf = (declaration: ts.ImportDeclaration, kept: ReadonlyArray<Binding>): string => {
  const clause = [
    ...kept.filter((binding) => binding.kind !== "named").map((binding) => binding.text),
    ...(kept.some((binding) => binding.kind === "named")
      ? [
          `{ ${kept
            .filter((binding) => binding.kind === "named")
            .map((binding) => binding.text)
            .join(", ")} }`
        ]
      : [])
  ]
  if (clause.length === 0) return ""
  const typeOnly = declaration.importClause?.isTypeOnly ? "type " : ""
  return `import ${typeOnly}${clause.join(", ")} from ${declaration.moduleSpecifier.getText()}`
}

/**
 * The code of a block in a chain, without the imports an earlier block of the chain made already: each block
 * may show every import a reader needs, while the chain, compiled as one module, must not import a name twice.
 * A removed import leaves blank lines, so lines keep their numbers.
 */
const withoutRepeatedImports = (block: Block, imported: Set<string>): string => {
  const source = ts.createSourceFile("block.ts", block.code, ts.ScriptTarget.Latest, true)
  const edits: Array<{ readonly start: number; readonly end: number; readonly text: string }> = []
  for (const declaration of source.statements.filter(ts.isImportDeclaration)) {
    const bindings = bindingsOf(declaration)
    const kept = bindings.filter((binding) => !imported.has(binding.key))
    for (const binding of bindings) imported.add(binding.key)
    if (kept.length === bindings.length) continue
    const start = declaration.getStart(source)
    const newlines = block.code.slice(start, declaration.end).split("\n").length - 1
    edits.push({ start, end: declaration.end, text: importOf(declaration, kept) + "\n".repeat(newlines) })
  }
  let code = block.code
  // From the last edit up, so that earlier positions stay valid.
  for (const edit of edits.reverse()) code = code.slice(0, edit.start) + edit.text + code.slice(edit.end)
  return code
}

/** Where {@link compile} writes the module of a block. */
export const moduleOf = (block: Block, directory: string): string =>
  path.join(directory, `${block.file.replace(/[^\w.-]+/g, "_")}.L${block.fenceLine}.ts`)

/** Whether a block exports `main`: an example meant to be run, not only compiled. */
export const isProgram = (block: Block): boolean => /^export const main\b/m.test(block.code)

/** The chain a block is compiled with: the blocks it continues, outermost first, then itself. */
const chainOf = (block: Block, named: ReadonlyMap<string, Block>): ReadonlyArray<Block> => {
  const chain: Array<Block> = [block]
  const seen = new Set<Block>([block])
  let current = block
  while (current.continues !== undefined) {
    const base = named.get(`${current.file}#${current.continues}`)
    if (base === undefined || seen.has(base)) break // reported by the extraction
    chain.unshift(base)
    seen.add(base)
    current = base
  }
  return chain
}

/**
 * Writes every compiled block into `directory` (one module each, a fragment after the blocks it continues) with a
 * tsconfig.json, type-checks them in one program, and maps every diagnostic back to its document and line. Only
 * the blocks' own diagnostics count: the library's sources are checked by the project's typecheck.
 */
export const compile = (
  blocks: ReadonlyArray<Block>,
  options: { readonly root: string; readonly directory: string }
): ReadonlyArray<Finding> => {
  const named = new Map<string, Block>()
  for (const block of blocks) if (block.name !== undefined) named.set(`${block.file}#${block.name}`, block)
  rmSync(options.directory, { recursive: true, force: true })
  mkdirSync(options.directory, { recursive: true })
  const sources = new Map<
    string,
    { readonly block: Block; readonly lines: ReadonlyArray<{ block: Block; line: number }> }
  >()
  for (const block of blocks) {
    if (block.notCompiled !== undefined) continue
    const chain = chainOf(block, named)
    const text: Array<string> = []
    const lines: Array<{ block: Block; line: number }> = []
    const imported = new Set<string>()
    for (const part of chain) {
      const partLines = withoutRepeatedImports(part, imported).split("\n")
      partLines.forEach((line, offset) => {
        text.push(line)
        lines.push({ block: part, line: part.fenceLine + 1 + offset })
      })
    }
    const full = moduleOf(block, options.directory)
    writeFileSync(full, `${text.join("\n")}\n`)
    sources.set(path.resolve(full), { block, lines })
  }
  const tsconfig = path.join(options.directory, "tsconfig.json")
  writeFileSync(
    tsconfig,
    `${JSON.stringify({ compilerOptions: compilerOptions(options.root), include: ["*.ts"] }, null, 2)}\n`
  )
  const parsed = ts.getParsedCommandLineOfConfigFile(tsconfig, undefined, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (diagnostic) => {
      throw new Error(ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n"))
    }
  })
  if (parsed === undefined) throw new Error(`cannot read ${tsconfig}`)
  if (parsed.errors.length > 0) {
    throw new Error(parsed.errors.map((error) => ts.flattenDiagnosticMessageText(error.messageText, "\n")).join("\n"))
  }
  const program = ts.createProgram({ rootNames: parsed.fileNames, options: parsed.options })
  const global = [...program.getOptionsDiagnostics(), ...program.getGlobalDiagnostics()]
  if (global.length > 0) {
    throw new Error(global.map((error) => ts.flattenDiagnosticMessageText(error.messageText, "\n")).join("\n"))
  }
  const findings: Array<Finding> = []
  const seen = new Set<string>()
  for (const sourceFile of program.getSourceFiles()) {
    const source = sources.get(path.resolve(sourceFile.fileName))
    if (source === undefined) continue
    const diagnostics = [...program.getSyntacticDiagnostics(sourceFile), ...program.getSemanticDiagnostics(sourceFile)]
    for (const diagnostic of diagnostics) {
      const position =
        diagnostic.start === undefined ? undefined : sourceFile.getLineAndCharacterOfPosition(diagnostic.start)
      const origin = source.lines[position?.line ?? 0] ?? source.lines[source.lines.length - 1]!
      const finding: Finding = {
        block: source.block,
        file: origin.block.file,
        line: origin.line,
        column: (position?.character ?? 0) + 1,
        code: diagnostic.code,
        message: ts.flattenDiagnosticMessageText(diagnostic.messageText, "\n")
      }
      // A base block's own error shows again in each fragment compiled after it: report it once.
      const key = `${finding.file}:${finding.line}:${finding.column}:${finding.code}:${finding.message}`
      if (seen.has(key)) continue
      seen.add(key)
      findings.push(finding)
    }
  }
  // Every written module must have been part of the program.
  const compiled = new Set(program.getSourceFiles().map((file) => path.resolve(file.fileName)))
  for (const file of sources.keys()) if (!compiled.has(file)) throw new Error(`${file} was not compiled`)
  return findings.sort((a, b) => (a.file === b.file ? a.line - b.line : a.file < b.file ? -1 : 1))
}
