/**
 * What `predictEvents` reads off a statement before it runs: the rows its WHERE or VALUES pin, and nothing for
 * anything it cannot be sure names every watched column. (Whether holds built on it keep the cache right is
 * tested against real databases in Database.test.ts; here only the reading.)
 */
import { describe, expect, test } from "@effect/vitest"
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, sql } from "kysely"
import type { RootOperationNode } from "kysely"
import { isCertain, predictEvents } from "../../src/kysely/capture/Prediction.ts"
import { planStatement } from "../../src/kysely/capture/StatementAnalysis.ts"

const db = new Kysely<any>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (k) => new PostgresIntrospector(k),
    createQueryCompiler: () => new PostgresQueryCompiler()
  }
})

const predict = (query: { toOperationNode(): RootOperationNode }, columns: ReadonlyArray<string> = ["id"]) => {
  const plan = planStatement(query.toOperationNode(), "", "postgres", new Map([["t", columns]]))
  if (plan._tag !== "Write" || plan.exact === undefined) throw new Error(`not an exact write: ${plan._tag}`)
  return predictEvents(plan.exact).map((event) => ({ operation: event.operation, rows: event.rows }))
}

describe("predictEvents", () => {
  test("update and delete by key: the pinned rows", () => {
    expect(predict(db.updateTable("t").set({ name: "x" }).where("id", "=", 5))).toEqual([
      { operation: "update", rows: [{ id: 5 }] }
    ])
    expect(predict(db.deleteFrom("t").where("id", "in", [1, 2]))).toEqual([
      { operation: "delete", rows: [{ id: 1 }, { id: 2 }] }
    ])
    expect(predict(db.deleteFrom("t as x").where("x.id", "=", 3).where("name", "like", "a%"))).toEqual([
      { operation: "delete", rows: [{ id: 3 }] }
    ])
  })

  test("every watched column must be pinned; pins of several columns combine", () => {
    expect(predict(db.updateTable("t").set({ name: "x" }).where("id", "=", 5), ["id", "team"])).toEqual([])
    expect(
      predict(db.updateTable("t").set({ name: "x" }).where("id", "in", [1, 2]).where("team", "=", 7), ["id", "team"])
    ).toEqual([
      {
        operation: "update",
        rows: [
          { id: 1, team: 7 },
          { id: 2, team: 7 }
        ]
      }
    ])
  })

  test("an update assigning a watched column: before and after when plain, nothing for an expression", () => {
    expect(
      predict(db.updateTable("t").set({ team: 2 }).where("id", "=", 5).where("team", "=", 1), ["id", "team"])
    ).toEqual([
      {
        operation: "update",
        rows: [
          { id: 5, team: 1 },
          { id: 5, team: 2 }
        ]
      }
    ])
    expect(predict(db.updateTable("t").set({ id: sql`id + 1` }).where("id", "=", 5))).toEqual([])
  })

  test("what does not pin the rows predicts nothing", () => {
    expect(predict(db.updateTable("t").set({ name: "x" }).where("id", ">", 5))).toEqual([])
    expect(predict(db.deleteFrom("t").where((eb) => eb.or([eb("id", "=", 1), eb("name", "=", "a")])))).toEqual([])
    expect(predict(db.deleteFrom("t").where(sql.ref("other.id"), "=", 1))).toEqual([])
    expect(predict(db.updateTable("t").set({ name: "x" }))).toEqual([])
    expect(
      predict(
        db.deleteFrom("t").where(
          "id",
          "in",
          Array.from({ length: 101 }, (_, i) => i)
        )
      )
    ).toEqual([])
  })

  test("an insert of plain values names its rows; upserts, selects and missing columns predict nothing", () => {
    expect(
      predict(
        db.insertInto("t").values([
          { id: 1, name: "a" },
          { id: 2, name: "b" }
        ])
      )
    ).toEqual([{ operation: "insert", rows: [{ id: 1 }, { id: 2 }] }])
    expect(predict(db.insertInto("t").values({ name: "a" }))).toEqual([])
    expect(predict(db.insertInto("t").values({ id: sql`nextval('s')`, name: "a" }))).toEqual([])
    expect(
      predict(
        db
          .insertInto("t")
          .values({ id: 1, name: "a" })
          .onConflict((oc) => oc.column("name").doUpdateSet({ name: "b" }))
      )
    ).toEqual([])
    expect(predict(db.insertInto("t").columns(["id"]).expression(db.selectFrom("u").select("id")))).toEqual([])
    expect(
      predict(
        db
          .insertInto("t")
          .values({ id: 1, name: "a" })
          .onConflict((oc) => oc.doNothing())
      )
    ).toEqual([{ operation: "insert", rows: [{ id: 1 }] }])
  })

  test("isCertain: numbers on PostgreSQL and SQLite only", () => {
    const events = (rows: ReadonlyArray<Record<string, unknown>>) => [
      { table: "t", operation: "update" as const, rows, wholeTable: false }
    ]
    expect(isCertain(events([{ id: 1 }, { id: 2n }]), "postgres")).toBe(true)
    expect(isCertain(events([{ id: 1, team: 2 }]), "sqlite")).toBe(true)
    expect(isCertain(events([{ id: 1 }]), "mysql")).toBe(false)
    expect(isCertain(events([{ id: 1, team: 2 }]), "mysql", ["id", "team"])).toBe(true)
    expect(isCertain(events([{ id: 1, team: 2 }]), "mysql", ["id"])).toBe(false)
    expect(isCertain(events([{ id: 1.5 }]), "postgres")).toBe(false)
    expect(isCertain(events([{ id: 1 }]), "generic")).toBe(false)
    expect(isCertain(events([{ id: "1" }]), "postgres")).toBe(false)
    expect(isCertain(events([{ id: 1, email: "a@x" }]), "postgres")).toBe(false)
    expect(isCertain(events([{ id: null }]), "postgres")).toBe(false)
    expect(isCertain(events([{ id: Number.NaN }]), "postgres")).toBe(false)
    expect(isCertain([], "postgres")).toBe(false)
  })
})
