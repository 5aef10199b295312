#!/usr/bin/env node
/**
 * The `effect-cacheme` executable in this repository: `node bin/effect-cacheme.ts` (or `npm run cacheme --`)
 * runs `src/bin.ts` on Node 24, no build step. The published package's `bin` is the compiled `dist/bin.js`.
 */
import "../src/bin.ts"
