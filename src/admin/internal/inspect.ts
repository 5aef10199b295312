/**
 * What the admin reads from the cache: node statistics, store health, pages of keys (with bounded SCAN work) and
 * decoded values. Pages and the JSON API both render these.
 */
import { Duration, Effect } from "effect"
import type { CacheStore, CacheStoreError, EntryInfo } from "../../CacheStore.ts"
import { decode, splitStamp } from "../../internal/codec.ts"
import { compileGlob } from "../../internal/glob.ts"
import { tagSet } from "../../internal/keys.ts"
import * as Metrics from "../../Metrics.ts"
import * as Node from "../../Node.ts"
import type { KeyResponse, KeyRow, KeysResponse, NodeStats, StoreInfo } from "../Api.ts"

type Store = CacheStore["Service"]

export const nodeStats = Effect.fnUntraced(function* (store: Store, node: Node.Node) {
  const stats = yield* Metrics.stats(node.name)
  const keys = yield* store.setSize(tagSet(node.name)).pipe(Effect.orElseSucceed(() => null))
  const row: NodeStats = {
    name: node.name,
    tags: node.tags,
    version: node.version,
    stamp: node.stamp,
    ttlMillis: node.ttl === undefined ? undefined : node.ttl === null ? null : Duration.toMillis(node.ttl),
    keys,
    hits: stats.hits,
    misses: stats.misses,
    staleServed: stats.staleServed,
    loads: stats.loads,
    herdWaits: stats.herdWaits,
    storeErrors: stats.storeErrors,
    hitRatio: stats.hitRatio,
    meanLoadMillis: stats.meanLoadMillis
  }
  return row
})

export const allNodeStats = (store: Store) =>
  Effect.forEach(
    [...Node.all()].sort((a, b) => a.name.localeCompare(b.name)),
    (node) => nodeStats(store, node),
    { concurrency: 8 }
  )

export const storeInfo = (store: Store): Effect.Effect<StoreInfo> =>
  store.ping.pipe(
    Effect.timeout("2 seconds"),
    Effect.map(
      (latency): StoreInfo => ({
        kind: store.kind,
        prefix: store.prefix,
        healthy: true,
        latencyMillis: Math.round(latency * 100) / 100,
        error: null
      })
    ),
    Effect.catch((error) =>
      Effect.succeed<StoreInfo>({
        kind: store.kind,
        prefix: store.prefix,
        healthy: false,
        latencyMillis: null,
        error: error._tag === "TimeoutError" ? "no answer within 2 seconds" : error.message
      })
    )
  )

/** The node that wrote an entry: the stamp's name, else the first tag set naming a defined node. */
export const nodeOfEntry = (info: EntryInfo): string | undefined => {
  if (info.value !== undefined) {
    const { stamp } = splitStamp(info.value)
    const at = stamp.indexOf("@")
    if (at > 0) return stamp.slice(0, at)
  }
  for (const set of info.sets) {
    if (set.startsWith("t:") && Node.get(set.slice(2)) !== undefined) return set.slice(2)
  }
  return undefined
}

const stateOf = (info: EntryInfo, now: number): KeyRow["state"] => {
  if (info.value === undefined || info.freshness === undefined) return "loading"
  switch (info.freshness._tag) {
    case "Forever":
      return "fresh"
    case "Until":
      return info.freshness.until <= now ? "stale" : "fresh"
    case "Invalidated":
      return "stale"
    case "Dead":
      return "invalidated"
  }
}

export interface ScanOptions {
  readonly pattern?: string | undefined
  readonly cursor?: string | undefined
  readonly count?: number | undefined
  readonly node?: string | undefined
  /** The most SCAN calls one request may make. */
  readonly budget: number
}

/**
 * One page of keys. SCAN is called until `count` keys were found, the scan is complete, or the budget of calls
 * is spent, whichever comes first; the cursor resumes where it stopped. Every key found is inspected (for its
 * node, state and size), with bounded concurrency.
 */
