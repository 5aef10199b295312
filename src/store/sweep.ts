/**
 * The index sweep of the Redis store: bounded steps that take the members of gone entries out of the indexes
 * (`prefix~m:<set>`), so that an index never outgrows the entries it lists, also when entries vanish without
 * an invalidation (evicted under `maxmemory`, deleted outside the library).
 *
 * A step reads, at most:
 *
 * 1. one `SCAN` page (`MATCH prefix~m:*`) of one master, when no index found earlier is waiting;
 * 2. one `ZSCAN` page (about `batchSize` members) of one index;
 * 3. the head of the entry each of those members names (`GETRANGE key 0 <header + fill token>`, never the value);
 * 4. one `ZREM` of the members whose entry does not hold their incarnation.
 *
 * Each is its own command with its own timeout, and none reads more than a page: the sweep never blocks Redis
 * for long, nor reads a whole set. Every command touches one key (or scans one master), so it runs on a Redis
 * Cluster as on a single Redis.
 *
 * Why it never removes the member of a live incarnation: a member is `fill token + key`, and it is removed only
 * when the record at the key, read after the member was seen in the index, does not hold that fill token in a
 * value. A member is added only once its record holds the token (in the fill script on a single Redis; after the
 * fill's reply on a Cluster), and once a record no longer holds a fill token it never will again (tokens are
 * never reused; a refill, a refresh or a lease writes another), so the member is dead for good. A refill that
 * races the step adds a member of its own token, which the step either never saw or saw with its record.
 */
import { Effect, Semaphore } from "effect"
import type { Redis } from "ioredis"
import type { CacheStoreError } from "../CacheStore.ts"
import { escapeGlob } from "../internal/glob.ts"
import * as Protocol from "../internal/protocol.ts"

/**
 * What one step did.
 *
 * @category models
 * @since 0.3.0
 */
export interface SweepStep {
  /** Index members checked against their entries. */
  readonly checked: number
  /** Members removed (their entry was gone, or held another incarnation). */
  readonly removed: number
  /** This step ended a pass: every index that existed when the pass began has been gone through. */
  readonly passEnded: boolean
}

/**
 * The sweep of one store: steps, and whole passes (for tests and tools; the store runs steps on its own).
 *
 * @category models
 * @since 0.3.0
 */
export interface Sweeper {
  /** One bounded step (see the module's documentation). */
  readonly step: Effect.Effect<SweepStep, CacheStoreError>
  /**
   * Steps until a pass that began at or after this call ends (a pass under way is finished first): every member
   * that was dead when it was called is gone afterwards, unless a step failed (the failure is returned).
   */
  readonly pass: Effect.Effect<
    { readonly steps: number; readonly checked: number; readonly removed: number },
    CacheStoreError
  >
}

export interface SweeperOptions {
  /** A `Redis` or a `Cluster` (typed as `Redis`: both take the same commands). */
  readonly client: Redis
  readonly prefix: string
  /** The connections to `SCAN`: the client itself, or each master of a Cluster, always in the same order. */
  readonly targets: () => ReadonlyArray<Redis>
  /** Runs one command under the store's timeout. */
  readonly run: <A>(operation: string, f: () => Promise<A>) => Effect.Effect<A, CacheStoreError>
  /** Index members checked per step. */
  readonly batchSize: number
}

/**
 * Makes the sweep of a store.
 *
 * @category constructors
 * @since 0.3.0
 */
