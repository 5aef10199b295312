/**
 * Docs that compile: every TypeScript block of README.md, docs/*.md and the JSDoc of src/ is type-checked as a
 * reader would paste it (strict, no DOM, `effect-cacheme` imports resolved to src/). A failure names the
 * document, the line and the diagnostic. Fragments (`ts continues=name`) compile after the block they continue;
 * blocks marked `<!-- not-compiled: reason -->` are skipped (see test/support/doc-blocks.ts).
 *
 * The checker checks itself too: made-up documents with known mistakes go through the same program, and their
 * diagnostics must come out at the right lines.
 */
import { execFile } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import * as path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import {
  type Block,
  blocksOfMarkdown,
  blocksOfSource,
  compile,
  documents,
  extract,
  type Finding,
  formatFinding,
  formatProblem,
  isProgram,
  moduleOf
} from "./support/doc-blocks.ts"

const root = path.resolve(import.meta.dirname, "..")
const directory = path.join(root, "test-results", `doc-blocks-${process.pid}`)

/** Made-up documents, compiled in the same program as the real ones. */
const selfTest = {
  // `Node` used without its import: with the DOM library it would be the DOM's `Node` (TS2339 on `.make`).
  missingImport: blocksOfMarkdown(
    "self-test/missing-import.md",
    ["# Missing import", "", "```ts", "const UserNode = Node.make", "```", ""].join("\n")
  ),
  // A block that imports the package's entry points, resolved to src/.
  resolves: blocksOfMarkdown(
    "self-test/resolves.md",
    [
      "```ts",
      'import { Memo, Node } from "effect-cacheme"',
      'import { Database } from "effect-cacheme/kysely"',
      'import { Admin } from "effect-cacheme/admin"',
      "export const used = [Memo.cached, Node.make, Database.layer, Admin.layer]",
      "```",
      "",
      "```typescript",
      'import { NoSuchExport } from "effect-cacheme"',
      "export const x = NoSuchExport",
      "```"
    ].join("\n")
  ),
  // A fragment sees its base; the same fragment on its own would not; errors land on the fragment's lines.
  fragments: blocksOfMarkdown(
    "self-test/fragments.md",
    [
      "```ts name=base",
      "export const answer = 42",
      "```",
      "",
      "Some prose.",
      "",
      "  ```ts continues=base",
      "  export const fixed = answer.toFixed(1)",
      "  ```",
      "",
      "```ts name=second continues=base",
      'import { Effect } from "effect"',
      "export const half = answer / 2",
      "export const wrong: string = half",
      "```",
      "",
      "```ts continues=second",
      'import { Effect, Schema } from "effect"',
      'import type { Layer } from "effect"',
      "export const both = answer + half + Effect.runSync(Effect.succeed(1))",
      "export const layer: Layer.Layer<never> | Schema.Top | undefined = undefined",
      "```",
      "",
      "<!-- not-compiled: shell-like pseudo-code -->",
      "",
      "```ts",
      "this is not TypeScript at all",
      "```"
    ].join("\n")
  ),
  // The fragment below, on its own: its base made the difference.
  alone: blocksOfMarkdown("self-test/alone.md", "```ts\nexport const fixed = answer.toFixed(1)\n```\n"),
  // A doc comment of a source file: line numbers are the source's.
  jsdoc: blocksOfSource(
    "self-test/source.ts",
    [
      "/**",
      " * A module.",
      " *",
      " * **Example**",
      " *",
      " * ```ts",
      " * const n: number = 1",
      " * const s: string = n",
      " * ```",
      " */",
      "export const x = 1"
    ].join("\n")
  )
}

let findings: ReadonlyArray<Finding> = []
let real: ReturnType<typeof extract>

beforeAll(() => {
  real = extract(root)
  const synthetic = Object.values(selfTest).flatMap((extracted) => extracted.blocks)
  findings = compile([...real.blocks, ...synthetic], { root, directory })
}, 600_000)

afterAll(() => {
  if (process.env.CACHEME_KEEP_DOC_BLOCKS === undefined) rmSync(directory, { recursive: true, force: true })
})

const findingsOf = (file: string) => findings.filter((finding) => finding.block.file === file)
const brief = (finding: Finding) => `${finding.file}:${finding.line} TS${finding.code}`

