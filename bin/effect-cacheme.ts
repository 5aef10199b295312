#!/usr/bin/env node
/**
 * The `effect-cacheme` executable: `migrate`, `admin`, `invalidate` and `stats` (`--help` on each). Runs on
 * Node 24 directly (`node bin/effect-cacheme.ts`), no build step.
 */
import { NodeRuntime, NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import { Cli } from "../src/admin/index.ts"

Cli.run(process.argv.slice(2)).pipe(
  Effect.provide(NodeServices.layer),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
