/**
 * Adversarial regression tests of group and tag membership on Redis, through the public API only (nothing
 * here knows how the store lays out its keys).
 *
 * The guarantees under attack:
 *
 * - an invalidation reaches every live entry of its group or tag, whatever interleaving of reads, leases,
 *   fills and other invalidations came before it;
 * - a read that starts after an invalidation resolved never returns a value loaded before it.
 *
 * Every loader INCRs a Redis counter and returns the new value, so a value tells when it was loaded: a read
 * that starts after an invalidation resolved must return more than the counter held just before that
 * invalidation started.
 *
 * Two app instances share one prefix: two store layers, two clients. Instance A reaches Redis through a
 * latency proxy (a few millis each way, as an instance in another zone would), instance B directly. So B can
 * read, take a lease and register memberships several times over while A's next command is on the wire: the
 * interleavings that a late, unconditional clean-up of memberships loses to become likely instead of rare.
 *
 * 1. entries in two groups: invalidate G1 while B rereads, refill through B, invalidate G2, read;
 * 2. the same while a worker process (test/fixtures/membership-worker.ts) rereads the entries all along;
 * 3. group keys with newlines, colons, backslashes, NUL, glob characters, unicode, the empty key, and keys that
 *    are prefixes of each other: invalidate by key, refill, then each group must still count and drop the entry,
 *    and a group next to it must not;
 * 4. a tag and the node's own tag after group invalidations and refills;
 * 5. an entry whose slow load took part of its ttl: its group must reach it until the entry itself expires.
 *
 * Each test draws its randomness (proxy latency, pauses, keys, instances) from one seed, printed in its
 * assertion messages; replay with `CACHEME_MEMBERSHIP_SEED=<seed> vitest run test/protocol/membership.test.ts`.
 * A vitest run of an older version starting meanwhile could delete every `test:` key (its global setup); the tests notice (a canary
 * key) and say so instead of blaming the store.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createServer, type Server, Socket } from "node:net"
import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer, Schedule, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import { CachemeConfig, CacheStore, InvalidNode, Memo, Node } from "../../src/index.ts"
import { G1, G2, memberSettings, random, readMember } from "../fixtures/membership-worker.ts"
import { uniquePrefix } from "../support/backends.ts"
import { deleteRedisPrefix, lastJson, missing, Redis } from "../support/services.ts"

const skip = await missing(Redis)

/** The seed of a test: `CACHEME_MEMBERSHIP_SEED` when set (to replay a failure), else a fresh one. */
const seedOf = (): number => {
  const fixed = process.env.CACHEME_MEMBERSHIP_SEED
  return fixed !== undefined && fixed !== "" ? Number(fixed) >>> 0 : Math.floor(Math.random() * 2 ** 32) >>> 0
}

const replay = (seed: number) =>
  `seed ${seed} (replay: CACHEME_MEMBERSHIP_SEED=${seed} vitest run test/protocol/membership.test.ts)`

type Store = CacheStore.CacheStore
type Run = <A, E>(effect: Effect.Effect<A, E, Store>) => Effect.Effect<A, E>

/** A seeded pause of 0 to `max` millis. */
const pause = (next: () => number, max: number) => Effect.sleep(Math.floor(next() * (max + 1)))

/**
 * A TCP proxy to Redis that holds every chunk for `delay()` millis in each direction, keeping their order (a
 * chunk never overtakes an earlier one when the delay shrinks). It knows nothing of what goes through it.
 */
const latencyProxy = (delay: () => number) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<{ readonly server: Server; readonly sockets: Set<Socket>; readonly port: number }>((resolve) => {
          const target = new URL(Redis.url)
          const sockets = new Set<Socket>()
          const forward = (from: Socket, to: Socket) => {
            const queue: Array<{ readonly due: number; readonly chunk: Buffer }> = []
            let scheduled = false
            const schedule = (millis: number) => {
              scheduled = true
              setTimeout(flush, Math.max(0, millis))
            }
            const flush = () => {
              scheduled = false
              const now = performance.now()
              while (queue.length > 0 && queue[0]!.due <= now) to.write(queue.shift()!.chunk)
              if (queue.length > 0) schedule(queue[0]!.due - now)
            }
            from.on("data", (chunk: Buffer) => {
              const millis = delay()
              if (millis <= 0 && queue.length === 0) {
                to.write(chunk)
                return
              }
              const due = Math.max(performance.now() + millis, queue.at(-1)?.due ?? 0)
              queue.push({ due, chunk })
              if (!scheduled) schedule(due - performance.now())
            })
          }
          const server = createServer((client) => {
            const upstream = new Socket()
            for (const socket of [client, upstream]) {
              sockets.add(socket)
              socket.setNoDelay(true)
              socket.on("error", () => {})
              socket.on("close", () => {
                sockets.delete(socket)
                client.destroy()
                upstream.destroy()
              })
            }
            forward(client, upstream)
            forward(upstream, client)
            upstream.connect(Number(target.port || 6379), target.hostname)
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            resolve({ server, sockets, port: typeof address === "object" && address !== null ? address.port : 0 })
          })
        })
    ),
    ({ server, sockets }) =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => resolve())
          })
      )
  )

