/**
 * bentocache 1.6 as a {@link Peer}. By default Redis tier only (no in-process L1 and no bus): effect-cacheme has
 * no memory tier in front of Redis, so both pay one Redis round trip per hit. Uses ioredis 5, which bentocache
 * requires.
 *
 * Options (for `commands.ts` and `zipf.ts`):
 * - `tiered`: bentocache as its docs recommend for several processes: an in-process L1 (memory driver) in front of
 *   Redis, kept coherent by its Redis bus (a publisher and a subscriber connection, duplicated from the L2 one).
 * - `tagged`: every entry carries one tag, its row: bentocache's counterpart of an effect-cacheme group.
 */
import { BentoCache, bentostore } from "bentocache"
import { memoryDriver } from "bentocache/drivers/memory"
import { redisBusDriver, redisDriver } from "bentocache/drivers/redis"
import { Redis } from "ioredis"
import { redisUrl } from "../environment.ts"
import type { Peer } from "../peer.ts"

export interface BentocacheOptions {
  readonly tiered?: boolean | undefined
  readonly tagged?: boolean | undefined
}

export const makeBentocachePeer = async (prefix: string, options: BentocacheOptions = {}): Promise<Peer> => {
  const connection = new Redis(redisUrl)
  const l2 = redisDriver({ connection, prefix })
  const store =
    options.tiered === true
      ? bentostore()
          .useL1Layer(memoryDriver({ maxSize: "200mb" }))
          .useL2Layer(l2)
          .useBus(redisBusDriver({ connection }))
      : bentostore().useL2Layer(l2)
  // The store name is part of the bus channel: one per prefix keeps concurrent runs apart (the processes of one
  // run share the prefix, so they share the channel).
  const name = `cache:${prefix}`
  const bento = new BentoCache({ default: name, stores: { [name]: store } })
  const tagged = options.tagged === true
  return {
    name:
      options.tiered === true ? "bentocache (L1+L2+bus)" : tagged ? "bentocache (L2, 1 tag)" : "bentocache (L2 only)",
    prefix,
    getOrSet: (id, load) =>
      tagged
        ? bento.getOrSet({ key: `user:${id}`, factory: load, ttl: "1h", tags: [`user-row:${id}`] })
        : bento.getOrSet({ key: `user:${id}`, factory: load, ttl: "1h" }),
    close: async () => {
      await bento.disconnectAll()
      connection.disconnect()
    }
  }
}

/**
 * bentocache 1.6 with its in-process L1 alone (memory driver, no L2, no bus): the peer of effect-cacheme's
 * in-process store. `serialize: false` keeps the values as objects (a hit hands every caller the object the
 * loader returned: bentocache's fastest mode); `serialize: true` (its default) keeps JSON strings and parses one
 * per hit. `maxItems` bounds it (lru-cache preallocates its arrays for that many).
 */
export const makeBentocacheL1 = <V>(options: {
  readonly serialize: boolean
  readonly maxItems: number
}): {
  readonly getOrSet: (key: string, load: () => Promise<V>) => Promise<V>
  readonly close: () => Promise<void>
} => {
  const name = "l1"
  const store = bentostore().useL1Layer(
    memoryDriver(options.serialize ? { maxItems: options.maxItems } : { maxItems: options.maxItems, serialize: false })
  )
  const bento = new BentoCache({ default: name, stores: { [name]: store } })
  return {
    getOrSet: (key, load) => bento.getOrSet({ key, factory: load, ttl: "1h" }),
    close: () => bento.disconnectAll()
  }
}
