/**
 * The admin's HTML pages. No script at all: navigation is links and forms, confirmations are pages, and every
 * datum goes through the escaping template of `html.ts`.
 */
import type { HistoryTarget, KeyResponse, KeysResponse, NodeStats, StoreInfo, Target } from "../Api.ts"
import type { Entry } from "../History.ts"
import { type Html, html, query } from "./html.ts"

/** What every page knows about the request. */
export interface PageContext {
  /** The mount path without a trailing slash ("" at the root). */
  readonly base: string
  readonly user?: string | undefined
  readonly csrf?: string | undefined
  readonly active?: "dashboard" | "keys" | "history" | undefined
}

export const href = (
  ctx: { readonly base: string },
  path: string,
  params?: Record<string, string | number | undefined>
) => `${ctx.base}${path}${params === undefined ? "" : query(params)}`

const number = (n: number | null | undefined): string =>
  n === null || n === undefined ? "–" : n.toLocaleString("en-US")

const millis = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined) return "–"
  if (ms < 1) return `${ms.toFixed(2)} ms`
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 1 : 0)} ms`
  return duration(ms)
}

/** A duration in its two largest units: `3 d 4 h`, `12 min 5 s`, `800 ms`. */
export const duration = (ms: number | null | undefined): string => {
  if (ms === null || ms === undefined) return "none"
  if (ms < 1000) return `${Math.round(ms)} ms`
  const units: ReadonlyArray<readonly [string, number]> = [
    ["d", 86_400_000],
    ["h", 3_600_000],
    ["min", 60_000],
    ["s", 1000]
  ]
  const parts: Array<string> = []
  let rest = ms
  for (const [unit, size] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)} ${unit}`)
      rest %= size
    } else if (parts.length > 0) break
  }
  return parts.join(" ")
}

export const dateTime = (date: Date): string => `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`

const percent = (ratio: number) => `${(ratio * 100).toFixed(ratio === 1 || ratio === 0 ? 0 : 1)}%`

/** A hit ratio as a bar: an SVG (attributes, not inline styles, so the CSP needs no `unsafe-inline`). */
export const ratioBar = (ratio: number, reads: number): Html => {
  const width = Math.max(0, Math.min(100, ratio * 100))
  return reads === 0
    ? html`<div class="ratio"><span class="muted">no reads</span></div>`
    : html`<div class="ratio"><svg viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="hit ratio ${percent(ratio)}"><rect class="track" width="100" height="10"></rect><rect class="fill" width="${width.toFixed(2)}" height="10"></rect></svg><span class="pct">${percent(ratio)}</span></div>`
}

const csrfField = (ctx: PageContext) => html`<input type="hidden" name="_csrf" value="${ctx.csrf ?? ""}">`

export const layout = (ctx: PageContext, title: string, body: Html): string => {
  const link = (name: NonNullable<PageContext["active"]>, path: string, label: string) =>
    html`<a href="${href(ctx, path)}"${ctx.active === name ? html` class="active" aria-current="page"` : ""}>${label}</a>`
  const header =
    ctx.user === undefined
      ? html`<header class="top"><div class="inner"><a class="brand" href="${href(ctx, "/")}">effect-<span>cacheme</span></a></div></header>`
      : html`<header class="top"><div class="inner">
  <a class="brand" href="${href(ctx, "/")}">effect-<span>cacheme</span></a>
  <nav class="links" aria-label="Main">${link("dashboard", "/", "Dashboard")}${link("keys", "/keys", "Keys")}${link("history", "/history", "History")}</nav>
  <div class="who"><span>${ctx.user}</span><form method="post" action="${href(ctx, "/logout")}">${csrfField(ctx)}<button class="link" type="submit">Log out</button></form></div>
</div></header>`
  return `<!doctype html>
${
  html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title} · effect-cacheme admin</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="${href(ctx, "/style.css")}">
</head>
<body>
${header}
<main>
${body}
</main>
</body>
</html>
`.value
}`
}

export const loginPage = (
  ctx: PageContext,
  options: {
    readonly loginToken: string
    readonly next: string
    readonly error?: string | undefined
    readonly users: boolean
    readonly token: boolean
  }
): string =>
  layout(
    ctx,
    "Log in",
    html`<div class="login card">
