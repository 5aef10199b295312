/**
 * The operations beside the read-through path, on both stores: `get` / `has` (no load), `set` (under the key's
 * lease: refused during a committing write's hold, and a load under way when it starts never overwrites it),
 * `refresh` (loads even on a hit), a ttl decided from the value, `cacheWhen`, `onHit` / `onMiss` hooks (never
 * failing a read), the fail-safe (a failed or slow load answered with the last value, within its window), and
 * the spans of reads, loads, fills and invalidations.
 */
import { assert, describe } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Option, Ref, Schema, Tracer } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import { groupSet } from "../src/internal/keys.ts"
import { backends } from "./support/backends.ts"

let counter = 0
const fresh = (name: string) => `${name}-ops-${process.pid}-${counter++}`

/** A loader counting its runs and returning what `value` holds now. */
const counted = <A>(initial: A) =>
  Effect.gen(function* () {
    const value = yield* Ref.make(initial)
    const runs = yield* Ref.make(0)
    const load = Effect.andThen(
      Ref.update(runs, (n) => n + 1),
      Ref.get(value)
    )
    return { value, runs, load }
  })

for (const backend of backends) {
  describe.skipIf(backend.skip)(`Memo operations: ${backend.name}`, () => {
    backend.test("get and has read without loading; an invalidation makes them miss", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        assert.isTrue(Option.isNone(yield* Memo.get(entry)))
        assert.isFalse(yield* Memo.has(entry))
        yield* Effect.succeed("one").pipe(Memo.cached(entry))
        assert.deepStrictEqual(yield* Memo.get(entry), Option.some("one"))
        assert.isTrue(yield* Memo.has(entry))
        yield* Memo.invalidate(entry)
        assert.isTrue(Option.isNone(yield* Memo.get(entry)))
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("with the cache off, set stores nothing and get finds nothing", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        assert.isFalse(yield* Memo.set(entry, "x"))
        assert.isTrue(Option.isNone(yield* Memo.get(entry)))
        assert.isFalse(yield* Memo.has(entry))
      }).pipe(Effect.provide(backend.layer({ enabled: false })))
    )

    backend.test("set stores a value that reads then serve without loading", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        const { runs, load } = yield* counted("loaded")
        assert.isTrue(yield* Memo.set(entry, "set"))
        assert.strictEqual(yield* load.pipe(Memo.cached(entry)), "set")
        assert.strictEqual(yield* Ref.get(runs), 0)
        // Over an existing value too.
        assert.isTrue(yield* Memo.set("again")(entry))
        assert.strictEqual(yield* load.pipe(Memo.cached(entry)), "again")
        assert.strictEqual(yield* Ref.get(runs), 0)
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("a load under way when set starts never overwrites the value set", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const slow = Effect.gen(function* () {
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(finish)
          return "read before the set"
        })
        const first = yield* Effect.forkChild(slow.pipe(Memo.cached(entry)))
        yield* Deferred.await(started)
        assert.isTrue(yield* Memo.set(entry, "set"))
        yield* Deferred.succeed(finish, undefined)
        // Its own caller gets what it loaded; nobody else ever does.
        assert.strictEqual(yield* Fiber.join(first), "read before the set")
        assert.deepStrictEqual(yield* Memo.get(entry), Option.some("set"))
        assert.strictEqual(yield* Effect.succeed("loaded").pipe(Memo.cached(entry)), "set")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("set is refused while a committing write holds one of the entry's groups", () =>
      Effect.gen(function* () {
        const Row = InvalidNode.make(fresh("row"), { fields: { id: Schema.Number } })
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          invalidatedBy: ({ id }) => [Row.make({ id })]
        })
        const entry = Title.make({ id: 1 })
        const store = yield* CacheStore.CacheStore
        const group = groupSet(Row.make({ id: 1 }).key)
        yield* store.hold([group], "write-token-0001", 60_000)
        assert.isFalse(yield* Memo.set(entry, "during the write"))
        assert.isTrue(Option.isNone(yield* Memo.get(entry)))
        yield* store.releaseHold([group], "write-token-0001")
        assert.isTrue(yield* Memo.set(entry, "after the write"))
        assert.deepStrictEqual(yield* Memo.get(entry), Option.some("after the write"))
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test(
      "set fails with InvalidValue for a value its Schema rejects or one too large, and changes nothing",
      () =>
        Effect.gen(function* () {
          const Count = Node.make(fresh("count"), {
            fields: { id: Schema.Number },
            value: Schema.Number.check(Schema.isGreaterThan(0))
          })
          const entry = Count.make({ id: 1 })
          assert.isTrue(yield* Memo.set(entry, 5))
          const rejected = yield* Effect.flip(Memo.set(entry, -1))
          assert.strictEqual(rejected._tag, "InvalidValue")
          assert.deepStrictEqual(yield* Memo.get(entry), Option.some(5))
          const Text = Node.make(fresh("text"), { fields: { id: Schema.Number }, value: Schema.String })
          const large = yield* Effect.flip(Memo.set(Text.make({ id: 1 }), "x".repeat(2000)))
          assert.strictEqual(large._tag, "InvalidValue")
          assert.match(large.message, /maxValueBytes/)
        }).pipe(Effect.provide(backend.layer({ maxValueBytes: 1000 })))
    )

    backend.test("refresh loads and stores even on a hit", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        const { value, runs, load } = yield* counted("one")
        assert.strictEqual(yield* load.pipe(Memo.cached(entry)), "one")
        yield* Ref.set(value, "two")
        assert.strictEqual(yield* load.pipe(Memo.cached(entry)), "one")
        assert.strictEqual(yield* load.pipe(Memo.refresh(entry)), "two")
        assert.strictEqual(yield* load.pipe(Memo.cached(entry)), "two")
        assert.strictEqual(yield* Ref.get(runs), 2)
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("while a refresh loads, a node serving stale values keeps answering the current one", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "1 hour",
          stale: true
        })
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("current").pipe(Memo.cached(entry))
        const started = yield* Deferred.make<void>()
        const finish = yield* Deferred.make<void>()
        const slow = Effect.gen(function* () {
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(finish)
          return "refreshed"
        })
        const refreshing = yield* Effect.forkChild(slow.pipe(Memo.refresh(entry)))
        yield* Deferred.await(started)
        assert.strictEqual(yield* Effect.succeed("loaded").pipe(Memo.cached(entry)), "current")
        yield* Deferred.succeed(finish, undefined)
        assert.strictEqual(yield* Fiber.join(refreshing), "refreshed")
        assert.strictEqual(yield* Effect.succeed("loaded").pipe(Memo.cached(entry)), "refreshed")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("a ttl decided from the value: each entry lives as its value says", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: (value: string) => (value === "short" ? "300 millis" : null),
          stale: false
        })
        const { runs: shortRuns, load: short } = yield* counted("short")
        const { runs: longRuns, load: long } = yield* counted("long")
        yield* short.pipe(Memo.cached(Title.make({ id: 1 })))
        yield* long.pipe(Memo.cached(Title.make({ id: 2 })))
        yield* backend.advance(600)
        yield* short.pipe(Memo.cached(Title.make({ id: 1 })))
        yield* long.pipe(Memo.cached(Title.make({ id: 2 })))
        assert.strictEqual(yield* Ref.get(shortRuns), 2)
        assert.strictEqual(yield* Ref.get(longRuns), 1)
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("a ttl function that throws or returns nonsense: the value is returned, not stored", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: (value: string) => {
            if (value === "throw") throw new Error("boom")
            return "not a duration" as never
          }
        })
        for (const value of ["throw", "nonsense"]) {
          const { runs, load } = yield* counted(value)
          assert.strictEqual(yield* load.pipe(Memo.cached(Title.make({ id: value.length }))), value)
          assert.strictEqual(yield* load.pipe(Memo.cached(Title.make({ id: value.length }))), value)
          assert.strictEqual(yield* Ref.get(runs), 2)
        }
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("cacheWhen: a value it rejects is returned but not stored", () =>
      Effect.gen(function* () {
        const List = Node.make(fresh("list"), {
          fields: { id: Schema.Number },
          value: Schema.Array(Schema.Number),
          cacheWhen: (value) => value.length > 0
        })
        const { value, runs, load } = yield* counted<ReadonlyArray<number>>([])
        const entry = List.make({ id: 1 })
        assert.deepStrictEqual(yield* load.pipe(Memo.cached(entry)), [])
        assert.deepStrictEqual(yield* load.pipe(Memo.cached(entry)), [])
        assert.strictEqual(yield* Ref.get(runs), 2)
        yield* Ref.set(value, [1])
        yield* load.pipe(Memo.cached(entry))
        assert.deepStrictEqual(yield* load.pipe(Memo.cached(entry)), [1])
        assert.strictEqual(yield* Ref.get(runs), 3)
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("onHit and onMiss receive the key, the fields and the value, and cannot fail the read", () =>
      Effect.gen(function* () {
        const events: Array<string> = []
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          onMiss: ({ key, fields, value }) =>
            Effect.sync(() => events.push(`miss ${key} ${fields.id} ${value}`)).pipe(
              Effect.andThen(Effect.fail("a failing hook"))
            ),
          onHit: ({ fields, value }) =>
            Effect.sync(() => {
              events.push(`hit ${fields.id} ${value}`)
              throw new Error("a dying hook")
            })
        })
        const entry = Title.make({ id: 7 })
        assert.strictEqual(yield* Effect.succeed("v").pipe(Memo.cached(entry)), "v")
        assert.strictEqual(yield* Effect.succeed("other").pipe(Memo.cached(entry)), "v")
        assert.deepStrictEqual(events, [`miss ${entry.key} 7 v`, "hit 7 v"])
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("fail-safe: a failing load is answered with the last value within the window, not after", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "200 millis",
          stale: false,
          failSafe: { window: "1 second" }
        })
        const entry = Title.make({ id: 1 })
        const failing = Effect.fail("database down" as const)
        yield* Effect.succeed("last good").pipe(Memo.cached(entry))
        yield* backend.advance(400)
        // Past its ttl the value is not served to readers that can load...
        assert.strictEqual(yield* Effect.succeed("new").pipe(Memo.cached(entry)), "new")
        yield* backend.advance(400)
        // ...but when the load fails, the last value answers.
        assert.strictEqual(yield* failing.pipe(Memo.cached(entry)), "new")
        // With no fail-safe value (invalidated hard), the failure goes through.
        yield* Memo.invalidate(entry)
        const exit = yield* Effect.exit(failing.pipe(Memo.cached(entry)))
        assert.isTrue(Exit.isFailure(exit))
        // Beyond the window, too.
        yield* Effect.succeed("again").pipe(Memo.cached(entry))
        yield* backend.advance(1600)
        assert.isTrue(Exit.isFailure(yield* Effect.exit(failing.pipe(Memo.cached(entry)))))
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("fail-safe soft timeout: a slow load answers the last value and stores its own later", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "200 millis",
          stale: false,
          failSafe: { window: "1 hour", softTimeout: "100 millis" }
        })
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("last good").pipe(Memo.cached(entry))
        yield* backend.advance(400)
        const finish = yield* Deferred.make<void>()
        const slow = Effect.as(Deferred.await(finish), "slow but new")
        const reader = yield* Effect.forkChild(slow.pipe(Memo.cached(entry)))
        yield* backend.advance(300)
        assert.strictEqual(yield* Fiber.join(reader), "last good")
        yield* Deferred.succeed(finish, undefined)
        // The slow load goes on in the background and stores its value.
        let seen = Option.none<string>()
        for (let i = 0; i < 200 && Option.isNone(seen); i++) {
          yield* backend.advance(20)
          seen = yield* Memo.get(entry)
        }
        assert.deepStrictEqual(seen, Option.some("slow but new"))
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("spans: a read, its load and fill, a hit, and an invalidation with its count", () =>
      Effect.gen(function* () {
        const spans: Array<Tracer.NativeSpan> = []
        const tracer = Tracer.make({
          span(options) {
            const span = new Tracer.NativeSpan(options)
            spans.push(span)
            return span
          }
        })
        const Title = Node.make(fresh("title"), { fields: { id: Schema.Number }, value: Schema.String })
        const entry = Title.make({ id: 1 })
        yield* Effect.gen(function* () {
          yield* Effect.succeed("v").pipe(Memo.cached(entry))
          yield* Effect.succeed("v").pipe(Memo.cached(entry))
          yield* Memo.invalidate(entry, { source: "test" })
        }).pipe(Effect.provideService(Tracer.Tracer, tracer))
        const summary = spans.map((span) => {
          const attributes = Object.fromEntries(span.attributes)
          return [
            span.name,
            attributes["cacheme.outcome"] ?? attributes["cacheme.count"] ?? attributes["cacheme.stored"]
          ]
        })
        assert.deepStrictEqual(summary, [
          ["cacheme.read", "miss"],
          ["cacheme.load", undefined],
          ["cacheme.fill", true],
          ["cacheme.read", "hit"],
          ["cacheme.invalidate", 1]
        ])
        for (const span of spans.filter((span) => span.name !== "cacheme.invalidate")) {
          assert.strictEqual(span.attributes.get("cacheme.node"), Title.name)
          assert.strictEqual(span.attributes.get("cacheme.key"), entry.key)
        }
        const invalidation = spans.find((span) => span.name === "cacheme.invalidate")!
        assert.strictEqual(invalidation.attributes.get("cacheme.target"), "key")
        assert.strictEqual(invalidation.attributes.get("cacheme.source"), "test")
        assert.isTrue(spans.every((span) => span.status._tag === "Ended"))
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}
