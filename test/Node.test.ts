import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { CacheStore, InvalidNode, Memo, Node } from "../src/index.ts"

describe("Node", () => {
  const Group = InvalidNode.make("node-test-group", { fields: { id: Schema.Number } })
  const UserNode = Node.make("node-test-user", {
    fields: { id: Schema.Number, lang: Schema.String },
    value: Schema.String,
    tags: ["users"],
    invalidatedBy: ({ id }) => [Group.make({ id })]
  })

  it("an instance has its key, its groups, and the node name among its tags", () => {
    const user = UserNode.make({ id: 1, lang: "en" })
    assert.strictEqual(user.key, "node-test-user:1:en")
    assert.deepStrictEqual(
      user.groups.map((group) => group.key),
      ["node-test-group:1"]
    )
    assert.deepStrictEqual(UserNode.tags, ["node-test-user", "users"])
    assert.strictEqual(Node.get("node-test-user"), UserNode)
  })

  it("make throws a typed error naming the field", () => {
    try {
      UserNode.make({ id: "1" as unknown as number, lang: "en" })
      assert.fail("make accepted a string id")
    } catch (error) {
      assert.instanceOf(error, Node.InvalidFields)
      assert.strictEqual((error as Node.InvalidFields).field, "id")
      assert.strictEqual((error as Node.InvalidFields).node, "node-test-user")
    }
  })

  it.effect("decode parses untrusted input with the error in the error channel", () =>
    Effect.gen(function* () {
      const ok = yield* UserNode.decode({ id: 2, lang: "fr" })
      assert.strictEqual(ok.key, "node-test-user:2:fr")
      const error = yield* Effect.flip(UserNode.decode({ id: 2, lang: 3 }))
      assert.strictEqual(error._tag, "InvalidFields")
      assert.strictEqual(error.field, "lang")
      const notAnObject = yield* Effect.flip(UserNode.decode("user 2"))
      assert.strictEqual(notAnObject._tag, "InvalidFields")
    })
  )

  it("a key may not be empty or start with the set marker", () => {
    const Weird = Node.make("node-test-weird", {
      fields: { k: Schema.String },
      value: Schema.Number,
      key: ({ k }) => k
    })
    assert.throws(() => Weird.make({ k: "~g:x" }), /reserved/)
    assert.throws(() => Weird.make({ k: "" }), /empty/)
  })

  it("the stamp changes with the value Schema and the version, not otherwise", () => {
    const a = Node.make("node-test-stamp", { fields: {}, value: Schema.String })
    const b = Node.make("node-test-stamp", { fields: {}, value: Schema.String, replace: true })
    const c = Node.make("node-test-stamp", { fields: {}, value: Schema.Number, replace: true })
    const d = Node.make("node-test-stamp", { fields: {}, value: Schema.String, version: 2, replace: true })
    assert.strictEqual(a.stamp, b.stamp)
    assert.notStrictEqual(a.stamp, c.stamp)
    assert.notStrictEqual(a.stamp, d.stamp)
  })

  it("group fields are validated too", () => {
    assert.throws(() => Group.make({ id: "x" as unknown as number }), /id/)
  })

  it("a second node with a name already made is a typed error, unless it replaces the first", () => {
    Node.make("node-test-twice", { fields: { id: Schema.Number }, value: Schema.String })
    assert.throws(
      () => Node.make("node-test-twice", { fields: { id: Schema.Number }, value: Schema.Number }),
      Node.DuplicateNode
    )
    const second = Node.make("node-test-twice", { fields: { id: Schema.Number }, value: Schema.Number, replace: true })
    assert.strictEqual(Node.get("node-test-twice"), second)
  })

  it.effect("a key, invalidatedBy or skip function that throws or returns a non-string is a typed error", () =>
    Effect.gen(function* () {
      const Throws = Node.make("node-test-throwing-key", {
        fields: { id: Schema.Number },
        value: Schema.String,
        key: ({ id }) => {
          if (id < 0) throw new Error("negative id")
          return id === 0 ? (null as unknown as string) : `k${id}`
        }
      })
      const thrown = yield* Effect.flip(Throws.decode({ id: -1 }))
      assert.strictEqual(thrown._tag, "InvalidFields")
      assert.match(thrown.message, /node-test-throwing-key.*negative id/)
      assert.match((yield* Effect.flip(Throws.decode({ id: 0 }))).message, /not a string/)
      const viaFn = Memo.fn(Throws, ({ id }) => Effect.succeed(`v${id}`))
      const failed = yield* Effect.flip(viaFn({ id: -1 }).pipe(Effect.provide(CacheStore.layerMemory())))
      assert.strictEqual(failed._tag, "InvalidFields")
      const BadGroups = Node.make("node-test-throwing-groups", {
        fields: { id: Schema.Number },
        value: Schema.String,
        invalidatedBy: () => {
          throw new Error("no groups today")
        },
        skip: () => false
      })
      assert.match((yield* Effect.flip(BadGroups.decode({ id: 1 }))).message, /invalidatedBy threw: no groups today/)
      const BadGroupKey = InvalidNode.make("node-test-bad-group-key", {
        fields: { id: Schema.Number },
        key: () => 5 as unknown as string
      })
      assert.match((yield* Effect.flip(BadGroupKey.makeExit({ id: 1 }))).message, /not a string/)
    })
  )
})
