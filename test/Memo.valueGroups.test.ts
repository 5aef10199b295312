/**
 * Groups named by the loaded value (`invalidatedByValue`, django-cacheme's `invalid_keys` reading
 * `cacheme_result`), through Memo, on every store and on a local Redis Cluster (ports 6474-6476).
 *
 * The interleavings are forced: the loader waits on a Deferred after it has read the "database", and the test
 * invalidates (hard or soft) a group the value is about to name while it waits. The value is returned to its
 * caller, and the next read must load again. An invalidation that resolved before the read started keeps the
 * value (the load saw the change). `Memo.cachedMany` and `Memo.set` follow the same rule; a group of a family the
 * node did not declare is refused (logged for a read, `InvalidValue` for `set`).
 *
 * Without the fill's epoch check (the fill recording the value's groups' stamps as it finds them), the
 * "while it loads" tests fail on every store: the second read is a hit on the value loaded before the change.
 * Without the reads' verification of the value's groups, the soft-invalidation and lost-index tests fail. On the
 * Cluster, where a group's epoch and stamp live on different slots, the steps of a fill and of an invalidation
 * are interleaved through a client whose commands can be held: each of the invalidation's two epoch bumps has a
 * test that fails without it.
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Exit, Fiber, Layer, Option, Schema } from "effect"
import { Cluster, Redis as IORedis } from "ioredis"
import { afterAll } from "vitest"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"
import { type Backend, backends, uniquePrefix } from "./support/backends.ts"
import { startCluster } from "./support/cluster.ts"
import { redisTraffic } from "./support/redis-traffic.ts"
import { Redis } from "./support/services.ts"

let counter = 0
const fresh = (name: string) => `${name}-vg-${process.pid}-${counter++}`

const Book = Schema.Struct({ id: Schema.Number, version: Schema.Number })
type Book = typeof Book.Type

/** A book family, and shelves whose value (their books) names the books' groups. */
const makeLibrary = () => {
  const BookGroup = InvalidNode.make(fresh("book"), { fields: { id: Schema.Number } })
  const AuthorGroup = InvalidNode.make(fresh("author"), { fields: { id: Schema.Number } })
  const Shelf = Node.make(fresh("shelf"), {
    fields: { shelf: Schema.Number },
    value: Schema.Array(Book),
    ttl: null,
    stale: false,
    invalidatedByValue: {
      families: [BookGroup],
      groups: (books) => books.map((book) => BookGroup.make({ id: book.id }))
    }
  })
  // The "database": a version per book, and which books each shelf holds.
  const versions = new Map<number, number>()
  const shelves = new Map<number, ReadonlyArray<number>>([
    [1, [1, 2]],
    [2, [3, 4]],
    [3, [2, 5]]
  ])
  const state = {
    loads: 0,
    gate: undefined as undefined | { started: Deferred.Deferred<void>; go: Deferred.Deferred<void> }
  }
  const booksOf = (shelf: number): Array<Book> =>
    (shelves.get(shelf) ?? []).map((id) => ({ id, version: versions.get(id) ?? 0 }))
  /** Reads the database, then waits at the gate if one is set (once). */
  const loadShelves = (ids: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      state.loads++
      const read = ids.map(booksOf)
      const gate = state.gate
      state.gate = undefined
      if (gate !== undefined) {
        yield* Deferred.succeed(gate.started, undefined)
        yield* Deferred.await(gate.go)
      }
      return read
    })
  const read = (shelf: number) =>
    Effect.map(loadShelves([shelf]), (all) => all[0]!).pipe(Memo.cached(Shelf.make({ shelf })))
  const readMany = (ids: ReadonlyArray<number>) =>
    Memo.cachedMany(
      ids.map((shelf) => Shelf.make({ shelf })),
      (fields) => loadShelves(fields.map((f) => f.shelf))
    )
  const gateNextLoad = Effect.gen(function* () {
    const gate = { started: yield* Deferred.make<void>(), go: yield* Deferred.make<void>() }
    state.gate = gate
    return gate
  })
  /** A write to a book: its version moves, then its group is invalidated. */
  const write = (id: number, mode: "hard" | "soft" = "hard") =>
    Effect.andThen(
      Effect.sync(() => versions.set(id, (versions.get(id) ?? 0) + 1)),
      InvalidNode.invalidate(BookGroup.make({ id }), { mode })
    )
  return { BookGroup, AuthorGroup, Shelf, versions, state, read, readMany, gateNextLoad, write }
}

