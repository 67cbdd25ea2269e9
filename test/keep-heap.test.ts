// A session's first claim settling 100 or more keeps the backend's heap
// (jobs.keep_heap, sql/0015_claim_json.sql): once per session, not on every
// claim, and not for short claims. Over a real PostgreSQL, in SQL, on one
// connection of its own.
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const c = new pg.Client({ connectionString: db.url });
await c.connect();
afterAll(() => c.end());

const one = async <R>(text: string, params: unknown[] = []): Promise<R> => (await c.query(text, params)).rows[0] as R;
const kept = async () => (await one<{ kept: string | null }>(`select current_setting('pgdrain.heap_kept', true) as kept`)).kept;

/** Claims up to n jobs as a drain does, settling the previous claim's jobs as acks; answers the claimed ids. */
async function claim(n: number, acks: string[]): Promise<string[]> {
  const { r } = await one<{ r: { jobs: { id: string; attempt: number[] } | null } }>(
    `select jobs.claim_json($1, worker_id => 'w', ids => $2::bigint[], attempts => $3::integer[], outcomes => $4::text[]) as r`,
    [n, acks, acks.map(() => 1), acks.map(() => 'ack')]);
  return r.jobs ? r.jobs.id.split(',') : [];
}

it("calls jobs.keep_heap once, on a session's first claim settling 100 or more", async () => {
  await c.query(`set track_functions = 'pl'`);
  await c.query(`select jobs.publish_bulk(array(select row('t', null, null, null, null, null)::jobs.bulk_job
                                                 from generate_series(1, 300)))`);
  let ids = await claim(99, []);
  ids = await claim(100, ids); // settles 99: not yet
  expect(await kept()).toBe(null);
  ids = await claim(100, ids); // settles 100
  expect(await kept()).toBe('yes');
  await claim(100, ids);
  await c.query('select pg_stat_force_next_flush()');
  await c.query('select pg_stat_clear_snapshot()');
  expect(await one(`select calls::int from pg_stat_user_functions where schemaname = 'jobs' and funcname = 'keep_heap'`))
    .toEqual({ calls: 1 });
});
