/**
 * The hit path of the stores that keep values in process (the in-process store, the tiered store's local copies):
 * a hit is answered in the read's one step, from the value decoded once per stored copy, and every caller still
 * gets exactly what a decode of the stored value gives: one shared value for a readonly Schema, a value of its own
 * for a Schema with a mutable part, never a value decoded under another Schema. Counters and hooks move as on the
 * full path, and an invalidation or a write of another process brings a new copy, decoded anew.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Ref, Schema } from "effect"
import { vi } from "vitest"
import { CachemeConfig, CacheStore, Memo, Metrics, Node } from "../src/index.ts"
import { reuseFor } from "../src/internal/codec.ts"
import { tierOf } from "../src/store/Tiered.ts"
import { type Backend, memory, tiered } from "./support/backends.ts"
import { until } from "./support/tiered.ts"
import { redisStore } from "./support/tiered.ts"
import { Redis } from "./support/services.ts"

let nodeCounter = 0
const fresh = (name: string) => `${name}-hit-${nodeCounter++}`

const Point = Schema.Struct({ x: Schema.Number, tags: Schema.Array(Schema.String) })
const Dated = Schema.Struct({ id: Schema.Number, at: Schema.Date })

/** A tiered store answers hits at once only once its channel serves: waits for it (no-op for other stores). */
const serving = Effect.gen(function* () {
  const handle = tierOf(yield* CacheStore.CacheStore)
  if (handle !== undefined) yield* until("the tier serves", () => handle.serving())
})

/** Fiber operations an effect takes (the runtime's own count, net of reading it). */
const operationsOf = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const count = Effect.withFiber((fiber) =>
      Effect.succeed((fiber as unknown as { currentOpCount: number }).currentOpCount)
    )
    const a0 = yield* count
    yield* Effect.void
    const a1 = yield* count
    const b0 = yield* count
    yield* effect
    const b1 = yield* count
    return b1 - b0 - (a1 - a0)
  })

describe("which values a cell keeps", () => {
  it("readonly Schemas share their decoded value; mutable parts keep the parsed JSON; pass-through ones nothing", () => {
    class Person extends Schema.Class<Person>("Person")({ name: Schema.String }) {}
    const cases: ReadonlyArray<[string, Schema.Top, "value" | "json" | "none"]> = [
      ["struct of primitives and readonly arrays", Point, "value"],
      ["string", Schema.String, "value"],
      ["nullable struct", Schema.NullOr(Point), "value"],
      ["record", Schema.Record(Schema.String, Schema.Number), "value"],
      ["class", Person, "value"],
      ["option", Schema.Option(Schema.String), "value"],
      ["readonly map", Schema.ReadonlyMap(Schema.String, Schema.Number), "value"],
      ["date", Dated, "json"],
      ["mutable array", Schema.mutable(Schema.Array(Schema.Number)), "json"],
      ["mutable field", Schema.Struct({ a: Schema.mutableKey(Schema.String) }), "json"],
      ["option of a date", Schema.Option(Schema.Date), "json"],
      ["unknown", Schema.Struct({ data: Schema.Unknown }), "none"],
      ["any object", Schema.Struct({ data: Schema.ObjectKeyword }), "none"]
    ]
    for (const [what, schema, reuse] of cases) assert.strictEqual(reuseFor(schema.ast, undefined), reuse, what)
    assert.strictEqual(reuseFor(Dated.ast, true), "value", "shareValues: true shares a mutable type")
    assert.strictEqual(reuseFor(Point.ast, false), "json", "shareValues: false keeps a value per caller")
    assert.strictEqual(reuseFor(Schema.Unknown.ast, false), "none")
  })
})

