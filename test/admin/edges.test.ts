/**
 * The admin's edges, attacked as a hostile client would: password guessing on every authentication path (Basic,
 * Bearer, the login form; serial, parallel, from one address and from many), the security headers on every kind
 * of answer (router 404s and 405s, errors, a defect), malformed `next` values after correct credentials, and
 * malformed SCAN cursors. Both stores; the Redis one also for budgets shared between admin processes and for a
 * Redis that stops answering.
 */
import { Effect, Layer } from "effect"
import { NetAddress } from "effect/net"
import type { Admin } from "../../src/admin/index.ts"
import { Redis as IORedis } from "ioredis"
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { CacheStoreError } from "../../src/CacheStore.ts"
import { CacheStore } from "../../src/index.ts"
import { missing, Redis } from "../support/services.ts"
import {
  basic,
  bearer,
  cleanRedis,
  loginForm,
  postLogin,
  type RawResponse,
  send,
  seed,
  type Started,
  startAdmin,
  TOKEN,
  USER
} from "./support.ts"

const BOB = { username: "bob", password: "bob's long password" }

const expectSecurityHeaders = (response: RawResponse, what: string) => {
  expect(response.headers["content-security-policy"] ?? "", what).toContain("default-src 'none'")
  expect(response.headers["content-security-policy"] ?? "", what).toContain("frame-ancestors 'none'")
  expect(response.headers["x-content-type-options"], what).toBe("nosniff")
  expect(response.headers["x-frame-options"], what).toBe("DENY")
  expect(response.headers["referrer-policy"], what).toBe("no-referrer")
  expect(response.headers["cross-origin-opener-policy"], what).toBe("same-origin")
}

const retryAfter = (response: RawResponse): number => {
  const value = response.headers["retry-after"]
  expect(value, `Retry-After on ${response.status}`).toMatch(/^[1-9][0-9]*$/)
  return Number(value)
}

const count = (responses: ReadonlyArray<RawResponse>, status: number) =>
  responses.filter((response) => response.status === status).length

const wrongBasic = basic(USER.username, "wrong password!")
const wrongBearer = { authorization: "Bearer not-the-token-0123456789" }

