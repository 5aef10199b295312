/**
 * Every route of the admin against a real server on an ephemeral loopback port, over the memory store and over
 * Redis: authentication (token, basic, session), CSRF on every state-changing request, validation (400 with
 * issues), escaping of attacker-controlled keys and values, bounded key paging, invalidation by every target and
 * the history it leaves.
 */
import { createServer } from "node:http"
import { NodeHttpServer } from "@effect/platform-node"
import { ConfigProvider, Effect, Layer, ManagedRuntime } from "effect"
import { HttpRouter, HttpServer, HttpServerResponse } from "effect/http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Admin, History } from "../../src/admin/index.ts"
import { CacheStore, Memo, Metrics } from "../../src/index.ts"
import { missing, Redis } from "../support/services.ts"
import { putRaw } from "../support/store.ts"
import { NoteNode, User, UserNode, xssKey, xssValue } from "./fixtures/nodes.ts"
import { basic, bearer, Client, seed, type Started, startAdmin, storeLayer, TOKEN, USER } from "./support.ts"

const json = (body: unknown) => ({
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify(body)
})

const withHeaders = (init: RequestInit, headers: Record<string, string>): RequestInit => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), ...headers }
})

const form = (fields: Record<string, string>): RequestInit => ({
  method: "POST",
  headers: { "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams(fields)
})

const exists = (admin: Started, key: string) =>
  admin.run(
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const info = yield* store.inspect(key)
      return info?.value !== undefined
    })
  )

describe("configuration", () => {
  it("refuses to start without credentials", async () => {
    const exit = await Effect.runPromiseExit(
      Layer.build(
        Admin.layerServer({ port: 0, logRequests: false }).pipe(
          Layer.provide(Layer.mergeAll(CacheStore.layerMemory(), History.layerMemory()))
        )
      ).pipe(Effect.scoped)
    )
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("refuses to start without credentials")
  })

  it("refuses a short token, a short password and a bad path", async () => {
    for (const [options, message] of [
      [{ token: "short" }, "at least 16 characters"],
      [{ users: [{ username: "bob", password: "1234" }] }, "at least 8 characters"],
      [{ token: TOKEN, path: "/admin/<x>" }, "the admin path must look like /admin"]
    ] as const) {
      const exit = await Effect.runPromiseExit(
        Layer.build(
          Admin.layerServer({ ...options, port: 0, logRequests: false }).pipe(
            Layer.provide(Layer.mergeAll(CacheStore.layerMemory(), History.layerMemory()))
          )
        ).pipe(Effect.scoped)
      )
      expect(exit._tag).toBe("Failure")
      expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain(message)
    }
  })
})

describe("credentials from the environment", () => {
  const start = (env: Record<string, string>) =>
    Effect.runPromiseExit(
      Effect.gen(function* () {
        const { handler, dispose } = HttpRouter.toWebHandler(
          Admin.layerConfig({ path: "/admin" }).pipe(
            Layer.provide(Layer.mergeAll(CacheStore.layerMemory(), History.layerMemory())),
            Layer.provide(ConfigProvider.layer(ConfigProvider.fromUnknown(env)))
          ),
          { disableLogger: true }
        )
        try {
          const ok = yield* Effect.promise(() =>
            handler(new Request("http://localhost/admin/api/session", { headers: bearer }))
          )
          const basicAuth = yield* Effect.promise(() =>
            handler(new Request("http://localhost/admin/api/session", { headers: basic("carol", "carol's password") }))
          )
          return [ok.status, basicAuth.status]
        } finally {
          yield* Effect.promise(dispose)
        }
      })
    )

  it("reads CACHEME_ADMIN_TOKEN, CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD", async () => {
    const both = await start({
      CACHEME_ADMIN_TOKEN: TOKEN,
      CACHEME_ADMIN_USER: "carol",
      CACHEME_ADMIN_PASSWORD: "carol's password"
    })
    expect(both._tag === "Success" ? both.value : both).toEqual([200, 200])
    const tokenOnly = await start({ CACHEME_ADMIN_TOKEN: TOKEN })
    expect(tokenOnly._tag === "Success" ? tokenOnly.value : tokenOnly).toEqual([200, 401])
  })

  it("refuses to start without them, or with a user and no password", async () => {
    const none = await start({})
    expect(String(none._tag === "Failure" ? none.cause : "started")).toContain("refuses to start without credentials")
    const half = await start({ CACHEME_ADMIN_USER: "carol" })
    expect(String(half._tag === "Failure" ? half.cause : "started")).toContain(
      "set both CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD"
    )
  })
})

