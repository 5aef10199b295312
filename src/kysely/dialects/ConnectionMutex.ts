/**
 * A first-in, first-out lock for drivers that own a single database connection (PGlite, SQLite).
 *
 * Kysely's `RuntimeDriver` already serializes connection use when the adapter reports
 * `supportsMultipleConnections === false`, but only for the driver it wraps directly. The drivers in this folder
 * hold their own lock as well, so they stay correct when another driver wraps them (the invalidation wrapper in
 * `effect-cacheme/kysely` does) or when several dialects share one database handle: {@link ConnectionMutex.for}
 * gives one lock per handle.
 *
 * @internal
 */

const byHandle = new WeakMap<object, ConnectionMutex>()

/** A FIFO mutex: `lock()` resolves once every earlier caller has called `unlock()`. */
export class ConnectionMutex {
  #locked = false
  readonly #waiters: Array<() => void> = []

  /** The lock shared by everyone using the database handle `handle` (a PGlite instance, a `DatabaseSync`). */
  static for(handle: object): ConnectionMutex {
    let mutex = byHandle.get(handle)
    if (mutex === undefined) {
      mutex = new ConnectionMutex()
      byHandle.set(handle, mutex)
    }
    return mutex
  }

  /** Waits for the lock, then holds it until `unlock()` is called. Waiters are served in arrival order. */
  lock(): Promise<void> {
    if (!this.#locked) {
      this.#locked = true
      return Promise.resolve()
    }
    return new Promise<void>((resolve) => {
      this.#waiters.push(resolve)
    })
  }

  /** Hands the lock to the next waiter, or frees it when nobody waits. */
  unlock(): void {
    const next = this.#waiters.shift()
    if (next === undefined) {
      this.#locked = false
    } else {
      next()
    }
  }

  /** Runs `f` while holding the lock. */
  async withLock<A>(f: () => Promise<A>): Promise<A> {
    await this.lock()
    try {
      return await f()
    } finally {
      this.unlock()
    }
  }
}
