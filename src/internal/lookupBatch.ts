/**
 * The lookups of one turn of the event loop, sent as one read: on the Redis store one `MGET` of every entry and
 * every distinct stamp (a node's tag stamp read once, not once per entry), on the tiered store one tracked read;
 * each request then judged as a single lookup would be.
 *
 * Two lookups of the same key and sets asked before the read is sent share it. That keeps read-your-writes: a
 * caller that starts after an invalidation resolved can only join a read that is sent after it started, so after
 * the invalidation reached the server. Once a batch is sent, later lookups start a new one.
 *
 * A batch goes out at `process.nextTick`: after the current fibers and the microtasks they resume have run (so
 * the callers a reply wakes, and the lookups they make, share the next batch), and before the client's own
 * auto-pipelining flush, which ioredis makes from `setImmediate`: no round trip is added.
 *
 * @internal
 */
import { Effect } from "effect"
import type { CacheStoreError, Lookup, Sets } from "../CacheStore.ts"
import * as Protocol from "./protocol.ts"

/** One lookup: the key (prefix excluded), its sets, and the lease horizon it is judged with. */
export interface Query {
  readonly key: string
  readonly sets: Sets
  readonly leaseMillis: number | undefined
}

type Resume = (effect: Effect.Effect<Lookup, CacheStoreError>) => void

interface Request {
  readonly query: Query
  readonly waiters: Array<Resume>
}

/** Sends a batch's queries as one read; rejects with the `CacheStoreError` to answer them all with. */
export type Send = (queries: ReadonlyArray<Query>) => Promise<ReadonlyArray<Lookup>>

export type LookupBatch = (query: Query) => Effect.Effect<Lookup, CacheStoreError>

const sameQuery = (a: Query, b: Query): boolean => {
  if (a.leaseMillis !== b.leaseMillis) return false
  if (a.sets === b.sets) return true
  if (a.sets.names.length !== b.sets.names.length) return false
  for (let i = 0; i < a.sets.names.length; i++) if (a.sets.names[i] !== b.sets.names[i]) return false
  return true
}

export const make = (send: Send): LookupBatch => {
  let pending: Map<string, Request | Array<Request>> | undefined

  const flush = () => {
    const batch = pending!
    pending = undefined
    const requests: Array<Request> = []
    for (const entry of batch.values()) {
      if (Array.isArray(entry)) requests.push(...entry)
      else requests.push(entry)
    }
    let sent: Promise<ReadonlyArray<Lookup>>
    try {
      sent = send(requests.map((request) => request.query))
    } catch (cause) {
      sent = Promise.reject(cause)
    }
    sent.then(
      (lookups) => {
        for (let i = 0; i < requests.length; i++) {
          const found = Effect.succeed(lookups[i]!)
          for (const resume of requests[i]!.waiters) resume(found)
        }
      },
      (cause) => {
        const failed = Effect.fail(cause as CacheStoreError)
        for (const request of requests) for (const resume of request.waiters) resume(failed)
      }
    )
  }

  const enqueue = (query: Query, resume: Resume) => {
    if (pending === undefined) {
      pending = new Map()
      process.nextTick(flush)
    }
    const found = pending.get(query.key)
    if (found === undefined) {
      pending.set(query.key, { query, waiters: [resume] })
      return
    }
    const list = Array.isArray(found) ? found : [found]
    for (const request of list)
      if (sameQuery(request.query, query)) {
        request.waiters.push(resume)
        return
      }
    list.push({ query, waiters: [resume] })
    if (!Array.isArray(found)) pending.set(query.key, list)
  }

  // A caller interrupted meanwhile is simply not resumed (`Effect.callback` ignores a late resume); its read,
  // having no effect on the store, goes out with the others.
  return (query) =>
    Effect.callback<Lookup, CacheStoreError>((resume) => {
      enqueue(query, resume)
    })
}

/**
 * The layout of a batch's read: its distinct Redis keys, and for each query the positions of its keys among them
 * (`keysOf`: the entry's key first, then its stamps').
 */
export const layoutOf = <Q>(
  queries: ReadonlyArray<Q>,
  keysOf: (query: Q) => ReadonlyArray<string>
): {
  readonly keys: ReadonlyArray<string>
  readonly positions: ReadonlyArray<ReadonlyArray<number>>
} => {
  if (queries.length === 1) {
    const keys = keysOf(queries[0]!)
    return { keys, positions: [keys.map((_, i) => i)] }
  }
  const keys: Array<string> = []
  const seen = new Map<string, number>()
  const positions = queries.map((query) =>
    keysOf(query).map((redisKey) => {
      let position = seen.get(redisKey)
      if (position === undefined) {
        position = keys.length
        keys.push(redisKey)
        seen.set(redisKey, position)
      }
      return position
    })
  )
  return { keys, positions }
}

/**
 * Judges one query from the replies of its batch's read (`positions`: its entry's, then its stamps'). A `Verify`
 * (a record whose value named groups, one of whose families' epochs moved) is for the store to settle with one
 * more read before the batch is answered.
 */
export const judgeAt = (
  query: Query,
  positions: ReadonlyArray<number>,
  replies: ReadonlyArray<string | null>,
  now: number
): Protocol.Judged => {
  const stamps = new Array<string | null>(positions.length - 1)
  for (let j = 1; j < positions.length; j++) stamps[j - 1] = replies[positions[j]!] ?? null
  return Protocol.judge(replies[positions[0]!] ?? null, query.sets, stamps, now, query.leaseMillis)
}
