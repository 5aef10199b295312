/**
 * The value every benchmark caches: a user record of ten fields, JSON-native (no `Date`, no `bigint`), so that a
 * bare `JSON.parse` yields exactly what the Schema decode yields and the comparison stays fair.
 */
import { Schema } from "effect"
import { Node } from "../src/index.ts"

export const User = Schema.Struct({
  id: Schema.Number,
  email: Schema.String,
  name: Schema.String,
  age: Schema.Number,
  active: Schema.Boolean,
  role: Schema.Literals(["admin", "editor", "viewer"]),
  tags: Schema.Array(Schema.String),
  address: Schema.Struct({ street: Schema.String, city: Schema.String, zip: Schema.String }),
  createdAt: Schema.String,
  score: Schema.Number
})
export type User = typeof User.Type

/** How many distinct keys the workloads read: one per concurrent caller, so single-flight never merges hits. */
export const KEYS = 100

export const makeUser = (id: number): User => ({
  id,
  email: `user${id}@example.com`,
  name: `User Number ${id}`,
  age: 20 + (id % 50),
  active: id % 3 !== 0,
  role: id % 10 === 0 ? "admin" : id % 3 === 0 ? "editor" : "viewer",
  tags: ["beta", `cohort-${id % 7}`, "newsletter"],
  address: { street: `${id} Main Street`, city: "Springfield", zip: `${10000 + id}` },
  createdAt: new Date(Date.UTC(2024, 0, 1) + id * 86_400_000).toISOString(),
  score: id * 1.5
})

/** The cache node of the benchmarks: no ttl, so every read after the first is a fresh hit. */
export const UserNode = Node.make("bench-user", {
  fields: { id: Schema.Number },
  value: User,
  key: ({ id }) => `bench-user:${id}`,
  ttl: null
})
