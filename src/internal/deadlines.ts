/**
 * Command deadlines of one store. Every command of a store has the same timeout, so deadlines fall due in the
 * order the commands were sent: one FIFO and one timer serve them all (a timer per command cost a `setTimeout`,
 * a `clearTimeout` and their garbage on every hit).
 *
 * A deadline counts from the first turn of the event loop's check phase after the command was issued, which is
 * when the client writes it (ioredis' auto-pipelining flushes from `setImmediate`): a stall of the turn that issued
 * it (other fibers computing before the write) is not counted against it. A deadline that falls due is fired from
 * `setImmediate`, not from the timer itself: Node runs due timers before it reads its sockets, so a reply already
 * waiting in a socket would otherwise lose to its own deadline (a false timeout, frequent when the event loop
 * stalls). The check phase comes after the poll phase, which delivers it. An operation of several round trips
 * restarts its deadline at each step (`deadlined`'s `step`), so a stall between two of its replies is not a
 * timeout either.
 *
 * So a command never waits longer than the timeout (plus the turns that stalled) after it was written for its
 * reply, and an operation no longer than that per round trip.
 *
 * @internal
 */

/** One armed deadline: `cancel` it when the reply comes. */
export interface Deadline {
  cancel(): void
}

interface Entry extends Deadline {
  /** When it falls due (`performance.now()` millis); `Infinity` until it is stamped. */
  at: number
  fire: (() => void) | undefined
}

export interface Deadlines {
  /** Arms a deadline `timeoutMillis` from the next check phase; `fire` runs once if it is not cancelled by then. */
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
 * fell due first, `failed(cause)` when it threw or rejected). `f` calls `step()` before each round trip after its
 * first: the deadline starts again from there. A reply that comes after the deadline, or after the caller gave up
 * (the returned function), goes to `late`: a lease taken by a request that timed out is released then, so no
 * lease is ever left without a holder.
 */
export const deadlined = <A, E>(
  deadlines: Deadlines,
  f: (step: () => void) => Promise<A>,
  settle: (outcome: Outcome<A, E>) => void,
  timedOut: () => E,
  failed: (cause: unknown) => E,
  late?: (value: A) => void
): (() => void) => {
  let settled = false
  const onTimeout = () => {
    settled = true
    settle({ ok: false, error: timedOut() })
  }
  let deadline = deadlines.arm(onTimeout)
  const step = () => {
    if (settled) return
    deadline.cancel()
    deadline = deadlines.arm(onTimeout)
  }
  const fail = (cause: unknown) => {
    if (settled) return
    settled = true
    deadline.cancel()
    settle({ ok: false, error: failed(cause) })
  }
  try {
    f(step).then((value) => {
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

/** The longest delay Node's timers keep. */
const maxTimerMillis = 2 ** 31 - 1

export const makeDeadlines = (timeoutMillis: number): Deadlines => {
  let queue: Array<Entry> = []
  let head = 0
  /** Entries from here on are armed but not yet stamped (their `at` is `Infinity`). */
  let unstamped = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let checking = false
  let stamping = false

  const schedule = () => {
    // Cancelled entries at the head need no timer.
    while (head < queue.length && queue[head]!.fire === undefined) head++
    if (head === queue.length) {
      queue = []
      head = 0
      unstamped = 0
      return
    }
    if (head > 1024 && head * 2 > queue.length) {
      queue = queue.slice(head)
      unstamped = Math.max(0, unstamped - head)
      head = 0
    }
    // An unstamped head: its stamp schedules the timer.
    if (head >= unstamped) return
    // Node fires a longer delay than 2^31 - 1 ms at once (a store given a timeout of weeks would spin).
    const wait = Math.min(maxTimerMillis, Math.max(0, queue[head]!.at - performance.now()) + 1)
    timer = setTimeout(onTimer, wait)
    timer.unref?.()
  }

  // The check phase after the commands were issued: they are written (or being written) now.
  const stamp = () => {
    stamping = false
    const at = performance.now() + timeoutMillis
    for (let i = Math.max(head, unstamped); i < queue.length; i++) queue[i]!.at = at
    unstamped = queue.length
    if (timer === undefined && !checking) schedule()
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
    if (timer === undefined) schedule()
  }

  const onTimer = () => {
    timer = undefined
    if (checking) return
    checking = true
    setImmediate(check)
  }

  return {
    arm: (fire) => {
      const entry: Entry = { at: Number.POSITIVE_INFINITY, fire, cancel }
      queue.push(entry)
      if (!stamping) {
        stamping = true
        setImmediate(stamp)
      }
      return entry
    },
    size: () => {
      let armed = 0
      for (let i = head; i < queue.length; i++) if (queue[i]!.fire !== undefined) armed++
      return armed
    }
  }
}
