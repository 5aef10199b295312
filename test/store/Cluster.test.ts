/**
 * The store contract on a real Redis Cluster: three masters on loopback ports, made here with redis-server and
 * `redis-cli --cluster create`. Every script touches one key, memberships and entries land on different
 * masters, and scans walk every master.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { Cluster } from "ioredis"
import { afterAll } from "vitest"
import { CachemeConfig, CacheStore, Memo, Node } from "../../src/index.ts"
import { type Backend, uniquePrefix } from "../support/backends.ts"
import { execFileSync } from "node:child_process"
import { startCluster } from "../support/cluster.ts"
import { storeContract } from "./contract.ts"

// CACHEME_TEST_CLUSTER_PORTS=a,b,c moves the cluster (a helper running this file beside another session's).
const ports = (process.env.CACHEME_TEST_CLUSTER_PORTS ?? "7101,7102,7103").split(",").map(Number)
const local = await startCluster(ports, "the Redis Cluster tests")
const ready = local.ready

afterAll(() => local.stop())

const clusterLayer = (settings?: CachemeConfig.Input) =>
  Layer.unwrap(
    Effect.map(
      Effect.acquireRelease(
        Effect.sync(() => new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))),
        (client) => Effect.sync(() => client.disconnect())
      ),
      (client) => CacheStore.layerRedis({ client, prefix: settings?.prefix ?? uniquePrefix() })
    )
  ).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)

const cluster: Backend = {
  name: "redis",
  skip: !ready,
  test: it.live,
  layer: clusterLayer,
  advance: (millis) => Effect.sleep(millis)
}

describe.skipIf(!ready)("Redis Cluster", () => {
  storeContract(cluster)

  it.live("Memo reads through the cluster and group invalidation crosses masters", () =>
    Effect.gen(function* () {
      const Item = Node.make("cluster-item", { fields: { id: Schema.Number }, value: Schema.Number, tags: ["cluster"] })
      for (let id = 0; id < 30; id++) yield* Effect.succeed(id).pipe(Memo.cached(Item.make({ id })))
      const store = yield* CacheStore.CacheStore
      // The 30 entries and their sets are spread over every master.
      for (const port of ports) {
        const size = Number(execFileSync("redis-cli", ["-p", String(port), "dbsize"], { encoding: "utf8" }).trim())
        assert.isTrue(size > 0, `master ${port} holds keys`)
      }
      assert.strictEqual(yield* Effect.succeed(-1).pipe(Memo.cached(Item.make({ id: 7 }))), 7)
      const page = yield* store.scan({ pattern: "cluster-item:*", count: 1000 })
      let keys = page.keys.length
      let cursor = page.cursor
      while (cursor !== "0") {
        const next = yield* store.scan({ pattern: "cluster-item:*", cursor, count: 1000 })
        keys += next.keys.length
        cursor = next.cursor
      }
      assert.strictEqual(keys, 30)
      assert.strictEqual(yield* Memo.invalidateTag("cluster"), 30)
      assert.strictEqual(yield* Memo.invalidatePattern("cluster-item:*"), 0)
    }).pipe(Effect.provide(clusterLayer()))
  )
})
