/**
 * Command deadlines of one store. Every command of a store has the same timeout, so deadlines fall due in the
 * order the commands were sent: one FIFO and one timer serve them all (a timer per command cost a `setTimeout`,
 * a `clearTimeout` and their garbage on every hit).
 *
 * A deadline that falls due is fired from `setImmediate`, not from the timer itself: Node runs due timers before
 * it reads its sockets, so a reply already waiting in a socket would otherwise lose to its own deadline (a false
 * timeout, frequent when the event loop stalls). The check phase comes after the poll phase, which delivers it.
 *
 * @internal
 */

/** One armed deadline: `cancel` it when the reply comes. */
export interface Deadline {
  cancel(): void
}

interface Entry extends Deadline {
  readonly at: number
  fire: (() => void) | undefined
}

export interface Deadlines {
  /** Arms a deadline `timeoutMillis` from now; `fire` runs once if it is not cancelled by then. */
  readonly arm: (fire: () => void) => Deadline
  /** Armed deadlines not yet due or cancelled-but-not-yet-dropped (for tests). */
  readonly size: () => number
}

function cancel(this: Entry) {
  this.fire = undefined
}

/** How a deadlined call ended. */
export type Outcome<A, E> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly error: E }

/**
 * Calls `f` under a deadline of `deadlines`; `settle` receives its outcome once (`timedOut()` when the deadline
 * fell due first, `failed(cause)` when it threw or rejected). A reply that comes after the deadline, or after the
 * caller gave up (the returned function), goes to `late`: a lease taken by a request that timed out is released
 * then, so no lease is ever left without a holder.
 */
export const deadlined = <A, E>(
  deadlines: Deadlines,
  f: () => Promise<A>,
  settle: (outcome: Outcome<A, E>) => void,
  timedOut: () => E,
  failed: (cause: unknown) => E,
  late?: (value: A) => void
): (() => void) => {
  let settled = false
  const deadline = deadlines.arm(() => {
    settled = true
    settle({ ok: false, error: timedOut() })
  })
  const fail = (cause: unknown) => {
    if (settled) return
    settled = true
    deadline.cancel()
    settle({ ok: false, error: failed(cause) })
  }
  try {
    f().then((value) => {
      if (settled) {
        late?.(value)
        return
      }
      settled = true
      deadline.cancel()
      settle({ ok: true, value })
    }, fail)
  } catch (cause) {
    fail(cause)
  }
  return () => {
    settled = true
    deadline.cancel()
  }
}

export const makeDeadlines = (timeoutMillis: number): Deadlines => {
  let queue: Array<Entry> = []
  let head = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let checking = false

  const schedule = () => {
    // Cancelled entries at the head need no timer.
    while (head < queue.length && queue[head]!.fire === undefined) head++
    if (head === queue.length) {
      queue = []
      head = 0
      return
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head)
      head = 0
    }
    const wait = Math.max(0, queue[head]!.at - performance.now())
    timer = setTimeout(onTimer, wait + 1)
    timer.unref?.()
  }

  const check = () => {
    checking = false
    const now = performance.now()
    while (head < queue.length) {
      const entry = queue[head]!
      if (entry.fire !== undefined && entry.at > now) break
      head++
      const fire = entry.fire
      entry.fire = undefined
      fire?.()
    }
    schedule()
  }

  const onTimer = () => {
    timer = undefined
    if (checking) return
    checking = true
    setImmediate(check)
  }

  return {
    arm: (fire) => {
      const entry: Entry = { at: performance.now() + timeoutMillis, fire, cancel }
      queue.push(entry)
      if (timer === undefined && !checking) schedule()
      return entry
    },
    size: () => {
      let armed = 0
      for (let i = head; i < queue.length; i++) if (queue[i]!.fire !== undefined) armed++
      return armed
    }
  }
}
