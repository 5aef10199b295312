// Prints vitest's totals as the plain closing line CI reads: "N passed, N failed, N skipped".
import { existsSync, readFileSync } from "node:fs"

const path = process.argv[2] ?? "test-results/vitest.json"
if (!existsSync(path)) {
  console.log(`tests: no vitest report at ${path} (the run stopped before the tests, see above)`)
} else {
  const report = JSON.parse(readFileSync(path, "utf8"))
  const skipped = report.numPendingTests + report.numTodoTests
  console.log(`tests: ${report.numPassedTests} passed, ${report.numFailedTests} failed, ${skipped} skipped`)
}
