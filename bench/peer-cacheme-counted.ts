/**
 * effect-cacheme's side of `peers/commands.ts` and `peers/zipf.ts`: a {@link Peer} over an ioredis 6 client of
 * its own, and the hook that counts that client's commands. It lives in bench/ (like `peer-cacheme.ts`) so that
 * `ioredis` resolves to the root's ioredis 6.
 *
 * `grouped`: the node lists one dependency group per entry (`invalidatedBy` a row group, as an entry cached from
 * one database row would), so a lookup reads one more stamp and a first fill creates one more set.
 */
import { Effect, Layer, ManagedRuntime, Schema } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import { redisUrl } from "./environment.ts"
import { User, UserNode } from "./fixture.ts"
import type { Peer } from "./peer.ts"
import type { Counter } from "./round-trips.ts"

/** The dependency group of one user row. */
export const UserRowGroup = InvalidNode.make("bench-user-row", {
  fields: { id: Schema.Number },
  key: ({ id }) => `user-row:${id}`
})

/** {@link UserNode} with one group per entry: its row. */
export const GroupedUserNode = Node.make("bench-user-grouped", {
  fields: { id: Schema.Number },
  value: User,
  key: ({ id }) => `bench-user-grouped:${id}`,
  ttl: null,
  invalidatedBy: ({ id }) => [UserRowGroup.make({ id })]
})

/** Counts every command sent by an ioredis 6 client (all instances but the excluded ones). */
export const countIoredis6 = (counter: Counter) => counter.install(Redis.prototype, "sendCommand")

export interface CachemeOptions {
  readonly grouped?: boolean | undefined
  /** Default false: each command is its own socket write, so the counter sees one command per round trip. */
  readonly autoPipelining?: boolean | undefined
  /** The tiered store (an in-process tier kept coherent by Redis client tracking) instead of the Redis store. */
  readonly tiered?: boolean | undefined
  /** Default true: the store's background index sweep runs as it ships (`false`: off, to count operations alone). */
  readonly sweep?: boolean | undefined
}

export const makeCachemeCountedPeer = async (prefix: string, options: CachemeOptions = {}): Promise<Peer> => {
  const client = new Redis(redisUrl, {
    enableAutoPipelining: options.autoPipelining ?? false,
    autoResendUnfulfilledCommands: false
  })
  const store =
    options.tiered === true ? CacheStore.layerTiered({ client, prefix }) : CacheStore.layerRedis({ client, prefix })
  const runtime = ManagedRuntime.make(
    store.pipe(
      Layer.provideMerge(CachemeConfig.layer({ prefix, ...(options.sweep === false ? { sweepInterval: null } : {}) })),
      Layer.orDie
    )
  )
  await runtime.context()
  const node = options.grouped === true ? GroupedUserNode : UserNode
  return {
    name:
      options.grouped === true
        ? "effect-cacheme (1 group)"
        : options.tiered === true
          ? "effect-cacheme tiered"
          : "effect-cacheme",
    prefix,
    getOrSet: (id, load) => runtime.runPromise(Effect.promise(load).pipe(Memo.cached(node.make({ id })))),
    close: async () => {
      await runtime.dispose()
      client.disconnect()
    }
  }
}
