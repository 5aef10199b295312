/**
 * Helpers of the package tests: child processes (npm, Node, the apps) run with an environment of their own.
 */
import { execFile } from "node:child_process"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The repository's root. */
export const repo = fileURLToPath(new URL("../../", import.meta.url))

/** Node 24: the repository's own `node` devDependency, the one `npm test` runs on. */
export const node24 = join(repo, "node_modules", "node", "bin", "node")

export interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/**
 * The environment of a child: this process's, without the `npm_*` variables of the `npm test` that may be
 * running it (they name this repository as npm's local prefix, among others), except the ones that say how to
 * reach the registry. `PATH` starts with the directory of the Node that the child should find.
 */
export const childEnv = (nodeBin: string, extra: Record<string, string> = {}): Record<string, string> => {
  const keep = /^npm_config_(registry|cache|cafile|ca|proxy|https_proxy|noproxy|strict_ssl|userconfig|globalconfig)$/i
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (value !== undefined && (!/^npm_/i.test(name) || keep.test(name))) env[name] = value
  }
  env.PATH = `${dirname(nodeBin)}:${process.env.PATH ?? ""}`
  return { ...env, ...extra }
}

export const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly cwd: string; readonly env: Record<string, string>; readonly timeout?: number }
): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: options.env, timeout: options.timeout ?? 300_000, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({
          code,
          stdout,
          stderr: error !== null && typeof error.code !== "number" ? `${error}\n${stderr}` : stderr
        })
      }
    )
  })

/** {@link run}, throwing with everything the command printed when it fails. */
export const must = async (
  file: string,
  args: ReadonlyArray<string>,
  options: Parameters<typeof run>[2]
): Promise<Run> => {
  const result = await run(file, args, options)
  if (result.code !== 0) {
    throw new Error(
      `${file} ${args.join(" ")} (in ${options.cwd}) exited with ${result.code}\n${result.stdout}\n${result.stderr}`
    )
  }
  return result
}
