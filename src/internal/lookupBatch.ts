/**
 * The lookups of one turn of the event loop, sent as one read: every entry and every distinct stamp in one `MGET`
 * (a node's tag stamp read once, not once per entry), each request then judged as a single lookup would be.
 *
 * Two lookups of the same key and sets asked before the read is sent share it. That keeps read-your-writes: a
 * caller that starts after an invalidation resolved can only join a read that is sent after it started, so after
 * the invalidation reached the server. Once a batch is sent, later lookups start a new one.
 *
 * A batch goes out at `process.nextTick`: after the current fibers and the microtasks they resume have run (so
 * the callers a reply wakes, and the lookups they make, share the next batch), and before the client's own
 * auto-pipelining flush, which is scheduled the same way: no round trip is added.
 *
 * @internal
 */
import { Effect } from "effect"
import type { CacheStoreError, Lookup, Sets } from "../CacheStore.ts"
import * as Protocol from "./protocol.ts"

type Resume = (effect: Effect.Effect<Lookup, CacheStoreError>) => void

interface Request {
  readonly key: string
  readonly sets: Sets
  readonly leaseMillis: number | undefined
  readonly waiters: Array<Resume>
}

export interface LookupBatchOptions {
  /**
   * Reads the given Redis keys (one `MGET`, or one `GET` each on a Cluster), under the store's deadline; it
   * rejects with the `CacheStoreError` to answer.
   */
  readonly read: (keys: ReadonlyArray<string>) => Promise<ReadonlyArray<string | null>>
  readonly entryKey: (key: string) => string
  readonly stampKeysOf: (sets: Sets) => ReadonlyArray<string>
}

export interface LookupBatch {
  readonly lookup: (key: string, sets: Sets, leaseMillis: number | undefined) => Effect.Effect<Lookup, CacheStoreError>
}

const sameSets = (a: Sets, b: Sets): boolean => {
  if (a === b) return true
  if (a.names.length !== b.names.length) return false
  for (let i = 0; i < a.names.length; i++) if (a.names[i] !== b.names[i]) return false
  return true
}

export const make = (options: LookupBatchOptions): LookupBatch => {
  const { read, entryKey, stampKeysOf } = options
  let pending: Map<string, Request | Array<Request>> | undefined

  const flush = () => {
    const batch = pending!
    pending = undefined
    const requests: Array<Request> = []
    for (const entry of batch.values()) {
      if (Array.isArray(entry)) requests.push(...entry)
      else requests.push(entry)
    }
    const keys: Array<string> = []
    const positions = new Map<string, number>()
    const at = (redisKey: string) => {
      let position = positions.get(redisKey)
      if (position === undefined) {
        position = keys.length
        keys.push(redisKey)
        positions.set(redisKey, position)
      }
      return position
    }
    const layout = requests.map((request) => ({
      entry: at(entryKey(request.key)),
      stamps: stampKeysOf(request.sets).map(at)
    }))
    read(keys).then(
      (replies) => {
        const now = Date.now()
        for (let i = 0; i < requests.length; i++) {
          const request = requests[i]!
          const { entry, stamps } = layout[i]!
          const stampReplies = new Array<string | null>(stamps.length)
          for (let j = 0; j < stamps.length; j++) stampReplies[j] = replies[stamps[j]!] ?? null
          const found = Effect.succeed(
            Protocol.judge(replies[entry] ?? null, request.sets, stampReplies, now, request.leaseMillis)
          )
          for (const resume of request.waiters) resume(found)
        }
      },
      (cause) => {
        const failed = Effect.fail(cause as CacheStoreError)
        for (const request of requests) for (const resume of request.waiters) resume(failed)
      }
    )
  }

  const enqueue = (key: string, sets: Sets, leaseMillis: number | undefined, resume: Resume) => {
    if (pending === undefined) {
      pending = new Map()
      process.nextTick(flush)
    }
    const found = pending.get(key)
    if (found === undefined) {
      pending.set(key, { key, sets, leaseMillis, waiters: [resume] })
      return
    }
    const list = Array.isArray(found) ? found : [found]
    for (const request of list)
      if (request.leaseMillis === leaseMillis && sameSets(request.sets, sets)) {
        request.waiters.push(resume)
        return
      }
    list.push({ key, sets, leaseMillis, waiters: [resume] })
    if (!Array.isArray(found)) pending.set(key, list)
  }

  return {
    // A caller interrupted meanwhile is simply not resumed (`Effect.callback` ignores a late resume); its read,
    // having no effect on the store, goes out with the others.
    lookup: (key, sets, leaseMillis) =>
      Effect.callback<Lookup, CacheStoreError>((resume) => {
        enqueue(key, sets, leaseMillis, resume)
      })
  }
}
