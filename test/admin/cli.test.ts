/**
 * The `effect-cacheme` executable, run as a child process like a user would: help, migrate on SQLite, PGlite and
 * PostgreSQL, invalidate against Redis with the history recorded, stats from the store and from a running admin,
 * and the admin server itself.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { Kysely } from "kysely"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { History } from "../../src/admin/index.ts"
import { CacheStore } from "../../src/index.ts"
import { NodeSqliteDialect } from "../../src/kysely/dialects/NodeSqliteDialect.ts"
import { missing, Postgres, Redis } from "../support/services.ts"
import { UserNode } from "./fixtures/nodes.ts"
import { cleanRedis, seed, startAdmin, storeLayer, TOKEN } from "./support.ts"

const bin = fileURLToPath(new URL("../../bin/effect-cacheme.ts", import.meta.url))
const fixture = fileURLToPath(new URL("./fixtures/nodes.ts", import.meta.url))

interface Run {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs the CLI with only the environment given (plus PATH), so the machine's CACHEME_* variables never leak in. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Run> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { env: { PATH: process.env.PATH ?? "", ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : 1
        resolve({ code, stdout, stderr })
      }
    )
  })

const dir = mkdtempSync(join(tmpdir(), "cacheme-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

describe("help", () => {
  it("prints the commands and shared flags", async () => {
    const { code, stdout } = await cli(["--help"])
    expect(code).toBe(0)
    for (const text of ["migrate", "admin", "invalidate", "stats", "--redis-url", "--database-url", "--import"]) {
      expect(stdout).toContain(text)
    }
  })

  it.each([
    ["migrate", ["--status", "--rollback"]],
    ["admin", ["--port", "--host", "--path", "--migrate"]],
    ["invalidate", ["--key", "--node", "--group", "--tag", "--pattern", "--soft", "--actor"]],
    ["stats", ["--url", "--json"]]
  ])("%s --help lists its flags", async (command, flags) => {
    const { code, stdout } = await cli([command, "--help"])
    expect(code).toBe(0)
    expect(stdout).toContain(`effect-cacheme ${command}`)
    for (const flag of flags) expect(stdout).toContain(flag)
  })

  it("prints its version, and refuses unknown flags", async () => {
    expect((await cli(["--version"])).stdout).toContain("0.1.0")
    const bad = await cli(["invalidate", "--everything"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("Unrecognized flag: --everything")
  })
})

const postgresMissing = await missing(Postgres)

describe("migrate", () => {
  it("creates, reports and rolls back the history table on SQLite", async () => {
    const env = { CACHEME_DATABASE_URL: `sqlite:${join(dir, "migrate.db")}` }
    expect(await cli(["migrate"], env)).toMatchObject({
      code: 0,
      stdout: "applied 2026_11_25_0001_create_cacheme_invalidation\n"
    })
    expect((await cli(["migrate"], env)).stdout).toBe("the history table is up to date\n")
    expect((await cli(["migrate", "--status"], env)).stdout).toMatch(
      /^2026_11_25_0001_create_cacheme_invalidation {2}ran \d{4}-\d\d-\d\dT/
    )
    expect((await cli(["migrate", "--rollback"], env)).stdout).toBe(
      "rolled back 2026_11_25_0001_create_cacheme_invalidation\n"
    )
    expect((await cli(["migrate", "--status"], env)).stdout).toContain("pending")
  })

  it("works on a PGlite data directory", async () => {
    const run = await cli(["--database-url", `pglite:${join(dir, "pglite")}`, "migrate"])
    expect(run).toMatchObject({ code: 0, stdout: "applied 2026_11_25_0001_create_cacheme_invalidation\n" })
  })

  it.skipIf(postgresMissing)("works on PostgreSQL, with its own table names", async () => {
    const table = `cli_hist_${Math.random().toString(36).slice(2, 8)}`
    const args = ["--database-url", Postgres.url, "--history-table", table]
    try {
      expect((await cli([...args, "migrate"])).stdout).toContain("applied")
      expect((await cli([...args, "migrate", "--status"])).stdout).toContain("ran")
    } finally {
      expect((await cli([...args, "migrate", "--rollback"])).stdout).toContain("rolled back")
    }
  })

  it("fails clearly without a database or with an unknown URL", async () => {
    const none = await cli(["migrate"])
    expect(none.code).toBe(1)
    expect(none.stderr).toContain("no history database")
    const bad = await cli(["--database-url", "oracle://user:secret@db/x", "migrate"])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("unsupported database URL")
    expect(bad.stderr).not.toContain("secret")
  })
})

describe.skipIf(await missing(Redis))("against Redis", () => {
  const prefix = `cmcli${Math.random().toString(36).slice(2, 8)}:`
  const database = join(dir, "history.db")
  const shared = [
    "--redis-url",
    Redis.url,
    "--prefix",
    prefix,
    "--import",
    fixture,
    "--database-url",
    `sqlite:${database}`
  ]
  const run = <A, E>(effect: Effect.Effect<A, E, CacheStore.CacheStore>) =>
    Effect.runPromise(effect.pipe(Effect.provide(storeLayer("redis", prefix)), Effect.scoped))
  const exists = (key: string) =>
    run(
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        return (yield* store.inspect(key))?.value !== undefined
      })
    )

  beforeAll(async () => {
    expect((await cli([...shared, "migrate"])).code).toBe(0)
  })
  afterAll(async () => {
    await cleanRedis(prefix)
  })

  it("invalidates by node, key, group, tag and pattern, and records each in the history", async () => {
    await run(seed(3))
    const node = await cli([...shared, "invalidate", "--node", UserNode.name, "--actor", "ci"])
    expect(node).toMatchObject({
      code: 0,
      stdout: `invalidated 3 keys (node ${UserNode.name}), recorded in the history\n`
    })
    expect(await exists("user:1")).toBe(false)
    expect(await exists("note:hello")).toBe(true)

    await run(seed(3))
    expect((await cli([...shared, "invalidate", "--key", "user:1", "--actor", "ci", "--json"])).stdout).toBe(
      `${JSON.stringify({ target: "key", value: "user:1", mode: "hard", count: 1 })}\n`
    )
    expect((await cli([...shared, "invalidate", "--group", "user:2", "--actor", "ci"])).stdout).toContain(
      "invalidated 1 key (group user:2)"
    )
    expect((await cli([...shared, "invalidate", "--tag", "people", "--soft", "--actor", "ci"])).stdout).toContain(
      "marked stale 1 key (tag people)"
    )
    expect((await cli([...shared, "invalidate", "--pattern", "note:*", "--actor", "ci"])).stdout).toContain(
      "invalidated 2 keys (pattern note:*)"
    )
    expect(await exists("note:hello")).toBe(false)

    const db = new Kysely<any>({ dialect: new NodeSqliteDialect({ database }) })
    try {
      const rows = await Effect.runPromise(
        Effect.gen(function* () {
          const history = yield* History.History
          return yield* history.list()
        }).pipe(Effect.provide(History.layerKysely({ db })))
      )
      expect(rows.map(({ actor, target, value, mode, count }) => [actor, target, value, mode, count])).toEqual([
        ["cli:ci", "pattern", "note:*", "hard", 2],
        ["cli:ci", "tag", "people", "soft", 1],
        ["cli:ci", "group", "user:2", "hard", 1],
        ["cli:ci", "key", "user:1", "hard", 1],
        ["cli:ci", "tag", UserNode.name, "hard", 3]
      ])
    } finally {
      await db.destroy()
    }
  })

  it("refuses ambiguous or unsafe invalidations", async () => {
    for (const [args, message] of [
      [["--key", "a", "--tag", "b"], "give exactly one of"],
      [[], "give exactly one of"],
      [["--node", "nobody"], "no node named nobody"],
      [["--pattern", `${prefix}*`], "patterns are relative to the store prefix"],
      [["--pattern", "~t:*"], "cannot start with ~"],
      [["--key", "~g:x"], "cannot start with ~"]
    ] as const) {
      const run = await cli([...shared, "invalidate", ...args])
      expect(run.code, args.join(" ")).toBe(1)
      expect(run.stderr).toContain(message)
    }
  })

  it("stats: store health and key counts per node", async () => {
    expect((await cli([...shared, "invalidate", "--node", UserNode.name])).code).toBe(0)
    await run(seed(2))
    const text = await cli([...shared, "stats"])
    expect(text.code).toBe(0)
    expect(text.stdout).toMatch(new RegExp(`^store redis \\(prefix ${prefix}\\): up, [\\d.]+ ms\\n`))
    expect(text.stdout).toMatch(new RegExp(`${UserNode.name} +2\\n`))
    const json = JSON.parse((await cli([...shared, "stats", "--json"])).stdout) as {
      nodes: Array<{ name: string; keys: number }>
    }
    expect(json.nodes.find((node) => node.name === UserNode.name)?.keys).toBe(2)
  })

  it("fails clearly when Redis does not answer", async () => {
    const run = await cli(["--redis-url", "redis://127.0.0.1:1", "stats"])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain("cannot reach the store at redis://127.0.0.1:1")
  })
})

describe("stats --url", () => {
  it("reads the counters of a running admin", async () => {
    const admin = await startAdmin("memory")
    try {
      await admin.run(seed(2))
      const run = await cli(["stats", "--url", admin.url], { CACHEME_ADMIN_TOKEN: TOKEN })
      expect(run.code).toBe(0)
      expect(run.stdout).toContain("hit ratio")
      expect(run.stdout).toMatch(new RegExp(`${UserNode.name} +2 +\\d+ +\\d+`))
      const denied = await cli(["stats", "--url", admin.url], { CACHEME_ADMIN_TOKEN: "wrong-token-but-long-enough" })
      expect(denied.code).toBe(1)
      expect(denied.stderr).toContain("answered 401")
    } finally {
      await admin.close()
    }
  })
})

describe("admin", () => {
  let child: ChildProcess | undefined
  afterAll(() => {
    child?.kill()
  })

  it("refuses to start without credentials", async () => {
    const run = await cli(["--redis-url", "memory://", "admin", "--port", "0"])
    expect(run.code).toBe(1)
    expect(run.stderr).toContain("refuses to start without credentials")
  })

  it("serves the admin with the credentials of the environment", async () => {
    child = spawn(
      process.execPath,
      [bin, "--redis-url", "memory://", "--import", fixture, "admin", "--port", "0", "--path", "/ops"],
      {
        env: { PATH: process.env.PATH ?? "", CACHEME_ADMIN_TOKEN: TOKEN },
        stdio: ["ignore", "pipe", "pipe"]
      }
    )
    const url = await new Promise<string>((resolve, reject) => {
      let output = ""
      const timer = setTimeout(() => reject(new Error(`no address in: ${output}`)), 30_000)
      child!.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening on (http:\/\/\S+)/.exec(output)
        if (match !== null) {
          clearTimeout(timer)
          resolve(match[1]!)
        }
      })
    })
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/ops\/$/)
    const stats = await fetch(`${url}api/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })
    expect(stats.status).toBe(200)
    const body = (await stats.json()) as { store: { kind: string }; nodes: Array<{ name: string }> }
    expect(body.store.kind).toBe("memory")
    expect(body.nodes.map((node) => node.name)).toContain(UserNode.name)
    expect((await fetch(`${url}api/stats`)).status).toBe(401)
  })
})