<h1>Log in</h1>
${options.error === undefined ? "" : html`<div class="notice error" role="alert">${options.error}</div>`}
<form class="stack" method="post" action="${href(ctx, "/login")}">
<input type="hidden" name="_login" value="${options.loginToken}">
<input type="hidden" name="next" value="${options.next}">
${
  options.users
    ? html`<label>User${options.token ? html` <span class="muted">(leave empty to log in with the token)</span>` : ""}<input type="text" name="username" autocomplete="username" autocapitalize="none" spellcheck="false"></label>`
    : html`<input type="hidden" name="username" value="">`
}
<label>${options.users ? (options.token ? "Password or token" : "Password") : "Token"}<input type="password" name="password" autocomplete="current-password" required></label>
<div><button type="submit">Log in</button></div>
</form>
</div>`
  )

const storeCards = (store: StoreInfo, nodes: ReadonlyArray<NodeStats>) => {
  const totals = nodes.reduce(
    (sum, node) => ({
      hits: sum.hits + node.hits + node.staleServed,
      reads: sum.reads + node.hits + node.misses + node.staleServed,
      keys: sum.keys + (node.keys ?? 0)
    }),
    { hits: 0, reads: 0, keys: 0 }
  )
  return html`<div class="grid">
<div class="metric"><div class="label">Store</div><div class="value">${store.kind} ${store.healthy ? html`<span class="badge ok">up</span>` : html`<span class="badge down">down</span>`}</div></div>
<div class="metric"><div class="label">Latency</div><div class="value">${millis(store.latencyMillis)}</div></div>
<div class="metric"><div class="label">Prefix</div><div class="value mono">${store.prefix}</div></div>
<div class="metric"><div class="label">Nodes</div><div class="value">${number(nodes.length)}</div></div>
<div class="metric"><div class="label">Keys (approx.)</div><div class="value">${number(totals.keys)}</div></div>
<div class="metric"><div class="label">Hit ratio</div><div class="value">${totals.reads === 0 ? "–" : percent(totals.hits / totals.reads)}</div></div>
</div>
${store.healthy ? "" : html`<div class="notice error" role="alert">The store does not answer: ${store.error ?? "unknown error"}</div>`}`
}

const nodeRow = (ctx: PageContext, node: NodeStats) => {
  const reads = node.hits + node.misses + node.staleServed
  return html`<tr>
<td><a href="${href(ctx, "/node", { name: node.name })}">${node.name}</a></td>
<td class="num">${number(node.keys)}</td>
<td class="num hide-narrow">${number(node.hits)}</td>
<td class="num hide-narrow">${number(node.misses)}</td>
<td class="num hide-narrow">${number(node.staleServed)}</td>
<td class="num hide-narrow">${number(node.loads)}</td>
<td>${ratioBar(node.hitRatio, reads)}</td>
<td class="num hide-narrow">${node.loads === 0 ? "–" : millis(node.meanLoadMillis)}</td>
<td><a href="${href(ctx, "/invalidate", { target: "node", value: node.name })}">Invalidate</a></td>
</tr>`
}

const nodesTable = (ctx: PageContext, nodes: ReadonlyArray<NodeStats>) =>
  nodes.length === 0
    ? html`<p class="empty-state">No node is defined in this process. Nodes appear here once the code that defines them (<code>Node.make</code>) is loaded.</p>`
    : html`<div class="table-wrap"><table>
<thead><tr><th>Node</th><th class="num">Keys</th><th class="num hide-narrow">Hits</th><th class="num hide-narrow">Misses</th><th class="num hide-narrow">Stale</th><th class="num hide-narrow">Loads</th><th>Hit ratio</th><th class="num hide-narrow">Mean load</th><th></th></tr></thead>
<tbody>${nodes.map((node) => nodeRow(ctx, node))}</tbody>
</table></div>`

const targetLabels: Record<Target, string> = {
  key: "Key",
  node: "Node",
  group: "Group",
  tag: "Tag",
  pattern: "Pattern"
}

const invalidateForm = (ctx: PageContext) =>
  html`<form class="inline" method="get" action="${href(ctx, "/invalidate")}">
<label>Invalidate by<select name="target">${(Object.keys(targetLabels) as Array<Target>).map(
    (target) => html`<option value="${target}">${targetLabels[target]}</option>`
  )}</select></label>
<input type="text" name="value" placeholder="user:42, user, user:*" aria-label="Key, node, group, tag or pattern" required>
<button type="submit">Review…</button>
</form>`

const historyTable = (ctx: PageContext, entries: ReadonlyArray<Entry>) =>
  entries.length === 0
    ? html`<p class="empty-state">No invalidation recorded yet.</p>`
    : html`<div class="table-wrap"><table class="history">
