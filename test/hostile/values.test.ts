/**
 * Hostile tests of the per-value options and the hooks (docs/concepts.md, "Nodes"): a ttl decided from the value
 * together with `stale: true` ("for one more ttl") and a fail-safe window; values a JSON encoder cannot write under
 * a permissive value Schema (a loaded value must be returned, "not stored"; `Memo.set` must answer `InvalidValue`);
 * `onHit` / `onMiss` hooks that throw outside an Effect, return something that is not an Effect, interrupt
 * themselves ("a failure or defect is logged and dropped, never failing the read"). A hook runs inside the read
 * (the read answers once its hooks ended), as documented.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Exit, Option, Schema } from "effect"
import { Memo, Node } from "../../src/index.ts"
import { backends } from "../support/backends.ts"

let counter = 0
const fresh = (name: string) => `${name}-hostile-v-${process.pid}-${counter++}`

for (const backend of backends.filter((b) => b.name !== "tiered")) {
  describe.skipIf(backend.skip)(`hostile values and hooks: ${backend.name}`, () => {
    backend.test(
      "a ttl function with stale: true and a fail-safe is refused at Node.make (no read could bound it)",
      () =>
        Effect.sync(() => {
          assert.throws(
            () =>
              Node.make(fresh("title"), {
                fields: { id: Schema.Number },
                value: Schema.String,
                ttl: () => "100 millis",
                stale: true,
                failSafe: { window: "1 hour" }
              }),
            /give stale a duration/
          )
        })
    )

    backend.test("control: the same node with a fixed ttl stops serving stale after one more ttl", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          ttl: "100 millis",
          stale: true,
          failSafe: { window: "1 hour" }
        })
        const entry = Title.make({ id: 1 })
        yield* Effect.succeed("old").pipe(Memo.cached(entry))
        yield* backend.advance(1000)
        assert.deepStrictEqual(yield* Memo.get(entry), Option.none())
        assert.strictEqual(yield* Effect.succeed("new").pipe(Memo.cached(entry)), "new")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("held: a loaded value JSON cannot write (a bigint under Schema.Unknown) is returned, not stored", () =>
      Effect.gen(function* () {
        const Blob = Node.make(fresh("blob"), { fields: { id: Schema.Number }, value: Schema.Unknown })
        const entry = Blob.make({ id: 1 })
        const value = { id: 1n }
        const exit = yield* Effect.exit(Effect.succeed(value).pipe(Memo.cached(entry)))
        assert.deepStrictEqual(
          Exit.isSuccess(exit) ? exit.value : `${exit.cause}`.slice(0, 200),
          value,
          "the loader succeeded: its value must be returned (not stored)"
        )
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("held: a cyclic value under Schema.Unknown: the read returns it; set answers InvalidValue", () =>
      Effect.gen(function* () {
        const Blob = Node.make(fresh("blob"), { fields: { id: Schema.Number }, value: Schema.Unknown })
        const entry = Blob.make({ id: 1 })
        const cyclic: Record<string, unknown> = {}
        cyclic.self = cyclic
        const set = yield* Effect.exit(Memo.set(entry, cyclic))
        const read = yield* Effect.exit(Effect.succeed(cyclic).pipe(Memo.cached(entry)))
        assert.deepStrictEqual(
          {
            set: Exit.isFailure(set) ? (Exit.findErrorOption(set).pipe(Option.map((e) => e._tag)) ?? "defect") : "ok",
            read: Exit.isSuccess(read) && read.value === cyclic
          },
          { set: Option.some("InvalidValue" as const), read: true }
        )
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("hooks: a hook that throws before returning an Effect does not fail the read", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          onMiss: () => {
            throw new Error("thrown before any Effect")
          },
          onHit: () => {
            throw new Error("thrown before any Effect")
          }
        })
        const entry = Title.make({ id: 1 })
        assert.strictEqual(yield* Effect.succeed("v").pipe(Memo.cached(entry)), "v")
        assert.strictEqual(yield* Effect.succeed("w").pipe(Memo.cached(entry)), "v")
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("untyped input: a hook that returns a Promise, not an Effect, does not fail the read", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          // What a JavaScript caller (or an `as any`) writes: an async function.
          onMiss: (async () => undefined) as never
        })
        const entry = Title.make({ id: 1 })
        const exit = yield* Effect.exit(Effect.succeed("v").pipe(Memo.cached(entry)))
        assert.deepStrictEqual(exit, Exit.succeed("v"), `${Exit.isFailure(exit) ? exit.cause : ""}`.slice(0, 300))
      }).pipe(Effect.provide(backend.layer()))
    )

    backend.test("hooks: a hook that interrupts itself does not interrupt the read", () =>
      Effect.gen(function* () {
        const Title = Node.make(fresh("title"), {
          fields: { id: Schema.Number },
          value: Schema.String,
          onMiss: () => Effect.interrupt,
          onHit: () => Effect.interrupt
        })
        const entry = Title.make({ id: 1 })
        const first = yield* Effect.exit(Effect.succeed("v").pipe(Memo.cached(entry)))
        const second = yield* Effect.exit(Effect.succeed("w").pipe(Memo.cached(entry)))
        assert.deepStrictEqual([first, second], [Exit.succeed("v"), Exit.succeed("v")])
      }).pipe(Effect.provide(backend.layer()))
    )
  })
}
