/**
 * Counts what this process sends to Redis about one store's keys: socket writes (ioredis writes one pipeline, or
 * one command, per write; with auto-pipelining every command of one turn of the event loop goes in one write) and
 * commands (each `sendCommand` of an ioredis client, pipelined or not). Only traffic naming a key under `prefix`
 * counts, the tiered store's heartbeats (`prefix~h:...`) excepted: other connections and tests do not disturb
 * the figures.
 */
import { Socket } from "node:net"
import { Effect } from "effect"
import { Redis } from "ioredis"

export interface Traffic {
  /** Socket writes that named a key under the prefix. */
  readonly writes: () => number
  /** Commands that named a key under the prefix, by name (`mget`, `evalsha`, `set`, ...). */
  readonly commands: () => Record<string, number>
  readonly total: () => number
  readonly reset: () => void
}

const text = (value: unknown): string =>
  typeof value === "string" ? value : Buffer.isBuffer(value) ? value.toString("latin1") : String(value)

/** Patches `Socket.prototype.write` and `Redis.prototype.sendCommand` for the scope; restores them after. */
export const redisTraffic = (prefix: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const names = (raw: string) =>
        raw
          .split(prefix)
          .slice(1)
          .some((rest) => !rest.startsWith("~h:"))
      let writes = 0
      let commands: Record<string, number> = {}
      const originalWrite = Socket.prototype.write
      const originalSend = Redis.prototype.sendCommand
      ;(Socket.prototype as any).write = function (this: Socket, chunk: unknown, ...rest: Array<unknown>) {
        if (names(text(chunk))) writes++
        return (originalWrite as any).call(this, chunk, ...rest)
      }
      ;(Redis.prototype as any).sendCommand = function (this: Redis, command: any, ...rest: Array<unknown>) {
        const args: Array<unknown> = command?.args ?? []
        if (args.some((arg) => names(text(arg)))) {
          const name = String(command.name).toLowerCase()
          commands[name] = (commands[name] ?? 0) + 1
        }
        return (originalSend as any).call(this, command, ...rest)
      }
      const traffic: Traffic = {
        writes: () => writes,
        commands: () => ({ ...commands }),
        total: () => Object.values(commands).reduce((sum, n) => sum + n, 0),
        reset: () => {
          writes = 0
          commands = {}
        }
      }
      return { traffic, originalWrite, originalSend }
    }),
    ({ originalWrite, originalSend }) =>
      Effect.sync(() => {
        Socket.prototype.write = originalWrite
        Redis.prototype.sendCommand = originalSend
      })
  ).pipe(Effect.map(({ traffic }) => traffic))