for (const kind of ["memory", "redis"] as const) {
  describe.skipIf(kind === "redis" && (await missing(Redis)))(`rate limiting over the ${kind} store`, () => {
    // A budget far below the default, over a window long enough that no unit comes back during a test.
    const rateLimit: Admin.RateLimitOptions = {
      perClient: { attempts: 5, window: "1 hour" },
      perUser: { attempts: 8, window: "1 hour" }
    }
    // Every test has an admin of its own: budgets spent by one test never show in another.
    let admin: Started
    const start = () => startAdmin(kind, { users: [USER, BOB], rateLimit })
    beforeEach(async () => {
      admin = await start()
    })
    afterEach(async () => {
      await admin?.close()
    })
    const api = (path: string, headers: Record<string, string>, localAddress: string) =>
      send(`${admin.url}${path}`, { headers, localAddress })

    for (const [scheme, wrong] of [
      ["Basic", wrongBasic],
      ["Bearer", wrongBearer]
    ] as const) {
      it(`${scheme}: 50 parallel wrong guesses get the budget compared, then 429 with Retry-After`, async () => {
        const client = scheme === "Basic" ? "127.0.0.11" : "127.0.0.12"
        const responses = await Promise.all(Array.from({ length: 50 }, () => api("/api/session", wrong, client)))
        expect(count(responses, 401)).toBe(5)
        expect(count(responses, 429)).toBe(45)
        for (const response of responses.filter((r) => r.status === 429)) {
          expect(retryAfter(response)).toBeGreaterThan(0)
          expect(JSON.parse(response.body)).toMatchObject({ error: "TooManyRequests" })
          expectSecurityHeaders(response, "429")
        }
        // Past the budget the credentials are not even compared: the right ones are refused too, so a guess
        // beyond the budget tells nothing.
        const right = await api(
          "/api/session",
          scheme === "Basic" ? basic(USER.username, USER.password) : bearer,
          client
        )
        expect(right.status).toBe(429)
        // Serial guesses are refused the same way.
        for (let i = 0; i < 5; i++) expect((await api("/api/session", wrong, client)).status).toBe(429)
        // Another client is not locked out.
        const other = await api(
          "/api/session",
          scheme === "Basic" ? basic(BOB.username, BOB.password) : bearer,
          "127.0.0.13"
        )
        expect(other.status).toBe(200)
      })
    }

    it("the login form: 50 parallel wrong guesses get the budget compared, then 429, and another client logs in", async () => {
      const client = "127.0.0.21"
      const form = await loginForm(admin.url, client)
      const guess = () =>
        postLogin(admin.url, form, `username=bob&password=${encodeURIComponent("not bob's password")}&next=%2F`, client)
      const responses = await Promise.all(Array.from({ length: 50 }, guess))
      expect(count(responses, 401)).toBe(5)
      expect(count(responses, 429)).toBe(45)
      for (const response of responses.filter((r) => r.status === 429)) {
        expect(retryAfter(response)).toBeGreaterThan(0)
        expect(response.body).toContain("Too many failed attempts")
        expectSecurityHeaders(response, "login 429")
      }
      const right = await postLogin(
        admin.url,
        form,
        `username=bob&password=${encodeURIComponent(BOB.password)}&next=%2F`,
        client
      )
      expect(right.status).toBe(429)
      const elsewhere = "127.0.0.22"
      const other = await postLogin(
        admin.url,
        await loginForm(admin.url, elsewhere),
        `username=bob&password=${encodeURIComponent(BOB.password)}&next=%2F`,
        elsewhere
      )
      expect(other.status).toBe(303)
      expect(other.headers["set-cookie"]?.some((line) => line.startsWith("cacheme_session="))).toBe(true)
    })

    it("correct logins cost nothing: twice the budget of form logins from one client all succeed", async () => {
      const client = "127.0.0.31"
      for (let i = 0; i < 10; i++) {
        const response = await postLogin(
          admin.url,
          await loginForm(admin.url, client),
          `username=&password=${TOKEN}&next=%2F`,
          client
        )
        expect(response.status).toBe(303)
      }
      // ... and do not hide failures: the budget is still whole.
      const form = await loginForm(admin.url, client)
      const statuses: Array<number> = []
      for (let i = 0; i < 6; i++) {
        statuses.push((await postLogin(admin.url, form, "username=&password=wrong-token-0123456789", client)).status)
      }
      expect(statuses).toEqual([401, 401, 401, 401, 401, 429])
    })

    it("per user: guesses from many addresses lock that user's new logins, not other users or proven scripts", async () => {
      const get = (headers: Record<string, string>, client: string) =>
        send(`${admin.url}/api/session`, { headers, localAddress: client })
      const password = Buffer.from(`${USER.username}:${USER.password}`).toString("base64")
      // A script that authenticated before the attack. (The scheme is case-insensitive: "basic" below is the
      // same credentials in a header the admin has not seen succeed.)
      const script = { authorization: `Basic ${password}` }
      const unproven = { authorization: `basic ${password}` }
      expect((await get(script, "127.0.0.41")).status).toBe(200)
      // One wrong guess for alice from each of 12 addresses: 8 compared (the per-user budget), then 429.
      const statuses: Array<number> = []
      for (let i = 0; i < 12; i++) statuses.push((await get(wrongBasic, `127.0.1.${i + 1}`)).status)
      expect(statuses).toEqual([...Array(8).fill(401), ...Array(4).fill(429)])
      // Alice's right password from a new address is refused (the documented trade-off) ...
      const locked = await get(unproven, "127.0.0.42")
      expect(locked.status).toBe(429)
      retryAfter(locked)
      // ... through the login form as well ...
      const form = await loginForm(admin.url, "127.0.0.43")
      const login = await postLogin(
        admin.url,
        form,
        `username=alice&password=${encodeURIComponent(USER.password)}&next=%2F`,
        "127.0.0.43"
      )
      expect(login.status).toBe(429)
      // ... but the script that had proven its header keeps working, and so do bob and the token.
      expect((await get(script, "127.0.0.41")).status).toBe(200)
      expect((await get(basic(BOB.username, BOB.password), "127.0.0.44")).status).toBe(200)
      expect((await get(bearer, "127.0.0.45")).status).toBe(200)
      // A refused attempt took nothing from its client: that address still has its whole budget.
      const after: Array<number> = []
      for (let i = 0; i < 6; i++) after.push((await get(wrongBearer, "127.0.0.42")).status)
      expect(after).toEqual([401, 401, 401, 401, 401, 429])
    })

    it("the budget comes back: one attempt per window / attempts", async () => {
      const quick = await startAdmin(kind, {
        // One unit every 2 seconds: on a busy machine, consecutive requests still come closer together than that.
        rateLimit: { perClient: { attempts: 2, window: "4 seconds" }, perUser: { attempts: 100, window: "1 hour" } }
      })
      try {
        const guess = () => send(`${quick.url}/api/session`, { headers: wrongBearer, localAddress: "127.0.0.51" })
        // Guess until refused (the third guess, unless the machine takes seconds per request).
        let refused: RawResponse | undefined
        for (let i = 0; i < 20 && refused === undefined; i++) {
          const response = await guess()
          if (response.status === 429) refused = response
          else expect(response.status).toBe(401)
        }
        expect(refused?.status).toBe(429)
        const wait = retryAfter(refused!)
        expect(wait).toBeLessThanOrEqual(2)
        // Waiting what Retry-After said is enough (waiting longer on a busy machine only gives more back).
        await new Promise((resolve) => setTimeout(resolve, wait * 1000))
        expect((await guess()).status).toBe(401)
      } finally {
        await quick.close()
      }
    })

    it("clients behind a trusted proxy are told apart by X-Forwarded-For, and untrusted ones cannot spoof it", async () => {
      const behind = await startAdmin(kind, {
        rateLimit: { ...rateLimit, perUser: { attempts: 100, window: "1 hour" } },
        // The proxy is 127.0.0.61; every other peer is a client.
        trustedProxies: (address) => NetAddress.formatIp(address) === "127.0.0.61"
      })
      try {
        const through = (client: string, headers: Record<string, string>) =>
          send(`${behind.url}/api/session`, {
            headers: { ...headers, "x-forwarded-for": client },
            localAddress: "127.0.0.61"
          })
        const first = await Promise.all(Array.from({ length: 10 }, () => through("203.0.113.5", wrongBearer)))
        expect(count(first, 401)).toBe(5)
        expect(count(first, 429)).toBe(5)
        // Another client behind the same proxy is not locked out.
        expect((await through("203.0.113.6", bearer)).status).toBe(200)
        // A client that is not the proxy cannot pick its address with the header.
        const spoofed = await Promise.all(
          Array.from({ length: 10 }, (_, i) =>
            send(`${behind.url}/api/session`, {
              headers: { ...wrongBearer, "x-forwarded-for": `198.51.100.${i}` },
              localAddress: "127.0.0.62"
            })
          )
        )
        expect(count(spoofed, 401)).toBe(5)
      } finally {
        await behind.close()
      }
    })
  })
}