interface Harness {
  /** Instance A: its own store layer and client, behind the latency proxy. */
  readonly A: Run
  /** Instance B: another store layer and client over the same prefix, straight to Redis. */
  readonly B: Run
  /** A raw client for counters and flags (never for the store's keys). */
  readonly redis: IORedis
  readonly prefix: string
  /** A key for a counter or flag, outside the store's prefix. */
  readonly key: (name: string) => string
  /** Sets how long A's link holds each chunk, each way (millis). */
  readonly setDelay: (millis: number) => void
  /** Fails the test with an explanation when another run's global setup deleted this test's keys. */
  readonly checkUndisturbed: Effect.Effect<void>
}

/**
 * Two app instances over one fresh prefix (A behind a proxy adding `delayMillis` each way, until `setDelay`);
 * every key the test wrote goes when the test's scope closes.
 */
const harness = (delayMillis: number, settings: CachemeConfig.Input = memberSettings) =>
  Effect.gen(function* () {
    let delay = delayMillis
    const prefix = uniquePrefix()
    const counters = uniquePrefix()
    yield* Effect.addFinalizer(() =>
      Effect.promise(() => Promise.all([deleteRedisPrefix(prefix), deleteRedisPrefix(counters)]).catch(() => []))
    )
    const redis = yield* Effect.acquireRelease(
      Effect.sync(() => new IORedis(Redis.url)),
      (client) => Effect.sync(() => client.disconnect())
    )
    // A vitest run of an older version starting meanwhile could sweep every `test:` key (its global setup): say so, rather than
    // report what the sweep did as the store's fault.
    const canary = `${counters}canary`
    yield* Effect.promise(() => redis.set(canary, "1", "PX", 600_000))
    const proxy = yield* latencyProxy(() => delay)
    const instance = (url: string) =>
      Layer.build(
        CacheStore.layerRedis({ url, prefix }).pipe(Layer.provideMerge(CachemeConfig.layer(settings)), Layer.orDie)
      )
    const a = yield* instance(`redis://127.0.0.1:${proxy.port}`)
    const b = yield* instance(Redis.url)
    const harness: Harness = {
      A: (effect) => Effect.provide(effect, a),
      B: (effect) => Effect.provide(effect, b),
      redis,
      prefix,
      key: (name) => `${counters}${name}`,
      setDelay: (millis) => {
        delay = millis
      },
      checkUndisturbed: Effect.promise(() => redis.exists(canary)).pipe(
        Effect.flatMap((exists) =>
          exists === 1
            ? Effect.void
            : Effect.die(
                new Error("another vitest run's global setup deleted this test's keys meanwhile: run this file alone")
              )
        )
      )
    }
    return harness
  })

/** The counter's value (0 when unset). */
const counterValue = (redis: IORedis, key: string) =>
  Effect.promise(() => redis.get(key)).pipe(Effect.map((value) => (value === null ? 0 : Number(value))))

/** What a loop saw. */
interface Tally {
  iterations: number
  /** Reads that started after an invalidation resolved and returned a value loaded before it started. */
  staleReads: number
  /** Entries that held a value and that an invalidation did not reach. */
  missedEntries: number
  readonly examples: Array<string>
}

const newTally = (): Tally => ({ iterations: 0, staleReads: 0, missedEntries: 0, examples: [] })

const note = (tally: Tally, example: string) => {
  if (tally.examples.length < 4) tally.examples.push(example)
}

/** Counts a read that started after an invalidation resolved: its value must be newer than `before`. */
const checkRead = (tally: Tally, where: string, value: number, before: number) => {
  if (value > before) return
  tally.staleReads++
  note(tally, `${where}: read ${value}, loaded before the invalidation (counter ${before})`)
}

