/**
 * Who may use the admin, and how a request proves it.
 *
 * The admin never runs without credentials: a bearer **token**, one or more **users** with a password (HTTP basic
 * auth and the login form), or both. {@link make} refuses options without any (an {@link AdminConfigError}), and
 * every comparison of a secret is made in constant time (`crypto.timingSafeEqual` over SHA-256 digests, so the
 * length of a guess leaks nothing either).
 *
 * Browsers log in through the form and then carry a signed session cookie (`HttpOnly`, `SameSite=Strict`, scoped to
 * the admin's path, `Secure` over HTTPS). Scripts send `Authorization: Bearer <token>` or `Authorization: Basic ...`
 * on every request. Either way, every state-changing request must also carry the CSRF token of its credentials,
 * in the `X-CSRF-Token` header or a `_csrf` form field: pages embed it in their forms, scripts read it once from
 * `GET /api/session`.
 *
 * Failed attempts, whichever the path (Basic, Bearer, the login form), are limited per client address and per user
 * by the admin's routes (`Admin.RateLimitOptions`): past a budget the answer is `429` with `Retry-After`, and the
 * credentials are not compared at all.
 *
 * @since 0.1.0
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto"
import { Config, Duration, Effect, Option, Redacted, Schema } from "effect"

/**
 * A secret as written in options: plain text or `Redacted`.
 *
 * @category models
 * @since 0.1.0
 */
export type Secret = string | Redacted.Redacted<string>

/**
 * A user of the login form and of HTTP basic auth.
 *
 * @category models
 * @since 0.1.0
 */
export interface User {
  readonly username: string
  readonly password: Secret
}

/**
 * Credentials and session settings.
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** A bearer token (at least 16 characters); its holder is shown as `token` in the history. */
  readonly token?: Secret | undefined
  /** Users with a password (at least 8 characters). */
  readonly users?: ReadonlyArray<User> | undefined
  /**
   * The key that signs session cookies (at least 32 characters). Default: a random key made at start, so sessions
   * end with the process; set one to share sessions between instances.
   */
  readonly sessionSecret?: Secret | undefined
  /** How long a login lasts (default 8 hours). */
  readonly sessionTtl?: Duration.Input | undefined
  /**
   * Whether cookies carry `Secure`: always, never, or `"auto"` (the default): when the request came over HTTPS
   * (directly or as told by `X-Forwarded-Proto`).
   */
  readonly secureCookies?: boolean | "auto" | undefined
}

/**
 * Admin options that cannot be used: no credentials, a secret too short, a bad path.
 *
 * @category errors
 * @since 0.1.0
 */
export class AdminConfigError extends Schema.TaggedError<AdminConfigError>()("AdminConfigError", {
  setting: Schema.String,
  message: Schema.String
}) {}

/**
 * An authenticated caller.
 *
 * @category models
 * @since 0.1.0
 */
export interface Principal {
  /** The user name, or `token` for the bearer token. */
  readonly user: string
  readonly via: "session" | "bearer" | "basic"
  /** What the CSRF token of this caller is derived from (the session, or the credentials sent). */
  readonly csrfSeed: string
}

/**
 * The outcome of reading a request's credentials.
 *
 * @category models
 * @since 0.1.0
 */
export type Authentication =
  | { readonly _tag: "Anonymous" }
  | { readonly _tag: "Invalid"; readonly reason: string }
  | { readonly _tag: "Authenticated"; readonly principal: Principal }

/**
 * The checks, bound to one set of credentials.
 *
 * @category models
 * @since 0.1.0
 */
export interface Auth {
  /** Reads the `Authorization` header, then the session cookie. */
  readonly authenticate: (
    authorization: string | undefined,
    sessionCookie: string | undefined,
    now: number
  ) => Authentication
  /** The login form: a user and password, or an empty user and the token as password. Returns the user. */
  readonly login: (username: string, password: string) => string | undefined
  /** A new session cookie value for `user`. */
  readonly issueSession: (user: string, now: number) => string
  /** Ends the session of that cookie value (it stays refused until it would have expired). */
  readonly revokeSession: (sessionCookie: string, now: number) => void
  /** The CSRF token of a caller. */
  readonly csrfToken: (principal: Principal) => string
  /** Whether `submitted` is the CSRF token of `principal`. */
  readonly checkCsrf: (principal: Principal, submitted: string | undefined) => boolean
  /** A fresh nonce for the login form's cookie. */
  readonly loginNonce: () => string
  /** The hidden-field token of the login form that goes with a nonce cookie. */
  readonly loginToken: (nonce: string) => string
  readonly checkLoginToken: (nonce: string | undefined, submitted: string | undefined) => boolean
  readonly sessionTtlMillis: number
  readonly secureCookies: boolean | "auto"
  /** `Bearer` when a token is configured, `Basic` otherwise (what `WWW-Authenticate` announces). */
  readonly scheme: "Bearer" | "Basic"
  readonly hasToken: boolean
  readonly hasUsers: boolean
}

