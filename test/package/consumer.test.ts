/**
 * The published package, used the way a user uses it: `npm pack` (which builds `dist/`), then the tarball
 * installed into apps outside the repository with README's "Install" lines and nothing else, compiled with
 * `tsc` (`strict`, `module` / `moduleResolution` `nodenext`, no `skipLibCheck`) and run on Node 22.19 and
 * Node 24 (both from the registry's `node` package) against Redis, with the installed `effect-cacheme` command
 * run by its shebang.
 *
 * - app 1 (`fixtures/cache.ts`): README's first line only (`effect-cacheme effect ioredis`); the root entry point
 *   on Redis; the app has none of kysely, pg, mysql2, PGlite or the platform packages, and the command says which
 *   packages it needs instead of failing with a stack trace.
 * - app 2 (`fixtures/kysely-admin.ts`): plus the lines for `effect-cacheme/kysely` and `effect-cacheme/admin`,
 *   no PGlite; a write through Kysely invalidates a Redis entry, the admin's JSON API answers; `--help` works.
 * - app 3 (`fixtures/pglite.ts`): the lines for `effect-cacheme/kysely` and `effect-cacheme/kysely/pglite`, run
 *   on Node 22.19.
 *
 * Nothing is skipped for want of the registry; Redis missing fails in CI and skips the runs elsewhere, like the
 * rest of the suite. Node 22.19 is installed once into `<tmpdir>/effect-cacheme-test-cache/` and reused; the
 * registry's tarballs come from npm's own cache after the first run.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { available, deleteRedisPrefix, Redis } from "../support/services.ts"
import { importedPackages } from "./graph.ts"
import { childEnv, must, node24, type Run, repo, run } from "./support.ts"

const fixtures = fileURLToPath(new URL("./fixtures/", import.meta.url))
const cacheRoot = join(tmpdir(), "effect-cacheme-test-cache")
const work = mkdtempSync(join(tmpdir(), "cacheme-consumer-"))
afterAll(() => rmSync(work, { recursive: true, force: true }))

const redisUp = await available(Redis)
/** For a test that runs a child process or a compiler on a busy machine. */
const slow = 180_000

/** A Node binary of `version` from the registry's `node` package, installed once under {@link cacheRoot}. */
const cachedNode = async (version: string): Promise<string> => {
  const dir = join(cacheRoot, `node-${version}`)
  const bin = join(dir, "node_modules", "node", "bin", "node")
  const works = async () =>
    existsSync(bin) && (await run(bin, ["--version"], { cwd: cacheRoot, env: {} })).stdout.trim() === `v${version}`
  mkdirSync(cacheRoot, { recursive: true })
  if (await works()) return bin
  // Installed beside, then renamed into place: a run beside this one never sees half an installation.
  const staging = mkdtempSync(join(cacheRoot, `.node-${version}-`))
  try {
    writeFileSync(
      join(staging, "package.json"),
      JSON.stringify({ private: true, allowScripts: { node: true } }, null, 2)
    )
    await must(
      "npm",
      ["install", "--no-audit", "--no-fund", "--prefer-offline", "--strict-allow-scripts", `node@${version}`],
      { cwd: staging, env: childEnv(node24) }
    )
    if (!(await works())) {
      rmSync(dir, { recursive: true, force: true })
      try {
        renameSync(staging, dir)
      } catch (error) {
        if (!(await works())) throw error // another run renamed its own in between: use that one
      }
    }
  } finally {
    rmSync(staging, { recursive: true, force: true })
  }
  if (!(await works())) throw new Error(`node@${version} from the registry did not give a working ${bin}`)
  return bin
}

/**
 * README's "Install" section: its `npm install` lines, by the entry point (or "TypeScript") that each line's
 * comment starts with.
 */