const hitPath = (backend: Backend) =>
  describe.skipIf(backend.skip)(`Memo hit path: ${backend.name}`, () => {
    const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
      backend.test(name, () => body.pipe(Effect.provide(backend.layer())), 60_000)

    test(
      "a readonly value is decoded once per stored copy, and every hit gets that value",
      Effect.gen(function* () {
        const node = Node.make(fresh("point"), { fields: { id: Schema.Number }, value: Point })
        const loaded = { x: 1, tags: ["a", "b"], extra: "not in the Schema" }
        const read = Effect.succeed(loaded).pipe(Memo.cached(node.make({ id: 1 })))
        yield* serving
        const miss = yield* read
        assert.strictEqual(miss, loaded, "a miss returns the loaded value")
        const first = yield* read
        const parse = vi.spyOn(JSON, "parse")
        try {
          const second = yield* read
          assert.strictEqual(second, first)
          assert.strictEqual(parse.mock.calls.length, 0, "no JSON.parse on a hit of a decoded copy")
        } finally {
          parse.mockRestore()
        }
        // What a decode of the stored value gives: the Schema's fields only.
        assert.deepStrictEqual(first, { x: 1, tags: ["a", "b"] })
      })
    )

    test(
      "a value with a mutable part is decoded for each hit (from the kept JSON): equal values, never the same object",
      Effect.gen(function* () {
        const node = Node.make(fresh("dated"), { fields: { id: Schema.Number }, value: Dated })
        const read = Effect.succeed({ id: 1, at: new Date(0) }).pipe(Memo.cached(node.make({ id: 1 })))
        yield* serving
        yield* read
        const first = yield* read
        first.at.setFullYear(1999)
        const parse = vi.spyOn(JSON, "parse")
        try {
          const second = yield* read
          assert.notStrictEqual(second, first)
          assert.notStrictEqual(second.at, first.at)
          assert.strictEqual(second.at.getTime(), 0, "a caller's change is its own")
          assert.strictEqual(parse.mock.calls.length, 0, "the JSON was kept: the Schema decode alone runs")
        } finally {
          parse.mockRestore()
        }
      })
    )

    test(
      "shareValues decides: false gives each hit its own value, true shares even a mutable type",
      Effect.gen(function* () {
        const own = Node.make(fresh("own"), { fields: { id: Schema.Number }, value: Point, shareValues: false })
        const shared = Node.make(fresh("shared"), { fields: { id: Schema.Number }, value: Dated, shareValues: true })
        const readOwn = Effect.succeed({ x: 1, tags: [] }).pipe(Memo.cached(own.make({ id: 1 })))
        const readShared = Effect.succeed({ id: 1, at: new Date(0) }).pipe(Memo.cached(shared.make({ id: 1 })))
        yield* serving
        yield* readOwn
        yield* readShared
        const a = yield* readOwn
        const b = yield* readOwn
        assert.notStrictEqual(a, b)
        assert.deepStrictEqual(a, b)
        assert.strictEqual(yield* readShared, yield* readShared)
      })
    )

    test(
      "a Schema that passes parsed objects through decodes every hit from the stored string",
      Effect.gen(function* () {
        const node = Node.make(fresh("unknown"), {
          fields: { id: Schema.Number },
          value: Schema.Struct({ data: Schema.Unknown })
        })
        const read = Effect.succeed({ data: { deep: [1] } }).pipe(Memo.cached(node.make({ id: 1 })))
        yield* serving
        yield* read
        const first = yield* read
        const second = yield* read
        assert.notStrictEqual(first.data, second.data)
        assert.deepStrictEqual(first, second)
      })
    )

    test(
      "a node made again under the same name with another Schema never takes the decoded value of the first",
      Effect.gen(function* () {
        const name = fresh("replaced")
        const before = Node.make(name, { fields: { id: Schema.Number }, value: Point })
        yield* serving
        yield* Effect.succeed({ x: 1, tags: [] }).pipe(Memo.cached(before.make({ id: 1 })))
        assert.deepStrictEqual(yield* Effect.succeed({ x: 2, tags: [] }).pipe(Memo.cached(before.make({ id: 1 }))), {
          x: 1,
          tags: []
        })
        const after = Node.make(name, {
          fields: { id: Schema.Number },
          value: Schema.Struct({ y: Schema.String }),
          replace: true
        })
        const runs = yield* Ref.make(0)
        const read = Ref.update(runs, (n) => n + 1).pipe(Effect.as({ y: "new" }), Memo.cached(after.make({ id: 1 })))
        assert.deepStrictEqual(yield* read, { y: "new" })
        assert.strictEqual(yield* Ref.get(runs), 1, "the entry of the old Schema was a miss")
      })
    )

    test(
      "an invalidation brings a new copy: the next hits get the new value, decoded anew",
      Effect.gen(function* () {
        const node = Node.make(fresh("renewed"), { fields: { id: Schema.Number }, value: Point })
        const value = yield* Ref.make({ x: 1, tags: [] as Array<string> })
        const read = Effect.flatMap(Ref.get(value), Effect.succeed).pipe(Memo.cached(node.make({ id: 1 })))
        yield* serving
        yield* read
        const old = yield* read
        yield* Ref.set(value, { x: 2, tags: [] })
        yield* Memo.invalidate(node.make({ id: 1 }))
        assert.deepStrictEqual(yield* read, { x: 2, tags: [] })
        const renewed = yield* read
        assert.deepStrictEqual(renewed, { x: 2, tags: [] })
        assert.notStrictEqual(renewed, old)
        assert.strictEqual(yield* read, renewed)
      })
    )

    test(
      "a hit answered at once counts as a hit, runs onHit, and takes two fiber operations",
      Effect.gen(function* () {
        const hooked = yield* Ref.make<ReadonlyArray<unknown>>([])
        const node = Node.make(fresh("counted"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          onHit: ({ value }) => Ref.update(hooked, (seen) => [...seen, value])
        })
        const plain = Node.make(fresh("plain"), { fields: { id: Schema.Number }, value: Schema.String })
        yield* serving
        const read = Effect.succeed("v").pipe(Memo.cached(node.make({ id: 1 })))
        yield* read
        const before = (yield* Metrics.stats(node.name)).hits
        assert.strictEqual(yield* read, "v")
        assert.strictEqual(yield* read, "v")
        assert.strictEqual((yield* Metrics.stats(node.name)).hits - before, 2)
        assert.deepStrictEqual(yield* Ref.get(hooked), ["v", "v"])
        const fn = Memo.fn(plain, ({ id }) => Effect.succeed(`p${id}`))
        yield* fn({ id: 1 })
        yield* fn({ id: 1 })
        // The read's one step, then its value: no lookup, decode or metric effects around a hit.
        assert.strictEqual(yield* operationsOf(fn({ id: 1 })), 2)
      })
    )

    test(
      "Memo.fn calls its function only to load",
      Effect.gen(function* () {
        const node = Node.make(fresh("lazy"), { fields: { id: Schema.Number }, value: Schema.String })
        let calls = 0
        const get = Memo.fn(node, ({ id }) => {
          calls++
          return Effect.succeed(`v${id}`)
        })
        yield* serving
        assert.strictEqual(yield* get({ id: 1 }), "v1")
        assert.strictEqual(yield* get({ id: 1 }), "v1")
        assert.strictEqual(yield* get({ id: 1 }), "v1")
        assert.strictEqual(calls, 1)
      })
    )
  })

