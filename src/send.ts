// One statement of a queue call (publish, publishBulk, publishEvent, the
// admin calls): given up when the call's signal fires, and sent again when
// PostgreSQL rolled it back whole for another transaction's sake, where it
// was a transaction of its own.
import { rolledBackWhole } from './claim-call.js';
import { isPgPool, type Driver, type Queryable, type QueryResult } from './db/driver.js';
import { translateError, ValidationError } from './errors.js';
import { abortSignalSchema, parse } from './options.js';
import { givenUpOn } from './round-trip-limit.js';

/** Sends after the first that PostgreSQL rolled back whole, as a drain's claim tries again (drain.ts). */
const RESENDS = 3;

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

/**
 * Whether each statement sent through db is a transaction of its own, never
 * a part of one its caller opened: a driver that says so (Driver.autocommit:
 * pgDriver and neonDriver over a pool, neonHttpDriver), or a node-postgres
 * Pool (isPgPool), whose query() checks out an idle connection for the one statement. Anything else may be inside
 * the caller's transaction, which a deadlock aborted whole: a client
 * (pg.Client, a PoolClient), a driver's transaction, pgliteDriver (one
 * session the caller may have begun a transaction on; it cannot deadlock).
 */
export function runsAlone(db: Queryable): boolean {
  return (db as Partial<Driver>).autocommit === true || isPgPool(db);
}

/**
 * Sends one statement through db, given up when signal fires (givenUpWith).
 * One PostgreSQL rolled back whole for another's sake (a deadlock victim,
 * 40P01; a serialization failure, 40001) changed nothing: when it was a
 * transaction of its own (runsAlone) it is sent again at once, up to RESENDS
 * times, unless signal has fired; then, or inside the caller's transaction
 * (aborted: the caller runs it again), its error is thrown. A statement that
 * succeeds the first time pays nothing more.
 */
export async function send<R>(db: Queryable, text: string, params: readonly unknown[],
                              signal?: AbortSignal | undefined): Promise<QueryResult<R>> {
  const via = givenUpWith(db, signal);
  for (let resends = 0; ; resends++) {
    try {
      return await via.query<R>(text, params);
    } catch (error) {
      if (resends < RESENDS && !signal?.aborted && rolledBackWhole(error) && runsAlone(db)) continue;
      throw error;
    }
  }
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

/** What bounds one publish or admin call: when `signal` fires, the call is given up. */
export interface SignalOption {
  signal?: AbortSignal | undefined;
}

/** The signal of a call's options, checked; options without it (undefined when there were none). */
export function takeSignal<O extends SignalOption>(options: O | undefined, field: string):
  { signal: AbortSignal | undefined; rest: Omit<O, 'signal'> | undefined } {
  if (typeof options !== 'object' || options === null || !('signal' in options)) return { signal: undefined, rest: options };
  const { signal, ...rest } = options;
  return { signal: signal === undefined ? undefined : parse(abortSignalSchema, signal, `${field}.signal`), rest };
}

/**
 * The signal of a call whose options are only { signal } (publishBulk's,
 * the admin calls' that take no other option): options must be an object
 * with no other key.
 */
export function signalOnly(options: SignalOption | undefined, field = 'options'): AbortSignal | undefined {
  if (options === undefined) return undefined;
  if (typeof options !== 'object' || options === null) throw new ValidationError(field, 'must be an object');
  const { signal, rest } = takeSignal(options, field);
  for (const k in rest) throw new ValidationError(field, `unknown option ${JSON.stringify(k)}`);
  return signal;
}