describe.skipIf(await missing(Redis))("rate limiting in Redis", () => {
  const rateLimit: Admin.RateLimitOptions = {
    perClient: { attempts: 5, window: "1 hour" },
    perUser: { attempts: 100, window: "1 hour" }
  }

  it("holds across admin processes on one Redis", async () => {
    const prefix = `cmadminrl${Math.random().toString(36).slice(2, 8)}:`
    const first = await startAdmin("redis", { prefix, rateLimit })
    const second = await startAdmin("redis", { prefix, rateLimit })
    try {
      const guess = (admin: Started) =>
        send(`${admin.url}/api/session`, { headers: wrongBearer, localAddress: "127.0.0.71" })
      const spent = await Promise.all([
        ...Array.from({ length: 10 }, () => guess(first)),
        ...Array.from({ length: 10 }, () => guess(second))
      ])
      expect(count(spent, 401)).toBe(5)
      expect(count(spent, 429)).toBe(15)
      // The counters live beside the protocol's keys: a key listing never shows them.
      const listing = await send(`${first.url}/api/keys?count=200`, { headers: bearer, localAddress: "127.0.0.72" })
      expect(JSON.parse(listing.body).keys).toEqual([])
      // With store: "memory" an admin counts on its own.
      const alone = await startAdmin("redis", { prefix, rateLimit: { ...rateLimit, store: "memory" } })
      try {
        expect((await guess(alone)).status).toBe(401)
      } finally {
        await alone.close()
      }
    } finally {
      await first.close()
      await second.close()
      await cleanRedis(prefix)
    }
  })

  it("counts in process when Redis stops answering: never unlimited, never a lockout", async () => {
    const prefix = `cmadminrl${Math.random().toString(36).slice(2, 8)}:`
    const client = new IORedis(Redis.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: 0
    })
    client.on("error", () => {})
    await client.connect()
    const admin = await startAdmin("redis", {
      prefix,
      rateLimit,
      store: CacheStore.layerRedis({ client, prefix })
    })
    try {
      client.disconnect()
      const responses = await Promise.all(
        Array.from({ length: 20 }, () =>
          send(`${admin.url}/api/session`, { headers: wrongBearer, localAddress: "127.0.0.73" })
        )
      )
      expect(count(responses, 401)).toBe(5)
      expect(count(responses, 429)).toBe(15)
      expect((await send(`${admin.url}/api/session`, { headers: bearer, localAddress: "127.0.0.74" })).status).toBe(200)
    } finally {
      await admin.close()
      client.disconnect()
      await cleanRedis(prefix)
    }
  })

  it("refuses budgets that cannot work", async () => {
    for (const [rateLimit, message] of [
      [{ perClient: { attempts: 0, window: "1 minute" } }, "rateLimit.perClient.attempts"],
      [{ perUser: { attempts: 1.5, window: "1 minute" } }, "rateLimit.perUser.attempts"],
      [{ perClient: { attempts: 5, window: "0 millis" } }, "rateLimit.perClient.window"],
      [{ perUser: { attempts: 5, window: Number.POSITIVE_INFINITY } }, "rateLimit.perUser.window"],
      [{ store: "disk" as "memory" }, 'rateLimit.store: expected "auto" or "memory"']
    ] as const) {
      await expect(startAdmin("memory", { rateLimit })).rejects.toThrow(message)
    }
  })
})