hitPath(memory)
hitPath(tiered)

describe("Memo hit path: the in-process store's records", () => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
    memory.test(name, () => body.pipe(Effect.provide(memory.layer())))

  test(
    "once a value is kept decoded the record drops its JSON, and the stored string is made again exactly",
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const node = Node.make(fresh("compact"), { fields: { id: Schema.Number }, value: Point, stale: true })
      const instance = node.make({ id: 1 })
      const read = Effect.succeed({ x: 1.5, tags: ["é", "\u2028"] }).pipe(Memo.cached(instance))
      yield* read
      const stored = (yield* store.inspect(instance.key))!.value!
      const sets = Memo.setsOf(instance)
      const first = yield* store.lookup(instance.key, sets)
      const record = () => (first as unknown as { readonly cell: { readonly value: string } }).cell.value
      assert.isTrue(record().endsWith(stored), "the JSON is in the record until a hit keeps the value")
      const shared = yield* read
      assert.isFalse(record().includes('"x"'), "the record no longer carries the JSON")
      assert.strictEqual(yield* read, shared)
      assert.strictEqual((yield* store.inspect(instance.key))!.value, stored)
      const hit = yield* store.lookup(instance.key, sets)
      assert.strictEqual(hit._tag, "Hit")
      assert.strictEqual((hit as CacheStore.Hit).value, stored)
      // A node object of the same Schema (made again under the name) reads the string made again.
      const again = Node.make(node.name, { fields: { id: Schema.Number }, value: Point, stale: true, replace: true })
      assert.deepStrictEqual(yield* Effect.die("no load").pipe(Memo.cached(again.make({ id: 1 }))), shared)
      yield* Memo.invalidate(instance, { mode: "soft" })
      const stale = yield* store.lookup(instance.key, sets)
      assert.strictEqual(stale._tag, "Stale")
      assert.strictEqual((stale as { readonly value: string }).value, stored)
    })
  )

  test(
    "a class value is kept as decoded: every hit gets the same instance of the class",
    Effect.gen(function* () {
      class Person extends Schema.Class<Person>("HitPathPerson")({ name: Schema.String }) {
        get greeting() {
          return `hello ${this.name}`
        }
      }
      const node = Node.make(fresh("person"), { fields: { id: Schema.Number }, value: Person })
      const read = Effect.sync(() => new Person({ name: "Ada" })).pipe(Memo.cached(node.make({ id: 1 })))
      yield* read
      const first = yield* read
      assert.instanceOf(first, Person)
      assert.strictEqual(first.greeting, "hello Ada")
      assert.strictEqual(yield* read, first)
    })
  )
})

