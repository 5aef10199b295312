/**
 * The admin's routes: pages and JSON API on one `HttpRouter`, under a path prefix. Every route goes through
 * {@link handle}, which authenticates, checks the CSRF token of state-changing requests, reads and bounds the
 * body, maps errors to status codes, and sets the security headers.
 */
import { ByteSize, Cause, Clock, Effect, Exit, Schema } from "effect"
import { issuesOf } from "../../internal/fields.ts"
import { HttpIncomingMessage, type HttpRouter, HttpServerRequest, HttpServerResponse } from "effect/http"
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
import type { Auth, Principal } from "../Auth.ts"
import { type History, type HistoryError, toJson } from "../History.ts"
import { allNodeStats, keyView, nodeStats, patternProblem, scanKeys, storeInfo } from "./inspect.ts"
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

const securityHeaders = {
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

/** A path inside the admin to return to after logging in: relative, never another origin. */
const safeNext = (next: unknown): string =>
  typeof next === "string" && /^\/(?![/\\])[^\s]*$/.test(next) && next.length <= 2048 ? next : "/"

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
          ? { status: 503, code: "StoreUnavailable", message: error.message, issues: undefined }
          : { status: 503, code: "HistoryUnavailable", message: error.message, issues: undefined }
    if (kind === "api")
      return jsonResponse({ error: code, message, ...(issues === undefined ? {} : { issues }) }, status)
    const titles: Record<number, string> = {
      400: "Bad request",
      401: "Not logged in",
      403: "Forbidden",
      404: "Not found",
      413: "Too large",
      415: "Unsupported body",
      503: "Unavailable"
    }
    return htmlResponse(
      Pages.errorPage(ctxOf(principal), { title: titles[status] ?? "Error", message, issues }),
      status
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
      const authentication = auth.authenticate(request.headers.authorization, request.cookies[sessionCookie], now)
      if (authentication._tag !== "Authenticated") {
        if (kind === "page" && request.headers.authorization === undefined) {
          const next = request.method === "GET" ? request.url : "/"
          const redirect = HttpServerResponse.redirect(`${base}/login?next=${encodeURIComponent(safeNext(next))}`, {
            status: 303
          })
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
    }).pipe(Effect.map(HttpServerResponse.setHeaders({ ...securityHeaders, "cache-control": "no-store" })))

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
    return loginForm(request, safeNext(search.next), 200)
  }).pipe(Effect.map(HttpServerResponse.setHeaders({ ...securityHeaders, "cache-control": "no-store" })))

  const loginPost = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const now = yield* Clock.currentTimeMillis
    const attempt = Effect.gen(function* () {
      if (request.headers["sec-fetch-site"] === "cross-site") {
        return yield* forbidden("cross-site requests may not log in")
      }
      const body = yield* readBody(request, "page")
      const form = yield* decodeInput(LoginForm, body, "form")
      const next = safeNext(form.next)
      if (!auth.checkLoginToken(request.cookies[loginCookie], form._login)) {
        return loginForm(request, next, 403, "The login form expired or was not sent from this page: try again.")
      }
      const user = auth.login(form.username ?? "", form.password)
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
  }).pipe(Effect.map(HttpServerResponse.setHeaders({ ...securityHeaders, "cache-control": "no-store" })))

  const styleCss = Effect.succeed(
    HttpServerResponse.text(stylesheet, {
      contentType: "text/css; charset=utf-8",
      headers: { ...securityHeaders, "cache-control": "public, max-age=300" }
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

  const register = (router: HttpRouter.HttpRouter) => {
    const r = base === "" ? router : router.prefixed(base)
    return Effect.all([
      r.add("GET", "/", dashboard),
      r.add("GET", "/style.css", styleCss),
      r.add("GET", "/login", loginGet),
      r.add("POST", "/login", loginPost),
      r.add("POST", "/logout", logout),
      r.add("GET", "/keys", keysPage),
      r.add("GET", "/node", nodePage),
      r.add("GET", "/key", keyPage),
      r.add("GET", "/invalidate", confirmPage),
      r.add("POST", "/invalidate", invalidatePage),
      r.add("GET", "/history", historyHtml),
      r.add("GET", "/api/session", apiSession),
      r.add("GET", "/api/stats", apiStats),
      r.add("GET", "/api/node", apiNode),
      r.add("GET", "/api/keys", apiKeys),
      r.add("GET", "/api/key", apiKey),
      r.add("POST", "/api/invalidate", apiInvalidate),
      r.add("GET", "/api/history", apiHistory)
    ])
  }

  return { register }
}