// ------------------------------------------------------------------------------------------ security headers

/** A memory store whose `scan` dies (a bug) and whose `inspect` fails (an outage). */
const brokenStore = Layer.effect(
  CacheStore.CacheStore,
  Effect.map(CacheStore.CacheStore, (store) => ({
    ...store,
    scan: () => Effect.die(new Error("a bug in the store")),
    inspect: () =>
      Effect.fail(new CacheStoreError({ operation: "inspect", reason: "Unavailable", message: "the store is down" }))
  }))
).pipe(Layer.provide(CacheStore.layerMemory()))

describe("security headers on every answer", () => {
  let admin: Started
  let broken: Started
  beforeAll(async () => {
    admin = await startAdmin("memory", { users: [USER] })
    broken = await startAdmin("memory", { store: brokenStore })
  })
  afterAll(async () => {
    await admin?.close()
    await broken?.close()
  })

  it("router 404s and 405s, under the admin's path and outside it, page and API alike", async () => {
    const cases: Array<[string, RequestInit & { method?: string }, number]> = [
      ["/admin/nope", {}, 404],
      ["/admin/api/nope", {}, 404],
      ["/admin/api/stats/extra", {}, 404],
      ["/admin/%2e%2e/x", {}, 404],
      ["/elsewhere", {}, 404],
      ["/", {}, 404],
      ["/adminx", {}, 404],
      ["/admin/api/stats", { method: "POST" }, 405],
      ["/admin/api/invalidate", { method: "GET" }, 405],
      ["/admin/logout", { method: "GET" }, 405],
      ["/admin/keys", { method: "DELETE" }, 405],
      ["/admin/api/keys", { method: "PUT" }, 405],
      ["/admin/api/session", { method: "OPTIONS" }, 405],
      ["/admin/api/session", { method: "PROPFIND" }, 405]
    ]
    for (const [path, init, status] of cases) {
      for (const headers of [{}, bearer]) {
        const response = await send(`${admin.origin}${path}`, { method: init.method, headers })
        const what = `${init.method ?? "GET"} ${path} ${JSON.stringify(headers)}`
        expect(response.status, what).toBe(status)
        expectSecurityHeaders(response, what)
        expect(response.headers["cache-control"], what).toBe("no-store")
        if (status === 405) expect(response.headers.allow, what).toMatch(/^(GET, HEAD|POST)$/)
        if (path.startsWith("/admin/api/")) expect(JSON.parse(response.body).error, what).toBeTypeOf("string")
      }
    }
  })

  it("every route's answers: pages, redirects, the stylesheet, HEAD, and each error status", async () => {
    const form = await loginForm(admin.url)
    const cases: Array<[string, Promise<RawResponse>, number]> = [
      ["dashboard", send(`${admin.url}/`, { headers: bearer }), 200],
      ["dashboard without slash", send(`${admin.url}`, { headers: bearer }), 200],
      ["HEAD of a page", send(`${admin.url}/keys`, { method: "HEAD", headers: bearer }), 200],
      ["HEAD of the API", send(`${admin.url}/api/stats`, { method: "HEAD", headers: bearer }), 200],
      ["stylesheet", send(`${admin.url}/style.css`), 200],
      ["login page", send(`${admin.url}/login`), 200],
      ["redirect to login", send(`${admin.url}/keys`), 303],
      ["login redirect", postLogin(admin.url, form, `username=&password=${TOKEN}&next=%2F`), 303],
      ["400", send(`${admin.url}/api/keys?count=0`, { headers: bearer }), 400],
      ["401", send(`${admin.url}/api/stats`), 401],
      [
        "403",
        send(`${admin.url}/api/invalidate`, {
          method: "POST",
          headers: { ...bearer, "content-type": "application/json" },
          body: "{}"
        }),
        403
      ],
      ["404 (a route's own)", send(`${admin.url}/api/node?name=nope`, { headers: bearer }), 404],
      [
        "413",
        send(`${admin.url}/api/invalidate`, {
          method: "POST",
          headers: { ...bearer, "content-type": "application/json", "x-csrf-token": "x" },
          body: "x".repeat(70_000)
        }),
        413
      ],
      [
        "415",
        send(`${admin.url}/api/invalidate`, {
          method: "POST",
          headers: { ...bearer, "content-type": "text/plain", "x-csrf-token": "x" },
          body: "{}"
        }),
        415
      ],
      ["500 (API)", send(`${broken.url}/api/keys`, { headers: bearer }), 500],
      ["500 (page)", send(`${broken.url}/keys`, { headers: bearer }), 500],
      ["503", send(`${broken.url}/api/key?key=user:1`, { headers: bearer }), 503]
    ]
    for (const [what, pending, status] of cases) {
      const response = await pending
      expect(response.status, what).toBe(status)
      expectSecurityHeaders(response, what)
      expect(response.headers["cache-control"], what).toBe(what === "stylesheet" ? "public, max-age=300" : "no-store")
    }
    // The defect is not shown to the client.
    const defect = await send(`${broken.url}/api/keys`, { headers: bearer })
    expect(defect.body).not.toContain("a bug in the store")
    expect(JSON.parse(defect.body)).toMatchObject({ error: "InternalError" })
  })

  it("mounted at the root, unknown paths and methods are the admin's 404 and 405", async () => {
    const root = await startAdmin("memory", { path: "" })
    try {
      for (const [path, method, status] of [
        ["/nope", "GET", 404],
        ["/api/stats", "POST", 405],
        ["/", "GET", 200],
        ["/api/stats", "HEAD", 200]
      ] as const) {
        const response = await send(`${root.origin}${path}`, { method, headers: bearer })
        expect(response.status, `${method} ${path}`).toBe(status)
        expectSecurityHeaders(response, `${method} ${path}`)
      }
    } finally {
      await root.close()
    }
  })
})

