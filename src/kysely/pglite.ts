/**
 * effect-cacheme/kysely/pglite: a Kysely dialect over PGlite (`@electric-sql/pglite`), PostgreSQL run in process.
 *
 * A subpath of its own so that `effect-cacheme/kysely` needs neither PGlite nor its types: install
 * `@electric-sql/pglite` only when you import this one.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export {
  makePGlite,
  type PGliteClient,
  PGliteDialect,
  type PGliteDialectConfig,
  PGliteDriver
} from "./dialects/PGliteDialect.ts"
