/**
 * The admin's routes: pages and JSON API on one `HttpRouter`, under a path prefix. Every route goes through
 * {@link handle}, which authenticates (through the attempt limiter when credentials come in a header), checks the
 * CSRF token of state-changing requests, reads and bounds the body, and maps errors to status codes. Every answer,
 * a route's or the fallback's (unknown path `404`, known path with another method `405`, a defect `500`), goes
 * through {@link secured}, which sets the security headers.
 */
import { createHash } from "node:crypto"
import { ByteSize, Cause, Clock, Effect, Exit, Schema } from "effect"
import {
  HttpIncomingMessage,
  HttpMiddleware,
  type HttpRouter,
  HttpServerRequest,
  HttpServerResponse
} from "effect/http"
import { issuesOf } from "../../internal/fields.ts"
import { CacheStore, type CacheStoreError } from "../../CacheStore.ts"
import { groupSet, tagSet } from "../../internal/keys.ts"
import * as Invalidation from "../../Invalidation.ts"
import * as Node from "../../Node.ts"
import {
  type HistoryResponse,
  HistoryQuery,
  InvalidateRequest,
  type InvalidateResponse,
  KeyQuery,
  KeysQuery,
  NodeQuery,
  Pattern,
  type StatsResponse
} from "../Api.ts"
import { type Auth, type Authentication, claimant, type Principal } from "../Auth.ts"
import { type History, type HistoryError, toJson } from "../History.ts"
import { allNodeStats, keyView, nodeStats, patternProblem, scanKeys, storeInfo } from "./inspect.ts"
import { clientKey, type Limiter } from "./limiter.ts"
import { invalidateTarget, targetProblem } from "./targets.ts"
import * as Pages from "./pages.ts"
import { stylesheet } from "./style.ts"

export const sessionCookie = "cacheme_session"
export const loginCookie = "cacheme_login"

export interface RoutesConfig {
  /** The mount path without a trailing slash ("" at the root). */
  readonly base: string
  readonly auth: Auth
  readonly store: CacheStore["Service"]
  readonly history: History["Service"]
  /** The invalidation listener the admin's invalidations report to (it records into `history`). */
  readonly listener: (event: Invalidation.Event) => Effect.Effect<void>
  /** The most SCAN calls one request may make. */
  readonly scanBudget: number
  /** The largest request body accepted. */
  readonly maxBodyBytes: number
  /** Counts failed authentications per client and per user. */
  readonly limiter: Limiter
  /** Proxies whose `X-Forwarded-For` names the client (see `HttpMiddleware.xForwardedHeaders`). */
  readonly trustedProxies?: HttpMiddleware.TrustedProxyOptions["trustedProxies"] | undefined
}

/** An answer other than success, with its status. */
export class RequestError extends Schema.TaggedError<RequestError>()("RequestError", {
  status: Schema.Number,
  error: Schema.String,
  message: Schema.String,
  issues: Schema.optional(Schema.Array(Schema.Struct({ path: Schema.String, message: Schema.String })))
}) {}

const badRequest = (message: string, issues?: ReadonlyArray<{ path: string; message: string }>) =>
  new RequestError({ status: 400, error: "BadRequest", message, issues })

const notFound = (message: string) => new RequestError({ status: 404, error: "NotFound", message })

const forbidden = (message: string) => new RequestError({ status: 403, error: "Forbidden", message })

/** Decodes untrusted input with a Schema; a mismatch is a 400 listing every issue. */
export const decodeInput = <A>(
  schema: Schema.Codec<A, any, never, never>,
  input: unknown,
  where: string
): Effect.Effect<A, RequestError> => {
  const exit = Schema.decodeUnknownExit(schema)(input, { errors: "all" })
  if (Exit.isSuccess(exit)) return Effect.succeed(exit.value)
  const error = Cause.squash(exit.cause)
  const issues = issuesOf(error)
  return Effect.fail(
    badRequest(
      `invalid ${where}: ${issues.map((issue) => (issue.path === "" ? issue.message : `${issue.path}: ${issue.message}`)).join("; ")}`,
      issues
    )
  )
}