const versionsOf = (books: ReadonlyArray<Book>) => books.map((book) => `${book.id}@${book.version}`).join(" ")

/** The Memo tests, for one store. */
const memoSuite = (backend: Backend) => {
  const test = (name: string, body: Effect.Effect<void, unknown, CacheStore.CacheStore>) =>
    backend.test(name, () => body.pipe(Effect.provide(backend.layer({ leaseTtl: "1 minute" }))), 60_000)

  for (const mode of ["hard", "soft"] as const)
    test(
      `an invalidation (${mode}) of a group the value names, while it loads: returned, never served; the next read loads again`,
      Effect.gen(function* () {
        const lib = makeLibrary()
        const gate = yield* lib.gateNextLoad
        const first = yield* Effect.forkChild(lib.read(1))
        yield* Deferred.await(gate.started)
        yield* lib.write(2, mode) // book 2 changes while shelf 1 (books 1 and 2) loads
        yield* Deferred.succeed(gate.go, undefined)
        assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0", "its caller gets what it loaded")
        assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1", "the next read loads again")
        assert.strictEqual(lib.state.loads, 2)
        assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
        assert.strictEqual(lib.state.loads, 2, "and that value is stored")
      })
    )

  test(
    "an invalidation that resolved before the read keeps the value; another group of the family, or another family, leaves it a hit",
    Effect.gen(function* () {
      const lib = makeLibrary()
      yield* lib.write(2)
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
      yield* lib.write(2) // the epoch exists now
      yield* lib.write(1)
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@1 2@2")
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@1 2@2")
      assert.strictEqual(lib.state.loads, 2)
      yield* lib.write(5) // same family, not on shelf 1: verified, still a hit
      yield* InvalidNode.invalidate(lib.AuthorGroup.make({ id: 1 }))
      for (let i = 0; i < 3; i++) assert.strictEqual(versionsOf(yield* lib.read(1)), "1@1 2@2")
      assert.strictEqual(lib.state.loads, 2)
      // A soft invalidation leaves the record in place (stale, for nodes that serve it): only its stamps tell.
      yield* lib.write(1, "soft")
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@2 2@2")
      assert.strictEqual(lib.state.loads, 3)
      yield* lib.write(2)
      assert.strictEqual(versionsOf(yield* lib.read(1)), "1@2 2@3")
      assert.strictEqual(lib.state.loads, 4)
    })
  )

  test(
    "Memo.cachedMany: a group invalidated while the batch loads keeps that value out; the next batch loads it again",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const gate = yield* lib.gateNextLoad
      const first = yield* Effect.forkChild(lib.readMany([1, 2, 3]))
      yield* Deferred.await(gate.started)
      yield* lib.write(2) // on shelves 1 and 3
      yield* Deferred.succeed(gate.go, undefined)
      assert.deepStrictEqual((yield* Fiber.join(first)).map(versionsOf), ["1@0 2@0", "3@0 4@0", "2@0 5@0"])
      const second = yield* lib.readMany([1, 2, 3])
      assert.deepStrictEqual(second.map(versionsOf), ["1@0 2@1", "3@0 4@0", "2@1 5@0"])
      assert.strictEqual(lib.state.loads, 2)
      // The batch's values are stored now (its second load came after the change).
      assert.deepStrictEqual((yield* lib.readMany([1, 2, 3])).map(versionsOf), second.map(versionsOf))
      assert.strictEqual(versionsOf(yield* lib.read(3)), "2@1 5@0")
      assert.strictEqual(lib.state.loads, 2)
    })
  )

  test(
    "Memo.set stores a value with the groups it names; a held group refuses it; a group of an undeclared family is InvalidValue",
    Effect.gen(function* () {
      const lib = makeLibrary()
      const store = yield* CacheStore.CacheStore
      const shelf = lib.Shelf.make({ shelf: 9 })
      assert.isTrue(yield* Memo.set(shelf, [{ id: 7, version: 0 }]))
      assert.deepStrictEqual(yield* Memo.get(shelf), Option.some([{ id: 7, version: 0 }]))
      yield* lib.write(8) // another book: still there
      assert.isTrue(Option.isSome(yield* Memo.get(shelf)))
      yield* lib.write(7)
      assert.isTrue(Option.isNone(yield* Memo.get(shelf)), "invalidating a group the value named removes it")
      // A committing write holds book 7: a value naming it is not stored.
      const group = `g:${lib.BookGroup.make({ id: 7 }).key}`
      yield* store.hold([group], "writer", 60_000)
      assert.isFalse(yield* Memo.set(shelf, [{ id: 7, version: 1 }]))
      assert.isTrue(Option.isNone(yield* Memo.get(shelf)))
      yield* store.releaseHold([group], "writer")
      assert.isTrue(yield* Memo.set(shelf, [{ id: 7, version: 1 }]))
      // A value naming a group of another family cannot be guarded: refused, nothing changes.
      const Other = Node.make(fresh("other-shelf"), {
        fields: { shelf: Schema.Number },
        value: Schema.Array(Book),
        invalidatedByValue: { families: [lib.BookGroup], groups: () => [lib.AuthorGroup.make({ id: 1 })] }
      })
      const refused = yield* Effect.exit(Memo.set(Other.make({ shelf: 1 }), [{ id: 1, version: 0 }]))
      assert.isTrue(Exit.isFailure(refused))
      if (Exit.isFailure(refused)) assert.include(String(refused.cause), "InvalidValue")
      assert.isTrue(Option.isNone(yield* Memo.get(Other.make({ shelf: 1 }))))
    })
  )

  test(
    "a read whose value names a group of an undeclared family is answered, not stored",
    Effect.gen(function* () {
      const lib = makeLibrary()
      let loads = 0
      const Other = Node.make(fresh("other-shelf"), {
        fields: { shelf: Schema.Number },
        value: Schema.Array(Book),
        invalidatedByValue: { families: [lib.BookGroup], groups: () => [lib.AuthorGroup.make({ id: 1 })] }
      })
      const read = Effect.sync(() => [{ id: 1, version: loads++ }]).pipe(Memo.cached(Other.make({ shelf: 1 })))
      assert.strictEqual((yield* read)[0]!.version, 0)
      assert.strictEqual((yield* read)[0]!.version, 1)
    })
  )
}

