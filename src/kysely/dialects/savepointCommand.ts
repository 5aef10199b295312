/**
 * The savepoint statements Kysely's transaction API asks a driver for, built the way Kysely's own drivers build
 * them: the savepoint name is an identifier node, so the dialect's query compiler quotes it.
 *
 * @internal
 */
import { createQueryId, type DatabaseConnection, IdentifierNode, type QueryCompiler, RawNode } from "kysely"

/** `savepoint "name"`, `rollback to "name"` or `release "name"` as an operation node to compile. */
export const savepointCommand = (command: "savepoint" | "rollback to" | "release", savepointName: string): RawNode =>
  RawNode.createWithChildren([RawNode.createWithSql(`${command} `), IdentifierNode.create(savepointName)])

/** Runs one savepoint statement on `connection`, compiled by the dialect's compiler. */
export const executeSavepointCommand = async (
  connection: DatabaseConnection,
  command: "savepoint" | "rollback to" | "release",
  savepointName: string,
  compileQuery: QueryCompiler["compileQuery"]
): Promise<void> => {
  await connection.executeQuery(compileQuery(savepointCommand(command, savepointName), createQueryId()))
}
