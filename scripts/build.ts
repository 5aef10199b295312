/**
 * `npm run build` (and `prepack`): compiles `src/` into `dist/` with tsc (`tsconfig.build.json`): JavaScript with
 * its relative imports rewritten from `.ts` to `.js` (`rewriteRelativeImportExtensions`), and declarations.
 *
 * tsc leaves the `.ts` of relative imports in the declarations it emits; this rewrites them to `.js` as well, so
 * `dist/` holds no import that names a `.ts` file. Then it checks what it built: every relative import of every
 * emitted file (JavaScript and declarations) must name a file inside `dist/`, so the package can never ship a
 * reference to a file it does not contain (a test, a source file, a script).
 */
import { execFileSync } from "node:child_process"
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const dist = join(root, "dist")

/** `from "./x"`, `import("./x")`, `import "./x"`, `export ... from "./x"`: the specifier is group 2. */
const relativeSpecifier = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.\.?\/[^"']*)\2/g

const files = (dir: string): Array<string> =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name)
    return entry.isDirectory() ? files(path) : [path]
  })

rmSync(dist, { recursive: true, force: true })
execFileSync(join(root, "node_modules", ".bin", "tsc"), ["-p", join(root, "tsconfig.build.json")], {
  stdio: "inherit"
})

const problems: Array<string> = []
for (const file of files(dist)) {
  if (!file.endsWith(".js") && !file.endsWith(".d.ts")) continue
  let text = readFileSync(file, "utf8")
  if (file.endsWith(".d.ts")) {
    const rewritten = text.replace(relativeSpecifier, (match, lead: string, quote: string, specifier: string) =>
      specifier.endsWith(".ts") ? `${lead}${quote}${specifier.slice(0, -3)}.js${quote}` : match
    )
    if (rewritten !== text) writeFileSync(file, rewritten)
    text = rewritten
  }
  for (const [, , , specifier] of text.matchAll(relativeSpecifier)) {
    const target = resolve(dirname(file), specifier)
    const where = `${relative(root, file)}: ${specifier}`
    if (!specifier.endsWith(".js")) problems.push(`${where} (an import that does not end in .js)`)
    else if (relative(dist, target).startsWith("..")) problems.push(`${where} (outside dist/)`)
    else if (!existsSync(target)) problems.push(`${where} (no such file in dist/)`)
  }
}
if (problems.length > 0) {
  console.error(`build: ${problems.length} bad import(s) in dist/:\n  ${problems.join("\n  ")}`)
  process.exit(1)
}
