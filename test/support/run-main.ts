/**
 * Runs the `main` export of a documentation block, the module given as the only argument, and prints its value
 * as JSON. The docs test starts one process per block, so that blocks that define the same node names never meet.
 */
import { pathToFileURL } from "node:url"
import { Effect } from "effect"

const file = process.argv[2]
if (file === undefined) throw new Error("usage: node test/support/run-main.ts <module.ts>")
const module: { readonly main?: unknown } = await import(pathToFileURL(file).href)
if (!Effect.isEffect(module.main)) throw new Error(`${file}: its main export is not an Effect`)
const value = await Effect.runPromise(module.main as Effect.Effect<unknown>)
process.stdout.write(`${JSON.stringify(value)}\n`)
