/**
 * bentocache 1.6 as a {@link Peer}, Redis tier only (no in-process L1 and no bus): effect-cacheme has no memory
 * tier in front of Redis, so both pay one Redis round trip per hit. Uses ioredis 5, which bentocache requires.
 */
import { BentoCache, bentostore } from "bentocache"
import { redisDriver } from "bentocache/drivers/redis"
import { Redis } from "ioredis"
import { redisUrl } from "../environment.ts"
import type { Peer } from "../peer.ts"

export const makeBentocachePeer = async (prefix: string): Promise<Peer> => {
  const connection = new Redis(redisUrl)
  const bento = new BentoCache({
    default: "redis",
    stores: { redis: bentostore().useL2Layer(redisDriver({ connection, prefix })) }
  })
  return {
    name: "bentocache (L2 only)",
    prefix,
    getOrSet: (id, load) => bento.getOrSet({ key: `user:${id}`, factory: load, ttl: "1h" }),
    close: async () => {
      await bento.disconnectAll()
      connection.disconnect()
    }
  }
}