<thead><tr><th>When</th><th>Who</th><th>What</th><th>Value</th><th>Mode</th><th class="num">Keys</th></tr></thead>
<tbody>${entries.map(
        (entry) => html`<tr>
<td class="mono when">${dateTime(entry.createdAt)}</td>
<td>${entry.actor}</td>
<td>${entry.target}</td>
<td class="key">${entry.target === "key" ? html`<a href="${href(ctx, "/key", { key: entry.value })}">${entry.value}</a>` : entry.value}</td>
<td><span class="badge ${entry.mode}">${entry.mode}</span></td>
<td class="num">${number(entry.count)}</td>
</tr>`
      )}</tbody>
</table></div>`

export const dashboardPage = (
  ctx: PageContext,
  data: {
    readonly store: StoreInfo
    readonly nodes: ReadonlyArray<NodeStats>
    readonly history: ReadonlyArray<Entry> | string
  }
): string =>
  layout(
    { ...ctx, active: "dashboard" },
    "Dashboard",
    html`<h1>Dashboard</h1>
${storeCards(data.store, data.nodes)}
<section class="card"><h2>Nodes</h2>${nodesTable(ctx, data.nodes)}
<p class="muted">Counters are those of the process serving this page, since it started.</p></section>
<section class="card"><h2>Invalidate</h2>${invalidateForm(ctx)}</section>
<section class="card"><h2>Recent invalidations</h2>${
      typeof data.history === "string"
        ? html`<div class="notice error">${data.history}</div>`
        : historyTable(ctx, data.history)
    }<div class="actions"><a href="${href(ctx, "/history")}">All history →</a></div></section>`
  )

const keysTable = (ctx: PageContext, keys: KeysResponse, showNode: boolean) =>
  keys.keys.length === 0
    ? html`<p class="empty-state">No key on this page.${keys.complete ? "" : " The scan goes on: see the next page."}</p>`
    : html`<div class="table-wrap"><table class="keys">
<thead><tr><th>Key</th>${showNode ? html`<th>Node</th>` : ""}<th>State</th><th class="num hide-narrow">TTL</th><th class="num hide-narrow">Size</th><th></th></tr></thead>
<tbody>${keys.keys.map(
        (row) => html`<tr>
<td class="key"><a href="${href(ctx, "/key", { key: row.key })}">${row.key}</a></td>
${showNode ? html`<td>${row.node ?? html`<span class="muted">–</span>`}</td>` : ""}
<td><span class="badge ${row.state}">${row.state}</span></td>
<td class="num hide-narrow">${row.ttlMillis === null ? "none" : duration(row.ttlMillis)}</td>
<td class="num hide-narrow">${number(row.size)}</td>
<td><a href="${href(ctx, "/invalidate", { target: "key", value: row.key })}">Invalidate</a></td>
</tr>`
      )}</tbody>
</table></div>`

const searchForm = (ctx: PageContext, path: string, hidden: Record<string, string>, pattern: string | undefined) =>
  html`<form class="inline" method="get" action="${href(ctx, path)}" role="search">
${Object.entries(hidden).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}">`)}
<input type="search" name="pattern" value="${pattern ?? ""}" placeholder="Pattern, e.g. user:* (default *)" aria-label="Key pattern">
<button type="submit">Search</button>
</form>`

const pager = (ctx: PageContext, path: string, params: Record<string, string | undefined>, keys: KeysResponse) =>
  html`<div class="pager"><span class="muted">${number(keys.keys.length)} key${keys.keys.length === 1 ? "" : "s"} on this page${keys.complete ? ", scan complete" : ""}</span>${
    keys.complete
      ? ""
      : html`<a class="button secondary" href="${href(ctx, path, { ...params, cursor: keys.cursor })}">Next page →</a>`
  }</div>`

export const keysPage = (
  ctx: PageContext,
  data: { readonly pattern: string | undefined; readonly keys: KeysResponse }
) =>
  layout(
    { ...ctx, active: "keys" },
    "Keys",
    html`<h1>Keys</h1>
