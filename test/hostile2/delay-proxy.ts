/**
 * A TCP proxy in front of Redis that delays, by a fixed time and in order, everything Redis sends to the tiered
 * store's subscriber connection (`cacheme-tier-subscribe`): a slow but live coherence channel. Commands and the
 * other connections' replies pass at once. With a delay below the bound the tier keeps serving, so its
 * read-your-writes rests on the writes' own drops alone, and other stores' writes on the channel.
 */
import { createServer, type Server, Socket } from "node:net"
import { Effect } from "effect"

export interface DelayProxy {
  readonly url: string
  /** Changes the delay of the subscriber's messages (millis). */
  readonly delay: (millis: number) => void
}

export const delayProxy = (targetPort: number, initialMillis: number) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<DelayProxy & { readonly close: () => Promise<void> }>((resolve) => {
          let millis = initialMillis
          const sockets = new Set<Socket>()
          const server: Server = createServer((client) => {
            const upstream = new Socket()
            sockets.add(client)
            sockets.add(upstream)
            let subscriber = false
            // Chunks in order, each released no earlier than its due time and never before the one ahead of it.
            const queue: Array<{ readonly due: number; readonly chunk: Buffer }> = []
            let timer: NodeJS.Timeout | undefined
            const pump = () => {
              timer = undefined
              const now = performance.now()
              while (queue.length > 0 && queue[0]!.due <= now)
                if (!client.destroyed) client.write(queue.shift()!.chunk)
                else queue.shift()
              if (queue.length > 0) timer = setTimeout(pump, Math.max(0, queue[0]!.due - now))
            }
            for (const socket of [client, upstream]) {
              socket.on("error", () => {})
              socket.on("close", () => {
                sockets.delete(client)
                sockets.delete(upstream)
                if (timer !== undefined) clearTimeout(timer)
                client.destroy()
                upstream.destroy()
              })
            }
            client.on("data", (chunk: Buffer) => {
              if (!subscriber && chunk.toString("latin1").includes("cacheme-tier-subscribe")) subscriber = true
              upstream.write(chunk)
            })
            upstream.on("data", (chunk: Buffer) => {
              if (!subscriber || (millis === 0 && queue.length === 0)) {
                client.write(chunk)
                return
              }
              queue.push({ due: performance.now() + millis, chunk })
              if (timer === undefined) timer = setTimeout(pump, millis)
            })
            upstream.connect(targetPort, "127.0.0.1")
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              url: `redis://127.0.0.1:${port}`,
              delay: (next) => {
                millis = next
              },
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