const reveal = (secret: Secret): string => (typeof secret === "string" ? secret : Redacted.value(secret))

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest()

/**
 * Compares two strings in constant time: both are hashed to 32 bytes first, so neither their content nor their
 * length shows in the time taken.
 *
 * @category utils
 * @since 0.1.0
 */
export const safeEqual = (a: string, b: string): boolean => timingSafeEqual(digest(a), digest(b))

const base64url = (buffer: Buffer): string => buffer.toString("base64url")

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it rejects
const controlCharacters = /[\u0000-\u001f\u007f]/

/**
 * Checks the options and binds the checks to them; fails when no credentials are configured.
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = Effect.fnUntraced(function* (options: Options) {
  const token = options.token === undefined ? undefined : reveal(options.token)
  const users = (options.users ?? []).map((user) => ({ username: user.username, password: reveal(user.password) }))
  if ((token === undefined || token === "") && users.length === 0) {
    return yield* new AdminConfigError({
      setting: "credentials",
      message:
        "the admin refuses to start without credentials: configure a token (CACHEME_ADMIN_TOKEN) or a user with a " +
        "password (CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD)"
    })
  }
  if (token !== undefined && token.length < 16) {
    return yield* new AdminConfigError({ setting: "token", message: "the admin token must be at least 16 characters" })
  }
  for (const user of users) {
    if (user.username === "" || user.username.includes(":") || controlCharacters.test(user.username)) {
      return yield* new AdminConfigError({
        setting: "users",
        message: `a user name must be non-empty, without ":" or control characters, got ${JSON.stringify(user.username)}`
      })
    }
    if (user.password.length < 8) {
      return yield* new AdminConfigError({
        setting: "users",
        message: `the password of ${JSON.stringify(user.username)} must be at least 8 characters`
      })
    }
  }
  const sessionSecret = options.sessionSecret === undefined ? undefined : reveal(options.sessionSecret)
  if (sessionSecret !== undefined && sessionSecret.length < 32) {
    return yield* new AdminConfigError({
      setting: "sessionSecret",
      message: "the session secret must be at least 32 characters"
    })
  }
  const ttl = Duration.fromInput(options.sessionTtl ?? "8 hours")
  if (Option.isNone(ttl) || !Duration.isFinite(ttl.value) || Duration.toMillis(ttl.value) <= 0) {
    return yield* new AdminConfigError({ setting: "sessionTtl", message: "expected a finite duration above zero" })
  }
  const sessionTtlMillis = Duration.toMillis(ttl.value)
  const key = sessionSecret === undefined ? randomBytes(32) : digest(`effect-cacheme/admin\u0000${sessionSecret}`)
  const sign = (purpose: string, payload: string) =>
    base64url(createHmac("sha256", key).update(`${purpose}\u0000${payload}`).digest())
  const revoked = new Map<string, number>()

  const checkToken = (candidate: string): boolean => token !== undefined && token !== "" && safeEqual(candidate, token)

  /** Every user is compared, whatever the outcome, so the time taken does not tell which names exist. */
  const checkUser = (username: string, password: string): string | undefined => {
    let found: string | undefined
    for (const user of users) {
      const nameMatches = safeEqual(username, user.username)
      const passwordMatches = safeEqual(password, user.password)
      if (nameMatches && passwordMatches && found === undefined) found = user.username
    }
    return found
  }

  const readSession = (cookie: string, now: number): { user: string; nonce: string; expires: number } | undefined => {
    const dot = cookie.lastIndexOf(".")
    if (dot <= 0) return undefined
    const payload = cookie.slice(0, dot)
    if (!safeEqual(cookie.slice(dot + 1), sign("session", payload))) return undefined
    let parsed: unknown
    try {
      parsed = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"))
    } catch {
      return undefined
    }
    if (typeof parsed !== "object" || parsed === null) return undefined
    const { u, e, n } = parsed as Record<string, unknown>
    if (typeof u !== "string" || typeof e !== "number" || typeof n !== "string") return undefined
    if (e <= now || revoked.has(n)) return undefined
    return { user: u, nonce: n, expires: e }
  }

  const auth: Auth = {
    authenticate: (authorization, sessionCookie, now) => {
      if (authorization !== undefined && authorization !== "") {
        const space = authorization.indexOf(" ")
        const scheme = (space === -1 ? authorization : authorization.slice(0, space)).toLowerCase()
        const value = space === -1 ? "" : authorization.slice(space + 1).trim()
        const csrfSeed = `header:${base64url(digest(authorization))}`
        if (scheme === "bearer") {
          return checkToken(value)
            ? { _tag: "Authenticated", principal: { user: "token", via: "bearer", csrfSeed } }
            : { _tag: "Invalid", reason: "wrong token" }
        }
        if (scheme === "basic") {
          const decoded = Buffer.from(value, "base64").toString("utf8")
          const colon = decoded.indexOf(":")
          const user = colon === -1 ? undefined : checkUser(decoded.slice(0, colon), decoded.slice(colon + 1))
          return user === undefined
            ? { _tag: "Invalid", reason: "wrong user or password" }
            : { _tag: "Authenticated", principal: { user, via: "basic", csrfSeed } }
        }
        return { _tag: "Invalid", reason: `unsupported authorization scheme ${JSON.stringify(scheme)}` }
      }
      if (sessionCookie !== undefined && sessionCookie !== "") {
        const session = readSession(sessionCookie, now)
        return session === undefined
          ? { _tag: "Invalid", reason: "session expired or invalid" }
          : {
              _tag: "Authenticated",
              principal: { user: session.user, via: "session", csrfSeed: `session:${session.nonce}` }
            }
      }
      return { _tag: "Anonymous" }
    },
    login: (username, password) => {
      if (username === "") return checkToken(password) ? "token" : undefined
      return checkUser(username, password)
    },
    issueSession: (user, now) => {
      const payload = base64url(
        Buffer.from(JSON.stringify({ u: user, e: now + sessionTtlMillis, n: base64url(randomBytes(18)) }), "utf8")
      )
      return `${payload}.${sign("session", payload)}`
    },
    revokeSession: (cookie, now) => {
      const session = readSession(cookie, now)
      for (const [nonce, expires] of revoked) if (expires <= now) revoked.delete(nonce)
      if (session !== undefined) revoked.set(session.nonce, session.expires)
    },
    csrfToken: (principal) => sign("csrf", principal.csrfSeed),
    checkCsrf: (principal, submitted) =>
      submitted !== undefined && submitted !== "" && safeEqual(submitted, sign("csrf", principal.csrfSeed)),
    loginNonce: () => base64url(randomBytes(18)),
    loginToken: (nonce) => sign("login", nonce),
    checkLoginToken: (nonce, submitted) =>
      nonce !== undefined &&
      nonce !== "" &&
      submitted !== undefined &&
      submitted !== "" &&
      safeEqual(submitted, sign("login", nonce)),
    sessionTtlMillis,
    secureCookies: options.secureCookies ?? "auto",
    scheme: token !== undefined && token !== "" ? "Bearer" : "Basic",
    hasToken: token !== undefined && token !== "",
    hasUsers: users.length > 0
  }
  return auth
})

