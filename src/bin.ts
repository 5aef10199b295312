#!/usr/bin/env node
/**
 * The `effect-cacheme` executable: `migrate`, `admin`, `invalidate` and `stats` (`--help` on each). The package's
 * `bin` runs the compiled `dist/bin.js`; in this repository `node bin/effect-cacheme.ts` runs this file on Node 24
 * directly.
 *
 * The command line is the admin's: it needs the admin's peers (`kysely`, `@effect/platform-node`) beside
 * `effect-cacheme`. When one of them is not installed it says which and how to install it, and exits with 1.
 *
 * @since 0.1.0
 */

/** The packages the command line needs besides `effect-cacheme` and `effect`. */
const peers = ["kysely", "@effect/platform-node"]

/** Whether `name` resolves from here (without loading it). */
const installed = (name: string): boolean => {
  try {
    import.meta.resolve(name)
    return true
  } catch {
    return false
  }
}

const load = () =>
  Promise.all([import("effect"), import("@effect/platform-node"), import("./admin/index.ts")]).then(
    ([effect, platform, admin]) => ({ effect, platform, admin }),
    (error: unknown) => {
      const notFound = error instanceof Error && (error as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND"
      const missing = notFound ? peers.filter((name) => !installed(name)) : []
      if (missing.length === 0) throw error
      process.stderr.write(
        `effect-cacheme: the command line needs ${missing.join(" and ")}, not installed here (npm install ${peers.join(" ")})\n`
      )
      process.exitCode = 1
      return undefined
    }
  )

const modules = await load()
if (modules !== undefined) {
  const { effect, platform, admin } = modules
  admin.Cli.run(process.argv.slice(2)).pipe(
    effect.Effect.provide(platform.NodeServices.layer),
    platform.NodeRuntime.runMain({ disableErrorReporting: true })
  )
}