// ------------------------------------------------------------------------------------------ next

describe("malformed next values after correct credentials", () => {
  let admin: Started
  beforeAll(async () => {
    admin = await startAdmin("memory")
  })
  afterAll(async () => {
    await admin?.close()
  })

  /** Percent-encoded as they would arrive in a form body. */
  const hostile: ReadonlyArray<readonly [string, string]> = [
    ["NUL", "%2F%00%2Fx"],
    ["other control characters", "%2Fa%01b%7Fc"],
    ["tab then //", "%2F%09%2Fevil.com"],
    ["newline (header injection)", "%2F%0D%0ASet-Cookie:%20x=1"],
    ["protocol-relative", "%2F%2Fevil.com"],
    ["backslash host", "%2F%5Cevil.com"],
    ["backslash later", "%2Fkeys%5C..%5C..%5Cx"],
    ["space", "%2F%20%2Fevil.com"],
    ["absolute URL", "https%3A%2F%2Fevil.com%2F"],
    ["javascript:", "javascript%3Aalert(1)"],
    ["relative", "evil.com"],
    ["climbing out of the admin", "%2F..%2F..%2Fevil"],
    ["climbing out, encoded dots", "%2F%252e%252e%2F%252e%252e%2Fevil"],
    ["non-ASCII", "%2F%C4%80"],
    ["not UTF-8", "%2F%FF%FE"],
    ["a lone surrogate", "%2F%ED%A0%80"],
    ["empty", ""],
    ["repeated", "%2Fkeys&next=%2F%2Fevil.com"],
    ["very long", `%2F${"a".repeat(5000)}`]
  ]

  it("each is a safe redirect inside the admin (or a 400), never a 500 nor another site", async () => {
    for (const [what, next] of hostile) {
      const form = await loginForm(admin.url)
      const response = await postLogin(admin.url, form, `username=&password=${TOKEN}&next=${next}`)
      expect([303, 400], what).toContain(response.status)
      expectSecurityHeaders(response, what)
      if (response.status === 303) {
        const location = response.headers.location!
        expect(location, what).toMatch(/^\/admin\/[\x21-\x7e]*$/)
        expect(location.startsWith("/admin//"), what).toBe(false)
        expect(new URL(location, "http://admin.test").origin, what).toBe("http://admin.test")
        expect(new URL(location, "http://admin.test").pathname.startsWith("/admin/"), what).toBe(true)
      }
    }
  })

  it("the same values in the login page's query are rendered as /", async () => {
    for (const [what, next] of hostile) {
      if (next === "" || what === "repeated") continue
      const response = await send(`${admin.url}/login?next=${next}`)
      expect(response.status, what).toBe(200)
      expect(response.body, what).toContain('name="next" value="/"')
    }
  })

  it("a path inside the admin survives the round trip", async () => {
    const start = await send(`${admin.url}/keys?pattern=user%3A*`)
    expect(start.status).toBe(303)
    const page = await send(`${admin.origin}${start.headers.location}`)
    const next = /name="next" value="([^"]+)"/.exec(page.body)?.[1]?.replaceAll("&amp;", "&")
    expect(next).toBe("/keys?pattern=user%3A*")
    const form = await loginForm(admin.url)
    const response = await postLogin(admin.url, form, `username=&password=${TOKEN}&next=${encodeURIComponent(next!)}`)
    expect(response.status).toBe(303)
    expect(response.headers.location).toBe("/admin/keys?pattern=user%3A*")
  })
})

