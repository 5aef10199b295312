/**
 * Client-side command counting, for any Redis client whose commands go through one promise-returning method
 * (ioredis 5 and 6: `Redis.prototype.sendCommand`; node-redis 5: `RedisClient.prototype.sendCommand`). It imports
 * no client, so the same counter serves ioredis 6 (effect-cacheme, root) and ioredis 5 / node-redis (bench/peers).
 *
 * Two figures per window:
 *
 * - `sent`: commands sent, one per `sendCommand` call (an `MGET` of three keys is one; an `EVALSHA` is one; an
 *   `EVALSHA` answered `NOSCRIPT` and resent as `EVAL` is two).
 * - `waits`: round trips a sequential caller waits for. A command sent while none of the counted commands is in
 *   flight starts a new round trip; one sent while another is still in flight overlaps it (commands issued
 *   together, in `Promise.all` or a pipeline, cost one wait). Meaningful for one operation at a time only.
 */

export interface Counts {
  readonly sent: number
  readonly waits: number
}

export interface Counter {
  /** Zeroes both figures. */
  readonly reset: () => void
  readonly read: () => Counts
  /** Clients (instances) whose commands are not counted: the benchmark's own connections. */
  readonly exclude: (client: object) => void
  /** Wraps `proto[method]` (idempotent per prototype and method): every call on a non-excluded `this` counts. */
  readonly install: (proto: object, method: string, commandsPerCall?: (args: ReadonlyArray<unknown>) => number) => void
}

const installed = Symbol.for("effect-cacheme/bench/round-trips")

export const makeCounter = (): Counter => {
  let sent = 0
  let waits = 0
  let inFlight = 0
  const excluded = new WeakSet<object>()
  const settle = () => {
    inFlight--
  }
  return {
    reset: () => {
      sent = 0
      waits = 0
    },
    read: () => ({ sent, waits }),
    exclude: (client) => {
      excluded.add(client)
    },
    install: (proto, method, commandsPerCall = () => 1) => {
      const target = proto as Record<string | symbol, any>
      const original = target[method] as (...args: Array<unknown>) => unknown
      if (typeof original !== "function") throw new Error(`no method ${method} to count`)
      if ((original as any)[installed]) return
      const wrapped = function (this: object, ...args: Array<unknown>) {
        const result = original.apply(this, args)
        if (excluded.has(this)) return result
        sent += commandsPerCall(args)
        if (inFlight === 0) waits++
        inFlight++
        if (result !== null && typeof result === "object" && typeof (result as Promise<unknown>).then === "function") {
          ;(result as Promise<unknown>).then(settle, settle)
        } else {
          settle()
        }
        return result
      }
      ;(wrapped as any)[installed] = true
      target[method] = wrapped
    }
  }
}

/** Walks up the prototype chain of `instance` to the object that owns `method`. */
export const ownerOf = (instance: object, method: string): object => {
  let proto: object | null = instance
  while (proto !== null && !Object.hasOwn(proto, method)) proto = Object.getPrototypeOf(proto)
  if (proto === null) throw new Error(`no ${method} on ${instance.constructor?.name}`)
  return proto
}