for (const kind of ["memory", "redis"] as const) {
  describe.skipIf(kind === "redis" && (await missing(Redis)))(`admin over the ${kind} store`, () => {
    let admin: Started
    let api: Client
    let csrf: string

    beforeAll(async () => {
      admin = await startAdmin(kind)
      await admin.run(seed(3))
      api = new Client(admin.url)
      const session = await api.fetch("/api/session", { headers: bearer })
      csrf = ((await session.json()) as { csrfToken: string }).csrfToken
    })
    afterAll(async () => {
      await admin?.close()
    })

    const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
      api.fetch(path, withHeaders(json(body), { ...bearer, "x-csrf-token": csrf, ...headers }))

    describe("authentication", () => {
      it("answers 401 to the API without credentials, with a wrong token and with a wrong password", async () => {
        for (const headers of [
          {},
          { authorization: "Bearer wrong-token-wrong-token" },
          { authorization: `Bearer ${TOKEN}x` },
          basic(USER.username, "wrong password"),
          basic("mallory", USER.password),
          { authorization: "Digest abc" }
        ]) {
          const response = await api.fetch("/api/stats", { headers })
          expect(response.status).toBe(401)
          expect(response.headers.get("www-authenticate")).toBe('Bearer realm="effect-cacheme admin"')
          const body = (await response.json()) as { error: string }
          expect(body.error).toBe("Unauthorized")
        }
      })

      it("accepts the token and basic auth", async () => {
        expect((await api.fetch("/api/stats", { headers: bearer })).status).toBe(200)
        const response = await api.fetch("/api/session", { headers: basic(USER.username, USER.password) })
        expect(response.status).toBe(200)
        expect(await response.json()).toMatchObject({ user: "alice", via: "basic" })
      })

      it("sends pages without a session to the login form, keeping where they were going", async () => {
        const response = await api.fetch("/keys?pattern=user%3A*")
        expect(response.status).toBe(303)
        expect(response.headers.get("location")).toBe("/admin/login?next=%2Fkeys%3Fpattern%3Duser%253A*")
        const posted = await api.fetch("/invalidate", form({ target: "key", value: "user:1" }))
        expect(posted.status).toBe(303)
        expect(await exists(admin, "user:1")).toBe(true)
      })

      it("logs in with the token, sets a strict HttpOnly session cookie scoped to the admin path", async () => {
        const browser = new Client(admin.url)
        const response = await browser.login()
        expect(response.status).toBe(303)
        expect(response.headers.get("location")).toBe("/admin/")
        const cookie = response.headers.getSetCookie().find((line) => line.startsWith("cacheme_session="))!
        expect(cookie).toMatch(/HttpOnly/i)
        expect(cookie).toMatch(/SameSite=Strict/i)
        expect(cookie).toMatch(/Path=\/admin(;|$)/)
        expect(cookie).not.toMatch(/Secure/i)
        const dashboard = await browser.fetch("/")
        expect(dashboard.status).toBe(200)
        expect(await dashboard.text()).toContain("<span>token</span>")
      })

      it("marks cookies Secure behind an HTTPS proxy", async () => {
        const browser = new Client(admin.url)
        const page = await browser.fetch("/login", { headers: { "x-forwarded-proto": "https" } })
        expect(page.headers.getSetCookie()[0]).toMatch(/; Secure/i)
      })

      it("logs in with a user and password, and refuses wrong ones", async () => {
        const wrong = await new Client(admin.url).login({ username: USER.username, password: "not the password" })
        expect(wrong.status).toBe(401)
        expect(await wrong.text()).toContain("Wrong user, password or token.")
        const browser = new Client(admin.url)
        const response = await browser.login(USER)
        expect(response.status).toBe(303)
        expect(await (await browser.fetch("/")).text()).toContain("<span>alice</span>")
      })

      it("refuses a login post without the form's token (login CSRF)", async () => {
        const browser = new Client(admin.url)
        const response = await browser.fetch(
          "/login",
          form({ username: "", password: TOKEN, _login: "forged", next: "/" })
        )
        expect(response.status).toBe(403)
        expect(browser.cookies.has("cacheme_session")).toBe(false)
      })

      it("refuses a forged or tampered session cookie", async () => {
        const browser = new Client(admin.url)
        await browser.login()
        const cookie = browser.cookies.get("cacheme_session")!
        const [payload, signature] = cookie.split(".")
        const forged = Buffer.from(JSON.stringify({ u: "mallory", e: Date.now() + 60_000, n: "x" }), "utf8").toString(
          "base64url"
        )
        for (const value of [`${forged}.${signature}`, `${payload}.${signature}x`, "garbage"]) {
          const response = await api.fetch("/api/stats", { headers: { cookie: `cacheme_session=${value}` } })
          expect(response.status).toBe(401)
        }
      })

      it("logs out (POST with CSRF) and the session stops working", async () => {
        const browser = new Client(admin.url)
        await browser.login()
        const session = browser.cookies.get("cacheme_session")!
        const token = await browser.csrfFrom("/")
        const response = await browser.fetch("/logout", form({ _csrf: token }))
        expect(response.status).toBe(303)
        expect(response.headers.get("location")).toBe("/admin/login")
        const again = await api.fetch("/api/stats", { headers: { cookie: `cacheme_session=${session}` } })
        expect(again.status).toBe(401)
      })
    })

    describe("security headers", () => {
      it("sets a CSP without scripts, nosniff, no framing, no caching, on pages and API alike", async () => {
        const browser = new Client(admin.url)
        for (const response of [
          await api.fetch("/api/stats", { headers: bearer }),
          await browser.fetch("/login"),
          await api.fetch("/api/stats")
        ]) {
          const csp = response.headers.get("content-security-policy")!
          expect(csp).toContain("default-src 'none'")
          expect(csp).toContain("frame-ancestors 'none'")
          expect(csp).not.toContain("script-src")
          expect(csp).not.toContain("unsafe-inline")
          expect(response.headers.get("x-content-type-options")).toBe("nosniff")
          expect(response.headers.get("x-frame-options")).toBe("DENY")
          expect(response.headers.get("cache-control")).toBe("no-store")
        }
      })

      it("serves its own stylesheet, with light and dark colours and a narrow layout", async () => {
        const response = await api.fetch("/style.css")
        expect(response.status).toBe(200)
        expect(response.headers.get("content-type")).toBe("text/css; charset=utf-8")
        const css = await response.text()
        expect(css).toContain("prefers-color-scheme: dark")
        expect(css).toContain("max-width: 640px")
        expect(css).not.toMatch(/@import|url\(/)
      })
    })

    describe("CSRF", () => {
      it("refuses API writes without, with a wrong, or with another caller's CSRF token, and changes nothing", async () => {
        const other = await (await api.fetch("/api/session", { headers: basic(USER.username, USER.password) })).json()
        for (const headers of [
          { ...bearer },
          { ...bearer, "x-csrf-token": "wrong" },
          { ...bearer, "x-csrf-token": (other as { csrfToken: string }).csrfToken }
        ]) {
          const response = await api.fetch(
            "/api/invalidate",
            withHeaders(json({ target: "key", value: "user:1" }), headers)
          )
          expect(response.status).toBe(403)
          expect(((await response.json()) as { error: string }).error).toBe("Forbidden")
        }
        expect(await exists(admin, "user:1")).toBe(true)
      })

      it("refuses form posts without the token, and cross-site posts even with it", async () => {
        const browser = new Client(admin.url)
        await browser.login()
        const token = await browser.csrfFrom("/")
        const without = await browser.fetch("/invalidate", form({ target: "key", value: "user:1" }))
        expect(without.status).toBe(403)
        expect(await without.text()).toContain("missing CSRF token")
        const crossSite = await browser.fetch(
          "/invalidate",
          withHeaders(form({ target: "key", value: "user:1", _csrf: token }), { "sec-fetch-site": "cross-site" })
        )
        expect(crossSite.status).toBe(403)
        expect(await exists(admin, "user:1")).toBe(true)
      })

      it("binds the session's token to the session", async () => {
        const first = new Client(admin.url)
        await first.login()
        const second = new Client(admin.url)
        await second.login()
        const token = await first.csrfFrom("/")
        const response = await second.fetch("/invalidate", form({ target: "key", value: "user:1", _csrf: token }))
        expect(response.status).toBe(403)
      })
    })

    describe("validation", () => {
      it("answers 400 to bad JSON, with the parser's message", async () => {
        const response = await api.fetch("/api/invalidate", {
          method: "POST",
          headers: { ...bearer, "x-csrf-token": csrf, "content-type": "application/json" },
          body: "{target:"
        })
        expect(response.status).toBe(400)
        const body = (await response.json()) as { error: string; message: string }
        expect(body.error).toBe("BadRequest")
        expect(body.message).toMatch(/^invalid JSON body/)
      })

      it("answers 400 listing every issue of a body that does not match the Schema", async () => {
        const response = await post("/api/invalidate", { target: "everything", value: "", mode: "gentle" })
        expect(response.status).toBe(400)
        const body = (await response.json()) as { issues: Array<{ path: string; message: string }> }
        expect(body.issues.map((issue) => issue.path).sort()).toEqual(["mode", "target", "value"])
        for (const bad of [[], "text", null, { target: "key" }, { target: "key", value: 42 }]) {
          expect((await post("/api/invalidate", bad)).status).toBe(400)
        }
      })

      it("answers 415 to a body of another type and 413 to a body too large", async () => {
        const text = await api.fetch("/api/invalidate", {
          method: "POST",
          headers: { ...bearer, "x-csrf-token": csrf, "content-type": "text/plain" },
          body: "target=key"
        })
        expect(text.status).toBe(415)
        const large = await post("/api/invalidate", { target: "key", value: "x".repeat(70_000) })
        expect(large.status).toBe(413)
      })

      it("answers 400 to bad query parameters", async () => {
        for (const path of [
          "/api/keys?count=0",
          "/api/keys?count=abc",
          "/api/keys?count=1000",
          "/api/keys?cursor=%3Cscript%3E",
          "/api/keys?pattern=~t:*",
          "/api/history?limit=-1",
          "/api/history?target=everything",
          "/api/key",
          "/api/key?key=a&key=b",
          "/api/key?key=~t:admin_test_user",
          "/api/node"
        ]) {
          const response = await api.fetch(path, { headers: bearer })
          expect(response.status, path).toBe(400)
          expect(((await response.json()) as { error: string }).error).toBe("BadRequest")
        }
      })

      it("refuses patterns that reach for sets or spell out the prefix", async () => {
        for (const pattern of ["~g:*", `${admin.prefix}*`, "user:\u0000*"]) {
          const response = await post("/api/invalidate", { target: "pattern", value: pattern })
          expect(response.status, pattern).toBe(400)
        }
        expect(await exists(admin, "user:1")).toBe(true)
      })

      it("answers 404 for an unknown node or key", async () => {
        expect((await post("/api/invalidate", { target: "node", value: "no_such_node" })).status).toBe(404)
        expect((await api.fetch("/api/node?name=no_such_node", { headers: bearer })).status).toBe(404)
        expect((await api.fetch("/api/key?key=user%3A404", { headers: bearer })).status).toBe(404)
      })
    })

    describe("reading", () => {
      it("GET /api/stats: store health and per-node counters and key counts", async () => {
        const before = await admin.run(Metrics.stats(UserNode.name))
        await admin.run(Memo.cachedStrict(Effect.succeed(new User({ id: 1, name: "never" })), UserNode.make({ id: 1 })))
        const response = await api.fetch("/api/stats", { headers: bearer })
        expect(response.status).toBe(200)
        const body = (await response.json()) as {
          store: { kind: string; prefix: string; healthy: boolean; latencyMillis: number }
          nodes: Array<{
            name: string
            keys: number
            hits: number
            misses: number
            loads: number
            hitRatio: number
            tags: Array<string>
          }>
        }
        expect(body.store).toMatchObject({ kind, prefix: admin.prefix, healthy: true })
        expect(body.store.latencyMillis).toBeGreaterThanOrEqual(0)
        const user = body.nodes.find((node) => node.name === UserNode.name)!
        expect(user.keys).toBe(3)
        expect(user.hits).toBe(before.hits + 1)
        expect(user.misses).toBe(before.misses)
        expect(user.tags).toEqual(["admin_test_user", "people"])
        expect(user.hitRatio).toBeCloseTo((before.hits + 1) / (before.hits + 1 + before.misses + before.staleServed))
        const note = body.nodes.find((node) => node.name === NoteNode.name)!
        expect(note.keys).toBe(2)
      })

      it("GET /api/node: one node", async () => {
        const response = await api.fetch(`/api/node?name=${UserNode.name}`, { headers: bearer })
        expect(response.status).toBe(200)
        expect(await response.json()).toMatchObject({ name: UserNode.name, keys: 3, stamp: UserNode.stamp })
      })

      it("GET /api/keys: pages with a cursor until complete, filters by pattern and node", async () => {
        const all = await (await api.fetch("/api/keys?count=200", { headers: bearer })).json()
        expect((all as { keys: Array<{ key: string }> }).keys.map((row) => row.key).sort()).toEqual(
          ["note:hello", xssKey, "user:1", "user:2", "user:3"].sort()
        )
        const users = (await (await api.fetch("/api/keys?pattern=user%3A*", { headers: bearer })).json()) as {
          keys: Array<{ key: string; node: string; state: string; ttlMillis: number | null; size: number }>
          complete: boolean
        }
        expect(users.keys.map((row) => row.key)).toEqual(["user:1", "user:2", "user:3"])
        expect(users.keys[0]).toMatchObject({ node: UserNode.name, state: "fresh", ttlMillis: null })
        expect(users.keys[0]!.size).toBe(JSON.stringify({ id: 1, name: "User 1" }).length)
        const notes = (await (await api.fetch(`/api/keys?node=${NoteNode.name}`, { headers: bearer })).json()) as {
          keys: Array<{ key: string; ttlMillis: number }>
        }
        expect(notes.keys.map((row) => row.key).sort()).toEqual(["note:hello", xssKey].sort())
        expect(notes.keys[0]!.ttlMillis).toBeGreaterThan(3_500_000)

        // Paging: one key wanted per request; following the cursor visits every key exactly once.
        const seen: Array<string> = []
        let cursor = "0"
        let requests = 0
        do {
          const page = (await (
            await api.fetch(`/api/keys?count=1${cursor === "0" ? "" : `&cursor=${cursor}`}`, { headers: bearer })
          ).json()) as { keys: Array<{ key: string }>; cursor: string; complete: boolean }
          seen.push(...page.keys.map((row) => row.key))
          cursor = page.cursor
          expect(page.complete).toBe(cursor === "0")
          requests++
        } while (cursor !== "0" && requests < 50)
        expect(new Set(seen).size).toBe(seen.length)
        expect(seen.sort()).toEqual(["note:hello", xssKey, "user:1", "user:2", "user:3"].sort())
      })

      it("GET /api/key: the value decoded with the node's Schema, its sets and state", async () => {
        const response = await api.fetch("/api/key?key=user%3A2", { headers: bearer })
        expect(response.status).toBe(200)
        expect(await response.json()).toMatchObject({
          key: "user:2",
          node: UserNode.name,
          stamp: UserNode.stamp,
          status: "decoded",
          state: "fresh",
          value: { id: 2, name: "User 2" },
          groups: ["user:2"],
          tags: expect.arrayContaining(["admin_test_user", "people"]),
          truncated: false
        })
      })

      it("GET /api/key: a value no node knows is shown raw, one written under another Schema as a mismatch", async () => {
        const store = await admin.run(
          Effect.gen(function* () {
            return yield* CacheStore.CacheStore
          })
        )
        await admin.run(
          Effect.gen(function* () {
            for (const [key, value] of [
              ["legacy:1", 'ghost_node@0#abc\n{"a":1}'],
              ["user:99", `${UserNode.name}@0#oldSchema0\n{"id":99}`],
              ["user:98", `${UserNode.stamp}\n{"id":"not a number"}`]
            ] as const) {
              yield* putRaw(store, key, value, { lifeMillis: 600_000 })
            }
          })
        )
        const raw = await (await api.fetch("/api/key?key=legacy%3A1", { headers: bearer })).json()
        expect(raw).toMatchObject({ node: "ghost_node", status: "raw", value: { a: 1 } })
        const mismatch = await (await api.fetch("/api/key?key=user%3A99", { headers: bearer })).json()
        expect(mismatch).toMatchObject({ node: UserNode.name, status: "mismatch" })
        const corrupt = await (await api.fetch("/api/key?key=user%3A98", { headers: bearer })).json()
        expect(corrupt).toMatchObject({ node: UserNode.name, status: "corrupt" })
        await admin.run(store.invalidate(["legacy:1", "user:99", "user:98"], "hard"))
      })

      it("GET /api/history: newest first, paged with before/next, filtered by target", async () => {
        const local = await startAdmin(kind)
        try {
          const client = new Client(local.url)
          const token = (
            (await (await client.fetch("/api/session", { headers: bearer })).json()) as { csrfToken: string }
          ).csrfToken
          for (const value of ["a:1", "a:2", "a:3"]) {
            await client.fetch(
              "/api/invalidate",
              withHeaders(json({ target: "key", value }), { ...bearer, "x-csrf-token": token })
            )
          }
          await client.fetch(
            "/api/invalidate",
            withHeaders(json({ target: "tag", value: "t" }), { ...bearer, "x-csrf-token": token })
          )
          const first = (await (await client.fetch("/api/history?limit=2", { headers: bearer })).json()) as {
            entries: Array<{ id: number; value: string; target: string; actor: string; createdAt: string }>
            next: number
          }
          expect(first.entries.map((entry) => entry.value)).toEqual(["t", "a:3"])
          expect(first.entries[0]!.actor).toBe("admin:token")
          expect(Number.isNaN(Date.parse(first.entries[0]!.createdAt))).toBe(false)
          const second = (await (
            await client.fetch(`/api/history?limit=2&before=${first.next}`, { headers: bearer })
          ).json()) as {
            entries: Array<{ value: string }>
            next: number | null
          }
          expect(second.entries.map((entry) => entry.value)).toEqual(["a:2", "a:1"])
          expect(second.next).toBe(null)
          const tags = (await (await client.fetch("/api/history?target=tag", { headers: bearer })).json()) as {
            entries: Array<{ value: string }>
          }
          expect(tags.entries.map((entry) => entry.value)).toEqual(["t"])
        } finally {
          await local.close()
        }
      })
    })

    describe("invalidation", () => {
      it("POST /api/invalidate by key, then group, tag, node and pattern, each with its count and history row", async () => {
        const local = await startAdmin(kind)
        try {
          await local.run(seed(4))
          const client = new Client(local.url)
          const token = (
            (await (await client.fetch("/api/session", { headers: basic(USER.username, USER.password) })).json()) as {
              csrfToken: string
            }
          ).csrfToken
          const invalidate = async (body: unknown) => {
            const response = await client.fetch(
              "/api/invalidate",
              withHeaders(json(body), { ...basic(USER.username, USER.password), "x-csrf-token": token })
            )
            expect(response.status).toBe(200)
            return response.json()
          }
          expect(await invalidate({ target: "key", value: "user:1" })).toEqual({
            target: "key",
            value: "user:1",
            mode: "hard",
            count: 1
          })
          expect(await exists(local, "user:1")).toBe(false)
          expect(await invalidate({ target: "key", value: "user:1" })).toMatchObject({ count: 0 })
          expect(await invalidate({ target: "group", value: "user:2" })).toMatchObject({ count: 1 })
          expect(await exists(local, "user:2")).toBe(false)
          expect(await invalidate({ target: "tag", value: "people", mode: "soft" })).toMatchObject({
            mode: "soft",
            count: 2
          })
          const soft = (await (await client.fetch("/api/key?key=user%3A3", { headers: bearer })).json()) as {
            state: string
          }
          expect(soft.state).toBe("stale")
          expect(await invalidate({ target: "node", value: UserNode.name })).toMatchObject({ count: 2 })
          expect(await exists(local, "user:3")).toBe(false)
          expect(await invalidate({ target: "pattern", value: "note:*" })).toMatchObject({ count: 2 })
          expect(await exists(local, "note:hello")).toBe(false)

          const history = (await (await client.fetch("/api/history", { headers: bearer })).json()) as {
            entries: Array<{ actor: string; target: string; value: string; mode: string; count: number }>
          }
          expect(history.entries.map(({ target, value, mode, count }) => [target, value, mode, count])).toEqual([
            ["pattern", "note:*", "hard", 2],
            ["tag", UserNode.name, "hard", 2],
            ["tag", "people", "soft", 2],
            ["group", "user:2", "hard", 1],
            ["key", "user:1", "hard", 0],
            ["key", "user:1", "hard", 1]
          ])
          expect(new Set(history.entries.map((entry) => entry.actor))).toEqual(new Set(["admin:alice"]))
        } finally {
          await local.close()
        }
      })

      it("records invalidations the application makes, through History.layerListener", async () => {
        const local = await startAdmin(kind)
        try {
          await local.run(seed(1))
          await local.run(
            Memo.invalidate(UserNode.make({ id: 1 }), { source: "kysely" }).pipe(Effect.provide(History.layerListener))
          )
          await local.run(Memo.invalidateNode(NoteNode).pipe(Effect.provide(History.layerListener)))
          const history = (await (await fetch(`${local.url}/api/history`, { headers: bearer })).json()) as {
            entries: Array<{ actor: string; target: string; value: string; count: number }>
          }
          expect(history.entries.map(({ actor, target, value, count }) => [actor, target, value, count])).toEqual([
            ["app", "tag", NoteNode.name, 2],
            ["kysely", "key", "user:1", 1]
          ])
        } finally {
          await local.close()
        }
      })

      it("records an admin invalidation once when the application's listener already records", async () => {
        const local = await startAdmin(kind, { listener: true })
        try {
          await local.run(seed(1))
          const client = new Client(local.url)
          const token = (
            (await (await client.fetch("/api/session", { headers: bearer })).json()) as {
              csrfToken: string
            }
          ).csrfToken
          const response = await client.fetch(
            "/api/invalidate",
            withHeaders(json({ target: "key", value: "user:1" }), { ...bearer, "x-csrf-token": token })
          )
          expect(await response.json()).toMatchObject({ count: 1 })
          const history = (await (await fetch(`${local.url}/api/history`, { headers: bearer })).json()) as {
            entries: Array<{ actor: string }>
          }
          expect(history.entries.map((entry) => entry.actor)).toEqual(["admin:token"])
        } finally {
          await local.close()
        }
      })
    })

    describe("pages", () => {
      let browser: Client
      beforeAll(async () => {
        browser = new Client(admin.url)
        await browser.login()
        await admin.run(seed(3))
      })

      it("GET /: the dashboard lists nodes with key counts and hit-ratio bars, and the store", async () => {
        const html = await (await browser.fetch("/")).text()
        expect(html).toContain(`<a href="/admin/node?name=${UserNode.name}">${UserNode.name}</a>`)
        expect(html).toMatch(/<svg viewBox="0 0 100 10"[^>]*role="img" aria-label="hit ratio [\d.]+%">/)
        expect(html).toContain(`<div class="value mono">${admin.prefix}</div>`)
        expect(html).toContain('<link rel="stylesheet" href="/admin/style.css">')
        expect(html).not.toContain("<script")
        expect(html).not.toMatch(/ style="/)
      })

      it("GET /keys: key search with a pattern", async () => {
        const html = await (await browser.fetch("/keys?pattern=user%3A*")).text()
        expect(html).toContain('<a href="/admin/key?key=user%3A1">user:1</a>')
        expect(html).not.toContain("note:hello")
        const bad = await browser.fetch("/keys?count=0")
        expect(bad.status).toBe(400)
        expect(await bad.text()).toContain("<code>count</code>")
      })

      it("GET /node: node detail with its keys", async () => {
        const html = await (await browser.fetch(`/node?name=${NoteNode.name}`)).text()
        expect(html).toContain(`<h1>Node ${NoteNode.name}</h1>`)
        expect(html).toContain("note:hello")
        expect(html).not.toContain("user:1")
        expect((await browser.fetch("/node?name=nope")).status).toBe(404)
      })

      it("GET /key: the decoded value", async () => {
        const html = await (await browser.fetch("/key?key=user%3A2")).text()
        expect(html).toContain('<span class="badge decoded">decoded</span>')
        expect(html).toContain("&quot;name&quot;: &quot;User 2&quot;")
      })

      it("GET /invalidate asks for confirmation, POST /invalidate does it and tells how many", async () => {
        const confirm = await browser.fetch("/invalidate?target=tag&value=people")
        const html = await confirm.text()
        expect(confirm.status).toBe(200)
        expect(html).toContain("3 keys are listed under this tag")
        expect(await exists(admin, "user:1")).toBe(true)
        const token = /name="_csrf" value="([^"]+)"/.exec(html)![1]!
        const done = await browser.fetch(
          "/invalidate",
          form({ _csrf: token, target: "key", value: "user:3", mode: "hard" })
        )
        expect(done.status).toBe(200)
        expect(await done.text()).toContain('Removed <strong class="count">1</strong> key')
        expect(await exists(admin, "user:3")).toBe(false)
        const bad = await browser.fetch("/invalidate", form({ _csrf: token, target: "nothing", value: "" }))
        expect(bad.status).toBe(400)
      })

      it("GET /history: the rows", async () => {
        const html = await (await browser.fetch("/history")).text()
        expect(html).toMatch(
          /<td>admin:token<\/td>\s*<td>key<\/td>\s*<td class="key"><a href="\/admin\/key\?key=user%3A3">user:3<\/a><\/td>/
        )
      })

      it("shows an XSS payload stored as a key and as a value escaped, everywhere", async () => {
        const pages = [
          await (await browser.fetch("/keys")).text(),
          await (await browser.fetch(`/node?name=${NoteNode.name}`)).text(),
          await (await browser.fetch(`/key?key=${encodeURIComponent(xssKey)}`)).text(),
          await (await browser.fetch(`/invalidate?target=key&value=${encodeURIComponent(xssKey)}`)).text(),
          await (await browser.fetch("/invalidate?target=tag&value=%3Cb%3Ebold-tag%3C%2Fb%3E")).text()
        ]
        for (const html of pages) {
          expect(html).not.toContain("<script>window.__xss")
          expect(html).not.toContain("<img src=x")
          expect(html).not.toContain("<b>bold-tag</b>")
        }
        expect(pages[0]).toContain("note:&lt;script&gt;window.__xss=1&lt;/script&gt;")
        expect(pages[2]).toContain("&lt;img src=x onerror=\\&quot;window.__xss=2\\&quot;&gt;")
        expect(pages[2]).toContain("&lt;b&gt;bold-tag&lt;/b&gt;")
        expect(pages[3]).toContain('value="note:&lt;script&gt;window.__xss=1&lt;/script&gt;"')
        const view = (await (
          await api.fetch(`/api/key?key=${encodeURIComponent(xssKey)}`, { headers: bearer })
        ).json()) as {
          value: string
        }
        expect(view.value).toBe(xssValue)
        // Invalidating it by form records it; the history shows it escaped too.
        const token = await browser.csrfFrom("/")
        await browser.fetch("/invalidate", form({ _csrf: token, target: "key", value: xssKey }))
        const history = await (await browser.fetch("/history")).text()
        expect(history).toContain("note:&lt;script&gt;window.__xss=1&lt;/script&gt;")
        expect(history).not.toContain("<script>window.__xss")
      })
    })
  })
}

