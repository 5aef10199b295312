/**
 * The invalidation events of one connection's open transaction, held until the transaction ends.
 *
 * The buffer is a stack of frames: the transaction itself at the bottom and one frame per open savepoint above
 * it. Writes record into the top frame. Releasing a savepoint folds its frame (and every frame opened after it)
 * into the frame below; rolling back to a savepoint drops what was recorded since the savepoint and keeps the
 * savepoint open, as SQL does. COMMIT hands every frame's events out; ROLLBACK drops them.
 *
 * @internal
 */
import type { InvalidationEvent } from "../InvalidationEvent.ts"

interface Frame {
  /** The savepoint that opened the frame; undefined for the transaction's own frame. */
  readonly savepoint: string | undefined
  readonly events: Array<InvalidationEvent>
}

/** One connection's transaction state: whether a transaction is open, and its events so far. */
export class TransactionBuffer {
  #frames: Array<Frame> = []

  /** true while a transaction is open on the connection. */
  get active(): boolean {
    return this.#frames.length > 0
  }

  /** A transaction began: start with an empty buffer. */
  begin(): void {
    this.#frames = [{ savepoint: undefined, events: [] }]
  }

  /** Adds the events of a successful statement to the innermost savepoint (or the transaction). */
  record(events: ReadonlyArray<InvalidationEvent>): void {
    const top = this.#frames.at(-1)
    if (top === undefined) throw new Error("TransactionBuffer.record: no transaction is open")
    top.events.push(...events)
  }

  savepoint(name: string): void {
    if (!this.active) return
    this.#frames.push({ savepoint: name, events: [] })
  }

  /** RELEASE SAVEPOINT: the savepoint's events (and those of savepoints opened after it) join its parent. */
  releaseSavepoint(name: string): void {
    const index = this.#indexOf(name)
    // A savepoint opened before capture began: nothing of ours to fold.
    if (index === undefined) return
    const released = this.#frames.splice(index)
    this.#frames[index - 1]!.events.push(...released.flatMap((frame) => frame.events))
  }

  /** ROLLBACK TO SAVEPOINT: drops the events recorded since the savepoint; the savepoint stays open. */
  rollbackToSavepoint(name: string): void {
    const index = this.#indexOf(name)
    // Unknown savepoint: keeping the events over-invalidates, which is harmless; dropping them could be wrong.
    if (index === undefined) return
    this.#frames.splice(index + 1)
    this.#frames[index]!.events.length = 0
  }

  /** Every event of the transaction so far, the buffer left as it is (what a COMMIT about to run will publish). */
  pending(): ReadonlyArray<InvalidationEvent> {
    return this.#frames.flatMap((frame) => frame.events)
  }

  /** COMMIT succeeded: every event of the transaction, and the buffer is closed. */
  commit(): ReadonlyArray<InvalidationEvent> {
    const events = this.pending()
    this.#frames = []
    return events
  }

  /** ROLLBACK, or a COMMIT that failed: the events are dropped and the buffer is closed. */
  discard(): void {
    this.#frames = []
  }

  /** The innermost frame opened by savepoint `name` (SQL resolves a reused name to the most recent one). */
  #indexOf(name: string): number | undefined {
    for (let index = this.#frames.length - 1; index > 0; index--) {
      if (this.#frames[index]!.savepoint === name) return index
    }
    return undefined
  }
}
