/**
 * effect-cacheme as a {@link Peer}: `Memo.cached` on the Redis store, run the way a promise-based caller (an
 * HTTP handler) would: one `ManagedRuntime` built once, `runtime.runPromise` per call. It lives in bench/ rather
 * than bench/peers/ so that `ioredis` resolves to the root's ioredis 6, the version the library supports.
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, Memo } from "../src/index.ts"
import { redisUrl } from "./environment.ts"
import { UserNode } from "./fixture.ts"
import type { Peer } from "./peer.ts"

export const makeCachemePeer = async (prefix: string): Promise<Peer> => {
  const client = new Redis(redisUrl, { autoResendUnfulfilledCommands: false })
  const runtime = ManagedRuntime.make(
    CacheStore.layerRedis({ client, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer({ prefix })), Layer.orDie)
  )
  await runtime.context()
  return {
    name: "effect-cacheme",
    prefix,
    getOrSet: (id, load) => runtime.runPromise(Effect.promise(load).pipe(Memo.cached(UserNode.make({ id })))),
    close: async () => {
      await runtime.dispose()
      client.disconnect()
    }
  }
}
