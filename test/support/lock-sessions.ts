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
