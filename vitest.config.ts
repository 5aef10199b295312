import { defineConfig } from "vitest/config"

export default defineConfig({
  // `effect-cacheme` imported by name (examples, guides) resolves to `src/` here, through the package's
  // `effect-cacheme-source` export condition. Not "module": it picks bundler-only builds (`@opentelemetry/api`
  // would load its extensionless ESM build and fail).
  ssr: { resolve: { conditions: ["effect-cacheme-source", "node", "development|production"] } },
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Redis, PostgreSQL and MariaDB are shared: files that use them run one at a time.
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: "test-results/vitest.json" }
  }
})
