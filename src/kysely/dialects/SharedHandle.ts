/**
 * A database handle opened once, on first use, and shared by every driver a dialect creates.
 *
 * Kysely asks a dialect for a new driver for every `Kysely` instance built from it. For an in-process database
 * (PGlite, SQLite) a driver per `Kysely` opening its own handle would silently give each one a different in-memory
 * database, and two handles on one data directory would corrupt it. So the dialect keeps one `SharedHandle`: drivers
 * `acquire` it in `init` and `release` it in `destroy`, and the handle is closed (when the dialect owns it) as the
 * last driver releases it.
 *
 * @internal
 */

/** What `open` yields: the handle, and how to close it (a no-op when the dialect does not own it). */
export interface OpenedHandle<A> {
  readonly handle: A
  readonly close: () => Promise<void> | void
}

/** Reference-counted lazy handle. */
export class SharedHandle<A> {
  readonly #open: () => Promise<OpenedHandle<A>>
  #opened: Promise<OpenedHandle<A>> | undefined
  #users = 0

  constructor(open: () => Promise<OpenedHandle<A>>) {
    this.#open = open
  }

  /** Opens the handle on first use; every successful call must be matched by one `release`. */
  async acquire(): Promise<A> {
    this.#opened ??= this.#open()
    const opening = this.#opened
    try {
      const { handle } = await opening
      this.#users += 1
      return handle
    } catch (error) {
      if (this.#opened === opening) this.#opened = undefined
      throw error
    }
  }

  /** Gives up one use; the last one closes the handle. */
  async release(): Promise<void> {
    if (this.#users === 0) return
    this.#users -= 1
    if (this.#users > 0 || this.#opened === undefined) return
    const opening = this.#opened
    this.#opened = undefined
    const { close } = await opening
    await close()
  }
}
