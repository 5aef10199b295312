/**
 * cache-manager 7 over Keyv with `@keyv/redis` (node-redis client) as a {@link Peer}: one Redis store, `wrap` as
 * the read-through call (it coalesces concurrent calls for a key within the process).
 */
import KeyvRedis, { createClient } from "@keyv/redis"
import { createCache } from "cache-manager"
import { Keyv } from "keyv"
import { redisUrl } from "../environment.ts"
import type { Peer } from "../peer.ts"
import { type Counter, ownerOf } from "../round-trips.ts"

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

/**
 * Counts every command the node-redis clients of this process send: single commands go through `sendCommand`,
 * a MULTI block (MULTI, its commands, EXEC) and a pipeline through their own methods.
 */
export const countNodeRedis = (counter: Counter) => {
  const probe = createClient({ url: redisUrl }) as object
  counter.install(ownerOf(probe, "sendCommand"), "sendCommand")
  const commands = (args: ReadonlyArray<unknown>) => (args[0] as ReadonlyArray<unknown>).length
  counter.install(ownerOf(probe, "_executeMulti"), "_executeMulti", (args) => commands(args) + 2)
  counter.install(ownerOf(probe, "_executePipeline"), "_executePipeline", commands)
}
