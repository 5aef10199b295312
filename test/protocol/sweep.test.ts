/**
 * The index sweep (docs/concepts.md, "The store protocol", invariant 6): index members (`~m:<set>`) of entries
 * that vanished without an invalidation (deleted behind the store's back, replaced by a key of another type,
 * evicted under `maxmemory`) are removed by bounded steps, and the member of a live incarnation never is,
 * including when a refill races the step (forced interleavings: one command of the sweep held at a gate while
 * the entry is refilled).
 *
 * The sweep is driven by the test (`sweeperOf(store).pass` / `.step`, with the store's own cadence off), except
 * in the test that shows the store runs it by itself. Private `redis-server`s on ports 6480-6481 and a local
 * Cluster on 6483-6485; every test reads the indexes with its own client.
 */
import { assert, describe, it } from "@effect/vitest"
import { type Duration, Effect, Fiber, Layer, Ref, Schema } from "effect"
import { Cluster, type Redis as IORedis } from "ioredis"
import { afterAll } from "vitest"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { groupSet, tagSet } from "../../src/internal/keys.ts"
import * as Protocol from "../../src/internal/protocol.ts"
import { sweeperOf } from "../../src/store/Redis.ts"
import type { Sweeper } from "../../src/store/sweep.ts"
import { uniquePrefix } from "../support/backends.ts"
import { startCluster } from "../support/cluster.ts"
import { gatedClient } from "../support/gated-client.ts"
import { redisServerMissing, startRedis } from "../support/fault-redis.ts"

const skip = redisServerMissing()
/** A patient command timeout: a busy machine must not fail a step or turn a read into an uncached load. */
const patient = "10 seconds"

let counter = 0
const fresh = (name: string) => `${name}-${counter++}`

/** Any client that can read the store's keys (a `Redis`, or a `Cluster` typed as one). */
type Reader = Pick<IORedis, "zrange" | "get" | "type">

/** The members of an index, and for each the record at its key (or null). */
const indexOf = (reader: Reader, prefix: string, set: string) =>
  Effect.promise(async () => {
    const members = await reader.zrange(Protocol.indexKey(prefix, set), "0", "-1")
    return members.sort()
  })

/**
 * The member each live entry of `set` should have: every value record under the prefix (of the keys given) that
 * lists the set, as `fill token + key`.
 */
const liveMembers = (reader: Reader, prefix: string, keys: ReadonlyArray<string>, set: string) =>
  Effect.promise(async () => {
    const members: Array<string> = []
    for (const key of keys) {
      if ((await reader.type(prefix + key)) !== "string") continue
      const record = await reader.get(prefix + key)
      if (record === null) continue
      const parsed = Protocol.parse(record)
      if (parsed._tag !== "Value" || !Protocol.setsOf(parsed.body).includes(set)) continue
      members.push(Protocol.indexMember(parsed.body.fillToken, key))
    }
    return members.sort()
  })

const sweeperIn: Effect.Effect<Sweeper, never, CacheStore.CacheStore> = Effect.gen(function* () {
  const sweeper = sweeperOf(yield* CacheStore.CacheStore)
  if (sweeper === undefined) return yield* Effect.die(new Error("the store has no index sweep"))
  return sweeper
})

/** A store on `url` with its own sweep cadence off (the test drives it), or `sweepInterval` when given. */
const layerOn = (
  url: string,
  prefix: string,
  options: { readonly sweepInterval?: Duration.Input; readonly sweepBatchSize?: number } = {}
) =>
  CacheStore.layerRedis({
    url,
    prefix,
    sweepInterval: options.sweepInterval ?? null,
    sweepBatchSize: options.sweepBatchSize
  }).pipe(Layer.provideMerge(CachemeConfig.layer({ commandTimeout: patient })), Layer.orDie)

const layerOver = (client: IORedis | Cluster, prefix: string) =>
  CacheStore.layerRedis({ client, prefix, sweepInterval: null }).pipe(
    Layer.provideMerge(CachemeConfig.layer({ commandTimeout: patient })),
    Layer.orDie
  )

/** Nodes of one test: entries without a ttl, each in its node's tag and in one of four team groups. */
const nodes = () => {
  const Team = InvalidNode.make(fresh("sweep-team"), { fields: { team: Schema.Number } })
  const Item = Node.make(fresh("sweep-item"), {
    fields: { id: Schema.Number },
    value: Schema.String,
    ttl: null,
    stale: true,
    invalidatedBy: ({ id }) => [Team.make({ team: id % 4 })]
  })
  const tag = tagSet(Item.name)
  const team = (n: number) => groupSet(Team.make({ team: n }).key)
  return { Team, Item, tag, team }
}

