/**
 * A CacheStore wrapper that lets a test hold one operation: `before(op, args)` runs before the operation is sent
 * (it may wait on a Deferred), `after(op, args, result)` after its reply.
 */
import { Effect, Layer } from "effect"
import { CacheStore } from "../../src/index.ts"

type Service = CacheStore.CacheStore["Service"]
export type Hook = (op: string, args: ReadonlyArray<unknown>) => Effect.Effect<void>

export const gated = (
  inner: Layer.Layer<CacheStore.CacheStore>,
  before: Hook,
  after: (op: string, args: ReadonlyArray<unknown>, result: unknown) => Effect.Effect<void> = () => Effect.void
): Layer.Layer<CacheStore.CacheStore> =>
  Layer.effect(
    CacheStore.CacheStore,
    Effect.gen(function* () {
      const store = yield* CacheStore.CacheStore
      const wrap =
        <Args extends Array<any>, A, E>(op: string, f: (...args: Args) => Effect.Effect<A, E>) =>
        (...args: Args): Effect.Effect<A, E> =>
          Effect.andThen(
            before(op, args),
            Effect.tap(f(...args), (result) => after(op, args, result))
          )
      const wrapped: Service = {
        ...store,
        lookup: wrap("lookup", store.lookup),
        lookupMany: wrap("lookupMany", store.lookupMany),
        lease: wrap("lease", store.lease),
        fill: wrap("fill", store.fill),
        renew: wrap("renew", store.renew),
        release: wrap("release", store.release),
        invalidate: wrap("invalidate", store.invalidate),
        invalidateSet: wrap("invalidateSet", store.invalidateSet),
        hold: wrap("hold", store.hold),
        releaseHold: wrap("releaseHold", store.releaseHold),
        invalidatePattern: wrap("invalidatePattern", store.invalidatePattern)
      }
      return wrapped
    })
  ).pipe(Layer.provide(inner))
