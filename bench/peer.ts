/**
 * What the peer benchmark asks of every cache library: a read-through call on the user record of `id`, which
 * returns the cached value or runs `load` and caches its result. Each library answers through its own idiom
 * (`Memo.cached`, bentocache `getOrSet`, cache-manager `wrap`) against the same Redis.
 */
import type { User } from "./fixture.ts"

export interface Peer {
  readonly name: string
  /** Redis keys of this library all start with it, so the benchmark can delete them afterwards. */
  readonly prefix: string
  readonly getOrSet: (id: number, load: () => Promise<User>) => Promise<User>
  readonly close: () => Promise<void>
}