<section class="card">${searchForm(ctx, "/keys", {}, data.pattern)}</section>
<section class="card">${keysTable(ctx, data.keys, true)}${pager(ctx, "/keys", { pattern: data.pattern }, data.keys)}</section>`
  )

export const nodePage = (
  ctx: PageContext,
  data: { readonly node: NodeStats; readonly pattern: string | undefined; readonly keys: KeysResponse }
) => {
  const node = data.node
  const reads = node.hits + node.misses + node.staleServed
  return layout(
    { ...ctx, active: "dashboard" },
    `Node ${node.name}`,
    html`<h1>Node ${node.name}</h1>
<p class="subtitle mono">${node.stamp}</p>
<div class="grid">
<div class="metric"><div class="label">Keys (approx.)</div><div class="value">${number(node.keys)}</div></div>
<div class="metric"><div class="label">Hits</div><div class="value">${number(node.hits)}</div></div>
<div class="metric"><div class="label">Misses</div><div class="value">${number(node.misses)}</div></div>
<div class="metric"><div class="label">Stale served</div><div class="value">${number(node.staleServed)}</div></div>
<div class="metric"><div class="label">Loads</div><div class="value">${number(node.loads)}</div></div>
<div class="metric"><div class="label">Mean load</div><div class="value">${node.loads === 0 ? "–" : millis(node.meanLoadMillis)}</div></div>
<div class="metric"><div class="label">Herd waits</div><div class="value">${number(node.herdWaits)}</div></div>
<div class="metric"><div class="label">Store errors</div><div class="value">${number(node.storeErrors)}</div></div>
</div>
<section class="card"><h2>Hit ratio</h2>${ratioBar(node.hitRatio, reads)}
<dl class="props">
<dt>TTL</dt><dd>${node.ttlMillis === undefined ? "configured default" : duration(node.ttlMillis)}</dd>
<dt>Version</dt><dd>${node.version}</dd>
<dt>Tags</dt><dd><span class="tags">${node.tags.map((tag) => html`<a class="badge" href="${href(ctx, "/invalidate", { target: "tag", value: tag })}">${tag}</a>`)}</span></dd>
</dl>
<div class="actions"><a class="button danger" href="${href(ctx, "/invalidate", { target: "node", value: node.name })}">Invalidate every key of ${node.name}…</a></div>
</section>
<section class="card"><h2>Keys</h2>${searchForm(ctx, "/node", { name: node.name }, data.pattern)}</section>
<section class="card">${keysTable(ctx, data.keys, false)}${pager(ctx, "/node", { name: node.name, pattern: data.pattern }, data.keys)}</section>`
  )
}

const statusNote: Record<KeyResponse["status"], string> = {
  decoded: "decoded with the node's Schema",
  mismatch: "written under another Schema or version",
  corrupt: "does not decode",
  raw: "raw: no node of this name is defined here",
  empty: "no value yet: a load holds the lease"
}

export const keyPage = (ctx: PageContext, view: KeyResponse) =>
  layout(
    { ...ctx, active: "keys" },
    `Key ${view.key}`,
    html`<h1>Key</h1>
<p class="subtitle mono">${view.key}</p>
<section class="card">
<dl class="props">
<dt>Node</dt><dd>${view.node === null ? html`<span class="muted">unknown</span>` : html`<a href="${href(ctx, "/node", { name: view.node })}">${view.node}</a>`}</dd>
<dt>State</dt><dd><span class="badge ${view.state}">${view.state}</span>${view.leased ? html` <span class="badge">leased</span>` : ""}</dd>
<dt>Value</dt><dd><span class="badge ${view.status}">${view.status}</span> <span class="muted">${statusNote[view.status]}</span>${view.message === null ? "" : html`<br><span class="muted">${view.message}</span>`}</dd>
<dt>Stamp</dt><dd class="mono">${view.stamp ?? "–"}</dd>
<dt>TTL</dt><dd>${view.ttlMillis === null ? "none" : duration(view.ttlMillis)}</dd>
<dt>Fresh until</dt><dd>${view.freshUntil === null ? (view.state === "stale" || view.state === "invalidated" ? "invalidated" : "for ever") : view.freshUntil}</dd>
<dt>Groups</dt><dd>${view.groups.length === 0 ? html`<span class="muted">none</span>` : html`<span class="tags">${view.groups.map((group) => html`<a class="badge" href="${href(ctx, "/invalidate", { target: "group", value: group })}">${group}</a>`)}</span>`}</dd>
<dt>Tags</dt><dd>${view.tags.length === 0 ? html`<span class="muted">none</span>` : html`<span class="tags">${view.tags.map((tag) => html`<a class="badge" href="${href(ctx, "/invalidate", { target: "tag", value: tag })}">${tag}</a>`)}</span>`}</dd>
</dl>
<div class="actions"><a class="button danger" href="${href(ctx, "/invalidate", { target: "key", value: view.key })}">Invalidate this key…</a></div>
</section>
<section class="card"><h2>Value</h2>${
      view.raw === null
        ? html`<p class="empty-state">No value.</p>`
        : html`<pre class="value">${"value" in view ? JSON.stringify(view.value, null, 2) : view.raw}</pre>${
            view.truncated ? html`<p class="muted">Cut at 64 KiB.</p>` : ""
          }`
    }</section>`
  )

export const confirmPage = (
  ctx: PageContext,
  data: { readonly target: Target; readonly value: string; readonly mode: "hard" | "soft"; readonly preview: string }
) =>
  layout(
    ctx,
    "Confirm invalidation",
    html`<h1>Invalidate ${targetLabels[data.target].toLowerCase()}?</h1>