describe("documentation", () => {
  it("every TypeScript block of README.md, docs/ and the JSDoc of src/ compiles", () => {
    const mistakes = [
      ...real.problems.map(formatProblem),
      ...findings.filter((finding) => !finding.block.file.startsWith("self-test/")).map(formatFinding)
    ]
    const hint =
      "A block that uses what an earlier block of its page defined: ```ts name=<name> on that one, ```ts " +
      "continues=<name> on this one. Shell-like pseudo-code: <!-- not-compiled: reason --> before it."
    assert.deepStrictEqual(mistakes, [], `\n${mistakes.join("\n")}\n\n${hint}\n`)
  })

  it("finds every block: as many as a plain search of the fences counts", () => {
    const fence = /^\s*(?:\*\s*)?(`{3,}|~{3,})\s*(?:ts|typescript)(?:\s[^`]*)?$/i
    for (const full of documents(root)) {
      const file = path.relative(root, full).split(path.sep).join("/")
      const lines = readFileSync(full, "utf8").split(/\r?\n/)
      const counted = lines.filter((line) => fence.test(line)).length
      const extracted = real.blocks.filter((block) => block.file === file).length
      assert.strictEqual(extracted, counted, `${file}: ${counted} fences, ${extracted} blocks extracted`)
    }
    const files = new Set(real.blocks.map((block) => block.file))
    for (const file of ["README.md", "docs/kysely.md", "docs/admin.md", "docs/from-django-cacheme.md"]) {
      assert.isTrue(files.has(file), `${file} has TypeScript blocks`)
    }
    assert.isTrue(
      real.blocks.some((block) => block.file.startsWith("src/")),
      "the JSDoc examples of src/ are among the blocks"
    )
  })

  it("keeps not-compiled blocks rare, each with its reason", () => {
    const skipped = real.blocks.filter((block) => block.notCompiled !== undefined)
    for (const block of skipped) assert.isNotEmpty(block.notCompiled, `${block.file}:${block.fenceLine}`)
    assert.isAtMost(skipped.length, 3, skipped.map((block) => `${block.file}:${block.fenceLine}`).join(", "))
  })
})

/** The answer a program block announces in its `// main answers: <JSON>` line. */
const announced = (block: Block): unknown => {
  const line = /^\/\/ main answers: (.*)$/m.exec(block.code)
  return line === null ? undefined : JSON.parse(line[1]!)
}

/** Runs a block's `main` in a process of its own (node names of different blocks may collide in one). */
const run = (block: Block): Promise<{ readonly ok: boolean; readonly output: string; readonly error: string }> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [
        "--conditions=effect-cacheme-source",
        path.join(root, "test", "support", "run-main.ts"),
        moduleOf(block, directory)
      ],
      { cwd: root, timeout: 240_000, env: { ...process.env, NODE_NO_WARNINGS: "1" } },
      (error, stdout, stderr) =>
        resolve({ ok: error === null, output: stdout.trim(), error: `${error ?? ""}\n${stderr}` })
    )
  })

describe("documentation examples", () => {
  const guide = "docs/from-django-cacheme.md"

  it("every example of the django-cacheme guide is a program that says what it answers", () => {
    const blocks = real.blocks.filter((block) => block.file === guide)
    assert.isAtLeast(blocks.length, 8)
    for (const block of blocks) {
      assert.isTrue(isProgram(block), `${guide}:${block.fenceLine} exports main`)
      assert.isDefined(announced(block), `${guide}:${block.fenceLine} has a "// main answers: <JSON>" line`)
    }
  })

  it("every block that exports main runs, and answers what it says", async () => {
    const programs = real.blocks.filter((block) => block.notCompiled === undefined && isProgram(block))
    assert.isAtLeast(programs.length, 9)
    const failures: Array<string> = []
    // Two at a time: the machine is shared.
    const queue = [...programs]
    const worker = async () => {
      for (let block = queue.shift(); block !== undefined; block = queue.shift()) {
        const result = await run(block)
        const where = `${block.file}:${block.fenceLine}`
        if (!result.ok) {
          failures.push(`${where}: main failed\n${result.error.trim()}`)
          continue
        }
        const expected = announced(block)
        if (expected === undefined) continue
        const answered = JSON.parse(result.output.split("\n").at(-1)!)
        try {
          assert.deepStrictEqual(answered, expected)
        } catch {
          failures.push(
            `${where}: main answered ${JSON.stringify(answered)}, the block says ${JSON.stringify(expected)}`
          )
        }
      }
    }
    await Promise.all([worker(), worker()])
    assert.deepStrictEqual(failures, [], `\n${failures.join("\n")}\n`)
  }, 600_000)
})