/** Counts the entries an invalidation missed: it reached `count` of the `expected` entries holding a value. */
const checkCount = (tally: Tally, where: string, count: number, expected: number) => {
  if (count >= expected) return
  tally.missedEntries += expected - count
  note(tally, `${where}: invalidated ${count} of ${expected} entries`)
}

const verdict = (tally: Tally, seed: number, extra = "") =>
  `${replay(seed)}: ${tally.staleReads} stale reads, ${tally.missedEntries} missed entries in ` +
  `${tally.iterations} iterations${extra}; first: ${tally.examples.join(" | ") || "none"}`

/**
 * Runs `invalidation` through A (after a seeded pause when `jitter`) while B runs `reread` over and over, with
 * seeded pauses, until the invalidation resolved: B's reads, leases, fills and registrations land at every point
 * of it. Returns what the invalidation returned.
 */
const whileRereading = <A, E>(
  h: Harness,
  next: () => number,
  jitter: boolean,
  invalidation: Effect.Effect<A, E, Store>,
  reread: Effect.Effect<unknown, never, Store>
) =>
  Effect.gen(function* () {
    let done = false
    const [result] = yield* Effect.all(
      [
        (jitter ? pause(next, 3) : Effect.void).pipe(
          Effect.andThen(h.A(invalidation)),
          Effect.ensuring(
            Effect.sync(() => {
              done = true
            })
          )
        ),
        Effect.gen(function* () {
          do {
            if (jitter && next() < 0.5) yield* pause(next, 1)
            yield* h.B(reread)
          } while (!done)
        })
      ],
      { concurrency: "unbounded" }
    )
    return result
  })

/**
 * One round on entry `id` of {@link MemberNode}: invalidate G1 through A while B rereads the entry, read it
 * through B (reload and refill: its memberships are registered again), then invalidate G2 through A (half the
 * time while B rereads, else alone: then it must count the entry) and read through either instance. Each read
 * after an invalidation resolved must be newer than the counter before it started.
 */
const twoGroupRound = (options: {
  readonly h: Harness
  readonly tally: Tally
  readonly next: () => number
  readonly id: number
  readonly where: string
  readonly versionKey: string
  /** Whether G2's invalidation must find the entry holding a value (false when another process may hold it). */
  readonly exactCounts: boolean
}) =>
  Effect.gen(function* () {
    const { h, tally, next, id, where, versionKey } = options
    const read = readMember(h.redis, versionKey, id)
    const jitter = next() < 0.5

    const v = yield* counterValue(h.redis, versionKey)
    yield* whileRereading(h, next, jitter, InvalidNode.invalidate(G1.make({ id })), read)
    checkRead(tally, `${where}, after G1`, yield* h.B(read), v)

    const c = yield* counterValue(h.redis, versionKey)
    if (next() < 0.5) {
      // B rereads during G2's invalidation too. Its reads may replace the invalidated value before the store
      // counts it, so only the reads are checked.
      yield* whileRereading(h, next, jitter, InvalidNode.invalidate(G2.make({ id })), read)
    } else {
      if (jitter) yield* pause(next, 3)
      const count = yield* h.A(InvalidNode.invalidate(G2.make({ id })))
      if (options.exactCounts) checkCount(tally, `${where}, G2`, count, 1)
    }
    checkRead(tally, `${where}, after G2`, yield* (next() < 0.5 ? h.A : h.B)(read), c)
  })

/** A worker process (test/fixtures/membership-worker.ts) that rereads `keys` entries until told to stop. */
const startWorker = (h: Harness, versionKey: string, seed: number, keys: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const stopKey = h.key("stop")
      const readyKey = h.key("ready")
      const child = spawn(
        process.execPath,
        [
          "test/fixtures/membership-worker.ts",
          Redis.url,
          h.prefix,
          versionKey,
          String(seed),
          stopKey,
          readyKey,
          String(keys)
        ],
        { stdio: ["ignore", "pipe", "pipe"] }
      )
      let stdout = ""
      let stderr = ""
      child.stdout!.on("data", (chunk) => {
        stdout += String(chunk)
      })
      child.stderr!.on("data", (chunk) => {
        stderr += String(chunk)
      })
      const exited = new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) resolve(child.exitCode)
        else child.once("exit", (code) => resolve(code))
      })
      return { child, stopKey, readyKey, exited, output: () => ({ stdout, stderr }) }
    }),
    // Whatever happened, the worker is stopped: by its flag, or by its pid if it does not stop on its own.
    ({ child, stopKey, exited }) =>
      Effect.promise(async () => {
        await h.redis.set(stopKey, "1", "PX", 60_000).catch(() => undefined)
        const stopped = await Promise.race([
          exited.then(() => true),
          new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000))
        ])
        if (!stopped && child.pid !== undefined) (child as ChildProcess).kill("SIGKILL")
      })
  )

