import { Effect, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "effect-cacheme"

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

// A dependency group: invalidating it invalidates every entry that lists it.
const UserGroup = InvalidNode.make("user", { fields: { id: Schema.Number } })

// A typed cache node: its fields name one entry, its value Schema encodes what is cached.
const UserNode = Node.make("user", {
  fields: { id: Schema.Number },
  value: User,
  ttl: "10 minutes",
  invalidatedBy: ({ id }) => [UserGroup.make({ id })]
})

const loadUser = (id: number) => Effect.succeed(new User({ id, name: `user ${id}` })) // your database query

// Read through the cache: a hit is one store round trip; a miss loads once, however many callers wait.
export const getUser = (id: number) => loadUser(id).pipe(Memo.cached(UserNode.make({ id })))

export const program = Effect.gen(function* () {
  const first = yield* getUser(1) // miss: loads and stores
  const second = yield* getUser(1) // hit
  const removed = yield* InvalidNode.invalidate(UserGroup.make({ id: 1 })) // 1 key invalidated
  return { first, second, removed }
})

// In process here; `CacheStore.layerRedis({ url: "redis://127.0.0.1:6379" })` for Redis.
export const main = program.pipe(Effect.provide(CacheStore.layerMemory()))