type Fields = Record<string, string | ReadonlyArray<string>>

/** Query parameters with empty values left out (an empty search box means "no filter"). */
const nonEmpty = (params: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>): Fields => {
  const out: Record<string, string | ReadonlyArray<string>> = {}
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === "") continue
    out[name] = value
  }
  return out
}

export const securityHeaders = {
  "content-security-policy":
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "permissions-policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()"
}

const htmlResponse = (body: string, status = 200) =>
  HttpServerResponse.text(body, { status, contentType: "text/html; charset=utf-8" })

const jsonResponse = (body: unknown, status = 200) =>
  HttpServerResponse.text(JSON.stringify(body), { status, contentType: "application/json; charset=utf-8" })

/**
 * A path inside the admin to return to after logging in, else `/`. It must start with one `/` (not `//` or `/\\`,
 * which browsers read as another host), hold printable ASCII only (no control characters, which a `Location`
 * header cannot carry and browsers strip, nor spaces or backslashes, which browsers rewrite), and stay inside the
 * admin once resolved (no `..` climbing out of its path).
 */
export const safeNext = (next: unknown, base: string): string => {
  if (typeof next !== "string" || next.length > 2048 || !/^\/(?!\/)[\x21-\x5b\x5d-\x7e]*$/.test(next)) return "/"
  let resolved: URL
  try {
    resolved = new URL(`${base}${next}`, "http://admin.invalid")
  } catch {
    return "/"
  }
  if (resolved.origin !== "http://admin.invalid") return "/"
  const inside = base === "" || resolved.pathname === base || resolved.pathname.startsWith(`${base}/`)
  return inside ? `${resolved.pathname.slice(base.length) || "/"}${resolved.search}` : "/"
}

const digestOf = (text: string) => createHash("sha256").update(text, "utf8").digest("base64url")

interface Input {
  readonly request: HttpServerRequest.HttpServerRequest
  readonly search: Fields
  readonly principal: Principal
  /** The form fields (page writes) or the JSON body (API writes). */
  readonly body: unknown
  readonly now: number
}

type Failure = RequestError | CacheStoreError | HistoryError

