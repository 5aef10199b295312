/**
 * Hands the events of a committed unit of work to the user's `publish`, in the configured mode.
 *
 * In `sync` mode the returned promise settles only after `publish` did, so the write (or COMMIT) that produced the
 * events resolves after the cache was told (read-your-writes). In `async` mode nothing waits. Either way a failing
 * `publish` never fails the write: the error and the events go to `onPublishError`.
 *
 * In `sync` mode with a `hold` option, a unit of work whose events are known before it commits is held first
 * (`hold`, concurrently with the COMMIT or the write), and its hold then takes the committed events in place of
 * `publish`.
 *
 * @internal
 */
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import { coalesceEvents } from "./Events.ts"

/**
 * What `CaptureOptions.hold` hands back for a unit of work about to commit.
 *
 * @since 0.1.0
 */
export interface WriteHold {
  /** The unit of work committed these events (more or fewer than the held ones). */
  readonly commit: (events: ReadonlyArray<InvalidationEvent>) => Promise<void>
  /** The unit of work was rolled back, or its write failed. Must not throw. */
  readonly abort: () => void
}

/** A hold under way: settles to undefined when there is none (or it failed). Never rejects. */
export type PendingHold = Promise<WriteHold | undefined>

export interface PublisherOptions {
  readonly publish: (events: ReadonlyArray<InvalidationEvent>) => Promise<void>
  readonly mode?: "sync" | "async"
  readonly onPublishError?: (error: unknown, events: ReadonlyArray<InvalidationEvent>) => void
  readonly hold?: (events: ReadonlyArray<InvalidationEvent>) => Promise<WriteHold | undefined>
}

const reportToConsole = (error: unknown, events: ReadonlyArray<InvalidationEvent>): void => {
  console.error("effect-cacheme: publishing invalidation events failed", error, events)
}

export class Publisher {
  readonly #options: PublisherOptions

  constructor(options: PublisherOptions) {
    this.#options = options
  }

  /** Whether units of work are held before they commit (sync mode with a `hold` option). */
  get holds(): boolean {
    return this.#options.hold !== undefined && this.#options.mode !== "async"
  }

  /**
   * Starts holding what `events` reach, before the unit of work that will commit them does; undefined when
   * there is nothing to hold or holds are off (async mode, no `hold` option).
   */
  hold(events: ReadonlyArray<InvalidationEvent>): PendingHold | undefined {
    const hold = this.#options.hold
    if (hold === undefined || events.length === 0 || !this.holds) return undefined
    const coalesced = coalesceEvents(events)
    return hold(coalesced).catch((error: unknown) => {
      this.#report(error, coalesced)
      return undefined
    })
  }

  /** The unit of work did not commit: its hold, if any, is let go. */
  abort(pending: PendingHold | undefined): void {
    void pending?.then((hold) => hold?.abort())
  }

  /**
   * Publishes the events of one unit of work (coalesced per table and operation), through its hold when it has
   * one; nothing when there are no events and no hold.
   */
  publish(events: ReadonlyArray<InvalidationEvent>, pending?: PendingHold): Promise<void> {
    if (pending === undefined && events.length === 0) return Promise.resolve()
    const coalesced = Object.freeze([...coalesceEvents(events)])
    if (this.#options.mode === "async") {
      // Nothing waits: the publishing (and the socket writes it makes) starts once the write has resolved.
      setImmediate(() => void this.#deliver(coalesced, this.#options.publish))
      return Promise.resolve()
    }
    if (pending === undefined) return this.#deliver(coalesced, this.#options.publish)
    return pending.then((hold) =>
      hold === undefined
        ? coalesced.length === 0
          ? undefined
          : this.#deliver(coalesced, this.#options.publish)
        : this.#deliver(coalesced, hold.commit)
    )
  }

  /** Never rejects: a failure of `publish` (thrown or rejected) is reported, as is a failure of the reporter. */
  async #deliver(
    events: ReadonlyArray<InvalidationEvent>,
    publish: (events: ReadonlyArray<InvalidationEvent>) => Promise<void>
  ): Promise<void> {
    try {
      await publish(events)
    } catch (error) {
      this.#report(error, events)
    }
  }

  #report(error: unknown, events: ReadonlyArray<InvalidationEvent>): void {
    try {
      ;(this.#options.onPublishError ?? reportToConsole)(error, events)
    } catch (reporterError) {
      reportToConsole(reporterError, events)
    }
  }
}
