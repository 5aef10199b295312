/**
 * What groups named by the value (`invalidatedByValue`) cost in Redis commands, counted exactly: the
 * `INFO commandstats` delta of a Redis nobody else uses (each `redis.call` inside a script counts as one besides
 * the EVALSHA), and the socket writes of the store's own connection (commands sent together share one: for
 * sequential operations, the round trips). N sequential operations per row, after a warm-up (scripts loaded,
 * the node's tag stamp and its families' epochs made); the figures are per operation.
 *
 * Rows: a node without groups; a node with one group known from its fields (`invalidatedBy`); a node whose value
 * names one group, and three, of one family (`invalidatedByValue`): misses (the group new to the store, and
 * known), hits, the first hit after another group of the family was invalidated (it verifies, then rewrites the
 * record's epochs) and the hit after it; invalidations of a group whose family no value names, and of one whose
 * family has an epoch.
 *
 * Run against a Redis of your own (the counts are server-wide): `node_modules/.bin/node
 * bench/value-groups-commands.ts redis://127.0.0.1:6470 [N]`. Prints a table; writes nothing.
 */
import { Socket } from "node:net"
import { Effect, Layer, Schema } from "effect"
import { Redis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"

const url = process.argv[2] ?? "redis://127.0.0.1:6470"
const N = Number(process.argv[3] ?? 100)
const prefix = `bench:vg:${process.pid}:`

const admin = new Redis(url)
const serverCalls = async (): Promise<Record<string, number>> => {
  const info = await admin.info("commandstats")
  const calls: Record<string, number> = {}
  for (const match of info.matchAll(/cmdstat_([^:]+):calls=(\d+)/g)) calls[match[1]!] = Number(match[2])
  return calls
}

// Socket writes that name the prefix: the store's round trips for sequential operations.
let writes = 0
const originalWrite = Socket.prototype.write
;(Socket.prototype as any).write = function (this: Socket, chunk: unknown, ...rest: Array<unknown>) {
  const text = typeof chunk === "string" ? chunk : Buffer.isBuffer(chunk) ? chunk.toString("latin1") : ""
  if (text.includes(prefix)) writes++
  return (originalWrite as any).call(this, chunk, ...rest)
}

const Group = InvalidNode.make("vgb-row", { fields: { id: Schema.Number } })
const Other = InvalidNode.make("vgb-other", { fields: { id: Schema.Number } })
const Item = Schema.Struct({ id: Schema.Number, name: Schema.String })
const Plain = Node.make("vgb-plain", { fields: { id: Schema.Number }, value: Item, ttl: null })
const Grouped = Node.make("vgb-grouped", {
  fields: { id: Schema.Number },
  value: Item,
  ttl: null,
  invalidatedBy: ({ id }) => [Group.make({ id })]
})
const ValueOne = Node.make("vgb-value1", {
  fields: { id: Schema.Number },
  value: Schema.Array(Item),
  ttl: null,
  invalidatedByValue: { families: [Group], groups: (items) => items.map(({ id }) => Group.make({ id })) }
})

const items = (ids: ReadonlyArray<number>) => ids.map((id) => ({ id, name: `item ${id}` }))

interface Row {
  readonly what: string
  readonly commands: number
  readonly writes: number
  readonly detail: string
}
const rows: Array<Row> = []

const measure = (what: string, op: (i: number) => Effect.Effect<unknown, unknown, CacheStore.CacheStore>) =>
  Effect.gen(function* () {
    const before = yield* Effect.promise(serverCalls)
    writes = 0
    for (let i = 0; i < N; i++) yield* op(i)
    yield* Effect.sleep(50) // writes sent after an answer (a verified record's rewrite) land
    const after = yield* Effect.promise(serverCalls)
    const delta: Record<string, number> = {}
    let total = 0
    for (const [command, calls] of Object.entries(after)) {
      const d = calls - (before[command] ?? 0)
      if (d > 0 && command !== "info") {
        delta[command] = d / N
        total += d
      }
    }
    rows.push({
      what,
      commands: total / N,
      writes: writes / N,
      detail: Object.entries(delta)
        .sort((a, b) => b[1] - a[1])
        .map(([command, n]) => `${command} ${n}`)
        .join(", ")
    })
  })

const program = Effect.gen(function* () {
  const read = <N extends Node.Node>(node: N, id: number, value: Node.Value<N>) =>
    Effect.succeed(value).pipe(Memo.cached(node.make({ id }) as Node.Instance<any, any>))
  // Warm-up: scripts, tag stamps, the family's epoch.
  yield* read(Plain, -1, items([0])[0]!)
  yield* read(Grouped, -1, items([0])[0]!)
  yield* read(ValueOne, -1, items([-1]))

  yield* measure("plain: miss", (i) => read(Plain, i, items([i])[0]!))
  yield* measure("plain: hit", (i) => read(Plain, i, items([i])[0]!))
  yield* measure("invalidatedBy one group: miss (group new)", (i) => read(Grouped, i, items([i])[0]!))
  yield* measure("invalidatedBy one group: hit", (i) => read(Grouped, i, items([i])[0]!))
  yield* measure("invalidatedByValue one group: miss (group new)", (i) => read(ValueOne, 1000 + i, items([1000 + i])))
  yield* measure("invalidatedByValue one group: miss (group known)", (i) => read(ValueOne, 2000 + i, items([1000 + i])))
  yield* measure("invalidatedByValue three groups: miss (groups new)", (i) =>
    read(ValueOne, 3000 + i, items([3000 + 3 * i, 3001 + 3 * i, 3002 + 3 * i]))
  )
  yield* measure("invalidatedByValue one group: hit", (i) => read(ValueOne, 1000 + i, items([1000 + i])))
  // Another group of the family changes: each entry's next hit verifies once, then is one MGET again.
  yield* InvalidNode.invalidate(Group.make({ id: -99 }))
  yield* measure("invalidatedByValue one group: first hit after the family's epoch moved", (i) =>
    read(ValueOne, 1000 + i, items([1000 + i]))
  )
  yield* measure("invalidatedByValue one group: the hit after that", (i) => read(ValueOne, 1000 + i, items([1000 + i])))
  yield* measure("invalidate a group whose family no value names", (i) => InvalidNode.invalidate(Other.make({ id: i })))
  yield* measure("invalidate a group whose family has an epoch (no entry)", (i) =>
    InvalidNode.invalidate(Group.make({ id: 100_000 + i }))
  )
  yield* measure("invalidate a group named by one entry's value", (i) =>
    InvalidNode.invalidate(Group.make({ id: 1000 + i }))
  )
})

const layer = CacheStore.layerRedis({ url, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer()), Layer.orDie)
await Effect.runPromise(program.pipe(Effect.provide(layer)))
const width = Math.max(...rows.map((row) => row.what.length))
console.log(`${"".padEnd(width)}  commands  writes  by command`)
for (const row of rows)
  console.log(
    `${row.what.padEnd(width)}  ${row.commands.toFixed(2).padStart(8)}  ${row.writes.toFixed(2).padStart(6)}  ${row.detail}`
  )
const keys = await admin.keys(`${prefix}*`)
if (keys.length > 0) await admin.del(...keys)
admin.disconnect()
