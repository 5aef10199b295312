/**
 * The README's example is examples/readme.ts, word for word: this test keeps the two equal, and the example
 * typechecks with the rest of the suite and runs here.
 */
import { readFileSync } from "node:fs"
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { main } from "../examples/readme.ts"

describe("README", () => {
  it("shows examples/readme.ts verbatim", () => {
    const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8")
    const example = readFileSync(new URL("../examples/readme.ts", import.meta.url), "utf8")
    const block = readme.match(/```ts readme\n([\s\S]*?)```/)
    assert.isNotNull(block, "README has a ```ts readme block")
    assert.strictEqual(block![1], example)
  })

  it.effect("its example runs", () =>
    Effect.gen(function* () {
      const { first, second, removed } = yield* main
      assert.strictEqual(first.name, "user 1")
      assert.deepStrictEqual(second, first)
      assert.strictEqual(removed, 1)
    })
  )
})