// ------------------------------------------------------------------------------------------ cursors

for (const kind of ["memory", "redis"] as const) {
  describe.skipIf(kind === "redis" && (await missing(Redis)))(`malformed cursors over the ${kind} store`, () => {
    let admin: Started
    beforeAll(async () => {
      admin = await startAdmin(kind)
      await admin.run(seed(3))
    })
    afterAll(async () => {
      await admin?.close()
    })

    const malformed = [
      "99999999999999999999",
      "18446744073709551616",
      "-1",
      "+1",
      "1.5",
      "1e3",
      "0x10",
      "01",
      " 1",
      "abc",
      "1:2:3",
      ":5",
      "5:",
      "-1:0",
      "1:-0",
      "1:99999999999999999999",
      "kA=",
      "k",
      "9".repeat(8000),
      "k".repeat(9000),
      "\u0000",
      "<script>"
    ]
    // A cursor of the right shape that this store never hands out: another store's, or a Cluster's on one Redis.
    const foreign = kind === "memory" ? ["123", "1:0", "18446744073709551615"] : ["1:0", "0:5", "kdXNlcjox"]

    it("GET /api/keys, /keys and /node answer 400, never 503", async () => {
      for (const cursor of [...malformed, ...foreign]) {
        for (const path of ["/api/keys?", "/keys?", "/node?name=admin_test_user&", "/api/keys?count=1&"]) {
          const response = await send(`${admin.url}${path}cursor=${encodeURIComponent(cursor)}`, { headers: bearer })
          expect(response.status, `${path} ${cursor.slice(0, 30)}`).toBe(400)
          expectSecurityHeaders(response, "400")
        }
      }
    })

    it("a cursor the store handed out still pages", async () => {
      const first = JSON.parse((await send(`${admin.url}/api/keys?count=1`, { headers: bearer })).body) as {
        cursor: string
        complete: boolean
      }
      if (!first.complete) {
        const second = await send(`${admin.url}/api/keys?count=1&cursor=${encodeURIComponent(first.cursor)}`, {
          headers: bearer
        })
        expect(second.status).toBe(200)
      }
      if (kind === "redis") {
        // The largest cursor Redis takes is of the right shape: Redis answers it.
        const largest = await send(`${admin.url}/api/keys?cursor=18446744073709551615`, { headers: bearer })
        expect(largest.status).toBe(200)
      }
    })
  })
}
