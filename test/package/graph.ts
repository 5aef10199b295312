/**
 * The packages a module graph of the built package needs, read with TypeScript's parser: from an entry file through
 * its relative imports, the bare specifiers it reaches (package names, `node:` builtins left out).
 *
 * - `runtime`: the static `import` / `export ... from` of the JavaScript (what loading the entry point loads; a
 *   dynamic `import()` is loaded only when its code runs, so it is not followed).
 * - `types`: the same of the declarations, plus every `import("...")` type (what compiling against it reads).
 */
import { readFileSync } from "node:fs"
import { dirname, resolve } from "node:path"
import ts from "typescript"

const packageName = (specifier: string): string => {
  const parts = specifier.split("/")
  return specifier.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0]!
}

export const importedPackages = (entry: string, kind: "runtime" | "types"): Set<string> => {
  const packages = new Set<string>()
  const seen = new Set<string>()
  const queue = [entry]
  while (queue.length > 0) {
    const file = queue.pop()!
    if (seen.has(file)) continue
    seen.add(file)
    const source = ts.createSourceFile(file, readFileSync(file, "utf8"), ts.ScriptTarget.Latest, false)
    const specifiers: Array<string> = []
    for (const statement of source.statements) {
      if (
        (ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) &&
        statement.moduleSpecifier !== undefined &&
        ts.isStringLiteral(statement.moduleSpecifier)
      ) {
        specifiers.push(statement.moduleSpecifier.text)
      }
    }
    if (kind === "types") {
      const visit = (node: ts.Node): void => {
        if (
          ts.isImportTypeNode(node) &&
          ts.isLiteralTypeNode(node.argument) &&
          ts.isStringLiteral(node.argument.literal)
        ) {
          specifiers.push(node.argument.literal.text)
        }
        ts.forEachChild(node, visit)
      }
      visit(source)
    }
    for (const specifier of specifiers) {
      if (specifier.startsWith("./") || specifier.startsWith("../")) {
        const target = resolve(dirname(file), specifier)
        queue.push(kind === "types" ? target.replace(/\.js$/, ".d.ts") : target)
      } else if (!specifier.startsWith("node:")) {
        packages.add(packageName(specifier))
      }
    }
  }
  return packages
}
