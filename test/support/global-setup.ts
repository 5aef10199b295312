/**
 * Before the run: deletes the keys earlier runs left under the test prefix of the shared Redis (a run that
 * crashed, or was stopped, never reached its own cleanup), so scans in the tests see only this run's keys. Keys
 * are named `test:<pid>:...`: those of a process still alive (another run going on beside this one) stay.
 */
import { Redis as IORedis } from "ioredis"
import { available, Redis } from "./services.ts"

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

export default async function setup() {
  if (!(await available(Redis).catch(() => false))) return
  const client = new IORedis(Redis.url, { lazyConnect: true, retryStrategy: () => null })
  client.on("error", () => {})
  let deleted = 0
  try {
    await client.connect()
    let cursor = "0"
    do {
      const [next, keys] = await client.scan(cursor, "MATCH", "test:*", "COUNT", 1000)
      cursor = next
      const dead = keys.filter((key) => {
        const pid = Number(key.split(":")[1])
        return !Number.isInteger(pid) || pid <= 0 || !alive(pid)
      })
      if (dead.length > 0) deleted += await client.unlink(...dead)
    } while (cursor !== "0")
  } finally {
    client.disconnect()
  }
  if (deleted > 0) console.log(`[setup] removed ${deleted} keys left by earlier test runs`)
}