export const makeSweeper = (options: SweeperOptions): Sweeper => {
  const { client, prefix, run, batchSize } = options
  const match = `${escapeGlob(Protocol.indexKey(prefix, ""))}*`
  const scanCount = Math.max(100, 10 * batchSize)
  const head = Protocol.incarnationLength - 1

  // Where the pass stands: the master being scanned and its cursor, the indexes found and not yet gone through,
  // and the index being gone through with its cursor. `fresh`: nothing of the pass has been done yet.
  let target = 0
  let cursor = "0"
  let scanned = false
  let waiting: Array<string> = []
  let current: { readonly index: string; zcursor: string } | undefined
  let fresh = true

  const restart = () => {
    target = 0
    cursor = "0"
    scanned = false
    waiting = []
    current = undefined
    fresh = true
  }

  /** One `SCAN` page of the master in turn; `scanned` once the last master's scan is complete. */
  const discover = run("sweep", async () => {
    const targets = options.targets()
    if (target >= targets.length) {
      scanned = true
      return
    }
    const [next, keys] = await targets[target]!.scan(cursor, "MATCH", match, "COUNT", scanCount)
    waiting.push(...keys)
    cursor = next
    if (cursor === "0") {
      target++
      if (target >= targets.length) scanned = true
    }
  })

  /** The head of every entry the members name; a key of another type reads as none. */
  const heads = (members: ReadonlyArray<string>) =>
    Promise.all(
      members.map((member) => {
        const parts = Protocol.memberParts(member)
        return parts === undefined ? Promise.resolve("") : client.getrange(prefix + parts.key, 0, head).catch(() => "")
      })
    )

  /** One `ZSCAN` page of the index under way, checked, its dead members removed. */
  const sweepPage = (at: { readonly index: string; zcursor: string }) =>
    run("sweep", async () => {
      const [next, flat] = await client.zscan(at.index, at.zcursor, "COUNT", batchSize)
      at.zcursor = next
      const members: Array<string> = []
      for (let i = 0; i < flat.length; i += 2) members.push(flat[i]!)
      const found = await heads(members)
      const dead = members.filter((member, i) => {
        const parts = Protocol.memberParts(member)
        return parts === undefined || !Protocol.holdsIncarnation(found[i]!, parts.fillToken)
      })
      if (dead.length > 0) await client.zrem(at.index, ...dead)
      return { checked: members.length, removed: dead.length }
    })

  const stepUnsafe: Effect.Effect<SweepStep, CacheStoreError> = Effect.gen(function* () {
    fresh = false
    if (current === undefined && waiting.length === 0 && !scanned) yield* discover
    if (current === undefined && waiting.length > 0) current = { index: waiting.shift()!, zcursor: "0" }
    let checked = 0
    let removed = 0
    if (current !== undefined) {
      const page = yield* sweepPage(current)
      checked = page.checked
      removed = page.removed
      if (current.zcursor === "0") current = undefined
    }
    const passEnded = scanned && current === undefined && waiting.length === 0
    if (passEnded) restart()
    return { checked, removed, passEnded }
  }).pipe(
    // A failed step starts the pass over (a Cluster's masters may have changed); the failure is the caller's.
    Effect.tapError(() => Effect.sync(restart))
  )

  const lock = Semaphore.makeUnsafe(1)
  const step = Semaphore.withPermit(lock, stepUnsafe)

  const pass = Semaphore.withPermit(
    lock,
    Effect.gen(function* () {
      let steps = 0
      let checked = 0
      let removed = 0
      // A pass under way may have gone past indexes that have dead members now: finish it, then make a whole one.
      let whole = fresh
      while (true) {
        const done = yield* stepUnsafe
        steps++
        checked += done.checked
        removed += done.removed
        if (done.passEnded) {
          if (whole) return { steps, checked, removed }
          whole = true
        }
      }
    })
  )

  return { step, pass }
}

/**
 * Runs a step every `intervalMillis`, for as long as the fiber lives. A failed step is dropped (the next one
 * starts the pass over): the sweep is bookkeeping, and a store that fails is already reported by its callers.
 *
 * @category constructors
 * @since 0.3.0
 */
export const runSweeps = (sweeper: Sweeper, intervalMillis: number): Effect.Effect<never> =>
  Effect.forever(Effect.andThen(Effect.sleep(intervalMillis), Effect.ignore(sweeper.step)))