describe.skipIf(skip)("index sweep (private redis-server)", () => {
  it.live(
    "entries deleted, replaced or evicted behind the store's back leave the indexes after one pass; live and stale ones stay",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6480)
        const prefix = uniquePrefix()
        const { Team, Item, tag, team } = nodes()
        const loads = yield* Ref.make(0)
        const read = (id: number) =>
          Ref.update(loads, (n) => n + 1).pipe(Effect.as(`item ${id}`), Memo.cached(Item.make({ id })))
        const ids = Array.from({ length: 200 }, (_, id) => id)
        const keys = ids.map((id) => Item.make({ id }).key)
        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, read, { concurrency: 20, discard: true })
          assert.strictEqual((yield* indexOf(redis.admin, prefix, tag)).length, 200)

          // Behind the store's back: 120 deleted, 10 replaced by a list, 10 by a string of someone else's;
          // 20 invalidated softly (their values stay, as stale values); 10 refilled after a delete.
          yield* Effect.promise(async () => {
            for (const id of ids.slice(0, 120)) await redis.admin.del(prefix + keys[id])
            for (const id of ids.slice(120, 130)) {
              await redis.admin.del(prefix + keys[id])
              await redis.admin.rpush(prefix + keys[id], "not an entry")
            }
            for (const id of ids.slice(130, 140)) await redis.admin.set(prefix + keys[id], "someone else's")
          })
          yield* Effect.forEach(ids.slice(140, 160), (id) => Memo.invalidate(Item.make({ id }), { mode: "soft" }), {
            discard: true
          })
          // 10 deleted behind its back and read again: the key exists, but under another incarnation.
          yield* Effect.promise(async () => {
            for (const id of ids.slice(190, 200)) await redis.admin.del(prefix + keys[id])
          })
          yield* Effect.forEach(ids.slice(190, 200), read, { discard: true })
          assert.strictEqual((yield* indexOf(redis.admin, prefix, tag)).length, 210, "nothing removed them yet")

          const sweeper = yield* sweeperIn
          const pass = yield* sweeper.pass
          console.log(`[sweep] one pass over 1 tag and 4 groups of 200 members: ${JSON.stringify(pass)}`)

          const live = yield* liveMembers(redis.admin, prefix, keys, tag)
          assert.strictEqual(live.length, 60)
          assert.deepStrictEqual(yield* indexOf(redis.admin, prefix, tag), live, "the tag's index is its live entries")
          for (let n = 0; n < 4; n++) {
            assert.deepStrictEqual(
              yield* indexOf(redis.admin, prefix, team(n)),
              yield* liveMembers(redis.admin, prefix, keys, team(n)),
              `team ${n}'s index is its live entries`
            )
          }
          assert.strictEqual(pass.removed, 2 * 150, "each dead member left its tag and its group")

          // The indexes still do their bookkeeping: a group invalidation counts and removes its live entries.
          const teamOne = ids.filter((id) => id >= 140 && id % 4 === 1).length
          assert.strictEqual(yield* InvalidNode.invalidate(Team.make({ team: 1 })), teamOne)
          // Live values were never touched: the fresh ones outside team 1 are hits.
          const before = yield* Ref.get(loads)
          const hits = ids.filter((id) => id >= 160 && id % 4 !== 1)
          assert.isAbove(hits.length, 20)
          yield* Effect.forEach(hits, read, { discard: true })
          assert.strictEqual(yield* Ref.get(loads), before, "a live entry was lost")
          // A second pass has nothing left to do.
          assert.strictEqual((yield* sweeper.pass).removed, 0)
        }).pipe(Effect.provide(layerOn(redis.url, prefix)))
      }),
    120_000
  )

  it.live(
    "a step is bounded: 2,000 dead members of one index take many steps of at most a batch each",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6480)
        const prefix = uniquePrefix()
        const { Item, tag } = nodes()
        const ids = Array.from({ length: 2000 }, (_, id) => id)
        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, (id) => Effect.succeed(`item ${id}`).pipe(Memo.cached(Item.make({ id }))), {
            concurrency: 50,
            discard: true
          })
          yield* Effect.promise(async () => {
            for (const id of ids.slice(0, 1990)) await redis.admin.del(prefix + Item.make({ id }).key)
          })
          const sweeper = yield* sweeperIn
          const steps: Array<number> = []
          let removed = 0
          while (true) {
            const step = yield* sweeper.step
            steps.push(step.checked)
            removed += step.removed
            if (step.passEnded) break
          }
          console.log(
            `[sweep] 2,000 members, batch 50: ${steps.length} steps, checked per step max ${Math.max(...steps)}`
          )
          assert.isAtMost(Math.max(...steps), 50, "one step read more than a batch of the index")
          assert.isAtLeast(steps.length, 10)
          assert.strictEqual(removed, 2 * 1990)
          assert.strictEqual((yield* indexOf(redis.admin, prefix, tag)).length, 10)
        }).pipe(Effect.provide(layerOn(redis.url, prefix, { sweepBatchSize: 50 })))
      }),
    120_000
  )

  it.live(
    "under maxmemory with allkeys-lru: after a pass every member left names its live entry",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6481, ["--maxmemory", "3mb", "--maxmemory-policy", "allkeys-lru"])
        const prefix = uniquePrefix()
        const { Item, tag, team } = nodes()
        const ids = Array.from({ length: 3000 }, (_, id) => id)
        const keys = ids.map((id) => Item.make({ id }).key)
        const filler = "x".repeat(2000)
        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, (id) => Effect.succeed(`${id} ${filler}`).pipe(Memo.cached(Item.make({ id }))), {
            concurrency: 20,
            discard: true
          })
          const evicted = yield* redis.infoNumber("stats", "evicted_keys")
          assert.isAbove(evicted, 0, "the test needs Redis to evict")
          // The sweep runs on a Redis at its memory limit (reads evict too while used memory is above it)...
          const sweeper = yield* sweeperIn
          yield* sweeper.pass
          // ... then, the limit lifted so that nothing vanishes any more, one more pass leaves exactly the members of
          // live entries (members of live entries whose index was evicted are lost: bookkeeping, never a value).
          yield* Effect.promise(() => redis.admin.config("SET", "maxmemory", "0"))
          yield* sweeper.pass
          for (const set of [tag, team(0), team(1), team(2), team(3)]) {
            const index = yield* indexOf(redis.admin, prefix, set)
            const live = yield* liveMembers(redis.admin, prefix, keys, set)
            const dead = index.filter((member) => !live.includes(member))
            assert.deepStrictEqual(dead, [], `${set}: members of evicted entries are left`)
          }
          console.log(
            `[sweep] allkeys-lru at 3 MB: ${evicted} keys evicted; tag index ${(yield* indexOf(redis.admin, prefix, tag)).length}, live entries ${(yield* liveMembers(redis.admin, prefix, keys, tag)).length}`
          )
        }).pipe(Effect.provide(layerOn(redis.url, prefix)))
      }),
    120_000
  )

  it.live(
    "the store runs the sweep by itself at its cadence",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6480)
        const prefix = uniquePrefix()
        const { Item, tag } = nodes()
        const ids = Array.from({ length: 100 }, (_, id) => id)
        const keys = ids.map((id) => Item.make({ id }).key)
        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, (id) => Effect.succeed(`item ${id}`).pipe(Memo.cached(Item.make({ id }))), {
            discard: true
          })
          yield* Effect.promise(async () => {
            for (const key of keys.slice(0, 70)) await redis.admin.del(prefix + key)
          })
          const live = yield* liveMembers(redis.admin, prefix, keys, tag)
          // Waits for the store's own steps (every 20 ms) to get there; a busy machine only makes it slower.
          let index = yield* indexOf(redis.admin, prefix, tag)
          for (let tries = 0; tries < 600 && index.length > live.length; tries++) {
            yield* Effect.sleep("50 millis")
            index = yield* indexOf(redis.admin, prefix, tag)
          }
          assert.deepStrictEqual(index, live)
        }).pipe(Effect.provide(layerOn(redis.url, prefix, { sweepInterval: "20 millis" })))
      }),
    120_000
  )
})

