/**
 * One `Memo.cached` hit in a loop for a few seconds, for CPU profiles and for the library's own cost per hit.
 *
 * - `fake` (default): the ioredis client is replaced by an object whose commands return already-resolved
 *   promises, so no socket, no syscall and no Redis time is measured: what is left is the JavaScript work of a
 *   hit (Effect runtime, store wrapper, decode, metrics, single-flight). It barely moves with other load on the
 *   machine, which makes it the figure to compare before and after a change to src/. A bare `JSON.parse` of the
 *   same value through the same kind of promise is printed beside it.
 * - `redis`: the same loop against the real Redis.
 *
 * Run: `node bench/profile-hit.ts [fake|redis] [seconds]`, or with a profile:
 * `node --cpu-prof --cpu-prof-dir=/tmp/cacheme-prof bench/profile-hit.ts fake 6` (open the .cpuprofile in
 * Chrome DevTools or speedscope).
 */
import { Effect, Layer, ManagedRuntime } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, Memo } from "../src/index.ts"
import { deleteByPrefix, redisUrl } from "./environment.ts"
import { KEYS, makeUser, UserNode } from "./fixture.ts"
import * as Protocol from "../src/internal/protocol.ts"

const mode = process.argv[2] === "redis" ? "redis" : "fake"
const seconds = Number(process.argv[3] ?? 6)
const prefix = `bench:profile:${process.pid}:`
const users = Array.from({ length: KEYS }, (_, id) => makeUser(id))
const stored = users.map((user) => `${UserNode.stamp}\n${JSON.stringify(user)}`)
const json = users.map((user) => JSON.stringify(user))

/** Answers the store's lookup (an MGET of the entry and its tag's stamp) from memory. */
const stamp = "benchstamp1"
const records = stored.map((value) =>
  Protocol.valueRecord(undefined, {
    fillToken: Protocol.fixedToken("bench"),
    setsJson: JSON.stringify([`t:${UserNode.name}`]),
    stamps: stamp,
    value
  })
)
const idOf = (key: string) => Number(key.slice(key.lastIndexOf(":") + 1))
const fakeClient = {
  defineCommand: () => {},
  mget: (key: string) => Promise.resolve([records[idOf(key)], stamp]),
  get: (key: string) => Promise.resolve(json[idOf(key)])
}
const client =
  mode === "redis" ? new Redis(redisUrl, { autoResendUnfulfilledCommands: false }) : (fakeClient as unknown as Redis)

const runtime = ManagedRuntime.make(
  CacheStore.layerRedis({ client, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer({ prefix })), Layer.orDie)
)
await runtime.context()
const memo = (i: number) => Effect.succeed(users[i]!).pipe(Memo.cached(UserNode.make({ id: i })))
const bareKey = (i: number) => `${prefix}bare:${i}`
const bare = (i: number) => client.get(bareKey(i)).then((raw) => JSON.parse(raw!))
if (mode === "redis") await Promise.all(users.map((user, i) => client.set(bareKey(i), JSON.stringify(user))))
await runtime.runPromise(Effect.forEach(users, (user) => memo(user.id), { discard: true }))

/** Runs `op` for about `ms`, returns microseconds per operation. */
const loop = async (op: (i: number) => Promise<unknown>, ms: number) => {
  const start = performance.now()
  let ops = 0
  while (performance.now() - start < ms) {
    for (let i = 0; i < 1000; i++) await op(i % KEYS)
    ops += 1000
  }
  return ((performance.now() - start) * 1000) / ops
}

await loop(bare, 500)
const bareUs = await loop(bare, 1000)
const memoUs = await loop((i) => runtime.runPromise(memo(i)), seconds * 1000)
console.log(`${mode}: Memo.cached hit ${memoUs.toFixed(2)} us/op, bare get+parse ${bareUs.toFixed(2)} us/op`)

await runtime.dispose()
if (mode === "redis") {
  await deleteByPrefix(client, prefix)
  client.disconnect()
}