export const scanKeys = Effect.fnUntraced(function* (store: Store, options: ScanOptions) {
  const wanted = Math.max(1, Math.min(options.count ?? 50, 200))
  let cursor = options.cursor ?? "0"
  let calls = 0
  const seen = new Set<string>()
  const rows: Array<KeyRow> = []
  const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
  // SCAN's COUNT is how many slots Redis looks at, not how many keys match: it grows while matches are sparse,
  // from the density seen so far (the memory store reads it as a page size, for which the same rule is exact).
  let count = Math.max(10, wanted)
  do {
    const page = yield* store.scan({ pattern: options.pattern, cursor, count })
    calls++
    cursor = page.cursor
    const remaining = Math.max(1, wanted - rows.length - page.keys.length)
    count = Math.max(
      10,
      Math.min(1000, page.keys.length === 0 ? count * 4 : Math.ceil((remaining * count) / page.keys.length))
    )
    const fresh = page.keys.filter((key) => !seen.has(key))
    for (const key of fresh) seen.add(key)
    const infos = yield* Effect.forEach(fresh, (key) => store.inspect(key), { concurrency: 16 })
    for (const info of infos) {
      if (info === undefined) continue
      const node = nodeOfEntry(info) ?? null
      if (options.node !== undefined && node !== options.node) continue
      rows.push({
        key: info.key,
        node,
        state: stateOf(info, now),
        ttlMillis: info.ttlMillis ?? null,
        size: info.value === undefined ? 0 : splitStamp(info.value).json.length
      })
    }
  } while (rows.length < wanted && cursor !== "0" && calls < options.budget)
  rows.sort((a, b) => a.key.localeCompare(b.key))
  const response: KeysResponse = { keys: rows, cursor, complete: cursor === "0" }
  return response
})

/** The most characters of a value returned or shown. */
export const maxRawLength = 65_536

export const keyView = (store: Store, key: string): Effect.Effect<KeyResponse | undefined, CacheStoreError> =>
  Effect.gen(function* () {
    const info = yield* store.inspect(key)
    if (info === undefined) return undefined
    const now = yield* Effect.clockWith((clock) => clock.currentTimeMillis)
    const nodeName = nodeOfEntry(info) ?? null
    const node = nodeName === null ? undefined : Node.get(nodeName)
    const groups = info.sets.filter((set) => set.startsWith("g:")).map((set) => set.slice(2))
    const tags = info.sets.filter((set) => set.startsWith("t:")).map((set) => set.slice(2))
    const base = {
      key,
      node: nodeName,
      state: stateOf(info, now),
      ttlMillis: info.ttlMillis ?? null,
      freshUntil: info.freshness?._tag === "Until" ? new Date(info.freshness.until).toISOString() : null,
      leased: info.leased,
      groups,
      tags
    }
    if (info.value === undefined) {
      const empty: KeyResponse = {
        ...base,
        stamp: null,
        status: "empty",
        message: null,
        raw: null,
        truncated: false
      }
      return empty
    }
    const { stamp, json } = splitStamp(info.value)
    const truncated = json.length > maxRawLength
    let value: unknown
    let parsed = false
    if (!truncated) {
      try {
        value = JSON.parse(json)
        parsed = true
      } catch {
        parsed = false
      }
    }
    let status: KeyResponse["status"] = "raw"
    let message: string | null = null
    if (node !== undefined) {
      const decoded = decode(node, info.value)
      if (decoded._tag === "Value") status = "decoded"
      else if (decoded._tag === "Mismatch") {
        status = "mismatch"
        message = `written under stamp ${decoded.stamp}; the node's stamp is ${node.stamp}`
      } else {
        status = "corrupt"
        message = decoded.reason
      }
    } else if (nodeName !== null) {
      message = `no node named ${nodeName} is defined in this process`
    }
    const response: KeyResponse = {
      ...base,
      stamp: stamp === "" ? null : stamp,
      status,
      message,
      ...(parsed ? { value } : {}),
      raw: truncated ? json.slice(0, maxRawLength) : json,
      truncated
    }
    return response
  })

/** Why a pattern may not be used for invalidation or search, or undefined. */
export const patternProblem = (pattern: string, prefix: string): string | undefined => {
  if (pattern.startsWith("~")) return "a pattern cannot start with ~ (reserved for group and tag sets)"
  const glob = compileGlob(pattern)
  if (glob._tag === "GlobError") return glob.reason
  if (prefix !== "" && pattern.length > prefix.length && pattern.startsWith(prefix)) {
    return `patterns are relative to the store prefix ${JSON.stringify(prefix)}: leave the prefix out`
  }
  return undefined
}
