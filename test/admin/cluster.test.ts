/**
 * The admin on a Redis Cluster (three masters on loopback ports 7111-7113, made here with redis-server and
 * `redis-cli --cluster create`): key paging through the JSON API walks every master with the Cluster's cursors
 * (`<master index>:<cursor>`), a page at a time, with no key lost and none twice, even when consecutive pages are
 * served by two admin processes whose clients discovered the masters in different orders; malformed Cluster
 * cursors are a 400; and the attempt limiter counts in the Cluster.
 */
import { Effect, Schema } from "effect"
import { Cluster } from "ioredis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CacheStore, Memo, Node } from "../../src/index.ts"
import { execFileSync } from "node:child_process"
import { startCluster } from "../support/cluster.ts"
// The admins run on the Cluster's store ("memory" below only tells startAdmin not to clean the shared Redis).
import { bearer, send, type Started, startAdmin } from "./support.ts"

const ports = [7111, 7112, 7113]
const local = await startCluster(ports, "the admin's Redis Cluster tests")
const ready = local.ready

afterAll(() => local.stop())

const Item = Node.make("admin_cluster_item", {
  fields: { id: Schema.Number },
  value: Schema.Number,
  key: ({ id }) => `item:${id}`
})

const total = 300

/** A Cluster client that knows the masters in the given order of ports to begin with. */
const connect = async (order: ReadonlyArray<number>) => {
  const client = new Cluster(order.map((port) => ({ host: "127.0.0.1", port })))
  await new Promise<void>((resolve, reject) => {
    client.once("ready", () => resolve())
    client.once("error", reject)
  })
  return client
}

describe.skipIf(!ready)("the admin on a Redis Cluster", () => {
  const prefix = `cmadmincl${Math.random().toString(36).slice(2, 8)}:`
  const clients: Array<Cluster> = []
  let first: Started
  let second: Started

  beforeAll(async () => {
    const forward = await connect(ports)
    const backward = await connect([...ports].reverse())
    clients.push(forward, backward)
    // The two clients list the masters in different orders: a cursor naming a master by its position in one
    // client's list would name another master in the other's.
    const order = (client: Cluster) => client.nodes("master").map((node) => node.options.port)
    expect(order(forward)).not.toEqual(order(backward))
    first = await startAdmin("memory", { prefix, store: CacheStore.layerRedis({ client: forward, prefix }) })
    second = await startAdmin("memory", { prefix, store: CacheStore.layerRedis({ client: backward, prefix }) })
    await first.run(
      Effect.forEach(
        Array.from({ length: total }, (_, id) => id),
        (id) => Memo.cachedStrict(Effect.succeed(id), Item.make({ id })),
        { concurrency: 16, discard: true }
      )
    )
    // The entries are spread over every master.
    for (const port of ports) {
      const keys = execFileSync("redis-cli", ["-p", String(port), "--scan", "--pattern", `${prefix}item:*`], {
        encoding: "utf8"
      })
      expect(keys.trim().split("\n").length, `master ${port}`).toBeGreaterThan(total / 10)
    }
  })

  afterAll(async () => {
    await first?.close()
    await second?.close()
    for (const client of clients) {
      await Effect.runPromise(
        Effect.promise(async () => {
          for (const node of client.nodes("master")) {
            const keys = await node.keys(`${prefix}*`)
            if (keys.length > 0) await Promise.all(keys.map((key) => node.del(key)))
          }
        }).pipe(Effect.ignore)
      )
      client.disconnect()
    }
  })

  const page = async (admin: Started, cursor: string, count: number) => {
    const response = await send(
      `${admin.url}/api/keys?pattern=item:*&count=${count}${cursor === "0" ? "" : `&cursor=${encodeURIComponent(cursor)}`}`,
      { headers: bearer }
    )
    expect(response.status, response.body).toBe(200)
    return JSON.parse(response.body) as { keys: Array<{ key: string }>; cursor: string; complete: boolean }
  }

  /** Follows the cursor to the end, `pick` choosing the admin that serves each page; returns every key seen. */
  const walk = async (pick: (request: number) => Started, count: number) => {
    const seen: Array<string> = []
    const cursors: Array<string> = []
    let cursor = "0"
    let requests = 0
    do {
      const result = await page(pick(requests), cursor, count)
      requests++
      seen.push(...result.keys.map((row) => row.key))
      cursor = result.cursor
      cursors.push(cursor)
      expect(result.complete).toBe(cursor === "0")
    } while (cursor !== "0" && requests < 500)
    return { seen, cursors, requests }
  }

  const everyKey = Array.from({ length: total }, (_, id) => `item:${id}`).sort()

  it("pages through every master: every key once, with Cluster cursors", async () => {
    const { seen, cursors, requests } = await walk(() => first, 7)
    expect(requests).toBeGreaterThan(3)
    expect(new Set(seen).size).toBe(seen.length)
    expect([...seen].sort()).toEqual(everyKey)
    expect(cursors.slice(0, -1).every((cursor) => /^[0-2]:[0-9]+$/.test(cursor))).toBe(true)
    // Pages moved from one master to the next.
    expect(new Set(cursors.slice(0, -1).map((cursor) => cursor.split(":")[0])).size).toBeGreaterThan(1)
  })

  it("pages served by two admins in turn, whose clients list the masters differently, lose and repeat nothing", async () => {
    const { seen } = await walk((request) => (request % 2 === 0 ? first : second), 5)
    expect(new Set(seen).size).toBe(seen.length)
    expect([...seen].sort()).toEqual(everyKey)
  })

  it("refuses Cluster cursors that name no master, and other malformed ones, with a 400", async () => {
    for (const cursor of ["3:0", "99:5", "1:99999999999999999999", "-1:0", "12345", "1:2:3", "kdXNlcjox"]) {
      const response = await send(`${first.url}/api/keys?cursor=${encodeURIComponent(cursor)}`, { headers: bearer })
      expect(response.status, cursor).toBe(400)
    }
  })

  it("counts failed logins in the Cluster, shared by both admins", async () => {
    const limited = await Promise.all(
      [first, second].map((admin) =>
        startAdmin("memory", {
          prefix,
          store: CacheStore.layerRedis({ client: admin === first ? clients[0]! : clients[1]!, prefix }),
          rateLimit: { perClient: { attempts: 4, window: "1 hour" } }
        })
      )
    )
    try {
      const wrong = { authorization: "Bearer not-the-token-0123456789" }
      const responses = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          send(`${limited[i % 2]!.url}/api/session`, { headers: wrong, localAddress: "127.0.0.81" })
        )
      )
      expect(responses.filter((response) => response.status === 401).length).toBe(4)
      expect(responses.filter((response) => response.status === 429).length).toBe(8)
    } finally {
      for (const admin of limited) await admin.close()
    }
  })
})
