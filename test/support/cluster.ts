/**
 * A local Redis Cluster for tests: three masters (or as many as `ports`) on loopback, made with redis-server and
 * `redis-cli --cluster create`, keeping nothing on disk beyond a temporary folder. Resolves to false (a warning)
 * when redis-server is missing outside CI; in CI a missing redis-server fails. `stop` kills the servers and
 * removes the folder.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { inCI } from "./services.ts"

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

export interface LocalCluster {
  readonly ready: boolean
  readonly stop: () => void
}

export const startCluster = async (ports: ReadonlyArray<number>, what: string): Promise<LocalCluster> => {
  const dir = mkdtempSync(join(tmpdir(), "cacheme-cluster-"))
  const servers: Array<ChildProcess> = []
  const stop = () => {
    for (const server of servers) server.kill("SIGKILL")
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    execFileSync("redis-server", ["--version"], { stdio: "ignore" })
  } catch {
    if (inCI) throw new Error(`redis-server is needed for ${what}`)
    console.warn(`[skip] redis-server not found: ${what} are skipped`)
    return { ready: false, stop }
  }
  // A cluster left on these ports by a test run that was killed before its afterAll (the servers outlive their
  // parent) would make this one fail: the ports are the tests' own, so whatever answers there is shut down.
  for (const port of ports) {
    try {
      execFileSync("redis-cli", ["-p", String(port), "shutdown", "nosave"], { stdio: "pipe", timeout: 5_000 })
    } catch {
      // Nothing there (or it went down while answering): the port is free.
    }
  }
  for (const port of ports) {
    servers.push(
      spawn(
        "redis-server",
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--cluster-enabled",
          "yes",
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--dir",
          dir,
          "--save",
          "",
          "--appendonly",
          "no"
        ],
        { stdio: "ignore" }
      )
    )
  }
  for (const port of ports) {
    for (let i = 0; i < 100; i++) {
      try {
        execFileSync("redis-cli", ["-p", String(port), "ping"], { stdio: "pipe" })
        break
      } catch {
        await sleep(50)
      }
    }
  }
  try {
    execFileSync(
      "redis-cli",
      ["--cluster", "create", ...ports.map((port) => `127.0.0.1:${port}`), "--cluster-replicas", "0", "--cluster-yes"],
      { stdio: "pipe" }
    )
  } catch (cause) {
    // The servers this call started go with it (they would outlive the test run, and hold the ports).
    stop()
    throw cause
  }
  for (let i = 0; i < 200; i++) {
    const info = execFileSync("redis-cli", ["-p", String(ports[0]), "cluster", "info"], { encoding: "utf8" })
    if (info.includes("cluster_state:ok")) return { ready: true, stop }
    await sleep(50)
  }
  throw new Error("the local Redis Cluster did not reach cluster_state:ok")
}