// --- forced interleavings: a refill races the step -------------------------------------------------------------

describe.skipIf(skip)("index sweep: a refill races the step (forced interleavings)", () => {
  const scenarios = [
    {
      name: "refilled between the member's scan and the read of its entry",
      when: (prefix: string, key: string) => (name: string, args: ReadonlyArray<string>) =>
        name === "getrange" && args[0] === prefix + key
    },
    {
      name: "refilled between the read of its entry and the ZREM",
      when: (prefix: string, _key: string) => (name: string, args: ReadonlyArray<string>) =>
        name === "zrem" && args[0]!.startsWith(prefix)
    }
  ]
  for (const scenario of scenarios) {
    it.live(
      `${scenario.name}: the dead member goes, the refill's member stays, the group reaches the refill`,
      () =>
        Effect.gen(function* () {
          const redis = yield* startRedis(6480)
          const prefix = uniquePrefix()
          const { Team, Item, tag, team } = nodes()
          const { client, gate } = yield* gatedClient(redis.url)
          const loads = yield* Ref.make(0)
          const read = Ref.updateAndGet(loads, (n) => n + 1).pipe(
            Effect.map((n) => `load ${n}`),
            Memo.cached(Item.make({ id: 1 }))
          )
          const key = Item.make({ id: 1 }).key
          yield* Effect.gen(function* () {
            assert.strictEqual(yield* read, "load 1")
            const [first] = yield* indexOf(redis.admin, prefix, tag)
            // The entry vanishes behind the store's back: its member is dead.
            yield* Effect.promise(() => redis.admin.del(prefix + key))

            yield* gate.arm(scenario.when(prefix, key))
            const sweeper: Sweeper = yield* sweeperIn
            const pass = yield* Effect.forkChild(sweeper.pass)
            yield* gate.reached
            // The sweep holds one command; the entry is refilled meanwhile (a miss: lease and fill).
            assert.strictEqual(yield* read, "load 2")
            const refilled = yield* liveMembers(redis.admin, prefix, [key], tag)
            assert.notDeepEqual(refilled, [first])
            gate.open()
            yield* Fiber.join(pass)

            assert.deepStrictEqual(yield* indexOf(redis.admin, prefix, tag), refilled, "tag index")
            assert.deepStrictEqual(yield* indexOf(redis.admin, prefix, team(1)), refilled, "group index")
            // The group still reaches the refilled entry: counted, removed, and the next read loads.
            assert.strictEqual(yield* InvalidNode.invalidate(Team.make({ team: 1 })), 1)
            assert.isNull(yield* Effect.promise(() => redis.admin.get(prefix + key)))
            assert.strictEqual(yield* read, "load 3")
          }).pipe(Effect.provide(layerOver(client, prefix)))
        }),
      60_000
    )
  }

  it.live(
    "a live member held at the gate while its entry is refreshed softly and stays: never removed",
    () =>
      Effect.gen(function* () {
        const redis = yield* startRedis(6480)
        const prefix = uniquePrefix()
        const { Item, tag } = nodes()
        const { client, gate } = yield* gatedClient(redis.url)
        const key = Item.make({ id: 2 }).key
        yield* Effect.gen(function* () {
          yield* Effect.succeed("v1").pipe(Memo.cached(Item.make({ id: 2 })))
          const before = yield* indexOf(redis.admin, prefix, tag)
          yield* gate.arm((name, args) => name === "getrange" && args[0] === prefix + key)
          const pass = yield* Effect.forkChild((yield* sweeperIn).pass)
          yield* gate.reached
          // Meanwhile a soft invalidation: the same incarnation, now a stale value. Its member must stay.
          yield* Memo.invalidate(Item.make({ id: 2 }), { mode: "soft" })
          gate.open()
          const done = yield* Fiber.join(pass)
          assert.strictEqual(done.removed, 0)
          assert.deepStrictEqual(yield* indexOf(redis.admin, prefix, tag), before)
        }).pipe(Effect.provide(layerOver(client, prefix)))
      }),
    60_000
  )
})

