// One read on a LISTEN session (PgJobEvents) under a caller's bound: the
// session cannot be given up by a signal as a pooled client's statement is
// (pgDriver's abandonable), so the bound ends the session itself.
import type pg from 'pg';
import { cancelOnServer } from './pg-cancel.js';
import { endClient } from './pg-pool.js';

/**
 * A caller's bound on one read: runs read with a signal, and rejects with the
 * signal's reason once it aborts it (a server that does not answer).
 */
export type ReadBound = <T>(read: (signal: AbortSignal) => Promise<T>) => Promise<T>;

/** Errors of reads a ReadBound gave up: final, not a lost session to open again. */
const givenUp = new WeakSet<object>();

/** Whether error is a read's that its bound gave up. */
export const boundGaveUp = (error: unknown): boolean => typeof error === 'object' && error !== null && givenUp.has(error);

/**
 * text on session, within bound when given. Given up, the read is
 * cancelled on the server (a backend waiting on a lock would otherwise run
 * it later) and the session ended: the owner sees it lost. The read rejects
 * with the bound's reason, which boundGaveUp tells apart.
 */
export async function boundedRead<R extends pg.QueryResultRow>(session: pg.Client, bound: ReadBound | undefined,
                                                               text: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
  if (!bound) return session.query<R>(text, params);
  let aborted = false;
  try {
    return await bound(async (signal) => {
      const giveUp = () => {
        aborted = true;
        void cancelOnServer(session).then(() => endClient(session));
      };
      signal.addEventListener('abort', giveUp, { once: true });
      try {
        return await session.query<R>(text, params);
      } finally {
        signal.removeEventListener('abort', giveUp);
      }
    });
  } catch (error) {
    if (aborted && typeof error === 'object' && error !== null) givenUp.add(error);
    throw error;
  }
}