describe("the block checker", () => {
  it("reports a missing import at the document's line, without the DOM library", () => {
    assert.deepStrictEqual(findingsOf("self-test/missing-import.md").map(brief), [
      "self-test/missing-import.md:4 TS2304"
    ])
    const [finding] = findingsOf("self-test/missing-import.md")
    assert.match(
      formatFinding(finding!),
      /^self-test\/missing-import\.md:4:18 \(block at line 3\): TS2304 Cannot find name 'Node'/
    )
  })

  it("resolves effect-cacheme, effect-cacheme/kysely and effect-cacheme/admin to src/", () => {
    assert.deepStrictEqual(findingsOf("self-test/resolves.md").map(brief), ["self-test/resolves.md:9 TS2305"])
    assert.include(
      findingsOf("self-test/resolves.md")[0]!.message,
      `Module '"effect-cacheme"' has no exported member 'NoSuchExport'`
    )
  })

  it("compiles a fragment after the block it continues, and reports errors at the fragment's lines", () => {
    assert.deepStrictEqual(findingsOf("self-test/fragments.md").map(brief), ["self-test/fragments.md:14 TS2322"])
    // The error of `second` is reported once, although `continues=second` compiles it again; the fragment's own
    // imports that `second` made already (Effect) are dropped from the module, the new ones (Schema, Layer) kept.
    assert.strictEqual(findings.filter((finding) => finding.file === "self-test/fragments.md").length, 1)
    const blocks = selfTest.fragments.blocks
    assert.deepStrictEqual(
      blocks.map((block: Block) => [block.fenceLine, block.name, block.continues, block.notCompiled]),
      [
        [1, "base", undefined, undefined],
        [7, undefined, "base", undefined],
        [11, "second", "base", undefined],
        [17, undefined, "second", undefined],
        [26, undefined, undefined, "shell-like pseudo-code"]
      ]
    )
    // The indented block lost its list indentation.
    assert.strictEqual(blocks[1]!.code, "export const fixed = answer.toFixed(1)")
    assert.deepStrictEqual(selfTest.fragments.problems, [])
  })

  it("fails the same fragment compiled without its base", () => {
    assert.strictEqual(selfTest.alone.blocks[0]!.code, selfTest.fragments.blocks[1]!.code)
    assert.deepStrictEqual(findingsOf("self-test/alone.md").map(brief), ["self-test/alone.md:2 TS2304"])
  })

  it("maps JSDoc blocks to the source's lines", () => {
    assert.deepStrictEqual(findingsOf("self-test/source.ts").map(brief), ["self-test/source.ts:8 TS2322"])
    assert.strictEqual(selfTest.jsdoc.blocks[0]!.code, "const n: number = 1\nconst s: string = n")
  })

  it("rejects malformed markers", () => {
    const problems = (text: string) => blocksOfMarkdown("bad.md", text).problems.map(formatProblem)
    assert.deepStrictEqual(problems("```ts continues=nowhere\nx\n```\n"), [
      "bad.md:1: continues=nowhere: no block named so earlier in this file"
    ])
    assert.deepStrictEqual(problems("```ts name=a\nx\n```\n```ts name=a\ny\n```\n"), [
      "bad.md:4: name=a is taken by an earlier block"
    ])
    assert.deepStrictEqual(problems("```ts continue=a\nx\n```\n"), [
      'bad.md:1: unknown block attribute "continue=a" (name=..., continues=...)'
    ])
    assert.deepStrictEqual(problems("<!-- not-compiled: -->\n```ts\nx\n```\n"), [
      "bad.md:1: not-compiled marker without a reason"
    ])
    assert.deepStrictEqual(problems("<!-- not-compiled: why -->\nprose\n```ts\nx\n```\n"), [
      "bad.md:1: not-compiled marker without a block after it"
    ])
    assert.deepStrictEqual(problems("```ts\nx\n"), ["bad.md:1: fence never closed"])
    // A longer closing fence closes; a shorter one is content.
    const nested = blocksOfMarkdown("ok.md", "````ts\n```\nstill code\n`````\n")
    assert.deepStrictEqual(nested.problems, [])
    assert.strictEqual(nested.blocks[0]!.code, "```\nstill code")
  })
})
