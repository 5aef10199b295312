/**
 * The in-process tier of the tiered store: local copies of Redis keys (entry records and stamps), each kept
 * coherent with Redis by itself, and the rules that decide when they may be served. No I/O happens here: the
 * tiered store (`store/Tiered.ts`) reads through a tracking connection and feeds this module the replies, the
 * invalidation messages of the coherence channel, its heartbeats and its connection events. Everything is
 * synchronous, on a clock passed in (monotonic millis), so the rules are tested step by step.
 *
 * ## The rules
 *
 * 1. **A copy comes only from a tracked read.** Redis tracks every key the tracking connection reads, and sends
 *    an invalidation message for it when it next changes (a write by any client, an expiry, an eviction). A copy
 *    is kept only if no invalidation for its key arrived while its read was in flight (the message travels on
 *    another connection than the reply, and may overtake it), and no flush came between (`epoch`).
 * 2. **A write through this process drops its keys** (and voids reads of them in flight) when it resolves, so
 *    the writing process reads its own writes without waiting for the channel.
 * 3. **Copies are served only while the channel is proven live.** A heartbeat read and written through the
 *    tracking connection comes back as an invalidation message; its arrival proves every message Redis sent
 *    before it arrived too. Copies are served only while the last proof is younger than `boundMillis`; when it
 *    is older, or the channel is down, the tier empties itself and serves nothing until a new proof arrives.
 * 4. **A copy never outlives its key.** A copy expires with its key (the read also returns the key's remaining
 *    life) and after `ttlMillis` at most.
 */

import type { ValueCell } from "../CacheStore.ts"

/**
 * One local copy, and the cell where `Memo` keeps its decoded value (see `ValueCell`): a copy never changes (a
 * new reply makes a new copy), so what is decoded from it holds for its life. The cell's contents are not
 * counted in the tier's bytes: the copy's own length stands for them (a decoded value takes about as much as its
 * JSON, within a small factor).
 */
class Slot implements ValueCell {
  readonly value: string
  /** Monotonic millis after which the copy is not used. */
  readonly expiresAt: number
  readonly bytes: number
  /** Set on use, cleared when the eviction hand passes (CLOCK, an approximation of LRU without moving entries). */
  used = false
  decodedBy: unknown = undefined
  decoded: unknown = undefined
  constructor(value: string, expiresAt: number, bytes: number) {
    this.value = value
    this.expiresAt = expiresAt
    this.bytes = bytes
  }
}

/** Reads in flight of one key, and how many invalidations of it arrived since the oldest began. */
interface Pending {
  reads: number
  version: number
}

/** What a read must show when its reply arrives for the reply to be kept. */
export interface Ticket {
  readonly epoch: number
  readonly keys: ReadonlyArray<string>
  readonly versions: ReadonlyArray<number>
  /** When the read was sent (monotonic millis): the keys' remaining lives count from here. */
  readonly sentAt: number
}

export interface TierOptions {
  /** The most copies kept (entries and stamps alike). */
  readonly maxEntries: number
  /** The most bytes kept (keys and values, 2 bytes per UTF-16 unit, plus a fixed overhead per copy). */
  readonly maxBytes: number
  /** A copy lives at most this long. */
  readonly ttlMillis: number
  /** How old the last proof of the channel may be for copies to be served. */
  readonly boundMillis: number
}

export interface TierStats {
  /** Lookups answered from local copies. */
  localHits: number
  /** Reads through the tracking connection whose reply was kept. */
  kept: number
  /** Reads whose reply was not kept (an invalidation or flush came while they were in flight). */
  discarded: number
  /** Copies dropped by an invalidation message or a write of this process. */
  invalidated: number
  /** Keys named by invalidation messages and writes of this process, whether a copy was held or not. */
  invalidations: number
  /** Times the tier emptied itself (channel down, bound lapsed, flush message, pattern invalidation). */
  flushes: number
  /** Copies evicted to stay within `maxEntries` / `maxBytes`. */
  evicted: number
  /** Heartbeats that came back. */
  heartbeats: number
}

/** The overhead counted per copy besides its key and value. */
const slotOverhead = 96

export class LocalTier {
  readonly options: TierOptions
  readonly stats: TierStats = {
    localHits: 0,
    kept: 0,
    discarded: 0,
    invalidated: 0,
    invalidations: 0,
    flushes: 0,
    evicted: 0,
    heartbeats: 0
  }
  private readonly slots = new Map<string, Slot>()
  private readonly pending = new Map<string, Pending>()
  private bytes = 0
  private epoch = 0
  /** Whether the channel is established (tracking on, subscriber listening). */
  private up = false
  /** When the newest heartbeat that came back was sent; `-Infinity`: none since the channel came up. */
  private lastProof = Number.NEGATIVE_INFINITY
  /** Whether the tier has emptied itself since the last proof (so that a lapse empties it once). */
  private lapsed = true

  constructor(options: TierOptions) {
    this.options = options
  }

  /** How many copies are kept. */
  get size(): number {
    return this.slots.size
  }

  /** How many bytes the copies take, as counted. */
  get byteSize(): number {
    return this.bytes
  }

  /**
   * Whether copies may be served at `now`: the channel is up and its last proof is younger than the bound. When
   * the bound has lapsed the tier empties itself (once), and reads in flight are not kept.
   */
  serving(now: number): boolean {
    if (now - this.lastProof < this.options.boundMillis) return this.up
    if (!this.lapsed) this.flush()
    return false
  }

