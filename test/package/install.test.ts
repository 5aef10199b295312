/**
 * `npm install` in this repository runs the install scripts it needs without a warning: every installed package
 * with one (the `node` devDependency, whose script brings the Node 24 that the npm scripts run on) is approved in
 * package.json's `allowScripts`, so npm prints no "not yet covered by allowScripts" and, once npm enforces
 * approvals, a fresh clone still gets Node 24.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { childEnv, must, node24, repo } from "./support.ts"

describe("npm install", () => {
  it("leaves no installed package's install script unapproved (npm install-scripts ls)", async () => {
    const { stdout } = await must("npm", ["install-scripts", "ls", "--json"], { cwd: repo, env: childEnv(node24) })
    expect(JSON.parse(stdout)).toEqual({ allowScripts: [] })
  }, 60_000)

  it("approves the node devDependency by name, so a newer Node 24 in the lockfile stays approved", () => {
    const manifest = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as {
      allowScripts?: Record<string, boolean>
      devDependencies: Record<string, string>
    }
    expect(manifest.devDependencies.node).toMatch(/^\^24\./)
    expect(manifest.allowScripts).toEqual({ node: true })
  })
})
