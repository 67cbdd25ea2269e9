// One statement of a queue call (publish, publishBulk, publishEvent, the
// admin calls): given up when the call's signal fires.
import type { Queryable, QueryResult } from './db/driver.js';
import { translateError } from './errors.js';
import { givenUpOn } from './round-trip-limit.js';

/**
 * db, its statements given up when signal fires (none: db itself): the call
 * rejects with the signal's reason at once, and the driver (pgDriver) ends
 * the connection, so the statement cannot be run later. A node-postgres
 * client or pool of the caller's own (publishing inside its transaction)
 * takes a third argument for a callback: it gets the statement alone, and
 * the signal only ends the wait (its connection is the caller's to end).
 */
export function givenUpWith(db: Queryable, signal: AbortSignal | undefined): Queryable {
  if (!signal) return db;
  const ownClient = typeof (db as { connect?: unknown }).connect === 'function';
  return givenUpOn(ownClient ? { query: (t, p) => db.query(t, p) } : db, signal);
}

/** Sends one statement through db, given up when signal fires (givenUpWith). */
export function send<R>(db: Queryable, text: string, params: readonly unknown[],
                        signal?: AbortSignal | undefined): Promise<QueryResult<R>> {
  return givenUpWith(db, signal).query<R>(text, params);
}

/**
 * Sends one statement that answers a single value as column `r` (a call of
 * a jobs.* function), as send() does, and returns it; database errors
 * pgdrain knows become PgDrainErrors.
 */
export async function callValue<R>(db: Queryable, text: string, params: unknown[],
                                   signal?: AbortSignal | undefined): Promise<R> {
  try {
    const { rows } = await send<{ r: R }>(db, text, params, signal);
    return rows[0]!.r;
  } catch (error) {
    throw translateError(error);
  }
}