for (const backend of backends)
  describe.skipIf(backend.skip)(`Memo, groups named by the value: ${backend.name}`, () => memoSuite(backend))

describe.skipIf(backends[1]!.skip)("Memo, groups named by the value: round trips on Redis", () => {
  it.live("a hit is one MGET; after another group of the family changed, one verification, then one MGET again", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const lib = makeLibrary()
      yield* Effect.gen(function* () {
        yield* lib.read(1)
        const traffic = yield* redisTraffic(prefix)
        traffic.reset()
        yield* lib.read(1)
        assert.deepStrictEqual(traffic.commands(), { mget: 1 }, "a hit")
        yield* lib.write(5)
        traffic.reset()
        yield* lib.read(1)
        yield* Effect.sleep(50) // the rewrite, sent after the answer, lands
        assert.deepStrictEqual(traffic.commands(), { mget: 2, evalsha: 1 }, "the verifying hit: two reads, a rewrite")
        traffic.reset()
        yield* lib.read(1)
        assert.deepStrictEqual(traffic.commands(), { mget: 1 }, "one MGET again")
        assert.strictEqual(lib.state.loads, 1)
      }).pipe(Effect.provide(backends[1]!.layer({ prefix })))
    }).pipe(Effect.scoped)
  )
})

describe.skipIf(backends[1]!.skip)("Memo, groups named by the value: nothing about correctness in the index", () => {
  it.live("a group's index lost (evicted, say): invalidating the group still reaches the value that named it", () =>
    Effect.gen(function* () {
      const prefix = uniquePrefix()
      const lib = makeLibrary()
      const raw = yield* Effect.acquireRelease(
        Effect.sync(() => new IORedis(Redis.url)),
        (client) => Effect.sync(() => client.disconnect())
      )
      yield* Effect.gen(function* () {
        yield* lib.read(1)
        yield* Effect.promise(() => raw.del(`${prefix}~m:g:${lib.BookGroup.make({ id: 2 }).key}`))
        yield* lib.write(2)
        assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
        assert.strictEqual(lib.state.loads, 2)
      }).pipe(Effect.provide(backends[1]!.layer({ prefix })))
    }).pipe(Effect.scoped)
  )
})

