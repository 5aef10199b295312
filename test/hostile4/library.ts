/**
 * The library of test/Memo.valueGroups.test.ts, for the hostile4 attacks: books (a group family), shelves whose
 * value (their books) names the books' groups (`invalidatedByValue`), a "database" of book versions, and a gate
 * that holds the next load after it read the database.
 */
import { Deferred, Effect, Schema } from "effect"
import { InvalidNode, Memo, Node } from "../../src/index.ts"

let counter = 0
export const fresh = (name: string) => `${name}-h4-${process.pid}-${counter++}`

export const Book = Schema.Struct({ id: Schema.Number, version: Schema.Number })
export type Book = typeof Book.Type

export const versionsOf = (books: ReadonlyArray<Book>) => books.map((book) => `${book.id}@${book.version}`).join(" ")

export const makeLibrary = (options?: {
  readonly stale?: boolean
  readonly names?: { book: string; shelf: string }
}) => {
  const BookGroup = InvalidNode.make(options?.names?.book ?? fresh("book"), { fields: { id: Schema.Number } })
  const Shelf = Node.make(options?.names?.shelf ?? fresh("shelf"), {
    fields: { shelf: Schema.Number },
    value: Schema.Array(Book),
    ttl: null,
    stale: options?.stale ?? false,
    invalidatedByValue: {
      families: [BookGroup],
      groups: (books) => books.map((book) => BookGroup.make({ id: book.id }))
    }
  })
  const versions = new Map<number, number>()
  const shelves = new Map<number, ReadonlyArray<number>>([
    [1, [1, 2]],
    [2, [3, 4]],
    [3, [2, 5]]
  ])
  const state = {
    loads: 0,
    gate: undefined as undefined | { started: Deferred.Deferred<void>; go: Deferred.Deferred<void> }
  }
  const booksOf = (shelf: number): Array<Book> =>
    (shelves.get(shelf) ?? []).map((id) => ({ id, version: versions.get(id) ?? 0 }))
  const loadShelves = (ids: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      state.loads++
      const read = ids.map(booksOf)
      const gate = state.gate
      state.gate = undefined
      if (gate !== undefined) {
        yield* Deferred.succeed(gate.started, undefined)
        yield* Deferred.await(gate.go)
      }
      return read
    })
  const read = (shelf: number) =>
    Effect.map(loadShelves([shelf]), (all) => all[0]!).pipe(Memo.cached(Shelf.make({ shelf })))
  const readMany = (ids: ReadonlyArray<number>) =>
    Memo.cachedMany(
      ids.map((shelf) => Shelf.make({ shelf })),
      (fields) => loadShelves(fields.map((f) => f.shelf))
    )
  const gateNextLoad = Effect.gen(function* () {
    const gate = { started: yield* Deferred.make<void>(), go: yield* Deferred.make<void>() }
    state.gate = gate
    return gate
  })
  const write = (id: number, mode: "hard" | "soft" = "hard") =>
    Effect.andThen(
      Effect.sync(() => versions.set(id, (versions.get(id) ?? 0) + 1)),
      InvalidNode.invalidate(BookGroup.make({ id }), { mode })
    )
  const groupSet = (id: number) => `g:${BookGroup.make({ id }).key}`
  return { BookGroup, Shelf, versions, shelves, state, read, readMany, gateNextLoad, write, groupSet }
}