// --- Redis Cluster ------------------------------------------------------------------------------------------------

const clusterPorts = [6483, 6484, 6485]
const local = skip
  ? { ready: false, stop: () => {} }
  : await startCluster(clusterPorts, "the index sweep's Cluster test")
afterAll(() => local.stop())

describe.skipIf(skip || !local.ready)("index sweep on a Redis Cluster", () => {
  it.live(
    "indexes on every master are swept; members of live entries stay",
    () =>
      Effect.gen(function* () {
        const client = yield* Effect.acquireRelease(
          Effect.sync(() => new Cluster(clusterPorts.map((port) => ({ host: "127.0.0.1", port })))),
          (cluster) => Effect.sync(() => cluster.disconnect())
        )
        const prefix = uniquePrefix()
        // Many groups, so that their indexes land on every master.
        const Group = InvalidNode.make(fresh("sweep-cluster-group"), { fields: { g: Schema.Number } })
        const Item = Node.make(fresh("sweep-cluster-item"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: null,
          invalidatedBy: ({ id }) => [Group.make({ g: id % 30 })]
        })
        const ids = Array.from({ length: 300 }, (_, id) => id)
        const keys = ids.map((id) => Item.make({ id }).key)
        const sets = [tagSet(Item.name), ...Array.from({ length: 30 }, (_, g) => groupSet(Group.make({ g }).key))]
        const reader = client as unknown as Reader
        yield* Effect.gen(function* () {
          yield* Effect.forEach(ids, (id) => Effect.succeed(`item ${id}`).pipe(Memo.cached(Item.make({ id }))), {
            concurrency: 20,
            discard: true
          })
          yield* Effect.promise(async () => {
            for (const id of ids) if (id % 3 !== 0) await client.del(prefix + keys[id])
          })
          const pass = yield* (yield* sweeperIn).pass
          assert.strictEqual(pass.removed, 2 * 200)
          for (const set of sets) {
            assert.deepStrictEqual(
              yield* indexOf(reader, prefix, set),
              yield* liveMembers(reader, prefix, keys, set),
              `${set}: the index is its live entries`
            )
          }
          assert.strictEqual((yield* indexOf(reader, prefix, sets[0]!)).length, 100)
        }).pipe(Effect.provide(layerOver(client, prefix)))
      }),
    120_000
  )
})
