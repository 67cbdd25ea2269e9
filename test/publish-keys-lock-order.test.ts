// Keyed publishes (dedupe and serial keys) take every lock before they look a
// dedupe key up, and a bulk writes its keys in key order. Before: a publish
// that looked a key up, then waited for a queue's or a serial key's lock,
// could insert a key whose job an ack had just deleted while that ack waited
// for the serial key held by the publish (40P01, the ack rolled back); and
// two bulks sharing keys in different orders each waited for a key the other
// had written. Forced interleavings, no timing: other sessions hold the
// bounded queue's lock, a serial key or a dedupe key, and each step waits
// until a session is seen waiting for a lock (pg_locks).
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

type Session = pg.Client & { pid: number };
const clients: pg.Client[] = [];
async function session(): Promise<Session> {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  clients.push(c);
  // A deadlock, if any, found at once.
  await c.query(`set deadlock_timeout = '20ms'`);
  const pid = (await c.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  return Object.assign(c, { pid });
}
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});

const SERIAL_KEY = `locktype = 'advisory' and classid = 736038`;
const ROW_OR_XACT = `locktype in ('transactionid', 'tuple')`;
const QUEUE_LOCK = `locktype = 'advisory' and classid = 736037`;
/** Until session pid waits for a lock matching `what` (polls; no time asserted). */
async function waitsFor(pid: number, what: string) {
  for (;;) {
    const rows = await sql(`select 1 from pg_locks where pid = $1 and not granted and ${what}`, [pid]);
    if (rows.length > 0) return;
    await new Promise((r) => setTimeout(r, 5));
  }
}
/** The query's first value, or its SQLSTATE. */
const outcome = (p: Promise<pg.QueryResult>) => p.then((r) => Object.values(r.rows[0]!)[0], (e: { code?: string }) => `error ${e.code}`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`select jobs.create_queue('bq', max_size => 100)`);
});

/**
 * The publish `publish` (into the bounded queue 'bq') is held first at bq's
 * lock, while job X (dedupe key k1, serial key sa) is published and claimed,
 * then at serial key `heldKey`; meanwhile `ender` runs (an ack of X, or a
 * replace of k1) and waits for serial key sa. Then the serial key is let go.
 */
async function interleave(publish: string, heldKey: string, ender: (x: string) => string) {
  const [h1, h2, p, c] = [await session(), await session(), await session(), await session()];
  await h1.query('begin');
  await h1.query(`select jobs.publish('t.h1', queue => 'bq')`);
  await p.query('select 1'); // connected
  const published = outcome(p.query(publish));
  await waitsFor(p.pid, QUEUE_LOCK);
  const x = (await sql<{ id: string }>(`select jobs.publish('t.x', dedupe_key => 'k1', serial_key => 'sa')::text as id`))[0]!.id;
  expect(await sql(`select job_id::text as id from jobs.consume(10)`)).toEqual([{ id: x }]);
  await h2.query('begin');
  await h2.query(`select jobs.publish('t.h2', serial_key => '${heldKey}')`);
  await h1.query('commit');
  await waitsFor(p.pid, SERIAL_KEY);
  const ended = outcome(c.query(ender(x)));
  await waitsFor(c.pid, SERIAL_KEY);
  await h2.query('commit');
  return { x, published: await published, ended: await ended };
}

describe('a keyed publish and the end of the job that took its key meanwhile', () => {
  it('bulk, and an ack of that job: both succeed, the bulk answers its id', async () => {
    const r = await interleave(`select jobs.publish_arrays(array['t.p', 't.p'], null, dedupe_keys => array['k1', 'k2'],
      serial_keys => array['sa', 'sb'], queue => 'bq')::text[]`, 'sb', (x) => `select jobs.ack(${x}::bigint)`);
    expect(r.ended).toBe(true); // 'error 40P01' before
    expect((r.published as string[])[0]).toBe(r.x);
    expect(await sql(`select task, dedupe_key, serial_key, serial_wait from jobs.job_queue order by job_id`)).toEqual([
      { task: 't.h1', dedupe_key: null, serial_key: null, serial_wait: false },
      { task: 't.h2', dedupe_key: null, serial_key: 'sb', serial_wait: false },
      { task: 't.p', dedupe_key: 'k2', serial_key: 'sb', serial_wait: true },
    ]);
  });

  it('bulk, and a replace of that running job: both succeed', async () => {
    const r = await interleave(`select jobs.publish_arrays(array['t.p', 't.p'], null, dedupe_keys => array['k1', 'k2'],
      serial_keys => array['sa', 'sb'], queue => 'bq')::text[]`, 'sb',
    () => `select jobs.publish('t.r', dedupe_key => 'k1', dedupe_mode => 'replace')::text`);
    expect(r.ended).toMatch(/^\d+$/); // 'error 40P01' before
    expect((r.published as string[])[0]).toBe(r.x);
    expect(await sql(`select task from jobs.job_queue where dedupe_key = 'k1'`)).toEqual([{ task: 't.r' }]);
  });

  it('single publish (keep), and an ack of that job: both succeed, the publish answers its id', async () => {
    const r = await interleave(`select jobs.publish('t.p', dedupe_key => 'k1', serial_key => 'sa', queue => 'bq')::text`, 'sa',
      (x) => `select jobs.ack(${x}::bigint)`);
    expect(r.ended).toBe(true); // 'error 40P01' before
    expect(r.published).toBe(r.x);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where dedupe_key is not null`)).toEqual([{ n: 0 }]);
  });

  it('single publish (replace), and an ack of that job: both succeed, the publish writes a new job', async () => {
    const r = await interleave(`select jobs.publish('t.p', dedupe_key => 'k1', serial_key => 'sa', queue => 'bq',
      dedupe_mode => 'replace')::text`, 'sa', (x) => `select jobs.ack(${x}::bigint)`);
    expect(r.ended).toBe(true); // 'error 40P01' before
    expect(await sql(`select job_id::text as id, task, dedupe_key, serial_wait from jobs.job_queue where serial_key = 'sa' order by job_id`))
      .toEqual([{ id: expect.any(String), task: 't.h2', dedupe_key: null, serial_wait: false },
                { id: r.published, task: 't.p', dedupe_key: 'k1', serial_wait: true }]);
  });
});

describe('two bulks sharing dedupe keys in different orders', () => {
  it('wait for each other in one order: both succeed and answer the same jobs', async () => {
    const [h, a, b] = [await session(), await session(), await session()];
    // h holds kc: a writes ka, then waits at kc; b (kb, ka) then waits for a.
    await h.query('begin');
    await h.query(`select jobs.publish('t.h', dedupe_key => 'kc')`);
    const first = outcome(a.query(`select jobs.publish_arrays(array['t', 't', 't'], null,
      dedupe_keys => array['ka', 'kc', 'kb'])::text[]`));
    await waitsFor(a.pid, ROW_OR_XACT);
    const second = outcome(b.query(`select jobs.publish_arrays(array['t', 't'], null, dedupe_keys => array['kb', 'ka'])::text[]`));
    await waitsFor(b.pid, ROW_OR_XACT);
    await h.query('rollback');
    const [ra, rb] = [await first, await second];
    expect(typeof ra).not.toBe('string'); // 'error 40P01' on one side before
    expect(typeof rb).not.toBe('string');
    const [ka, , kb] = ra as string[];
    expect(rb).toEqual([kb, ka]);
    expect(await sql(`select dedupe_key from jobs.job_queue order by job_id`))
      .toEqual([{ dedupe_key: 'ka' }, { dedupe_key: 'kc' }, { dedupe_key: 'kb' }]);
  });
});