describe("mounting", () => {
  it("serves at the root path too, with cookies scoped to /", async () => {
    const admin = await startAdmin("memory", { path: "" })
    try {
      const browser = new Client(admin.url)
      const response = await browser.login()
      expect(response.headers.get("location")).toBe("/")
      expect(response.headers.getSetCookie().find((line) => line.startsWith("cacheme_session="))).toMatch(
        /Path=\/(;|$)/
      )
      expect((await browser.fetch("/")).status).toBe(200)
    } finally {
      await admin.close()
    }
  })

  it("mounts beside the application's own routes in one HttpRouter app", async () => {
    const AppRoutes = HttpRouter.add("GET", "/hello", HttpServerResponse.text("app"))
    const AdminRoutes = Admin.layer({ path: "/ops/cache", token: TOKEN })
    const server = HttpRouter.serve(Layer.mergeAll(AppRoutes, AdminRoutes), {
      disableLogger: true,
      disableListenLog: true
    }).pipe(
      Layer.provide(Layer.mergeAll(storeLayer("memory", "mount:"), History.layerMemory())),
      Layer.provideMerge(NodeHttpServer.layerServer(createServer, { port: 0, host: "127.0.0.1" }))
    )
    const runtime = ManagedRuntime.make(server)
    try {
      const http = await runtime.runPromise(
        Effect.gen(function* () {
          return yield* HttpServer.HttpServer
        })
      )
      const origin = `http://127.0.0.1:${(http.address as { port: number }).port}`
      expect(await (await fetch(`${origin}/hello`)).text()).toBe("app")
      const stats = await fetch(`${origin}/ops/cache/api/stats`, { headers: bearer })
      expect(stats.status).toBe(200)
      expect(((await stats.json()) as { store: { prefix: string } }).store.prefix).toBe("mount:")
      expect((await fetch(`${origin}/ops/cache/api/stats`)).status).toBe(401)
    } finally {
      await runtime.dispose()
    }
  })
})