// A local Redis Cluster on this file's own ports: every protocol step across masters.
const ports = [6474, 6475, 6476]
const local = await startCluster(ports, "the value-group Redis Cluster tests")
afterAll(() => local.stop())

const cluster: Backend = {
  name: "redis",
  skip: !local.ready,
  test: it.live,
  layer: (settings) =>
    Layer.unwrap(
      Effect.map(
        Effect.acquireRelease(
          Effect.sync(() => new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))),
          (client) => Effect.sync(() => client.disconnect())
        ),
        (client) => CacheStore.layerRedis({ client, prefix: settings?.prefix ?? uniquePrefix() })
      )
    ).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie),
  advance: (millis) => Effect.sleep(millis)
}

describe.skipIf(cluster.skip)("Memo, groups named by the value: Redis Cluster", () => memoSuite(cluster))

/**
 * A Cluster client whose commands can be held: `hold(match)` makes the next command `match` accepts wait until
 * the returned `go` is done (after telling `reached`). The store is built over it, as over any client.
 */
const holdingCluster = () => {
  const client = new Cluster(ports.map((port) => ({ host: "127.0.0.1", port })))
  type Match = (name: string, args: ReadonlyArray<unknown>) => boolean
  const pending: Array<{ match: Match; reached: () => void; go: Promise<void> }> = []
  const proxy = new Proxy(client, {
    get(target, property) {
      const value = (target as any)[property]
      if (typeof value !== "function") return value
      return (...args: Array<unknown>) => {
        const name = String(property)
        const at = pending.findIndex((one) => one.match(name, args))
        if (at === -1) return value.apply(target, args)
        const [held] = pending.splice(at, 1)
        held!.reached()
        return held!.go.then(() => value.apply(target, args))
      }
    }
  })
  const hold = (match: Match) =>
    Effect.gen(function* () {
      const reached = yield* Deferred.make<void>()
      const go = yield* Deferred.make<void>()
      pending.push({
        match,
        reached: () => Deferred.doneUnsafe(reached, Effect.void),
        go: Effect.runPromise(Deferred.await(go))
      })
      return { reached, go }
    })
  const layer = CacheStore.layerRedis({ client: proxy, prefix: uniquePrefix() }).pipe(
    Layer.provideMerge(CachemeConfig.layer({ leaseTtl: "1 minute" })),
    Layer.orDie
  )
  return { client, hold, layer }
}