<section class="card">
<dl class="props">
<dt>${targetLabels[data.target]}</dt><dd class="mono">${data.value}</dd>
<dt>Now</dt><dd>${data.preview}</dd>
</dl>
<form method="post" action="${href(ctx, "/invalidate")}">
${csrfField(ctx)}
<input type="hidden" name="target" value="${data.target}">
<input type="hidden" name="value" value="${data.value}">
<div class="actions">
<label class="choice"><input type="radio" name="mode" value="hard"${data.mode === "hard" ? html` checked` : ""}> Hard: remove the values</label>
<label class="choice"><input type="radio" name="mode" value="soft"${data.mode === "soft" ? html` checked` : ""}> Soft: keep them as stale values</label>
</div>
<div class="actions"><button class="danger" type="submit">Invalidate</button><a href="${href(ctx, "/")}">Cancel</a></div>
</form>
</section>`
  )

export const resultPage = (
  ctx: PageContext,
  data: { readonly target: Target; readonly value: string; readonly mode: "hard" | "soft"; readonly count: number }
) =>
  layout(
    ctx,
    "Invalidated",
    html`<h1>Invalidated</h1>
<div class="notice ok" role="status">${data.mode === "hard" ? "Removed" : "Marked stale"} <strong class="count">${number(data.count)}</strong> key${data.count === 1 ? "" : "s"} (${targetLabels[data.target].toLowerCase()} <span class="mono">${data.value}</span>).</div>
<div class="actions"><a class="button" href="${href(ctx, "/history")}">See the history</a><a href="${href(ctx, "/")}">Back to the dashboard</a></div>`
  )

export const historyPage = (
  ctx: PageContext,
  data: {
    readonly entries: ReadonlyArray<Entry>
    readonly next: number | null
    readonly target: HistoryTarget | undefined
  }
) =>
  layout(
    { ...ctx, active: "history" },
    "History",
    html`<h1>Invalidation history</h1>
<section class="card"><form class="inline" method="get" action="${href(ctx, "/history")}">
<label>Target<select name="target"><option value="">all</option>${(["key", "group", "tag", "pattern"] as const).map(
      (target) => html`<option value="${target}"${data.target === target ? html` selected` : ""}>${target}</option>`
    )}</select></label>
<button type="submit">Filter</button>
</form></section>
<section class="card">${historyTable(ctx, data.entries)}${
      data.next === null
        ? ""
        : html`<div class="pager"><span></span><a class="button secondary" href="${href(ctx, "/history", { target: data.target, before: data.next })}">Older →</a></div>`
    }</section>`
  )

export const errorPage = (
  ctx: PageContext,
  data: {
    readonly title: string
    readonly message: string
    readonly issues?: ReadonlyArray<{ readonly path: string; readonly message: string }> | undefined
  }
) =>
  layout(
    ctx,
    data.title,
    html`<h1>${data.title}</h1>
<div class="notice error" role="alert">${
      data.issues === undefined || data.issues.length === 0 ? data.message : "Some of what was sent is not valid:"
    }${
      data.issues === undefined || data.issues.length === 0
        ? ""
        : html`<ul>${data.issues.map((issue) => html`<li>${issue.path === "" ? "" : html`<code>${issue.path}</code>: `}${issue.message}</li>`)}</ul>`
    }</div>
<div class="actions"><a href="${href(ctx, "/")}">Back to the dashboard</a></div>`
  )
