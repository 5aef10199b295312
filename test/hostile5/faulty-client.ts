/**
 * An ioredis client for forced interleavings and lost commands (test/support/gated-client.ts, plus a failure): no
 * auto-pipelining, so each command goes through `sendCommand`, where the first command matching `when` is held
 * until `open()` (action "hold") or failed without ever being sent, as when the connection drops before the write
 * (action "fail"). Everything else passes at once.
 */
import { Deferred, Effect } from "effect"
import { Redis as IORedis } from "ioredis"

export type Match = (name: string, args: ReadonlyArray<string>) => boolean

export interface Faults {
  readonly arm: (when: Match, action: "hold" | "fail") => Effect.Effect<void>
  /** Resolves when the armed command has been held or failed. */
  readonly reached: Effect.Effect<void>
  /** Sends the held command. */
  readonly open: () => void
  /** Every command sent (name and arguments), in order. */
  readonly sent: Array<ReadonlyArray<string>>
}

export const faultyClient = (url: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      let when: Match | undefined
      let action: "hold" | "fail" = "hold"
      let reached = yield* Deferred.make<void>()
      let release: () => void = () => {}
      let opened = Promise.resolve()
      const sent: Array<ReadonlyArray<string>> = []
      const client = new IORedis(url, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 })
      client.on("error", () => {})
      const send = client.sendCommand.bind(client)
      ;(client as any).sendCommand = (command: any, stream?: any) => {
        const name = String(command.name).toLowerCase()
        const args = (command.args ?? []).map((arg: unknown) => String(arg))
        if (when?.(name, args)) {
          when = undefined
          Effect.runSync(Deferred.succeed(reached, undefined))
          if (action === "fail") {
            command.reject(new Error("Connection is closed."))
            return command.promise
          }
          opened.then(() => {
            sent.push([name, ...args])
            send(command, stream)
          })
          return command.promise
        }
        sent.push([name, ...args])
        return send(command, stream)
      }
      const faults: Faults = {
        arm: (condition, what) =>
          Effect.gen(function* () {
            reached = yield* Deferred.make<void>()
            opened = new Promise<void>((resolve) => {
              release = resolve
            })
            action = what
            when = condition
          }),
        reached: Effect.suspend(() => Deferred.await(reached)),
        open: () => release(),
        sent
      }
      return { client, faults }
    }),
    ({ client }) => Effect.sync(() => client.disconnect())
  )

/** The epoch script (`cachemeEpoch`) with op `merge`: the second step of a plain hold that replaced a held epoch. */
export const epochMerge: Match = (name, args) =>
  (name === "evalsha" || name === "eval") && args.includes("merge") && args.some((arg) => arg.includes("~s:e:"))