describe.skipIf(cluster.skip)(
  "groups named by the value on a Redis Cluster: the steps across slots, interleaved",
  () => {
    // The fill of a value naming groups reads (or makes) their stamps, then checks the epochs, then writes the
    // record; an invalidation bumps the epoch, changes the stamp, bumps the epoch again, each on its own slot.
    const isStampRead = (name: string, args: ReadonlyArray<unknown>) =>
      name === "call" && args[0] === "SET" && String(args[1]).includes("~s:g:")
    const isFill = (name: string) => name === "cachemeFill"
    const isBump = (name: string) => name === "cachemeEpoch"

    it.live(
      "a group's stamp read after its change, the epoch checked before the second bump: refused (the first bump)",
      () =>
        Effect.gen(function* () {
          const { client, hold, layer } = holdingCluster()
          yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
          const lib = makeLibrary()
          yield* Effect.gen(function* () {
            yield* lib.read(3) // the family's epoch exists
            const book2 = `~s:g:${lib.BookGroup.make({ id: 2 }).key}`
            const stampRead = yield* hold((name, args) => isStampRead(name, args) && String(args[1]).endsWith(book2))
            const first = yield* Effect.forkChild(lib.read(1))
            yield* Deferred.await(stampRead.reached)
            // The invalidation: its stamp change done, the bump after it held back.
            let changed = false
            yield* hold((name) => {
              if (name === "cachemeInvalidateStamp") changed = true
              return false
            })
            const secondBump = yield* hold((name) => isBump(name) && changed)
            const invalidation = yield* Effect.forkChild(lib.write(2))
            yield* Effect.raceFirst(Deferred.await(secondBump.reached), Effect.asVoid(Fiber.await(invalidation)))
            // The fill now reads book 2's new stamp, then the epochs.
            yield* Deferred.succeed(stampRead.go, undefined)
            assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
            yield* Deferred.succeed(secondBump.go, undefined)
            yield* Fiber.join(invalidation)
            assert.strictEqual(
              versionsOf(yield* lib.read(1)),
              "1@0 2@1",
              "the value loaded before the change is not served"
            )
          }).pipe(Effect.provide(layer))
        }).pipe(Effect.scoped)
    )

    it.live(
      "a whole read between a hold's first bump and its marker, before the COMMIT: never served after the write (the second bump)",
      () =>
        Effect.gen(function* () {
          const { client, hold, layer } = holdingCluster()
          yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
          const lib = makeLibrary()
          yield* Effect.gen(function* () {
            const store = yield* CacheStore.CacheStore
            yield* lib.read(3)
            const group = `g:${lib.BookGroup.make({ id: 2 }).key}`
            // A write holds book 2's group before its COMMIT: the first bump, then the marker (held back here).
            const marker = yield* hold(
              (name, args) => name === "call" && args[0] === "SET" && String(args[2]).startsWith("!")
            )
            const holding = yield* Effect.forkChild(store.hold([group], "writer", 60_000))
            yield* Deferred.await(marker.reached)
            // A read now loads the row before the COMMIT and stores it with book 2's stamp as it stands.
            assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@0")
            // Its index member lost (the index is bookkeeping): the hold cannot remove the record, only kill it.
            const prefix = (yield* CacheStore.CacheStore).prefix
            yield* Effect.promise(() => client.del(`${prefix}~m:${group}`))
            yield* Deferred.succeed(marker.go, undefined)
            yield* Fiber.join(holding)
            // The COMMIT; the write resolves, its release still to come: a read now must not get the row before it.
            lib.versions.set(2, 1)
            assert.strictEqual(
              versionsOf(yield* lib.read(1)),
              "1@0 2@1",
              "the row read before the COMMIT is not served"
            )
            yield* store.releaseHold([group], "writer")
          }).pipe(Effect.provide(layer))
        }).pipe(Effect.scoped)
    )

    it.live("the record written after a whole invalidation that came after the fill's checks: dead on arrival", () =>
      Effect.gen(function* () {
        const { client, hold, layer } = holdingCluster()
        yield* Effect.addFinalizer(() => Effect.sync(() => client.disconnect()))
        const lib = makeLibrary()
        yield* Effect.gen(function* () {
          yield* lib.read(3)
          const fill = yield* hold(isFill)
          const first = yield* Effect.forkChild(lib.read(1))
          yield* Deferred.await(fill.reached)
          yield* lib.write(2) // bump, change, bump: all before the record is written with book 2's old stamp
          yield* Deferred.succeed(fill.go, undefined)
          assert.strictEqual(versionsOf(yield* Fiber.join(first)), "1@0 2@0")
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1", "the record is dead on arrival")
          assert.strictEqual(versionsOf(yield* lib.read(1)), "1@0 2@1")
          assert.strictEqual(lib.state.loads, 3)
        }).pipe(Effect.provide(layer))
      }).pipe(Effect.scoped)
    )
  }
)
