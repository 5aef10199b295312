/**
 * The index sweep of the Redis store: bounded steps that take the members of gone entries out of the indexes
 * (`prefix~m:<set>`), so that an index never outgrows the entries it lists, also when entries vanish without
 * an invalidation (evicted under `maxmemory`, deleted outside the library).
 *
 * A step checks at most `batchSize` index members. It sends:
 *
 * 1. one `SCAN` page (`MATCH prefix~m:*`, `COUNT` 1,000) of one master, while fewer than a batch of indexes found
 *    earlier wait;
 * 2. up to 4 rounds of: a page of each of several waiting indexes (`ZRANGE` by rank, pipelined: many small
 *    indexes, such as a row's group, share a round; a large index takes several pages, and steps), the head of
 *    the entry each member names (`GETRANGE key 0 <header + fill token>`, never the value), and one `ZREM` per
 *    index of the members whose entry does not hold their incarnation. The pages of a round hold at most what is
 *    left of the step's batch.
 *
 * Each command has its own timeout, and none reads more than a page: the sweep never blocks Redis for long, nor
 * reads a whole set. Every command touches one key (or scans one master), so it runs on a Redis Cluster as on a
 * single Redis. Pages by rank may skip or repeat a member when others change the index meanwhile: a skipped dead
 * member waits for the next pass (the sweep is bookkeeping), and a member is never removed unless checked dead.
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
  const scanCount = 1000
  const head = Protocol.incarnationLength - 1
  /** The fewest members a round asks of one index. */
  const minimumPage = 8
  const roundsPerStep = 4

  // Where the pass stands: the master being scanned and its cursor, and the indexes found and not yet gone
  // through, each with the rank it is at (an index gone through partly comes first). `fresh`: nothing of the
  // pass has been done yet.
  let target = 0
  let cursor = "0"
  let scanned = false
  let waiting: Array<{ readonly index: string; rank: number }> = []
  let fresh = true

  const restart = () => {
    target = 0
    cursor = "0"
    scanned = false
    waiting = []
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
    for (const index of keys) waiting.push({ index, rank: 0 })
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

  const isDead = (member: string, found: string) => {
    const parts = Protocol.memberParts(member)
    return parts === undefined || !Protocol.holdsIncarnation(found, parts.fillToken)
  }

  /**
   * One round: a page of each of the first waiting indexes (as many as the budget allows, each page at most its
   * share of the budget), checked, their dead members removed; an index with more to read goes back first.
   */
  const round = (budget: number) =>
    run("sweep", async () => {
      const count = Math.min(waiting.length, Math.max(1, Math.floor(budget / minimumPage)))
      const page = Math.max(minimumPage, Math.floor(budget / count))
      const taken = waiting.splice(0, count)
      const pages = await Promise.all(
        taken.map(({ index, rank }) => client.zrange(index, rank, String(rank + page - 1)))
      )
      const found = await heads(pages.flat())
      let at = 0
      let removed = 0
      const back: Array<{ readonly index: string; rank: number }> = []
      const removals: Array<Promise<unknown>> = []
      taken.forEach((position, i) => {
        const members = pages[i]!
        const dead = members.filter((member, j) => isDead(member, found[at + j]!))
        at += members.length
        removed += dead.length
        if (dead.length > 0) removals.push(client.zrem(position.index, ...dead))
        if (members.length === page) {
          position.rank += members.length - dead.length
          back.push(position)
        }
      })
      await Promise.all(removals)
      waiting.unshift(...back)
      return { checked: at, removed }
    })

  const stepUnsafe: Effect.Effect<SweepStep, CacheStoreError> = Effect.gen(function* () {
    fresh = false
    if (waiting.length < batchSize && !scanned) yield* discover
    let checked = 0
    let removed = 0
    // The budget spent: members checked, and a round that read nothing (its indexes had gone) costs a page.
    let spent = 0
    for (let rounds = 0; rounds < roundsPerStep && spent < batchSize && waiting.length > 0; rounds++) {
      const done = yield* round(batchSize - spent)
      checked += done.checked
      removed += done.removed
      spent += Math.max(done.checked, minimumPage)
    }
    const passEnded = scanned && waiting.length === 0
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
