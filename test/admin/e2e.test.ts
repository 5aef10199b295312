/**
 * End to end in headless Chromium (Debian's `chromium`, driven by playwright-core): log in, find a key, read its
 * value, invalidate it through the confirmation page, and find the row in the history, which lives in a PGlite
 * database created by the migration. Screenshots of the dashboard (light, dark, narrow) go to `test-results/`.
 */
import { existsSync, mkdirSync } from "node:fs"
import { Effect } from "effect"
import { Kysely } from "kysely"
import { type Browser, chromium } from "playwright-core"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { History, Migration } from "../../src/admin/index.ts"
import { CacheStore, Memo } from "../../src/index.ts"
import { PGliteDialect } from "../../src/kysely/dialects/PGliteDialect.ts"
import { inCI } from "../support/services.ts"
import { NoteNode, User, UserNode } from "./fixtures/nodes.ts"
import { seed, type Started, startAdmin, TOKEN } from "./support.ts"

const executablePath = "/usr/bin/chromium"
const hasChromium = existsSync(executablePath)
if (!hasChromium) {
  if (inCI) throw new Error(`${executablePath} is missing: CI needs it (apt-get install -y chromium)`)
  console.warn(`[skip] ${executablePath} is missing: the browser test is skipped`)
}

describe.skipIf(!hasChromium)("admin in Chromium", () => {
  let browser: Browser
  let admin: Started
  let db: Kysely<any>
  const violations: Array<string> = []

  beforeAll(async () => {
    mkdirSync("test-results", { recursive: true })
    db = new Kysely<any>({ dialect: new PGliteDialect() })
    await Effect.runPromise(Migration.migrate(db))
    admin = await startAdmin("memory", { history: History.layerKysely({ db }) })
    await admin.run(seed(12))
    // Some traffic, so the dashboard has counters and ratios to draw.
    await admin.run(
      Effect.gen(function* () {
        for (let round = 0; round < 3; round++) {
          for (let id = 1; id <= 12 - round * 4; id++) {
            yield* Memo.cachedStrict(Effect.succeed(new User({ id, name: "unused" })), UserNode.make({ id }))
          }
        }
        yield* Memo.cachedStrict(Effect.succeed("hello"), NoteNode.make({ slug: "hello" }))
      })
    )
    browser = await chromium.launch({
      executablePath,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync"
      ]
    })
  })

  afterAll(async () => {
    await browser?.close()
    await admin?.close()
    await db?.destroy()
  })

  it("logs in, finds a key, invalidates it and sees the history row", async () => {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
    const page = await context.newPage()
    let dialogs = 0
    page.on("dialog", (dialog) => {
      dialogs++
      void dialog.dismiss()
    })
    page.on("console", (message) => {
      // Failed logins answer 401, which Chromium logs; what must never appear is a blocked resource or script.
      if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text())
    })

    await page.goto(`${admin.url}/`)
    expect(new URL(page.url()).pathname).toBe("/admin/login")
    await page.fill('input[name="password"]', "not the token")
    await page.click('button[type="submit"]')
    await expect(page.locator(".notice.error").textContent()).resolves.toContain("Wrong user, password or token.")
    await page.fill('input[name="password"]', TOKEN)
    await page.click('button[type="submit"]')
    await page.waitForURL(`${admin.url}/`)
    expect(await page.locator("h1").textContent()).toBe("Dashboard")
    expect(await page.locator("table tbody tr").first().locator("td").first().textContent()).toBe(NoteNode.name)
    const userRow = page.locator("tr", { has: page.locator(`a[href="/admin/node?name=${UserNode.name}"]`) })
    expect(await userRow.locator("td").nth(1).textContent()).toBe("12")
    expect(await userRow.locator("svg[role=img]").getAttribute("aria-label")).toMatch(/^hit ratio \d+(\.\d)?%$/)
    // The stylesheet loaded (CSP allows it): the brand is bold, the page background is not the default white.
    expect(await page.locator(".brand").evaluate((el) => getComputedStyle(el).fontWeight)).toBe("700")
    expect(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe("rgb(246, 247, 249)")

    // Find the key.
    await page.click('nav a:has-text("Keys")')
    await page.fill('input[name="pattern"]', "user:1*")
    await page.click('form[role="search"] button')
    const keys = await page.locator("table.keys td.key").allTextContents()
    expect(keys).toEqual(["user:1", "user:10", "user:11", "user:12"])
    await page.click('a:text-is("user:11")')
    expect(await page.locator(".subtitle").textContent()).toBe("user:11")
    expect(JSON.parse((await page.locator("pre.value").textContent())!)).toEqual({ id: 11, name: "User 11" })
    expect(await page.locator(".badge.decoded").textContent()).toBe("decoded")

    // Invalidate it, through the confirmation page.
    await page.click('a:has-text("Invalidate this key")')
    expect(await page.locator("h1").textContent()).toBe("Invalidate key?")
    expect(await page.locator("dd").nth(1).textContent()).toBe("the key holds a value")
    await page.click('button:has-text("Invalidate")')
    expect(await page.locator(".notice.ok").textContent()).toContain("Removed 1 key (key user:11)")

    // See the row in the history.
    await page.click('a:has-text("See the history")')
    const row = page.locator("table.history tbody tr").first()
    const cells = await row.locator("td").allTextContents()
    expect(cells.slice(1)).toEqual(["admin:token", "key", "user:11", "hard", "1"])
    expect(cells[0]).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/)

    // The store and the database agree with the page.
    const gone = await admin.run(
      Effect.gen(function* () {
        const store = yield* CacheStore.CacheStore
        return yield* store.inspect("user:11")
      })
    )
    expect(gone).toBeUndefined()
    const rows = await Effect.runPromise(
      Effect.gen(function* () {
        const history = yield* History.History
        return yield* history.list({ limit: 1 })
      }).pipe(Effect.provide(History.layerKysely({ db })))
    )
    expect(rows.map(({ actor, target, value, count }) => ({ actor, target, value, count }))).toEqual([
      { actor: "admin:token", target: "key", value: "user:11", count: 1 }
    ])

    // The dashboard now shows the invalidation among the recent ones.
    await page.click('nav a:has-text("Dashboard")')
    expect(await page.locator("table.history tbody tr").first().locator("td.key").textContent()).toBe("user:11")
    await page.screenshot({ path: "test-results/admin-dashboard.png", fullPage: true })

    // The XSS payloads stored as a key and a value stay text.
    await page.goto(`${admin.url}/keys?pattern=note:*`)
    await page.click('a:has-text("note:<script>")')
    expect(await page.locator(".subtitle").textContent()).toBe("note:<script>window.__xss=1</script>")
    expect(await page.locator("pre.value").textContent()).toContain('<img src=x onerror=\\"window.__xss=2\\">')
    expect(await page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).toBeUndefined()
    expect(dialogs).toBe(0)
    expect(violations).toEqual([])
    await context.close()
  })

  it("reads well in dark mode and on a narrow screen", async () => {
    const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: "dark" })
    const narrow = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true })
    for (const [context, file] of [
      [dark, "admin-dashboard-dark.png"],
      [narrow, "admin-dashboard-narrow.png"]
    ] as const) {
      const page = await context.newPage()
      await page.goto(`${admin.url}/login`)
      await page.fill('input[name="password"]', TOKEN)
      await page.click('button[type="submit"]')
      await page.waitForURL(`${admin.url}/`)
      await page.screenshot({ path: `test-results/${file}`, fullPage: true })
      if (context === dark) {
        expect(await page.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe("rgb(15, 18, 24)")
      } else {
        // Nothing overflows the viewport sideways except inside the scrollable table wrappers.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth)
        expect(overflow).toBeLessThanOrEqual(0)
      }
      await context.close()
    }
  })
})
