/**
 * An ioredis client for forced interleavings: no auto-pipelining, so each command goes through `sendCommand`,
 * where the first command matching `gate.when` is held (after `gate.reached` is signalled) until `open()` is
 * called. Everything else passes at once.
 */
import { Deferred, Effect } from "effect"
import { Redis as IORedis } from "ioredis"

export interface Gate {
  /** Arms the gate for the next command matching `when` (name in lower case, arguments as strings). */
  readonly arm: (when: (name: string, args: ReadonlyArray<string>) => boolean) => Effect.Effect<void>
  /** Resolves when the armed command has been held. */
  readonly reached: Effect.Effect<void>
  /** Sends the held command. */
  readonly open: () => void
}

export const gatedClient = (url: string) =>
  Effect.acquireRelease(
    Effect.gen(function* () {
      let when: ((name: string, args: ReadonlyArray<string>) => boolean) | undefined
      let reached = yield* Deferred.make<void>()
      let release: () => void = () => {}
      let opened = Promise.resolve()
      const client = new IORedis(url, { autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 1 })
      client.on("error", () => {})
      const send = client.sendCommand.bind(client)
      ;(client as any).sendCommand = (command: any, stream?: any) => {
        const args = (command.args ?? []).map((arg: unknown) => String(arg))
        if (when?.(String(command.name).toLowerCase(), args)) {
          when = undefined
          Effect.runSync(Deferred.succeed(reached, undefined))
          opened.then(() => send(command, stream))
          return command.promise
        }
        return send(command, stream)
      }
      const gate: Gate = {
        arm: (condition) =>
          Effect.gen(function* () {
            reached = yield* Deferred.make<void>()
            opened = new Promise<void>((resolve) => {
              release = resolve
            })
            when = condition
          }),
        reached: Effect.suspend(() => Deferred.await(reached)),
        open: () => release()
      }
      return { client, gate }
    }),
    ({ client }) => Effect.sync(() => client.disconnect())
  )