/**
 * How far A is from Redis in one iteration, each way: a quarter of the iterations run on a local link, the rest
 * 1 to 3 ms away.
 */
const linkDelay = (next: () => number) => (next() < 0.25 ? 0 : 1 + Math.floor(next() * 3))

describe.skipIf(skip)("group and tag membership under interleavings (Redis, two app instances)", () => {
  it.live(
    "1. an entry in two groups: after G1's invalidation and a refill through the other instance, G2's invalidation still reaches it",
    () =>
      Effect.gen(function* () {
        const seed = seedOf()
        const next = random(seed)
        const h = yield* harness(0)
        const versionKey = h.key("version")
        const keys = 4
        const tally = newTally()
        for (let id = 0; id < keys; id++) yield* h.A(readMember(h.redis, versionKey, id))
        for (let i = 0; i < 150; i++) {
          tally.iterations++
          const id = Math.floor(next() * keys)
          const delay = linkDelay(next)
          h.setDelay(delay)
          yield* twoGroupRound({
            h,
            tally,
            next,
            id,
            where: `iteration ${i} (A ${delay} ms away), key ${id}`,
            versionKey,
            exactCounts: true
          })
        }
        yield* h.checkUndisturbed
        assert.strictEqual(tally.staleReads + tally.missedEntries, 0, verdict(tally, seed))
      }),
    60_000
  )

  it.live(
    "2. the same across processes: a worker rereads the entries while this process invalidates G1, then G2",
    () =>
      Effect.gen(function* () {
        const seed = seedOf()
        const next = random(seed)
        const h = yield* harness(0)
        const versionKey = h.key("version")
        const keys = 3
        const worker = yield* startWorker(h, versionKey, seed, keys)
        // The worker has read every entry once: wait for its flag (bounded), failing early if it died.
        yield* Effect.promise(async () => {
          if (worker.child.exitCode !== null) return "exited"
          return (await h.redis.exists(worker.readyKey)) === 1 ? "ready" : "waiting"
        }).pipe(
          Effect.flatMap((state) =>
            state === "ready"
              ? Effect.void
              : state === "exited"
                ? Effect.die(new Error(`the worker exited before it was ready: ${worker.output().stderr}`))
                : Effect.fail("waiting" as const)
          ),
          Effect.retry({ schedule: Schedule.spaced("50 millis"), times: 600 }),
          Effect.catch(() => Effect.die(new Error(`the worker was not ready within 30 s: ${worker.output().stderr}`)))
        )
        const tally = newTally()
        for (let i = 0; i < 200; i++) {
          tally.iterations++
          const id = Math.floor(next() * keys)
          const delay = linkDelay(next)
          h.setDelay(delay)
          yield* twoGroupRound({
            h,
            tally,
            next,
            id,
            where: `iteration ${i} (A ${delay} ms away), key ${id}`,
            versionKey,
            exactCounts: false
          })
        }
        yield* Effect.promise(() => h.redis.set(worker.stopKey, "1", "PX", 60_000))
        const code = yield* Effect.promise(() =>
          Promise.race([
            worker.exited,
            new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 20_000))
          ])
        )
        const { stdout, stderr } = worker.output()
        assert.strictEqual(code, 0, `the worker did not stop cleanly (${code}): ${stderr}`)
        const { reads, loads } = lastJson<{ reads: number; loads: number }>(stdout)
        assert.isAbove(reads, 0, "the worker read while the invalidations ran")
        yield* h.checkUndisturbed
        assert.strictEqual(
          tally.staleReads,
          0,
          verdict(tally, seed, ` (the worker made ${reads} reads and ${loads} loads meanwhile)`)
        )
      }),
    90_000
  )

  it.live(
    "3. hostile group keys: after an entry is invalidated by key and refilled, each of its groups still reaches it",
    () =>
      Effect.gen(function* () {
        const seed = seedOf()
        const next = random(seed)
        const cases: ReadonlyArray<readonly [string, string]> = [
          ["\n", ""],
          ["a", "a:b"],
          ["a:b", "a"],
          ["a\nb", "a"],
          ["x\ng:y", "y"],
          ["\\", "\\\\"],
          [":", "::"],
          ["", ":"],
          ["ü", "日本語 🔥"],
          ["\u0000", "\r\n"],
          ["g:x", "t:x"],
          ["*", "?[a]"],
          ["~", " "]
        ]
        const failures: Array<string> = []
        for (const [index, [x, y]] of cases.entries()) {
          const delay = 2 + Math.floor(next() * 3)
          const where = `case ${index} (X ${JSON.stringify(x)}, Y ${JSON.stringify(y)}, A ${delay} ms away)`
          // A group next to X (X extended): never reached through X.
          const z = `${x}:b` === y ? `${x}:c` : `${x}:b`
          yield* Effect.scoped(
            Effect.gen(function* () {
              const h = yield* harness(delay)
              let loads = 0
              let bystanderLoads = 0
              const entry = Hostile.make({ id: index, x, y })
              const read = (run: Run) => run(Effect.sync(() => ++loads).pipe(Memo.cached(entry)))
              const readBystander = (run: Run) =>
                run(Effect.sync(() => ++bystanderLoads).pipe(Memo.cached(Bystander.make({ id: index, z }))))
              const group = (key: string) => InvalidNode.invalidate(Hostiles.make({ key }))
              const expect = (what: string, actual: number, expected: number) => {
                if (actual !== expected) failures.push(`${where}: ${what} was ${actual}, expected ${expected}`)
              }

              yield* read(h.B)
              yield* readBystander(h.B)
              yield* read(h.A)
              expect("loads after a miss and a hit", loads, 1)
              expect("Memo.invalidate of the entry", yield* h.A(Memo.invalidate(entry)), 1)
              yield* read(h.B)
              expect("loads after the entry was invalidated by key", loads, 2)

              expect("InvalidNode.invalidate(X)", yield* h.A(group(x)), 1)
              yield* read(h.B)
              expect("loads after X was invalidated", loads, 3)
              yield* readBystander(h.B)
              expect(`loads of the entry in ${JSON.stringify(z)} after X was invalidated`, bystanderLoads, 1)

              expect("InvalidNode.invalidate(Y)", yield* h.A(group(y)), 1)
              yield* read(h.B)
              expect("loads after Y was invalidated", loads, 4)

              expect(`InvalidNode.invalidate(${JSON.stringify(z)})`, yield* h.A(group(z)), 1)
              yield* readBystander(h.A)
              expect(`loads of the entry in ${JSON.stringify(z)} after its group was invalidated`, bystanderLoads, 2)
              yield* h.checkUndisturbed
            })
          )
        }
        assert.deepStrictEqual(failures, [], `${replay(seed)}: ${failures.length} failures`)
      }),
    60_000
  )

  it.live(
    "4. tags: after a group invalidation and a refill through the other instance, the tag and the node still reach every entry",
    () =>
      Effect.gen(function* () {
        const seed = seedOf()
        const next = random(seed)
        const h = yield* harness(0)
        const versionKey = h.key("version")
        const keys = 3
        const ids = Array.from({ length: keys }, (_, id) => id)
        const read = (id: number) =>
          Effect.promise(() => h.redis.incr(versionKey)).pipe(Memo.cached(Tagged.make({ id })))
        const tally = newTally()
        for (const id of ids) yield* h.A(read(id))
        for (let i = 0; i < 120; i++) {
          tally.iterations++
          const id = Math.floor(next() * keys)
          const delay = linkDelay(next)
          h.setDelay(delay)
          const where = `iteration ${i} (A ${delay} ms away), key ${id}`
          const jitter = next() < 0.5

          const v = yield* counterValue(h.redis, versionKey)
          yield* whileRereading(h, next, jitter, InvalidNode.invalidate(TaggedGroup.make({ id })), read(id))
          checkRead(tally, `${where}, after the group`, yield* h.B(read(id)), v)
          // Every entry holds a value before the tag's invalidation (the others are hits).
          yield* Effect.forEach(ids, (other) => h.B(read(other)), { concurrency: "unbounded", discard: true })

          const c = yield* counterValue(h.redis, versionKey)
          const byNode = next() < 0.3
          const invalidation = byNode ? Memo.invalidateNode(Tagged) : Memo.invalidateTag(extraTag)
          if (next() < 0.5) {
            // B rereads during the tag's invalidation too: only the reads are checked (see twoGroupRound).
            yield* whileRereading(h, next, jitter, invalidation, read(Math.floor(next() * keys)))
          } else {
            if (jitter) yield* pause(next, 3)
            const count = yield* h.A(invalidation)
            checkCount(tally, `${where}, ${byNode ? "Memo.invalidateNode" : "Memo.invalidateTag"}`, count, keys)
          }
          for (const other of ids) {
            checkRead(tally, `${where}, key ${other} after the tag`, yield* (next() < 0.5 ? h.A : h.B)(read(other)), c)
          }
        }
        yield* h.checkUndisturbed
        assert.strictEqual(tally.staleReads + tally.missedEntries, 0, verdict(tally, seed))
      }),
    60_000
  )

  it.live(
    "5. ttl: an entry whose load took part of its life is still reached by its group until the entry expires",
    () =>
      Effect.gen(function* () {
        const seed = seedOf()
        const next = random(seed)
        const h = yield* harness(0)
        const versionKey = h.key("version")
        // Entry 0 loads slowly (900 ms of its 1.5 s ttl); entry 1, in the same group, loads at once.
        const read = (run: Run, id: number, group: number) =>
          run(
            (id === 0 ? Effect.sleep(900) : Effect.void).pipe(
              Effect.andThen(Effect.promise(() => h.redis.incr(versionKey))),
              Memo.cached(Slow.make({ id, group }))
            )
          )
        const tally = newTally()
        for (let i = 0; i < 2; i++) {
          tally.iterations++
          const where = `iteration ${i}`
          const [loader, other, invalidator, reader] = Array.from({ length: 4 }, () => (next() < 0.5 ? h.A : h.B))
          const started = Date.now()
          yield* read(loader!, 0, i)
          // Past the entry's ttl counted from when its load started, well before its ttl counted from its fill.
          yield* Effect.sleep(Math.max(0, started + 1_700 - Date.now()))
          yield* read(other!, 1, i)
          const c = yield* counterValue(h.redis, versionKey)
          const count = yield* invalidator!(InvalidNode.invalidate(SlowGroup.make({ group: i })))
          const value = yield* read(reader!, 0, i)
          const elapsed = Date.now() - started
          checkCount(tally, `${where} (${elapsed} ms after the slow load started)`, count, 2)
          checkRead(tally, `${where}, the slow entry (${elapsed} ms after its load started)`, value, c)
        }
        yield* h.checkUndisturbed
        assert.strictEqual(tally.staleReads + tally.missedEntries, 0, verdict(tally, seed))
      }),
    30_000
  )
})

