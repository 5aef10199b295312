/**
 * cache-manager 7 over Keyv with `@keyv/redis` (node-redis client) as a {@link Peer}: one Redis store, `wrap` as
 * the read-through call (it coalesces concurrent calls for a key within the process).
 */
import KeyvRedis from "@keyv/redis"
import { createCache } from "cache-manager"
import { Keyv } from "keyv"
import { redisUrl } from "../environment.ts"
import type { Peer } from "../peer.ts"

const HOUR = 3_600_000

export const makeCacheManagerPeer = async (prefix: string): Promise<Peer> => {
  const namespace = prefix.replace(/:$/, "")
  const store = new KeyvRedis(redisUrl, { namespace })
  const cache = createCache({ stores: [new Keyv({ store, namespace, useKeyPrefix: false })] })
  return {
    name: "cache-manager + @keyv/redis",
    prefix,
    getOrSet: (id, load) => cache.wrap(`user:${id}`, load, HOUR),
    close: async () => {
      await cache.disconnect()
    }
  }
}
