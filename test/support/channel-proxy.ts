/**
 * A TCP proxy in front of Redis that tells the tiered store's connections apart (by the connection name they
 * set: `cacheme-tier-subscribe`, `cacheme-tier-read`; anything else is `other`) and can, per role, stop
 * forwarding what Redis sends: `hold` keeps it and delivers it when the role is set back to `pass`; `drop`
 * throws it away (the connection stays open: a channel that silently loses messages). Commands always reach
 * Redis.
 */
import { createServer, type Server, Socket } from "node:net"
import { Effect } from "effect"

export type Role = "subscribe" | "read" | "other"
export type Mode = "pass" | "hold" | "drop"

export interface ChannelProxy {
  readonly url: string
  readonly set: (role: Role, mode: Mode) => void
  /** Closes every connection of a role (as a network failure would). */
  readonly cut: (role: Role) => void
}

interface Link {
  role: Role
  readonly client: Socket
  readonly upstream: Socket
  readonly held: Array<Buffer>
}

export const channelProxy = (targetPort: number) =>
  Effect.acquireRelease(
    Effect.promise(
      () =>
        new Promise<ChannelProxy & { readonly close: () => Promise<void> }>((resolve) => {
          const links = new Set<Link>()
          const modes: Record<Role, Mode> = { subscribe: "pass", read: "pass", other: "pass" }
          const server: Server = createServer((client) => {
            const upstream = new Socket()
            const link: Link = { role: "other", client, upstream, held: [] }
            links.add(link)
            for (const socket of [client, upstream]) {
              socket.on("error", () => {})
              socket.on("close", () => {
                links.delete(link)
                client.destroy()
                upstream.destroy()
              })
            }
            client.on("data", (chunk: Buffer) => {
              if (link.role === "other") {
                const text = chunk.toString("latin1")
                if (text.includes("cacheme-tier-subscribe")) link.role = "subscribe"
                else if (text.includes("cacheme-tier-read")) link.role = "read"
              }
              upstream.write(chunk)
            })
            upstream.on("data", (chunk: Buffer) => {
              const mode = modes[link.role]
              if (mode === "drop") return
              if (mode === "hold" || link.held.length > 0) link.held.push(chunk)
              else client.write(chunk)
            })
            upstream.connect(targetPort, "127.0.0.1")
          })
          server.listen(0, "127.0.0.1", () => {
            const address = server.address()
            const port = typeof address === "object" && address !== null ? address.port : 0
            resolve({
              url: `redis://127.0.0.1:${port}`,
              set: (role, mode) => {
                modes[role] = mode
                if (mode === "pass") {
                  for (const link of links) {
                    if (link.role !== role) continue
                    while (link.held.length > 0 && !link.client.destroyed) link.client.write(link.held.shift()!)
                  }
                }
                if (mode === "drop") for (const link of links) if (link.role === role) link.held.length = 0
              },
              cut: (role) => {
                for (const link of links) {
                  if (link.role !== role) continue
                  link.client.destroy()
                  link.upstream.destroy()
                }
              },
              close: () =>
                new Promise<void>((done) => {
                  for (const link of links) {
                    link.client.destroy()
                    link.upstream.destroy()
                  }
                  server.close(() => done())
                })
            })
          })
        })
    ),
    (proxy) => Effect.promise(() => proxy.close())
  )
