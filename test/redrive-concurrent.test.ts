// Concurrent jobs.redrive calls (two dashboard clicks, the CLI and
// TypeScript at once) whose dead letters share dedupe keys: each goes back
// once, a key ends with one waiting job, and the calls do not deadlock
// (40P01) on the keys' index entries. A real PostgreSQL.
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});
async function session(): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  clients.push(c);
  return c;
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** A dead letter of dedupe key `key`, failed in the order called. */
async function deadLetter(key: string): Promise<string> {
  const [{ id }] = await sql<{ id: string }>(`select jobs.publish('mail', max_retries => 0, dedupe_key => $1)::text as id`, [key]) as [{ id: string }];
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
  return id;
}

/** Waits until `pid` waits for a lock. */
async function waitingForLock(pid: number): Promise<void> {
  for (;;) {
    const [r] = await sql<{ waiting: boolean }>(`select wait_event_type = 'Lock' as waiting from pg_stat_activity where pid = $1`, [pid]);
    if (r?.waiting) return;
    await new Promise((done) => setTimeout(done, 10));
  }
}

describe('concurrent redrives of dead letters sharing dedupe keys', () => {
  it('take the keys in one order: neither is a deadlock victim, and each key ends with one waiting job', async () => {
    const [holder, a, b] = [await session(), await session(), await session()];
    const [pidA, pidB] = [(await a.query('select pg_backend_pid() as p')).rows[0].p, (await b.query('select pg_backend_pid() as p')).rows[0].p];
    const errors: string[] = [];
    for (let round = 0; round < 6; round++) {
      await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
      // Two dead letters of each key: A redrives k1's and k2's oldest, B k2's and k1's youngest.
      const j1 = await deadLetter('k1');
      const j2 = await deadLetter('k2');
      const j3 = await deadLetter('k2');
      const j4 = await deadLetter('k1');
      // A transaction publishing k1 (not committed yet) makes both wait at k1's entry, A holding none, B holding k2's.
      await holder.query('begin');
      await holder.query(`select jobs.publish('other', dedupe_key => 'k1')`);
      const ra = a.query('select jobs.redrive(job_ids => $1::bigint[]) as n', [[j1, j2]]).then((r) => r.rows[0].n, (e: { code?: string }) => e.code);
      await waitingForLock(pidA);
      const rb = b.query('select jobs.redrive(job_ids => $1::bigint[]) as n', [[j3, j4]]).then((r) => r.rows[0].n, (e: { code?: string }) => e.code);
      await waitingForLock(pidB);
      await holder.query('rollback');
      for (const r of await Promise.all([ra, rb])) if (typeof r === 'string') errors.push(r);
      const waiting = await sql<{ key: string; n: number }>(
        `select dedupe_key as key, count(*)::int as n from jobs.job_queue group by 1 order by 1`);
      expect(waiting).toEqual([{ key: 'k1', n: 1 }, { key: 'k2', n: 1 }]);
    }
    expect(errors).toEqual([]);
  });
});