  /** The copy of `key`, if it is kept and alive at `now`; marks it used. Check {@link serving} first. */
  get(key: string, now: number): string | undefined {
    return this.copy(key, now)?.value
  }

  /** {@link get}, with the copy's cell. */
  copy(key: string, now: number): (ValueCell & { readonly value: string }) | undefined {
    const slot = this.slots.get(key)
    if (slot === undefined) return undefined
    if (slot.expiresAt <= now) {
      this.remove(key, slot)
      return undefined
    }
    slot.used = true
    return slot
  }

  /** The cell of the copy of `key` if one is kept (not marked used): the read that just kept it hands it out. */
  cellOf(key: string): ValueCell | undefined {
    return this.slots.get(key)
  }

  /** Whether a copy of `key` is kept (alive or not); for tests and diagnostics. */
  has(key: string): boolean {
    return this.slots.has(key)
  }

  /** Marks `keys` as being read at `now` (before the read is sent). */
  beginRead(keys: ReadonlyArray<string>, now: number): Ticket {
    const versions = keys.map((key) => {
      let pending = this.pending.get(key)
      if (pending === undefined) {
        pending = { reads: 0, version: 0 }
        this.pending.set(key, pending)
      }
      pending.reads++
      return pending.version
    })
    return { epoch: this.epoch, keys, versions, sentAt: now }
  }

  /**
   * Ends a read begun by {@link beginRead}: always called, whether the read succeeded, failed or was given up.
   * With `reply` (the value and remaining life in millis of each key, `-1`: no expiry), keeps the copies if
   * `keep` and nothing voided the read meanwhile; returns whether they were kept.
   */
  endRead(
    ticket: Ticket,
    now: number,
    reply?: { readonly values: ReadonlyArray<string>; readonly lives: ReadonlyArray<number> } | undefined
  ): boolean {
    let intact = ticket.epoch === this.epoch
    ticket.keys.forEach((key, i) => {
      const pending = this.pending.get(key)
      if (pending === undefined) return
      if (pending.version !== ticket.versions[i]) intact = false
      if (--pending.reads === 0) this.pending.delete(key)
    })
    if (reply === undefined) return false
    if (!intact || !this.serving(now)) {
      this.stats.discarded++
      return false
    }
    const { maxBytes, ttlMillis } = this.options
    const cap = now + ttlMillis
    ticket.keys.forEach((key, i) => {
      const value = reply.values[i]!
      const life = reply.lives[i]!
      const bytes = 2 * (key.length + value.length) + slotOverhead
      const old = this.slots.get(key)
      if (old !== undefined) this.remove(key, old)
      // A copy larger than a quarter of the tier would push out most of it: such values are read from Redis.
      if (bytes > maxBytes / 4) return
      const expiresAt = life >= 0 ? Math.min(cap, ticket.sentAt + life) : cap
      if (expiresAt <= now) return
      this.slots.set(key, new Slot(value, expiresAt, bytes))
      this.bytes += bytes
    })
    this.stats.kept++
    this.evict()
    return true
  }

  /** Drops the copy of `key` and voids the reads of it in flight (an invalidation message, or a write of ours). */
  invalidate(key: string): void {
    this.stats.invalidations++
    const slot = this.slots.get(key)
    if (slot !== undefined) {
      this.remove(key, slot)
      this.stats.invalidated++
    }
    const pending = this.pending.get(key)
    if (pending !== undefined) pending.version++
  }

  /** Drops every copy and voids every read in flight. */
  flush(): void {
    this.slots.clear()
    this.bytes = 0
    this.epoch++
    this.lapsed = true
    this.stats.flushes++
  }

  /** The channel is established; copies are served once a heartbeat comes back. */
  channelUp(): void {
    this.flush()
    this.up = true
    this.lastProof = Number.NEGATIVE_INFINITY
  }

  /** The channel is gone (a connection closed, or the session ended): nothing is served until it is back. */
  channelDown(): void {
    if (this.up || this.slots.size > 0) this.flush()
    this.up = false
    this.lastProof = Number.NEGATIVE_INFINITY
  }

  /**
   * A heartbeat sent at `sentAt` came back at `now`: every invalidation message Redis sent before it has been
   * handled. A gap longer than the bound since the previous proof empties the tier first (messages may have been
   * lost while the channel stalled).
   */
  heartbeat(sentAt: number, now: number): void {
    this.stats.heartbeats++
    if (now - this.lastProof >= this.options.boundMillis && !this.lapsed) this.flush()
    if (sentAt > this.lastProof) this.lastProof = sentAt
    if (now - this.lastProof < this.options.boundMillis) this.lapsed = false
  }

  private remove(key: string, slot: Slot) {
    this.slots.delete(key)
    this.bytes -= slot.bytes
  }

  /** Evicts copies not used since the hand last passed, oldest first, until the tier is within its bounds. */
  private evict() {
    const { maxEntries, maxBytes } = this.options
    while (this.slots.size > maxEntries || this.bytes > maxBytes) {
      const [key, slot] = this.slots.entries().next().value as [string, Slot]
      this.slots.delete(key)
      if (slot.used) {
        // A second chance: to the back of the queue, unmarked.
        slot.used = false
        this.slots.set(key, slot)
        continue
      }
      this.bytes -= slot.bytes
      this.stats.evicted++
    }
  }
}
