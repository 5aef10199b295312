/**
 * Helpers of the admin tests: an admin server on an ephemeral loopback port over a memory or Redis store, a
 * cookie-keeping fetch, and the seeding of cache entries.
 */
import { request as httpRequest, type IncomingHttpHeaders } from "node:http"
import { Effect, Layer, ManagedRuntime } from "effect"
import { HttpServer } from "effect/http"
import { Admin, History } from "../../src/admin/index.ts"
import { CacheStore, Memo } from "../../src/index.ts"
import { deleteRedisPrefix, Redis } from "../support/services.ts"
import { NoteNode, User, UserNode, xssKeySlug, xssValue } from "./fixtures/nodes.ts"

export const TOKEN = "admin-test-token-0123456789"
export const USER = { username: "alice", password: "correct horse battery" }

export type StoreKind = "memory" | "redis"

export interface Started {
  readonly url: string
  readonly origin: string
  readonly prefix: string
  readonly runtime: ManagedRuntime.ManagedRuntime<CacheStore.CacheStore | History.History, unknown>
  readonly run: <A, E>(effect: Effect.Effect<A, E, CacheStore.CacheStore | History.History>) => Promise<A>
  readonly close: () => Promise<void>
}

const uniquePrefix = () => `cmadmin${Math.random().toString(36).slice(2, 8)}:`

/** Deletes every key under a prefix (entries and sets) of the shared Redis. */
export const cleanRedis = (prefix: string) => deleteRedisPrefix(prefix)

export const storeLayer = (kind: StoreKind, prefix: string): Layer.Layer<CacheStore.CacheStore> =>
  kind === "memory" ? CacheStore.layerMemory({ prefix }) : CacheStore.layerRedis({ url: Redis.url, prefix })

/** Starts an admin on 127.0.0.1, port 0. */
export const startAdmin = async (
  kind: StoreKind,
  options: Partial<Admin.ServerOptions> & {
    readonly history?: Layer.Layer<History.History> | undefined
    readonly prefix?: string | undefined
    /** Provide `History.layerListener` to the admin, as an application recording every invalidation would. */
    readonly listener?: boolean | undefined
    /** Another store than the one of `kind` (a failing one, a Cluster); `kind` then only says how to clean up. */
    readonly store?: Layer.Layer<CacheStore.CacheStore> | undefined
  } = {}
): Promise<Started> => {
  const prefix = options.prefix ?? uniquePrefix()
  const services = Layer.mergeAll(options.store ?? storeLayer(kind, prefix), options.history ?? History.layerMemory())
  const { history: _history, prefix: _prefix, listener, store: _store, ...adminOptions } = options
  const admin = Admin.layerServer({
    token: TOKEN,
    users: [USER],
    path: "/admin",
    ...adminOptions,
    port: 0,
    host: "127.0.0.1",
    logRequests: false
  })
  const server = listener === true ? admin.pipe(Layer.provide(History.layerListener)) : admin
  const runtime = ManagedRuntime.make(Layer.provideMerge(server, services))
  const http = await runtime.runPromise(
    Effect.gen(function* () {
      return yield* HttpServer.HttpServer
    })
  )
  const address = http.address as { readonly port: number }
  const origin = `http://127.0.0.1:${address.port}`
  const path = options.path === undefined ? "/admin" : options.path.replace(/\/+$/, "")
  return {
    url: `${origin}${path}`,
    origin,
    prefix,
    runtime: runtime as Started["runtime"],
    run: (effect) => runtime.runPromise(effect),
    close: async () => {
      await runtime.dispose()
      if (kind === "redis") await cleanRedis(prefix)
    }
  }
}

/** Caches users 1..n, one note, and the XSS note; returns nothing. */
export const seed = (users = 3) =>
  Effect.gen(function* () {
    for (let id = 1; id <= users; id++) {
      yield* Memo.cachedStrict(Effect.succeed(new User({ id, name: `User ${id}` })), UserNode.make({ id }))
    }
    yield* Memo.cachedStrict(Effect.succeed("hello"), NoteNode.make({ slug: "hello" }))
    yield* Memo.cachedStrict(Effect.succeed(xssValue), NoteNode.make({ slug: xssKeySlug }))
  })

