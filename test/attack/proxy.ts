/**
 * A TCP proxy in front of Redis for one app instance: `hold(true)` keeps Redis's replies from reaching the
 * client (the commands still reach Redis and run); `hold(false)` delivers what was held; `killAll()` closes every
 * connection (the replies held are lost; ioredis reconnects through the proxy and, by default, resends the
 * commands that had no reply).
 */
import { createServer, type Server, Socket } from "node:net"
import { Effect } from "effect"

export interface Proxy {
  readonly port: number
  readonly url: string
  readonly hold: (on: boolean) => void
  readonly killAll: () => void
  readonly connections: () => number
}

export const proxy = (targetPort = 6379) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<Proxy & { server: Server; sockets: Set<Socket> }>((resolve) => {
          const sockets = new Set<Socket>()
          let holding = false
          let opened = 0
          const flushers = new Set<() => void>()
          const server = createServer((client) => {
            opened++
            const upstream = new Socket()
            for (const socket of [client, upstream]) {
              sockets.add(socket)
              socket.on("error", () => {})
              socket.on("close", () => {
                sockets.delete(socket)
                client.destroy()
                upstream.destroy()
              })
            }
            const held: Array<Buffer> = []
            const flush = () => {
              while (held.length > 0 && !client.destroyed) client.write(held.shift()!)
            }
            flushers.add(flush)
            client.on("close", () => flushers.delete(flush))
            client.on("data", (chunk) => upstream.write(chunk))
            upstream.on("data", (chunk) => {
              if (holding || held.length > 0) held.push(chunk)
              else client.write(chunk)
            })
            upstream.connect(targetPort, "127.0.0.1")
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              server,
              sockets,
              port,
              url: `redis://127.0.0.1:${port}`,
              hold: (on) => {
                holding = on
                if (!on) for (const flush of flushers) flush()
              },
              killAll: () => {
                for (const socket of sockets) socket.destroy()
              },
              connections: () => opened
            })
          })
        })
    ),
    ({ server, sockets }) =>
      Effect.promise(
        () =>
          new Promise<void>((resolve) => {
            for (const socket of sockets) socket.destroy()
            server.close(() => resolve())
          })
      )
  )
