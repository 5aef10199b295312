/**
 * Before the run: deletes the keys earlier runs left under the test prefix of the shared Redis (a run that
 * crashed, or was stopped, never reached its own cleanup), so scans in the tests see only this run's keys.
 */
import { available, deleteRedisPrefix, Redis } from "./services.ts"

export default async function setup() {
  if (!(await available(Redis).catch(() => false))) return
  const deleted = await deleteRedisPrefix("test:")
  if (deleted > 0) console.log(`[setup] removed ${deleted} keys left by earlier test runs`)
}
