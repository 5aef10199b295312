/**
 * Completion notices: a lease holder's fill or release wakes the callers waiting for its key at once, instead of
 * at their next poll. A notice is only a hint to look again: a waiter that misses one (not subscribed yet, a
 * dropped connection) still polls on the herd cadence, so nothing depends on notices arriving.
 *
 * The Redis store publishes, inside its fill and release scripts, on a channel of the key's own
 * (`prefix~n:<key>`), to which only the processes waiting for that key are subscribed (a publish without
 * subscribers costs next to nothing); the in-process store notifies directly.
 */
import { Effect } from "effect"
import { setMarker } from "./protocol.ts"

/** The channel on which the end of a load of `key` is announced. */
export const channel = (prefix: string, key: string): string => `${prefix}${setMarker}n:${key}`

/**
 * One caller's watch on a key.
 *
 * @since 0.2.0
 */
export interface Watch {
  /** Forgets the notices seen so far: the next `wait` ends early only on a notice that arrives after this call. */
  readonly arm: () => void
  /** Waits for a notice (`true`) or for `millis` (`false`), whichever comes first. */
  readonly wait: (millis: number) => Effect.Effect<boolean>
  /** Ends the watch. */
  readonly close: () => void
}

interface Watcher {
  fired: boolean
  wake: (() => void) | undefined
}

/**
 * The watches of one store. `subscribe` / `unsubscribe` are called when a key gets its first watcher and loses
 * its last one (the Redis store subscribes to the key's channel then).
 */
export const makeNotices = (hooks?: {
  readonly subscribe: (key: string) => void
  readonly unsubscribe: (key: string) => void
}) => {
  const watchers = new Map<string, Set<Watcher>>()

  const notify = (key: string): void => {
    const set = watchers.get(key)
    if (set === undefined) return
    for (const watcher of set) {
      watcher.fired = true
      const wake = watcher.wake
      watcher.wake = undefined
      wake?.()
    }
  }

  const watch = (key: string): Watch => {
    const watcher: Watcher = { fired: false, wake: undefined }
    let set = watchers.get(key)
    if (set === undefined) {
      set = new Set()
      watchers.set(key, set)
      hooks?.subscribe(key)
    }
    set.add(watcher)
    let closed = false
    return {
      arm: () => {
        watcher.fired = false
      },
      wait: (millis) =>
        Effect.suspend(() =>
          watcher.fired
            ? Effect.succeed(true)
            : Effect.raceFirst(
                Effect.callback<boolean>((resume) => {
                  watcher.wake = () => resume(Effect.succeed(true))
                  return Effect.sync(() => {
                    watcher.wake = undefined
                  })
                }),
                // Effect's clock, so that TestClock moves the in-process store's waits too.
                Effect.as(Effect.sleep(millis), false)
              )
        ),
      close: () => {
        if (closed) return
        closed = true
        watcher.wake = undefined
        const current = watchers.get(key)
        if (current === undefined) return
        current.delete(watcher)
        if (current.size === 0) {
          watchers.delete(key)
          hooks?.unsubscribe(key)
        }
      }
    }
  }

  return {
    watch,
    notify,
    watching: (): number => watchers.size,
    keys: (): ReadonlyArray<string> => [...watchers.keys()]
  }
}