/**
 * Who an `Authorization` header claims to be, for the attempt limiter: `user:<name>` for basic auth, `token` for a
 * bearer token, `undefined` when it names nobody (another scheme, or no `:` in the basic credentials). Nothing is
 * checked here.
 *
 * @category utils
 * @since 0.2.0
 */
export const claimant = (authorization: string): string | undefined => {
  const space = authorization.indexOf(" ")
  const scheme = (space === -1 ? authorization : authorization.slice(0, space)).toLowerCase()
  if (scheme === "bearer") return "token"
  if (scheme !== "basic") return undefined
  const decoded = Buffer.from(space === -1 ? "" : authorization.slice(space + 1).trim(), "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  return colon === -1 ? undefined : `user:${decoded.slice(0, colon)}`
}

/**
 * Reads credentials from the current `ConfigProvider` (the environment by default): `CACHEME_ADMIN_TOKEN`,
 * `CACHEME_ADMIN_USER` with `CACHEME_ADMIN_PASSWORD`, and `CACHEME_ADMIN_SESSION_SECRET`.
 *
 * @category constructors
 * @since 0.1.0
 */
export const fromConfig: Effect.Effect<Options, AdminConfigError> = Effect.gen(function* () {
  const read = (name: string) =>
    Config.option(Config.Redacted(name)).pipe(
      Effect.mapError((error) => new AdminConfigError({ setting: name, message: `${name}: ${error.message}` })),
      Effect.map(Option.getOrUndefined)
    )
  const token = yield* read("CACHEME_ADMIN_TOKEN")
  const username = yield* read("CACHEME_ADMIN_USER")
  const password = yield* read("CACHEME_ADMIN_PASSWORD")
  const sessionSecret = yield* read("CACHEME_ADMIN_SESSION_SECRET")
  if ((username === undefined) !== (password === undefined)) {
    return yield* new AdminConfigError({
      setting: "CACHEME_ADMIN_USER",
      message: "set both CACHEME_ADMIN_USER and CACHEME_ADMIN_PASSWORD, or neither"
    })
  }
  const options: Options = {
    token,
    users: username === undefined || password === undefined ? [] : [{ username: Redacted.value(username), password }],
    sessionSecret
  }
  return options
})
