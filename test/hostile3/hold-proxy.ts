/**
 * A TCP proxy in front of Redis that can hold back replies: `holdNext(millis)` lets the next command a client sends
 * through, then holds every reply Redis sends back for `millis` (or until `release()`), when the held replies are
 * delivered in order. One client's network path stalling for a moment while Redis and every other client go on: its
 * command in flight times out on the client, and (ioredis sends one auto-pipeline at a time) the commands issued
 * meanwhile go out once the path is clear again.
 */
import { createServer, type Server, Socket } from "node:net"
import { Effect } from "effect"

export interface HoldProxy {
  readonly url: string
  /** Holds the replies from the next command sent through the proxy on, for `millis`. */
  readonly holdNext: (millis: number) => void
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
          let holdMillis = 0
          let timer: ReturnType<typeof setTimeout> | undefined
          let seen = 0
          const held: Array<{ readonly client: Socket; readonly chunk: Buffer }> = []
          const release = () => {
            if (timer !== undefined) clearTimeout(timer)
            timer = undefined
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
              if (armed && !holding) {
                holding = true
                timer = setTimeout(release, holdMillis)
              }
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
              holdNext: (millis) => {
                armed = true
                holdMillis = millis
                seen = 0
              },
              release,
              sinceHold: () => seen,
              close: () =>
                new Promise<void>((done) => {
                  release()
                  for (const socket of sockets) socket.destroy()
                  server.close(() => done())
                })
            })
          })
        })
    ),
    (proxy) => Effect.promise(() => proxy.close())
  )
