/**
 * Keeps the leases of running loads alive: a load renews its lease every third of the lease's life, so that a
 * slow load keeps its key (the herd goes on waiting instead of loading again) and a holder that dies frees it
 * within one lease.
 *
 * One keeper per store renews every lease of this process that falls due: one fiber, forked in the store's scope
 * when a lease is kept and none runs, sleeping until the earliest renewal (by the Effect `Clock`, so `TestClock`
 * drives it) and ending when no lease is left. A load only registers its lease and takes it out when it ends: no
 * fiber, timer or race per load (racing each load against its own renewal loop cost two fibers per miss).
 * Renewal of a lease stops when it is no longer its holder's (an invalidation voided it); the load goes on. A
 * renewal that fails (a timeout, a dropped connection) is tried again at the next turn: the lease lives three turns,
 * so one failed renewal never gives the key to the herd while the load runs.
 *
 * A load registers its leases, (re)starts the keeper and arranges their removal in one uninterruptible step: an
 * interruption in between would leave the keeper stopped (no loop, yet a wake time that keeps later loads from
 * starting one) or a lease kept after its load.
 *
 * @internal
 */
import { Effect, Fiber } from "effect"
import type { CacheStore } from "../CacheStore.ts"

type Store = CacheStore["Service"]

interface Kept {
  readonly key: string
  readonly token: string
  readonly leaseMillis: number
  readonly every: number
  due: number
}

interface Keeper {
  readonly leases: Set<Kept>
  /** When the running loop wakes next (`Infinity`: no loop runs). */
  wake: number
  fiber: Fiber.Fiber<void> | undefined
}

const keepers = new WeakMap<Store, Keeper>()

const keeperOf = (store: Store): Keeper => {
  let keeper = keepers.get(store)
  if (keeper === undefined) {
    keeper = { leases: new Set(), wake: Number.POSITIVE_INFINITY, fiber: undefined }
    keepers.set(store, keeper)
  }
  return keeper
}

/** Renews what is due, then sleeps until the next renewal; ends when no lease is kept. */
const loop = (store: Store, keeper: Keeper): Effect.Effect<void> =>
  Effect.clockWith((clock) =>
    Effect.suspend(() => {
      const now = clock.currentTimeMillisUnsafe()
      const due: Array<Kept> = []
      let next = Number.POSITIVE_INFINITY
      for (const kept of keeper.leases) {
        if (kept.due <= now) {
          due.push(kept)
          kept.due = now + kept.every
        }
        if (kept.due < next) next = kept.due
      }
      if (next === Number.POSITIVE_INFINITY) {
        keeper.wake = next
        keeper.fiber = undefined
        return Effect.void
      }
      keeper.wake = next
      const renewals =
        due.length === 0
          ? Effect.void
          : Effect.forEach(
              due,
              (kept) =>
                store.renew(kept.key, kept.token, kept.leaseMillis).pipe(
                  // Not renewed: the lease is no longer its holder's. Failed: tried again at its next turn.
                  Effect.map((renewed) => renewed || keeper.leases.delete(kept)),
                  Effect.ignore
                ),
              { concurrency: "unbounded", discard: true }
            )
      return Effect.andThen(Effect.forkDetach(renewals), Effect.andThen(Effect.sleep(next - now), loop(store, keeper)))
    })
  )

/** A lease to keep: the key and its holder's token. */
export interface Lease {
  readonly key: string
  readonly token: string
}

/**
 * Runs `load` while keeping each of `leases` alive, renewed for `leaseMillis` every third of it, until the load
 * ends (or the lease is no longer its holder's).
 */
export const keeping = <A, E, R>(
  store: Store,
  leases: ReadonlyArray<Lease>,
  leaseMillis: number,
  load: Effect.Effect<A, E, R>
): Effect.Effect<A, E, R> =>
  leases.length === 0
    ? load
    : Effect.uninterruptibleMask((restore) =>
        Effect.clockWith((clock) => {
          const keeper = keeperOf(store)
          const every = Math.max(1, Math.floor(leaseMillis / 3))
          const due = clock.currentTimeMillisUnsafe() + every
          const kept = leases.map(({ key, token }): Kept => ({ key, token, leaseMillis, every, due }))
          for (const one of kept) keeper.leases.add(one)
          const start =
            due >= keeper.wake
              ? Effect.void
              : Effect.suspend(() => {
                  // No loop runs, or it sleeps past these leases' first renewal: (re)start it.
                  const running = keeper.fiber
                  keeper.wake = due
                  return Effect.andThen(
                    running === undefined ? Effect.void : Fiber.interrupt(running),
                    Effect.map(Effect.forkIn(loop(store, keeper), store.scope), (fiber) => {
                      keeper.fiber = fiber
                    })
                  )
                })
          return Effect.andThen(
            start,
            Effect.ensuring(
              restore(load),
              Effect.sync(() => {
                for (const one of kept) keeper.leases.delete(one)
              })
            )
          )
        })
      )
