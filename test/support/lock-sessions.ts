// Sessions of their own for tests that force an interleaving of locks: each
// with its backend's pid, and a short deadlock_timeout where the role may set
// it (a superuser's cluster), so a deadlock, if any, is found at once.
import pg from 'pg';
import { afterAll } from 'vitest';

export type LockSession = pg.Client & { pid: number };

/** A session() factory for url; the sessions end after the file's tests. */
export function lockSessions(url: string): () => Promise<LockSession> {
  const clients: pg.Client[] = [];
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.end()));
  });
  return async () => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    clients.push(c);
    await c.query(`set deadlock_timeout = '20ms'`).catch(() => {});
    const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
    return Object.assign(c, { pid });
  };
}

/** Until session pid waits for a lock, asked over c (polls; no time asserted). */
export async function waitUntilBlocked(c: pg.Client, pid: number): Promise<void> {
  for (;;) {
    const [r] = (await c.query(`select wait_event_type = 'Lock' as blocked from pg_stat_activity where pid = $1`, [pid])).rows;
    if (r?.blocked) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Runs a statement outside the sessions under test (the test database's own pool), answering its rows. */
export type Observer = (text: string, params?: unknown[]) => Promise<unknown[]>;

/** A session's query, as its rows or its error as `error CODE column: message`. */
export const outcome = (p: Promise<{ rows: unknown[] }>) =>
  p.then((r) => r.rows, (e: { code?: string; column?: string; message: string }) => `error ${e.code} ${e.column}: ${e.message}`);

/** outcome's text for a statement that failed on a row changed since its REPEATABLE READ / SERIALIZABLE snapshot. */
export const STALE_ROW = 'error 40001 undefined: could not serialize access due to concurrent update';

const waitsForLock = async (sql: Observer, s: LockSession) =>
  (await sql(`select 1 from pg_locks where pid = $1 and not granted`, [s.pid])).length > 0;

/** Until session s waits for a lock (polls pg_locks over sql; no time asserted). */
export async function blocked(sql: Observer, s: LockSession): Promise<void> {
  while (!await waitsForLock(sql, s)) await new Promise((r) => setTimeout(r, 5));
}

/** Until session s waits for a lock of one of these kinds (pg_locks.locktype: advisory, transactionid for a row, ...). */
export async function blockedOn(sql: Observer, s: LockSession, kinds: string[]): Promise<void> {
  const waits = async () => (await sql(`select 1 from pg_locks where pid = $1 and not granted and locktype = any($2)`,
                                       [s.pid, kinds])).length > 0;
  while (!await waits()) await new Promise((r) => setTimeout(r, 5));
}

/** Until session s waits for a lock session other holds (pg_blocking_pids; polls, no time asserted). */
export async function blockedBy(sql: Observer, s: LockSession, other: LockSession): Promise<void> {
  while ((await sql(`select 1 where $2::int = any(pg_blocking_pids($1))`, [s.pid, other.pid])).length === 0) {
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Until session s's query p is done or waits for a lock. */
export async function doneOrBlocked(sql: Observer, s: LockSession, p: Promise<unknown>): Promise<void> {
  let done = false;
  const ended = p.then(() => { done = true; }, () => { done = true; });
  while (!done && !await waitsForLock(sql, s)) await Promise.race([ended, new Promise((r) => setTimeout(r, 5))]);
}

/** Whether session s's query p waits for a lock (false: it answered without waiting). */
export async function waits(sql: Observer, s: LockSession, p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await doneOrBlocked(sql, s, p);
  return !done;
}
