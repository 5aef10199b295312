/**
 * A TCP proxy in front of Redis that can hold back a connection's replies: `holdNext()` lets the next command a
 * client sends through, then holds every reply Redis sends back until the client sends another command (or the
 * test calls `release()`), when the held replies are delivered in order. One client's network path stalling for a
 * moment while Redis and every other client go on: its command in flight times out on the client, the next one
 * finds the path clear again.
 */
import { createServer, type Server, Socket } from "node:net"
import { Effect } from "effect"

export interface HoldProxy {
  readonly url: string
  /** Holds the replies to the next command sent through the proxy until the command after it. */
  readonly holdNext: () => void
  /** Delivers what is held and stops holding. */
  readonly release: () => void
  /** Commands (socket writes of clients) seen since `holdNext`. */
  readonly sinceHold: () => number
}

export const holdProxy = (targetPort: number) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<HoldProxy & { readonly close: () => Promise<void> }>((resolve) => {
          const sockets = new Set<Socket>()
          let armed = false
          let holding = false
          let seen = 0
          const held: Array<{ readonly client: Socket; readonly chunk: Buffer }> = []
          const release = () => {
            holding = false
            armed = false
            for (const { client, chunk } of held.splice(0)) if (!client.destroyed) client.write(chunk)
          }
          const server: Server = createServer((client) => {
            const upstream = new Socket()
            sockets.add(client)
            sockets.add(upstream)
            for (const socket of [client, upstream]) {
              socket.on("error", () => {})
              socket.on("close", () => {
                sockets.delete(client)
                sockets.delete(upstream)
                client.destroy()
                upstream.destroy()
              })
            }
            client.on("data", (chunk: Buffer) => {
              seen++
              if (holding) release()
              else if (armed) holding = true
              upstream.write(chunk)
            })
            upstream.on("data", (chunk: Buffer) => {
              if (holding) held.push({ client, chunk })
              else client.write(chunk)
            })
            upstream.connect(targetPort, "127.0.0.1")
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              url: `redis://127.0.0.1:${port}`,
              holdNext: () => {
                armed = true
                seen = 0
              },
              release,
              sinceHold: () => seen,
              close: () =>
                new Promise<void>((done) => {
                  for (const socket of sockets) socket.destroy()
                  server.close(() => done())
                })
            })
          })
        })
    ),
    (proxy) => Effect.promise(() => proxy.close())
  )
