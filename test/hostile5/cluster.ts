/**
 * A local Redis Cluster backend on some of hostile5's own ports (6560-6569), one cluster per test file:
 * a family's epoch and a group's stamp on different slots.
 */
import { it } from "@effect/vitest"
import { Effect, Layer, type Scope } from "effect"
import { Cluster } from "ioredis"
import { afterAll } from "vitest"
import { CachemeConfig, CacheStore } from "../../src/index.ts"
import { type Backend, uniquePrefix } from "../support/backends.ts"
import { startCluster } from "../support/cluster.ts"

export const startHostile5Cluster = async (
  clusterPorts: ReadonlyArray<number>,
  what: string
): Promise<Backend & { readonly admin: () => Effect.Effect<Cluster, never, Scope.Scope> }> => {
  const local = await startCluster(clusterPorts, what)
  afterAll(() => local.stop())
  return {
    name: "redis",
    skip: !local.ready,
    test: it.live,
    layer: (settings) =>
      Layer.unwrap(
        Effect.map(
          Effect.acquireRelease(
            Effect.sync(() => new Cluster(clusterPorts.map((port) => ({ host: "127.0.0.1", port })))),
            (client) => Effect.sync(() => client.disconnect())
          ),
          (client) => CacheStore.layerRedis({ client, prefix: settings?.prefix ?? uniquePrefix() })
        )
      ).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie),
    advance: (millis) => Effect.sleep(millis),
    // A client on the cluster, for keys written or deleted behind the store's back.
    admin: () =>
      Effect.acquireRelease(
        Effect.sync(() => new Cluster(clusterPorts.map((port) => ({ host: "127.0.0.1", port })))),
        (client) => Effect.sync(() => client.disconnect())
      )
  }
}
