/**
 * Hands the events of a committed unit of work to the user's `publish`, in the configured mode.
 *
 * In `sync` mode the returned promise settles only after `publish` did, so the write (or COMMIT) that produced the
 * events resolves after the cache was told (read-your-writes). In `async` mode nothing waits. Either way a failing
 * `publish` never fails the write: the error and the events go to `onPublishError`.
 *
 * @internal
 */
import type { InvalidationEvent } from "../InvalidationEvent.ts"
import { coalesceEvents } from "./Events.ts"

export interface PublisherOptions {
  readonly publish: (events: ReadonlyArray<InvalidationEvent>) => Promise<void>
  readonly mode?: "sync" | "async"
  readonly onPublishError?: (error: unknown, events: ReadonlyArray<InvalidationEvent>) => void
}

const reportToConsole = (error: unknown, events: ReadonlyArray<InvalidationEvent>): void => {
  console.error("effect-cacheme: publishing invalidation events failed", error, events)
}

export class Publisher {
  readonly #options: PublisherOptions

  constructor(options: PublisherOptions) {
    this.#options = options
  }

  /** Publishes the events of one unit of work (coalesced per table and operation); nothing when there are none. */
  publish(events: ReadonlyArray<InvalidationEvent>): Promise<void> {
    if (events.length === 0) return Promise.resolve()
    const delivery = this.#deliver(Object.freeze([...coalesceEvents(events)]))
    return this.#options.mode === "async" ? Promise.resolve() : delivery
  }

  /** Never rejects: a failure of `publish` (thrown or rejected) is reported, as is a failure of the reporter. */
  async #deliver(events: ReadonlyArray<InvalidationEvent>): Promise<void> {
    try {
      await this.#options.publish(events)
    } catch (error) {
      try {
        ;(this.#options.onPublishError ?? reportToConsole)(error, events)
      } catch (reporterError) {
        reportToConsole(reporterError, events)
      }
    }
  }
}