/** A fetch that keeps cookies like a browser (per instance), never follows redirects, and sends no Origin. */
export class Client {
  readonly cookies = new Map<string, string>()
  readonly base: string
  constructor(base: string) {
    this.base = base
  }

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers)
    if (this.cookies.size > 0 && !headers.has("cookie")) {
      headers.set("cookie", [...this.cookies].map(([name, value]) => `${name}=${value}`).join("; "))
    }
    const response = await fetch(path.startsWith("http") ? path : `${this.base}${path}`, {
      ...init,
      headers,
      redirect: "manual"
    })
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";")
      const eq = pair!.indexOf("=")
      const name = pair!.slice(0, eq).trim()
      const value = pair!.slice(eq + 1).trim()
      const expired = attributes.some(
        (attribute) => /max-age=0\b/i.test(attribute.trim()) || /expires=thu, 01 jan 1970/i.test(attribute.trim())
      )
      if (expired || value === "") this.cookies.delete(name)
      else this.cookies.set(name, value)
    }
    return response
  }

  /** Logs in through the form (token, or user and password). */
  async login(credentials: { readonly username?: string; readonly password: string } = { password: TOKEN }) {
    const form = await this.fetch("/login")
    const html = await form.text()
    const loginToken = /name="_login" value="([^"]+)"/.exec(html)?.[1]
    if (loginToken === undefined) throw new Error(`no login token in ${html}`)
    return this.fetch("/login", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        _login: loginToken,
        username: credentials.username ?? "",
        password: credentials.password,
        next: "/"
      })
    })
  }

  /** The CSRF token embedded in a page. */
  async csrfFrom(path = "/"): Promise<string> {
    const html = await (await this.fetch(path)).text()
    const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1]
    if (token === undefined) throw new Error(`no CSRF token in ${path}`)
    return token
  }
}

export const bearer = { authorization: `Bearer ${TOKEN}` }
export const basic = (username: string, password: string) => ({
  authorization: `Basic ${Buffer.from(`${username}:${password}`).toString("base64")}`
})

export interface RawResponse {
  readonly status: number
  readonly headers: IncomingHttpHeaders
  readonly body: string
}

/**
 * One HTTP request through `node:http`, on a connection of its own: the path and body go out as written (no
 * re-encoding), and `localAddress` picks the client's address on the loopback network (127.0.0.0/8), so that tests
 * can be several clients.
 */
export const send = (
  url: string,
  init: {
    readonly method?: string | undefined
    readonly headers?: Record<string, string> | undefined
    readonly body?: string | undefined
    readonly localAddress?: string | undefined
  } = {}
): Promise<RawResponse> =>
  new Promise((resolve, reject) => {
    const request = httpRequest(
      url,
      { method: init.method ?? "GET", headers: init.headers, localAddress: init.localAddress, agent: false },
      (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (chunk: string) => {
          body += chunk
        })
        response.on("end", () => resolve({ status: response.statusCode!, headers: response.headers, body }))
        response.on("error", reject)
      }
    )
    request.on("error", reject)
    request.end(init.body)
  })

/** The login form's token and nonce cookie, fetched from `localAddress`, ready for a raw `POST /login`. */
export const loginForm = async (adminUrl: string, localAddress?: string) => {
  const page = await send(`${adminUrl}/login`, { localAddress })
  const token = /name="_login" value="([^"]+)"/.exec(page.body)?.[1]
  const cookie = page.headers["set-cookie"]?.find((line) => line.startsWith("cacheme_login="))?.split(";")[0]
  if (token === undefined || cookie === undefined) throw new Error(`no login form in ${page.body}`)
  return { token, cookie }
}

/** A raw `POST /login` with the form's token; `fields` are sent as written (already percent-encoded). */
export const postLogin = (
  adminUrl: string,
  form: { readonly token: string; readonly cookie: string },
  fields: string,
  localAddress?: string
) =>
  send(`${adminUrl}/login`, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded", cookie: form.cookie },
    body: `_login=${encodeURIComponent(form.token)}&${fields}`,
    localAddress
  })