export const make = (config: RoutesConfig) => {
  const { auth, base, store, history } = config
  const cookiePath = base === "" ? "/" : base
  const ctxOf = (principal: Principal | undefined): Pages.PageContext => ({
    base,
    user: principal?.user,
    csrf: principal === undefined ? undefined : auth.csrfToken(principal)
  })

  const isHttps = (request: HttpServerRequest.HttpServerRequest) =>
    request.protocol === "https" ||
    request.headers["x-forwarded-proto"]?.split(",")[0]?.trim().toLowerCase() === "https" ||
    request.originalUrl.startsWith("https:")

  const cookieOptions = (request: HttpServerRequest.HttpServerRequest, maxAgeMillis: number) => ({
    path: cookiePath,
    httpOnly: true,
    sameSite: "strict" as const,
    secure: auth.secureCookies === "auto" ? isHttps(request) : auth.secureCookies,
    maxAge: `${Math.max(0, Math.floor(maxAgeMillis / 1000))} seconds` as const
  })

  const readBody = (
    request: HttpServerRequest.HttpServerRequest,
    kind: "page" | "api"
  ): Effect.Effect<unknown, RequestError> =>
    Effect.gen(function* () {
      const contentType = (request.headers["content-type"] ?? "").split(";")[0]!.trim().toLowerCase()
      const expected = kind === "api" ? "application/json" : "application/x-www-form-urlencoded"
      if (contentType !== expected) {
        return yield* new RequestError({
          status: 415,
          error: "UnsupportedMediaType",
          message: `expected a ${expected} body, got ${contentType === "" ? "none" : contentType}`
        })
      }
      const length = Number(request.headers["content-length"] ?? "0")
      const tooLarge = new RequestError({
        status: 413,
        error: "PayloadTooLarge",
        message: `the body may not exceed ${config.maxBodyBytes} bytes`
      })
      if (Number.isFinite(length) && length > config.maxBodyBytes) return yield* tooLarge
      const text = yield* request.text.pipe(
        Effect.provideService(HttpIncomingMessage.MaxBodySize, ByteSize.bytes(config.maxBodyBytes)),
        Effect.mapError(() => tooLarge)
      )
      if (text.length > config.maxBodyBytes) return yield* tooLarge
      if (kind === "api") {
        try {
          return JSON.parse(text) as unknown
        } catch (error) {
          return yield* badRequest(`invalid JSON body: ${(error as Error).message}`)
        }
      }
      const fields: Record<string, string | Array<string>> = {}
      for (const [name, value] of new URLSearchParams(text)) {
        const previous = fields[name]
        fields[name] =
          previous === undefined ? value : Array.isArray(previous) ? [...previous, value] : [previous, value]
      }
      return fields
    })

  const errorResponse = (kind: "page" | "api", principal: Principal | undefined, error: Failure) => {
    const { status, code, message, issues } =
      error._tag === "RequestError"
        ? { status: error.status, code: error.error, message: error.message, issues: error.issues }
        : error._tag === "CacheStoreError"
          ? error.reason === "InvalidInput"
            ? { status: 400, code: "BadRequest", message: error.message, issues: undefined }
            : { status: 503, code: "StoreUnavailable", message: error.message, issues: undefined }
          : { status: 503, code: "HistoryUnavailable", message: error.message, issues: undefined }
    if (kind === "api")
      return jsonResponse({ error: code, message, ...(issues === undefined ? {} : { issues }) }, status)
    const titles: Record<number, string> = {
      400: "Bad request",
      401: "Not logged in",
      403: "Forbidden",
      404: "Not found",
      405: "Method not allowed",
      413: "Too large",
      415: "Unsupported body",
      429: "Too many attempts",
      500: "Server error",
      503: "Unavailable"
    }
    return htmlResponse(
      Pages.errorPage(ctxOf(principal), { title: titles[status] ?? "Error", message, issues }),
      status
    )
  }

  type Limited = { readonly _tag: "Limited"; readonly retryAfterSeconds: number }

  const tooMany = (seconds: number) =>
    new RequestError({
      status: 429,
      error: "TooManyRequests",
      message: `too many failed attempts: try again in ${seconds} second${seconds === 1 ? "" : "s"}`
    })

  const tooManyAttempts = (response: HttpServerResponse.HttpServerResponse, seconds: number) =>
    HttpServerResponse.setHeader(response, "retry-after", String(seconds))

  /**
   * Digests of `Authorization` headers that authenticated lately (at most 1024, oldest out first): a script that
   * proved its credentials is not slowed down by the attempts of others, even when they spent its user's budget.
   * Only a header equal to one that succeeded gets in, so guessing gains nothing from it.
   */
  const provenHeaders = new Set<string>()
  const remember = (id: string) => {
    provenHeaders.delete(id)
    if (provenHeaders.size >= 1024) provenHeaders.delete(provenHeaders.values().next().value!)
    provenHeaders.add(id)
  }

  /**
   * Reads the request's credentials. An `Authorization` header not seen to succeed before passes the limiter
   * first: refused (`Limited`) when the client's or the user's budget of failures is spent, compared otherwise,
   * and the attempt is given back when it succeeds. Session cookies are signed and not guessable: they are not
   * counted.
   */
  const authenticate = (
    request: HttpServerRequest.HttpServerRequest,
    now: number
  ): Effect.Effect<Authentication | Limited> => {
    const header = request.headers.authorization
    const cookie = request.cookies[sessionCookie]
    if (header === undefined || header === "") return Effect.succeed(auth.authenticate(header, cookie, now))
    const id = digestOf(header)
    if (provenHeaders.has(id)) return Effect.succeed(auth.authenticate(header, cookie, now))
    return Effect.flatMap(
      config.limiter.gate(clientKey(request.remoteAddress), claimant(header)),
      (gate): Effect.Effect<Authentication | Limited> => {
        if (gate._tag === "Shut")
          return Effect.succeed({ _tag: "Limited", retryAfterSeconds: gate.retryAfterSeconds } as const)
        const authentication = auth.authenticate(header, cookie, now)
        const succeeded = authentication._tag === "Authenticated"
        if (succeeded) remember(id)
        return Effect.as(gate.settle(succeeded), authentication)
      }
    )
  }

  const handle = (
    kind: "page" | "api",
    access: "read" | "write",
    f: (input: Input) => Effect.Effect<HttpServerResponse.HttpServerResponse, Failure>
  ): Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    never,
    HttpServerRequest.HttpServerRequest | HttpServerRequest.ParsedSearchParams
  > =>
    Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const search = nonEmpty(yield* HttpServerRequest.ParsedSearchParams)
      const now = yield* Clock.currentTimeMillis
      const authentication = yield* authenticate(request, now)
      if (authentication._tag === "Limited") {
        return tooManyAttempts(
          errorResponse(kind, undefined, tooMany(authentication.retryAfterSeconds)),
          authentication.retryAfterSeconds
        )
      }
      if (authentication._tag !== "Authenticated") {
        if (kind === "page" && request.headers.authorization === undefined) {
          const next = request.method === "GET" ? request.url : "/"
          const redirect = HttpServerResponse.redirect(
            `${base}/login?next=${encodeURIComponent(safeNext(next, base))}`,
            {
              status: 303
            }
          )
          return authentication._tag === "Invalid"
            ? HttpServerResponse.expireCookieUnsafe(redirect, sessionCookie, { path: cookiePath })
            : redirect
        }
        const response = errorResponse(
          kind,
          undefined,
          new RequestError({
            status: 401,
            error: "Unauthorized",
            message: authentication._tag === "Invalid" ? authentication.reason : "credentials required"
          })
        )
        return HttpServerResponse.setHeader(response, "www-authenticate", `${auth.scheme} realm="effect-cacheme admin"`)
      }
      const principal = authentication.principal
      const run = Effect.gen(function* () {
        let body: unknown
        if (access === "write") {
          if (request.headers["sec-fetch-site"] === "cross-site") {
            return yield* forbidden("cross-site requests may not change anything")
          }
          body = yield* readBody(request, kind)
          const field =
            kind === "page" && typeof body === "object" && body !== null ? (body as Fields)._csrf : undefined
          const submitted = request.headers["x-csrf-token"] ?? (typeof field === "string" ? field : undefined)
          if (!auth.checkCsrf(principal, submitted)) {
            return yield* forbidden(
              submitted === undefined
                ? "missing CSRF token (send the X-CSRF-Token header; GET /api/session gives it)"
                : "wrong CSRF token"
            )
          }
        }
        return yield* f({ request, search, principal, body, now })
      })
      return yield* run.pipe(Effect.catch((error) => Effect.succeed(errorResponse(kind, principal, error))))
    })

  /** Runs an invalidation as `actor`, reporting to the admin's listener. */
  const invalidate = (request: InvalidateRequest, actor: string): Effect.Effect<number, Failure> =>
    Effect.gen(function* () {
      const options = { mode: request.mode ?? "hard", source: actor }
      const { target, value } = request
      if (target === "pattern") yield* decodeInput(Pattern, value, "pattern")
      const problem = targetProblem(target, value, store.prefix)
      if (problem !== undefined) {
        return yield* problem._tag === "UnknownNode" ? notFound(problem.message) : badRequest(problem.message)
      }
      return yield* invalidateTarget(target, value, options)
    }).pipe(Effect.provideService(CacheStore, store), Effect.provideService(Invalidation.Listener, config.listener))

  const checkedPattern = (pattern: string | undefined) => {
    if (pattern === undefined) return Effect.succeed(undefined)
    const problem = patternProblem(pattern, store.prefix)
    return problem === undefined ? Effect.succeed(pattern) : Effect.fail(badRequest(problem))
  }

  const NodeKeysQuery = Schema.Struct({ ...NodeQuery.fields, ...KeysQuery.fields })

  const preview = (request: InvalidateRequest): Effect.Effect<string, Failure> => {
    const keysIn = (set: string, what: string) =>
      Effect.map(
        store.setSize(set),
        (n) => `${n.toLocaleString("en-US")} key${n === 1 ? " is" : "s are"} listed ${what}`
      )
    switch (request.target) {
      case "key":
        return Effect.map(store.inspect(request.value), (info) =>
          info === undefined || info.value === undefined ? "the key holds no value" : "the key holds a value"
        )
      case "node":
        return Node.get(request.value) === undefined
          ? Effect.fail(notFound(`no node named ${request.value} is defined`))
          : keysIn(tagSet(request.value), "under this node")
      case "group":
        return keysIn(groupSet(request.value), "in this group")
      case "tag":
        return keysIn(tagSet(request.value), "under this tag")
      case "pattern": {
        const problem = patternProblem(request.value, store.prefix)
        return problem === undefined
          ? Effect.succeed(`every key matching the pattern under the prefix ${store.prefix} (counted when it runs)`)
          : Effect.fail(badRequest(problem))
      }
    }
  }

  const historyPage = (query: typeof HistoryQuery.Type) =>
    Effect.gen(function* () {
      const limit = query.limit ?? 50
      const entries = yield* history.list({ limit: limit + 1, before: query.before, target: query.target })
      const page = entries.slice(0, limit)
      return { page, next: entries.length > limit ? page[page.length - 1]!.id : null }
    })

  // ---------------------------------------------------------------------------------------------- pages

  const dashboard = handle("page", "read", ({ principal }) =>
    Effect.gen(function* () {
      const [info, nodes, recent] = yield* Effect.all(
        [
          storeInfo(store),
          allNodeStats(store),
          history.list({ limit: 10 }).pipe(Effect.catch((error) => Effect.succeed(error.message)))
        ],
        { concurrency: 3 }
      )
      return htmlResponse(Pages.dashboardPage(ctxOf(principal), { store: info, nodes, history: recent }))
    })
  )

  const keysPage = handle("page", "read", ({ principal, search }) =>
    Effect.gen(function* () {
      const query = yield* decodeInput(KeysQuery, search, "query")
      const pattern = yield* checkedPattern(query.pattern)
      const keys = yield* scanKeys(store, { ...query, pattern, budget: config.scanBudget })
      return htmlResponse(Pages.keysPage(ctxOf(principal), { pattern, keys }))
    })
  )

  const nodePage = handle("page", "read", ({ principal, search }) =>
    Effect.gen(function* () {
      const query = yield* decodeInput(NodeKeysQuery, search, "query")
      const node = Node.get(query.name)
      if (node === undefined) return yield* notFound(`no node named ${query.name} is defined in this process`)
      const pattern = yield* checkedPattern(query.pattern)
      const [stats, keys] = yield* Effect.all([
        nodeStats(store, node),
        scanKeys(store, { ...query, pattern, node: node.name, budget: config.scanBudget })
      ])
      return htmlResponse(Pages.nodePage(ctxOf(principal), { node: stats, pattern, keys }))
    })
  )

  const keyPage = handle("page", "read", ({ principal, search }) =>
    Effect.gen(function* () {
      const { key } = yield* decodeInput(KeyQuery, search, "query")
      const view = yield* keyView(store, key)
      if (view === undefined) return yield* notFound(`no entry at key ${key}`)
      return htmlResponse(Pages.keyPage(ctxOf(principal), view))
    })
  )

  const confirmPage = handle("page", "read", ({ principal, search }) =>
    Effect.gen(function* () {
      const request = yield* decodeInput(InvalidateRequest, search, "query")
      const text = yield* preview(request)
      return htmlResponse(
        Pages.confirmPage(ctxOf(principal), { ...request, mode: request.mode ?? "hard", preview: text })
      )
    })
  )

  const invalidatePage = handle("page", "write", ({ principal, body }) =>
    Effect.gen(function* () {
      const request = yield* decodeInput(InvalidateRequest, body, "form")
      const count = yield* invalidate(request, `admin:${principal.user}`)
      return htmlResponse(Pages.resultPage(ctxOf(principal), { ...request, mode: request.mode ?? "hard", count }))
    })
  )

  const historyHtml = handle("page", "read", ({ principal, search }) =>
    Effect.gen(function* () {
      const query = yield* decodeInput(HistoryQuery, search, "query")
      const { page, next } = yield* historyPage(query)
      return htmlResponse(Pages.historyPage(ctxOf(principal), { entries: page, next, target: query.target }))
    })
  )

  const logout = handle("page", "write", ({ request, now }) => {
    const cookie = request.cookies[sessionCookie]
    if (cookie !== undefined) auth.revokeSession(cookie, now)
    return Effect.succeed(
      HttpServerResponse.expireCookieUnsafe(
        HttpServerResponse.redirect(`${base}/login`, { status: 303 }),
        sessionCookie,
        {
          path: cookiePath
        }
      )
    )
  })

  const LoginForm = Schema.Struct({
    username: Schema.optional(Schema.String.check(Schema.isMaxLength(256))),
    password: Schema.String.check(Schema.isMaxLength(1024)),
    next: Schema.optional(Schema.String.check(Schema.isMaxLength(2048))),
    _login: Schema.optional(Schema.String.check(Schema.isMaxLength(256)))
  })

  const loginForm = (
    request: HttpServerRequest.HttpServerRequest,
    next: string,
    status: number,
    error?: string
  ): HttpServerResponse.HttpServerResponse => {
    const nonce = auth.loginNonce()
    const response = htmlResponse(
      Pages.loginPage(
        { base },
        {
          loginToken: auth.loginToken(nonce),
          next,
          error,
          users: auth.hasUsers,
          token: auth.hasToken
        }
      ),
      status
    )
    return HttpServerResponse.setCookieUnsafe(response, loginCookie, nonce, cookieOptions(request, 30 * 60 * 1000))
  }

  const loginGet = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const search = yield* HttpServerRequest.ParsedSearchParams
    return loginForm(request, safeNext(search.next, base), 200)
  })

  const loginPost = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const now = yield* Clock.currentTimeMillis
    const attempt = Effect.gen(function* () {
      if (request.headers["sec-fetch-site"] === "cross-site") {
        return yield* forbidden("cross-site requests may not log in")
      }
      const body = yield* readBody(request, "page")
      const form = yield* decodeInput(LoginForm, body, "form")
      const next = safeNext(form.next, base)
      if (!auth.checkLoginToken(request.cookies[loginCookie], form._login)) {
        return loginForm(request, next, 403, "The login form expired or was not sent from this page: try again.")
      }
      const username = form.username ?? ""
      const gate = yield* config.limiter.gate(
        clientKey(request.remoteAddress),
        username === "" ? "token" : `user:${username}`
      )
      if (gate._tag === "Shut") {
        const seconds = gate.retryAfterSeconds
        return tooManyAttempts(
          loginForm(
            request,
            next,
            429,
            `Too many failed attempts: try again in ${seconds} second${seconds === 1 ? "" : "s"}.`
          ),
          seconds
        )
      }
      const user = auth.login(username, form.password)
      yield* gate.settle(user !== undefined)
      if (user === undefined) {
        // A small pause makes guessing slower; the comparisons themselves are constant-time.
        yield* Effect.sleep("250 millis")
        return loginForm(request, next, 401, "Wrong user, password or token.")
      }
      const response = HttpServerResponse.redirect(`${base}${next}`, { status: 303 })
      return HttpServerResponse.expireCookieUnsafe(
        HttpServerResponse.setCookieUnsafe(
          response,
          sessionCookie,
          auth.issueSession(user, now),
          cookieOptions(request, auth.sessionTtlMillis)
        ),
        loginCookie,
        { path: cookiePath }
      )
    })
    return yield* attempt.pipe(Effect.catch((error) => Effect.succeed(errorResponse("page", undefined, error))))
  })

  const styleCss = Effect.succeed(
    HttpServerResponse.text(stylesheet, {
      contentType: "text/css; charset=utf-8",
      headers: { "cache-control": "public, max-age=300" }
    })
  )

  // ---------------------------------------------------------------------------------------------- JSON API

  const apiSession = handle("api", "read", ({ principal }) =>
    Effect.succeed(jsonResponse({ user: principal.user, via: principal.via, csrfToken: auth.csrfToken(principal) }))
  )

  const apiStats = handle("api", "read", () =>
    Effect.gen(function* () {
      const [info, nodes] = yield* Effect.all([storeInfo(store), allNodeStats(store)], { concurrency: 2 })
      const response: StatsResponse = { store: info, nodes }
      return jsonResponse(response)
    })
  )

  const apiNode = handle("api", "read", ({ search }) =>
    Effect.gen(function* () {
      const { name } = yield* decodeInput(NodeQuery, search, "query")
      const node = Node.get(name)
      if (node === undefined) return yield* notFound(`no node named ${name} is defined in this process`)
      return jsonResponse(yield* nodeStats(store, node))
    })
  )

  const apiKeys = handle("api", "read", ({ search }) =>
    Effect.gen(function* () {
      const query = yield* decodeInput(KeysQuery, search, "query")
      const pattern = yield* checkedPattern(query.pattern)
      return jsonResponse(yield* scanKeys(store, { ...query, pattern, budget: config.scanBudget }))
    })
  )

  const apiKey = handle("api", "read", ({ search }) =>
    Effect.gen(function* () {
      const { key } = yield* decodeInput(KeyQuery, search, "query")
      const view = yield* keyView(store, key)
      if (view === undefined) return yield* notFound(`no entry at key ${key}`)
      return jsonResponse(view)
    })
  )

  const apiInvalidate = handle("api", "write", ({ principal, body }) =>
    Effect.gen(function* () {
      const request = yield* decodeInput(InvalidateRequest, body, "body")
      const count = yield* invalidate(request, `admin:${principal.user}`)
      const response: InvalidateResponse = { ...request, mode: request.mode ?? "hard", count }
      return jsonResponse(response)
    })
  )

  const apiHistory = handle("api", "read", ({ search }) =>
    Effect.gen(function* () {
      const query = yield* decodeInput(HistoryQuery, search, "query")
      const { page, next } = yield* historyPage(query)
      const response: HistoryResponse = { entries: page.map(toJson), next }
      return jsonResponse(response)
    })
  )

  type Route = Effect.Effect<
    HttpServerResponse.HttpServerResponse,
    never,
    HttpServerRequest.HttpServerRequest | HttpServerRequest.ParsedSearchParams
  >

  /** Every route: path (under the mount path), then method. */
  const table: Record<string, Partial<Record<"GET" | "POST", Route>>> = {
    "/": { GET: dashboard },
    "/style.css": { GET: styleCss },
    "/login": { GET: loginGet, POST: loginPost },
    "/logout": { POST: logout },
    "/keys": { GET: keysPage },
    "/node": { GET: nodePage },
    "/key": { GET: keyPage },
    "/invalidate": { GET: confirmPage, POST: invalidatePage },
    "/history": { GET: historyHtml },
    "/api/session": { GET: apiSession },
    "/api/stats": { GET: apiStats },
    "/api/node": { GET: apiNode },
    "/api/keys": { GET: apiKeys },
    "/api/key": { GET: apiKey },
    "/api/invalidate": { POST: apiInvalidate },
    "/api/history": { GET: apiHistory }
  }

  const kindOf = (path: string): "page" | "api" => (path === "/api" || path.startsWith("/api/") ? "api" : "page")

  const withProxies =
    config.trustedProxies === undefined
      ? <A, E, R>(effect: Effect.Effect<A, E, R>) => effect
      : HttpMiddleware.xForwardedHeaders({ trustedProxies: config.trustedProxies })

  /**
   * Sets the security headers on an answer (and `Cache-Control: no-store` unless it says otherwise), and turns a
   * defect into a `500` that carries them too (the defect is logged, not shown).
   */
  const secured = (kind: "page" | "api", route: Route): Route =>
    withProxies(route).pipe(
      Effect.catchDefect((defect) =>
        Effect.as(
          Effect.logError("effect-cacheme admin: a request failed", defect),
          errorResponse(
            kind,
            undefined,
            new RequestError({ status: 500, error: "InternalError", message: "the admin failed to answer (logged)" })
          )
        )
      ),
      Effect.map((response) =>
        HttpServerResponse.setHeaders(response, {
          ...securityHeaders,
          "cache-control": response.headers["cache-control"] ?? "no-store"
        })
      )
    )

  /** `404` for a path the admin does not have, `405` (with `Allow`) for a method a path does not take. */
  const refusal = (path: string, method: string) => {
    const kind = kindOf(path)
    const methods = table[path]
    if (methods === undefined) {
      return errorResponse(kind, undefined, notFound(`no such ${kind === "api" ? "API route" : "page"}: ${path}`))
    }
    const allowed = Object.keys(methods).flatMap((m) => (m === "GET" ? ["GET", "HEAD"] : [m]))
    return HttpServerResponse.setHeader(
      errorResponse(
        kind,
        undefined,
        new RequestError({
          status: 405,
          error: "MethodNotAllowed",
          message: `${method} is not allowed on ${path}: use ${allowed.join(", ")}`
        })
      ),
      "allow",
      allowed.join(", ")
    )
  }

  /**
   * Takes every request under the mount path that no route took: the mount path itself (the dashboard), `HEAD`
   * of a `GET` route, and otherwise a `404` or `405` with the security headers (the router's own would carry none).
   */
  const fallback: Route = Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const path = pathOf(request.url)
    const methods = table[path]
    const route = methods?.[request.method as "GET" | "POST"] ?? (request.method === "HEAD" ? methods?.GET : undefined)
    return route !== undefined ? route : Effect.succeed(refusal(path, request.method))
  })

  const register = (router: HttpRouter.HttpRouter) => {
    const r = base === "" ? router : router.prefixed(base)
    const routes = Object.entries(table).flatMap(([path, methods]) =>
      path === "/"
        ? []
        : Object.entries(methods).map(([method, route]) =>
            r.add(method as "GET" | "POST", path as `/${string}`, secured(kindOf(path), route!))
          )
    )
    return Effect.all([...routes, r.add("*", base === "" ? "/*" : "*", secured("page", fallback))], { discard: true })
  }

  return { register }
}

/** The path of a request URL: without query or fragment, `/` for the empty path, duplicate slashes merged. */
const pathOf = (url: string): string => {
  const end = url.search(/[?#]/)
  const path = (end === -1 ? url : url.slice(0, end)).replace(/\/{2,}/g, "/")
  return path === "" ? "/" : path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path
}

/**
 * What the standalone server answers outside the admin's path: `404`, with the security headers.
 */
export const outside: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest> =
  Effect.map(HttpServerRequest.HttpServerRequest, (request) =>
    HttpServerResponse.setHeaders(
      HttpServerResponse.text(`no such page: ${pathOf(request.url).slice(0, 256)}\n`, {
        status: 404,
        contentType: "text/plain; charset=utf-8"
      }),
      { ...securityHeaders, "cache-control": "no-store" }
    )
  )
