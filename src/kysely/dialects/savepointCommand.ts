/**
 * The savepoint statements Kysely's transaction API asks a driver for, built the way Kysely's own drivers build
 * them: the savepoint name is an identifier node, so the dialect's query compiler quotes it.
 *
 * @internal
 */
import { IdentifierNode, RawNode } from "kysely"

/** `savepoint "name"`, `rollback to "name"` or `release "name"` as an operation node to compile. */
export const savepointCommand = (command: "savepoint" | "rollback to" | "release", savepointName: string): RawNode =>
  RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(savepointName)])
