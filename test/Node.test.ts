import { assert, describe, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import { InvalidNode, Node } from "../src/index.ts"

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
    const b = Node.make("node-test-stamp", { fields: {}, value: Schema.String })
    const c = Node.make("node-test-stamp", { fields: {}, value: Schema.Number })
    const d = Node.make("node-test-stamp", { fields: {}, value: Schema.String, version: 2 })
    assert.strictEqual(a.stamp, b.stamp)
    assert.notStrictEqual(a.stamp, c.stamp)
    assert.notStrictEqual(a.stamp, d.stamp)
  })

  it("group fields are validated too", () => {
    assert.throws(() => Group.make({ id: "x" as unknown as number }), /id/)
  })
})