describe.skipIf(tiered.skip)("Memo hit path: tiered, writes of another process", () => {
  it.live(
    "a value another process wrote is decoded once, as it enters the tier; its next write brings a new copy",
    () =>
      Effect.gen(function* () {
        const prefix = `test:hit:${process.pid}:${Date.now().toString(36)}:`
        const node = Node.make(fresh("remote"), { fields: { id: Schema.Number }, value: Point })
        const other = yield* redisStore(Redis.url, prefix)
        const settings = CachemeConfig.layer({ prefix })
        const ours = Layer.provideMerge(CacheStore.layerTiered({ url: Redis.url, prefix }), settings)
        const theirs = Layer.provideMerge(Layer.succeed(CacheStore.CacheStore, other), settings)
        const write = (x: number) =>
          Effect.gen(function* () {
            yield* Memo.invalidate(node.make({ id: 1 }))
            yield* Effect.succeed({ x, tags: [] }).pipe(Memo.cached(node.make({ id: 1 })))
          }).pipe(Effect.provide(theirs))
        const read = Effect.die("not loaded here").pipe(Memo.cached(node.make({ id: 1 })))
        yield* write(1)
        yield* Effect.gen(function* () {
          const store = yield* CacheStore.CacheStore
          const handle = tierOf(store)!
          yield* until("the tier serves", () => handle.serving())
          const first = yield* read
          assert.deepStrictEqual(first, { x: 1, tags: [] })
          yield* until("the copy is local", () => handle.has(`${prefix}${node.make({ id: 1 }).key}`))
          const localBefore = handle.stats.localHits
          const second = yield* read
          assert.isAbove(handle.stats.localHits, localBefore)
          assert.strictEqual(second, first, "the read that kept the copy decoded it for later hits")
          yield* write(2)
          yield* until("the copy is dropped", () => !handle.has(`${prefix}${node.make({ id: 1 }).key}`))
          assert.deepStrictEqual(yield* read, { x: 2, tags: [] })
        }).pipe(Effect.provide(ours))
      }).pipe(
        Effect.scoped,
        Effect.ensuring(
          Effect.promise(() =>
            import("./support/services.ts").then(({ deleteRedisPrefix }) =>
              deleteRedisPrefix(`test:hit:${process.pid}:`)
            )
          )
        )
      ),
    60_000
  )
})