const readmeInstall = (): Map<string, Array<{ readonly dev: boolean; readonly packages: Array<string> }>> => {
  const readme = readFileSync(join(repo, "README.md"), "utf8")
  const block = /^## Install\n+```sh\n([\s\S]*?)```/m.exec(readme)
  if (block === null) throw new Error("README.md has no ## Install section with a ```sh block")
  const lines = new Map<string, Array<{ readonly dev: boolean; readonly packages: Array<string> }>>()
  for (const line of block[1]!.split("\n")) {
    const match = /^npm install ((?:-D )?)([^#]+?)\s*#\s*(\S+)/.exec(line)
    if (match === null) {
      if (line.trim() !== "") throw new Error(`README's install block has a line this test cannot read: ${line}`)
      continue
    }
    const label = match[3]!.replace(/[,:;]$/, "")
    const entries = lines.get(label) ?? []
    entries.push({ dev: match[1] !== "", packages: match[2]!.split(/\s+/) })
    lines.set(label, entries)
  }
  return lines
}

/**
 * Runs README's lines for `labels` in `app`, with the tarball in place of `effect-cacheme`: the registry's packages
 * first (while the tarball is being packed), one npm call per kind, then the tarball.
 */
const installFor = async (app: string, labels: ReadonlyArray<string>, tarball: Promise<string>): Promise<void> => {
  const install = readmeInstall()
  const wanted = { prod: new Set<string>(), dev: new Set<string>() }
  for (const label of labels) {
    const entries = install.get(label)
    if (entries === undefined) throw new Error(`README's install block has no line for ${label}`)
    for (const { dev, packages } of entries) for (const name of packages) (dev ? wanted.dev : wanted.prod).add(name)
  }
  const npmInstall = (names: Iterable<string>, dev: boolean) =>
    must("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", ...(dev ? ["-D"] : []), ...names], {
      cwd: app,
      env: childEnv(node24)
    })
  const ours = wanted.prod.delete("effect-cacheme")
  if (wanted.prod.size > 0) await npmInstall(wanted.prod, false)
  if (wanted.dev.size > 0) await npmInstall(wanted.dev, true)
  if (ours) await npmInstall([await tarball], false)
}

const makeApp = (name: string, files: ReadonlyArray<string>): string => {
  const app = join(work, name)
  mkdirSync(app)
  writeFileSync(join(app, "package.json"), JSON.stringify({ name, private: true, type: "module" }, null, 2))
  for (const file of files) cpSync(join(fixtures, file), join(app, file))
  return app
}

/** `tsc` in `app` over `main`: strict, nodenext, and no `skipLibCheck` (so every declaration is checked). */
const compile = (app: string, main: string, types: ReadonlyArray<string>) => {
  writeFileSync(
    join(app, "tsconfig.json"),
    JSON.stringify(
      {
        compilerOptions: {
          strict: true,
          module: "nodenext",
          moduleResolution: "nodenext",
          target: "es2023",
          rootDir: ".",
          outDir: "out",
          types
        },
        files: [main]
      },
      null,
      2
    )
  )
  return run(join(app, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { cwd: app, env: childEnv(node24) })
}

const installed = (app: string, name: string) => existsSync(join(app, "node_modules", name, "package.json"))

/** The `RESULT {json}` line an app prints. */
const resultOf = (output: Run): unknown => {
  const line = output.stdout.split("\n").find((text) => text.startsWith("RESULT "))
  if (line === undefined) throw new Error(`no RESULT line (exit ${output.code})\n${output.stdout}\n${output.stderr}`)
  return JSON.parse(line.slice("RESULT ".length))
}

let packedFiles: Array<string> = []
/** The tarball's files, unpacked. */
const unpacked = join(work, "unpacked")
const nodes: Array<{ readonly label: string; readonly version: string; bin: string }> = [
  { label: "Node 22.19", version: "22.19.0", bin: "" },
  { label: "Node 24", version: "24.", bin: node24 }
]

interface App {
  readonly name: string
  readonly files: ReadonlyArray<string>
  /** README's install lines it runs, by label. */
  readonly lines: ReadonlyArray<string>
  /** What it compiles. */
  readonly main: string
  /** `compilerOptions.types`. */
  readonly types: ReadonlyArray<string>
  dir: string
  compiled: Run | undefined
}

const app = (name: string, files: ReadonlyArray<string>, lines: ReadonlyArray<string>, types = ["node"]): App => ({
  name,
  files,
  lines: ["effect-cacheme", ...lines, "TypeScript"],
  main: files.at(-1)!,
  types,
  dir: "",
  compiled: undefined
})

const app1 = app("app1", ["cache.ts"], [])
const app2 = app("app2", ["books.ts", "kysely-admin.ts"], ["effect-cacheme/kysely", "effect-cacheme/admin"])
const app3 = app(
  "app3",
  ["books.ts", "pglite.ts"],
  ["effect-cacheme/kysely", "effect-cacheme/kysely/pglite"],
  ["node", "emscripten"]
)

/** The three apps, each installed and compiled: started by the first `beforeAll`, awaited by each app's own. */
const prepared = new Map<App, Promise<void>>()

// What every test needs: the tarball and Node 22.19. The apps are installed from the registry meanwhile, then get
// the tarball and are compiled; the tests of one app start when that app is ready.
beforeAll(async () => {
  const pack = must("npm", ["pack", "--json", "--pack-destination", work], { cwd: repo, env: childEnv(node24) }).then(
    ({ stdout }) => {
      const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>
      packedFiles = packed!.files.map((file) => file.path)
      return join(work, packed!.filename)
    }
  )
  const unpack = pack.then(async (tarball) => {
    mkdirSync(unpacked)
    await must("tar", ["-xzf", tarball, "-C", unpacked, "--strip-components=1"], { cwd: work, env: childEnv(node24) })
  })
  for (const app of [app1, app2, app3]) {
    app.dir = makeApp(app.name, app.files)
    const ready = installFor(app.dir, app.lines, pack).then(async () => {
      app.compiled = await compile(app.dir, app.main, app.types)
    })
    ready.catch(() => undefined) // awaited (and reported) by the app's own beforeAll
    prepared.set(app, ready)
  }
  const [, , node22] = await Promise.all([pack, unpack, cachedNode("22.19.0")])
  nodes[0]!.bin = node22
}, 600_000)

/** Runs an app's compiled main on `node` with `env`. */
const start = (app: App, node: (typeof nodes)[number], env: Record<string, string> = {}) =>
  run(node.bin, [join("out", app.main.replace(/\.ts$/, ".js"))], {
    cwd: app.dir,
    env: childEnv(node.bin, env),
    timeout: 150_000
  })

/** The installed `effect-cacheme` command, started by its shebang with `node` first on the PATH. */
const command = (app: App, node: (typeof nodes)[number], args: ReadonlyArray<string>) =>
  run(join(app.dir, "node_modules", ".bin", "effect-cacheme"), args, {
    cwd: app.dir,
    env: childEnv(node.bin),
    timeout: 150_000
  })

const expectCompiled = (app: App) => {
  const { code, stdout, stderr } = app.compiled!
  expect(`${stdout}${stderr}`).toBe("")
  expect(code).toBe(0)
}

describe("the tarball", () => {
  it("holds dist/ with JavaScript and declarations, LICENSE and README, and no sources, tests, benches or scripts", () => {
    for (const path of ["LICENSE", "README.md", "package.json", "dist/index.js", "dist/index.d.ts", "dist/bin.js"]) {
      expect(packedFiles).toContain(path)
    }
    for (const entry of ["index", "kysely/index", "kysely/pglite", "admin/index"]) {
      expect(packedFiles).toContain(`dist/${entry}.js`)
      expect(packedFiles).toContain(`dist/${entry}.d.ts`)
    }
    const strays = packedFiles.filter(
      (path) =>
        /^(src|test|bench|examples|scripts|\.ci)\//.test(path) ||
        (path.endsWith(".ts") && !path.endsWith(".d.ts")) ||
        /^(tsconfig.*|biome|vitest\.config\.ts)/.test(path)
    )
    expect(strays).toEqual([])
  })

  it("holds every file package.json's exports and bin name", () => {
    const manifest = JSON.parse(readFileSync(join(repo, "package.json"), "utf8")) as {
      exports: Record<string, null | string | Record<string, string>>
      bin: Record<string, string>
    }
    const targets = [
      ...Object.values(manifest.exports).flatMap((target) =>
        target === null
          ? []
          : typeof target === "string"
            ? [target]
            : Object.entries(target)
                .filter(([condition]) => condition !== "effect-cacheme-source")
                .map(([, path]) => path)
      ),
      ...Object.values(manifest.bin)
    ]
    expect(targets.length).toBeGreaterThan(8)
    for (const target of targets) expect(packedFiles).toContain(target.replace(/^\.\//, ""))
  })
})

/**
 * What each entry point loads (static imports of its JavaScript) and what compiling against it reads (its
 * declarations), as README's Install section says: the root needs `effect` (and `ioredis`'s types, for
 * `CacheStore.layerRedis`'s options); nothing but `effect-cacheme/kysely/pglite` needs PGlite; only
 * `effect-cacheme/admin` needs `@effect/platform-node`; `pg` and `mysql2` are loaded by URL, never by an import.
 */
const needs: Record<string, { readonly runtime: Array<string>; readonly types: Array<string> }> = {
  ".": { runtime: ["effect"], types: ["effect", "ioredis"] },
  "./kysely": { runtime: ["effect", "kysely"], types: ["effect", "ioredis", "kysely"] },
  "./kysely/pglite": { runtime: ["kysely"], types: ["@electric-sql/pglite", "kysely"] },
  "./admin": { runtime: ["@effect/platform-node", "effect", "kysely"], types: ["effect", "ioredis", "kysely"] }
}

describe("the package's import graph", () => {
  const manifest = () =>
    JSON.parse(readFileSync(join(unpacked, "package.json"), "utf8")) as {
      exports: Record<string, null | string | { readonly types: string; readonly import: string }>
      bin: Record<string, string>
      peerDependencies: Record<string, string>
      peerDependenciesMeta: Record<string, { readonly optional?: boolean }>
    }

  it("each entry point loads and reads only the packages it needs", () => {
    const { exports } = manifest()
    const entries = Object.entries(exports).filter(([path, target]) => path !== "./package.json" && target !== null)
    expect(entries.map(([path]) => path).sort()).toEqual(Object.keys(needs).sort())
    for (const [path, target] of entries) {
      const { types, import: js } = target as { readonly types: string; readonly import: string }
      expect([...importedPackages(join(unpacked, js), "runtime")].sort(), `${path} loads`).toEqual(needs[path]!.runtime)
      expect([...importedPackages(join(unpacked, types), "types")].sort(), `${path} reads`).toEqual(needs[path]!.types)
    }
  })

  it("the command loads nothing before it has checked its peers are there", () => {
    const { bin } = manifest()
    expect([...importedPackages(join(unpacked, bin["effect-cacheme"]!), "runtime")]).toEqual([])
  })

  it("declares what the root needs as required peers, everything else as optional peers", () => {
    const { peerDependencies, peerDependenciesMeta } = manifest()
    const root = new Set([...needs["."]!.runtime, ...needs["."]!.types])
    const reached = new Set([
      ...Object.values(needs).flatMap(({ runtime, types }) => [...runtime, ...types]),
      "pg",
      "mysql2"
    ])
    expect(Object.keys(peerDependencies).sort()).toEqual([...reached].sort())
    for (const name of reached) {
      expect(peerDependenciesMeta[name]?.optional === true, `${name} is an optional peer`).toBe(!root.has(name))
    }
  })
})

describe.concurrent("app 1: README's first line, effect-cacheme effect ioredis", () => {
  beforeAll(() => prepared.get(app1), 600_000)

  it("has none of kysely, pg, mysql2, PGlite or the platform packages", () => {
    expect(installed(app1.dir, "effect-cacheme")).toBe(true)
    for (const name of ["kysely", "pg", "mysql2", "@electric-sql/pglite", "@effect/platform-node"]) {
      expect(installed(app1.dir, name), `${name} is installed in app 1`).toBe(false)
    }
  })

  it("compiles with tsc --strict, module nodenext, no skipLibCheck", () => expectCompiled(app1))

  it.skipIf(!redisUp).each(nodes)(
    "runs on $label against Redis",
    async (node) => {
      const prefix = `test:${process.pid}:consumer:${node.version}`
      const output = await start(app1, node, { CONSUMER_REDIS_URL: Redis.url, CONSUMER_PREFIX: prefix })
      const result = resultOf(output) as { node: string }
      expect(result.node.startsWith(node.version)).toBe(true)
      // Two loads: the hits came from Redis (a store that failed would have failed the strict reads).
      expect(result).toEqual({
        node: result.node,
        first: 49,
        second: 49,
        invalidated: 1,
        third: 49,
        fourth: 49,
        loads: 2
      })
      expect(output.code).toBe(0)
      expect(await deleteRedisPrefix(prefix)).toBeGreaterThan(0)
    },
    slow
  )

  it.each(nodes)(
    "is required by CommonJS on $label (require(esm))",
    async (node) => {
      const output = await run(node.bin, ["-e", 'console.log(Object.keys(require("effect-cacheme")).join(","))'], {
        cwd: app1.dir,
        env: childEnv(node.bin),
        timeout: 150_000
      })
      expect(output.stdout.trim().split(",")).toEqual(expect.arrayContaining(["CacheStore", "Memo", "Node"]))
      expect(output.code).toBe(0)
    },
    slow
  )

  it.each(nodes)(
    "its effect-cacheme command on $label names the packages it needs, without a stack trace",
    async (node) => {
      const output = await command(app1, node, ["--help"])
      expect(output.stderr.trim()).toBe(
        "effect-cacheme: the command line needs kysely and @effect/platform-node, not installed here (npm install kysely @effect/platform-node)"
      )
      expect(output.code).toBe(1)
    },
    slow
  )
})

describe.concurrent("app 2: plus README's lines for effect-cacheme/kysely and effect-cacheme/admin", () => {
  beforeAll(() => prepared.get(app2), 600_000)

  it("has kysely and @effect/platform-node, and no PGlite", () => {
    expect(installed(app2.dir, "kysely")).toBe(true)
    expect(installed(app2.dir, "@effect/platform-node")).toBe(true)
    expect(installed(app2.dir, "@electric-sql/pglite")).toBe(false)
  })

  it("compiles with tsc --strict, module nodenext, no skipLibCheck", () => expectCompiled(app2))

  it.skipIf(!redisUp).each(nodes)(
    "runs on $label: a Kysely write invalidates a Redis entry, the admin's API answers",
    async (node) => {
      const prefix = `test:${process.pid}:consumer-admin:${node.version}`
      const output = await start(app2, node, { CONSUMER_REDIS_URL: Redis.url, CONSUMER_PREFIX: prefix })
      const result = resultOf(output) as { node: string }
      expect(result.node.startsWith(node.version)).toBe(true)
      expect(result).toEqual({
        node: result.node,
        first: "Dune",
        second: "Dune",
        third: "Emma",
        loads: 2,
        anonymous: 401,
        authorized: 200,
        listsNode: true
      })
      expect(output.code).toBe(0)
      expect(await deleteRedisPrefix(prefix)).toBeGreaterThan(0)
    },
    slow
  )

  it.each(nodes)(
    "its effect-cacheme command runs --help on $label",
    async (node) => {
      const output = await command(app2, node, ["--help"])
      expect(output.stderr).toBe("")
      for (const name of ["migrate", "admin", "invalidate", "stats"]) expect(output.stdout).toContain(name)
      expect(output.code).toBe(0)
    },
    slow
  )

  it(
    "its effect-cacheme command names the driver a database URL needs when it is not installed",
    async () => {
      const output = await command(app2, nodes[0]!, ["--database-url", "pglite:memory", "migrate"])
      expect(output.stderr).toContain("this database URL needs the @electric-sql/pglite package")
      expect(output.code).toBe(1)
    },
    slow
  )
})

describe.concurrent("app 3: README's lines for effect-cacheme/kysely/pglite", () => {
  beforeAll(() => prepared.get(app3), 600_000)

  it("compiles with tsc --strict, module nodenext, no skipLibCheck", () => expectCompiled(app3))

  // On the oldest Node supported only: PGlite's start is slow on a busy machine, and Node 24 runs it in every
  // test of the repository's own.
  it(
    "runs on Node 22.19: a Kysely write to PGlite invalidates",
    async () => {
      const node = nodes[0]!
      const output = await start(app3, node)
      const result = resultOf(output) as { node: string }
      expect(result.node.startsWith(node.version)).toBe(true)
      expect(result).toEqual({ node: result.node, first: "Dune", second: "Dune", third: "Emma", loads: 2 })
      expect(output.code).toBe(0)
    },
    slow
  )
})