/** Groups whose key is whatever string the test gives. */
const Hostiles = InvalidNode.make("membership-hostile", { fields: { key: Schema.String }, key: ({ key }) => key })

const Hostile = Node.make("membership-hostile-entry", {
  fields: { id: Schema.Number, x: Schema.String, y: Schema.String },
  value: Schema.Number,
  key: ({ id }) => `membership-hostile-entry:${id}`,
  ttl: null,
  stale: false,
  invalidatedBy: ({ x, y }) => [Hostiles.make({ key: x }), Hostiles.make({ key: y })]
})

const Bystander = Node.make("membership-hostile-bystander", {
  fields: { id: Schema.Number, z: Schema.String },
  value: Schema.Number,
  key: ({ id }) => `membership-hostile-bystander:${id}`,
  ttl: null,
  stale: false,
  invalidatedBy: ({ z }) => [Hostiles.make({ key: z })]
})

const extraTag = "membership-extra-tag"
const TaggedGroup = InvalidNode.make("membership-tagged-group", { fields: { id: Schema.Number } })

const Tagged = Node.make("membership-tagged", {
  fields: { id: Schema.Number },
  value: Schema.Number,
  ttl: null,
  stale: false,
  tags: [extraTag],
  invalidatedBy: ({ id }) => [TaggedGroup.make({ id })]
})

const SlowGroup = InvalidNode.make("membership-slow-group", { fields: { group: Schema.Number } })

/** Entries that live 1.5 s (no stale window), in the group their fields name. */
const Slow = Node.make("membership-slow", {
  fields: { id: Schema.Number, group: Schema.Number },
  value: Schema.Number,
  ttl: "1500 millis",
  stale: false,
  invalidatedBy: ({ group }) => [SlowGroup.make({ group })]
})
