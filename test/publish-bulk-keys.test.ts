// Bulk publish with per-job dedupe keys (keep), serial keys and attributes:
// jobs.publish_arrays' dedupe_keys, serial_keys and attributes, publishBulk's
// and POST /jobs' dedupeKey, serialKey and attributes.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate, publishBulk, type BulkJob } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const shared = { ...db.driver, close: async () => {} };
const ids = async (text: string, params?: unknown[]) => (await one<{ ids: string[] }>(`select (${text})::text[] as ids`, params)).ids;
const consumed = async () => (await sql<{ body: unknown }>(`select body from jobs.consume(50) order by job_id`)).map((r) => r.body);
const ackWhere = (body: string) => sql(`select jobs.ack(job_id) from jobs.job_queue where body = $1::jsonb`, [JSON.stringify(body)]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('dedupe keys in a bulk (keep)', () => {
  it('a key an active job holds answers its id and writes nothing; the rest are written, one id per position', async () => {
    const held = await one<{ id: string }>(`select jobs.publish('t', '"old"', dedupe_key => 'k1')::text as id`);
    const got = await ids(`jobs.publish_arrays(array['t', 't', 't'], '["a", "b", "c"]', dedupe_keys => array['k1', 'k2', null])`);
    expect(got[0]).toBe(held.id);
    expect(await sql(`select job_id::text as id, body, dedupe_key from jobs.job_queue order by job_id`)).toEqual([
      { id: held.id, body: 'old', dedupe_key: 'k1' },
      { id: got[1], body: 'b', dedupe_key: 'k2' },
      { id: got[2], body: 'c', dedupe_key: null },
    ]);
  });

  it('two jobs of one bulk with one key give one job (the first), and both positions answer its id', async () => {
    const got = await ids(`jobs.publish_arrays(array['t', 't', 't'], '["first", "plain", "second"]', dedupe_keys => array['k', null, 'k'])`);
    expect(got[2]).toBe(got[0]);
    expect(got[1]).not.toBe(got[0]);
    expect(await sql(`select job_id::text as id, body from jobs.job_queue order by job_id`))
      .toEqual([{ id: got[0], body: 'first' }, { id: got[1], body: 'plain' }]);
  });

  it('once the job holding a key ended, the key is free: the next bulk writes a new job', async () => {
    const [first] = await ids(`jobs.publish_arrays(array['t'], dedupe_keys => array['k'])`);
    expect(await ids(`jobs.publish_arrays(array['t'], dedupe_keys => array['k'])`)).toEqual([first]);
    await sql(`select jobs.ack(job_id) from jobs.consume(1)`);
    const [second] = await ids(`jobs.publish_arrays(array['t'], dedupe_keys => array['k'])`);
    expect(second).not.toBe(first);
    expect(await sql(`select job_id::text as id from jobs.job_queue`)).toEqual([{ id: second }]);
  });

  it('a key a concurrent publish takes while the bulk runs: its id, and the bulk\'s serial key is not left without a head', async () => {
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    try {
      await a.query('begin');
      const other = (await a.query<{ id: string }>(`select jobs.publish('t', '"other"', dedupe_key => 'd')::text as id`)).rows[0]!.id;
      const bPid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      // Its first job, the key's head, loses the dedupe key to a's job: the second must not wait behind nothing.
      const bulk = b.query<{ ids: string[] }>(`select jobs.publish_arrays(array['t', 't'], '["x", "y"]',
        dedupe_keys => array['d', null], serial_keys => array['s', 's'])::text[] as ids`);
      await until(async () => (await sql(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [bPid])).length > 0,
        "the bulk's insert to wait for the uncommitted key");
      await a.query('commit');
      const got = (await bulk).rows[0]!.ids;
      expect(got[0]).toBe(other);
      expect(await sql(`select job_id::text as id, body, serial_wait from jobs.job_queue where serial_key = 's'`))
        .toEqual([{ id: got[1], body: 'y', serial_wait: false }]);
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
  });
});

describe('serial keys in a bulk', () => {
  it('jobs of one key run one at a time, in their order in the bulk; other keys and plain jobs are not held back', async () => {
    await sql(`select jobs.publish_arrays(array['t', 't', 't', 't', 't'], '["a1", "b1", "a2", "p", "a3"]',
      serial_keys => array['a', 'b', 'a', null, 'a'])`);
    expect(await consumed()).toEqual(['a1', 'b1', 'p']);
    await ackWhere('a1');
    expect(await consumed()).toEqual(['a2']);
    await ackWhere('a2');
    expect(await consumed()).toEqual(['a3']);
  });

  it('a bulk job whose key has a running job waits for it', async () => {
    await sql(`select jobs.publish('t', '"running"', serial_key => 's')`);
    expect(await consumed()).toEqual(['running']);
    await sql(`select jobs.publish_arrays(array['t', 't'], '["next", "plain"]', serial_keys => array['s', null])`);
    expect(await one(`select state from jobs.all where body = '"next"'`)).toEqual({ state: 'blocked' });
    expect(await consumed()).toEqual(['plain']);
    await ackWhere('running');
    expect(await consumed()).toEqual(['next']);
  });

  it('bulks with shared keys in opposite orders, from two connections at once, do not deadlock; each key has one head', async () => {
    const keys = Array.from({ length: 100 }, (_, i) => `key:${String(i).padStart(3, '0')}`);
    const [a, b] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([a.connect(), b.connect()]);
    const bulk = (c: pg.Client, order: string[]) => c.query(`select jobs.publish_arrays(array_fill('t'::text, array[$2::int]),
      serial_keys => $1::text[])`, [order, order.length]);
    try {
      for (let round = 0; round < 50; round++) {
        await Promise.all([bulk(a, keys), bulk(b, [...keys].reverse())]);
      }
    } finally {
      await Promise.all([a.end(), b.end()]);
    }
    expect(await sql(`select count(*)::int as jobs, count(*) filter (where not serial_wait)::int as heads,
                             count(distinct serial_key)::int as keys from jobs.job_queue`))
      .toEqual([{ jobs: 100 * 100, heads: 100, keys: 100 }]);
  });
});

describe('a bulk with many serial keys', () => {
  // Each distinct key takes a lock until commit, from PostgreSQL's lock table
  // (max_locks_per_transaction x connections): 20,000 in one bulk ran out of
  // shared memory, failing other sessions meanwhile. A bulk takes 500.
  it('500 distinct keys: written, each its key\'s head but behind the key\'s older job or its own earlier one', async () => {
    await sql(`select jobs.publish('t', '"older"', serial_key => 'acct:7')`);
    const got = await ids(`jobs.publish_arrays(array_fill('t'::text, array[501]), null,
      serial_keys => array(select 'acct:' || g from generate_series(1, 500) g) || 'acct:9'::text)`);
    expect(got).toHaveLength(501);
    expect(await sql(`select count(*)::int as jobs, count(*) filter (where serial_wait)::int as waiting,
                             array_agg(serial_key order by serial_key) filter (where serial_wait) as waiting_keys from jobs.job_queue`))
      .toEqual([{ jobs: 502, waiting: 2, waiting_keys: ['acct:7', 'acct:9'] }]);
    expect(await one(`select serial_wait from jobs.job_queue where job_id = $1`, [got[500]])).toEqual({ serial_wait: true });
  });

  it('501 distinct keys are refused, naming serial_keys, before anything is locked or written', async () => {
    const e = await sqlErrorOf(sql, `select jobs.publish_arrays(array_fill('t'::text, array[501]), null,
      serial_keys => array(select 'acct:' || g from generate_series(1, 501) g))`);
    expect(e).toMatchObject({ code: 'PD012', column: 'serial_keys', message: expect.stringMatching(/must hold at most 500 distinct keys/) });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('jobs.fail and jobs.redrive of 500 keys\' heads: each key\'s next job takes its turn, the redriven wait behind', async () => {
    await sql(`select jobs.publish_arrays(array_fill('t'::text, array[1000]), null,
      serial_keys => array(select 'acct:' || (g % 500) from generate_series(0, 999) g))`);
    expect(await one(`select jobs.fail(array(select job_id from jobs.job_queue where not serial_wait), 'gone') as n`))
      .toEqual({ n: 500 });
    expect(await one(`select jobs.redrive(task => 't') as n`)).toEqual({ n: 500 });
    // Per key: the next job runs now; the redriven one (its old, smaller id) after it.
    expect(await sql(`select count(*)::int as n from (select serial_key, array_agg(serial_wait order by job_id) as w
                                                      from jobs.job_queue group by 1) k where k.w = array[true, false]`))
      .toEqual([{ n: 500 }]);
  });

  it('holds a settle of one of its keys until it commits; other keys and plain jobs run meanwhile', async () => {
    const [bulk, other] = [new pg.Client({ connectionString: db.url }), new pg.Client({ connectionString: db.url })];
    await Promise.all([bulk.connect(), other.connect()]);
    try {
      await sql(`select jobs.publish('t', '"keyed"', serial_key => 'k1'), jobs.publish('t', '"elsewhere"', serial_key => 'z')`);
      expect((await consumed()).sort()).toEqual(['elsewhere', 'keyed']);
      await bulk.query('begin');
      await bulk.query(`select jobs.publish_arrays(array_fill('t'::text, array[40]), null,
        serial_keys => array(select 'k' || g from generate_series(1, 40) g))`);
      await sql(`select jobs.publish('t', '"plain"')`);
      expect(await sql(`select body from jobs.consume(1) where body = '"plain"'`)).toEqual([{ body: 'plain' }]);
      await ackWhere('plain');
      await ackWhere('elsewhere'); // a key the bulk does not hold
      const pid = (await other.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const ack = other.query(`select jobs.ack(job_id) from jobs.job_queue where body = '"keyed"'`);
      await until(async () => (await sql(`select 1 from pg_stat_activity where pid = $1 and wait_event_type = 'Lock'`, [pid])).length > 0,
        'the ack of a job of a key the bulk holds to wait for it');
      await bulk.query('commit');
      await ack;
      expect(await sql(`select body from jobs.job order by job_id`)).toEqual([{ body: 'keyed' }, { body: 'elsewhere' }, { body: 'plain' }]);
    } finally {
      await Promise.all([bulk.end(), other.end()]);
    }
  });
});

describe('attributes in a bulk', () => {
  it('are stored per job (a JSON null: none) and a claim filters on them', async () => {
    await sql(`select jobs.publish_arrays(array['t', 't', 't'], '["eu", "us", "none"]',
      attributes => '[{"region":"eu","gpu":true}, {"region":"us"}, null]')`);
    expect(await sql(`select body, attributes from jobs.job_queue order by job_id`)).toEqual([
      { body: 'eu', attributes: { region: 'eu', gpu: true } }, { body: 'us', attributes: { region: 'us' } },
      { body: 'none', attributes: null }]);
    expect(await sql(`select body from jobs.claim(10, filter => '{"region":"eu"}')`)).toEqual([{ body: 'eu' }]);
  });
});

describe('checks', () => {
  it.each([
    ['an empty dedupe key', `dedupe_keys => array['k', '']`, 'PD011', 'jobs[2].dedupe_key', 'must be a non-empty text of at most 500 characters'],
    ['a long serial key', `serial_keys => array[null, repeat('x', 501)]`, 'PD012', 'jobs[2].serial_key', 'must be a non-empty text of at most 500 characters'],
    ['attributes not an object', `attributes => '[{}, [1]]'`, 'PD014', 'jobs[2].attributes', 'must be a JSON object, got array'],
    ['attributes of another length', `attributes => '[{}]'`, 'PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays): attributes does not (2 tasks)'],
    ['attributes not an array', `attributes => '{}'`, 'PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays): attributes does not (2 tasks)'],
    ['bodies not an array', `'{"a":1}'`, 'PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays): bodies does not (2 tasks)'],
    ['fewer dedupe keys', `dedupe_keys => array['k']`, 'PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays): dedupe_keys does not (2 tasks)'],
    ['more group tiers', `group_ids => array['g', 'g'], group_tiers => array['a', 'b', 'c']`, 'PD017', 'jobs', 'every array must hold one element per task (bodies, attributes: JSON arrays): group_tiers does not (2 tasks)'],
  ])('SQL: %s is refused naming the element and field, and nothing is written', async (_name, args, code, column, rule) => {
    const e = await sqlErrorOf(sql, `select jobs.publish_arrays(array['t', 't'], ${args})`);
    expect(e).toMatchObject({ code, column, message: `${column}: ${rule}` });
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });

  it('TypeScript: bad keys, attributes, a replace or dependsOn are refused naming the job and field', async () => {
    const cases: [unknown, string, RegExp][] = [
      [{ task: 't', dedupeKey: '' }, 'jobs[1].dedupeKey', /must be a non-empty text/],
      [{ task: 't', serialKey: 7 }, 'jobs[1].serialKey', /must be a string/],
      [{ task: 't', attributes: [1] }, 'jobs[1].attributes', /must be a JSON object/],
      [{ task: 't', dedupeKey: 'k', dedupeMode: 'replace' }, 'jobs[1].dedupeMode', /must be 'keep' or 'keep_waiting' in a bulk publish \(not 'replace' nor 'replace_keep_time'\): a replace rewrites/],
      [{ task: 't', dedupeMode: 'keep' }, 'jobs[1].dedupeMode', /needs a dedupe key/],
      [{ task: 't', dependsOn: ['1'] }, 'jobs[1].dependsOn', /a bulk publish takes none/],
    ];
    for (const [job, field, rule] of cases) {
      const error = await publishBulk(db.driver, [{ task: 't' }, job as BulkJob]).then(() => null, (e: unknown) => e);
      expect(error, field).toMatchObject({ field, message: expect.stringMatching(rule) });
    }
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 0 });
  });
});

describe('publishBulk and POST /jobs', () => {
  it('publishBulk takes dedupeKey, serialKey and attributes per job', async () => {
    const q = createQueue({ driver: shared, tasks: {} });
    const held = await q.publish('t', 'held', { dedupeKey: 'held' });
    const got = await q.publishBulk([
      { task: 't', body: 'held again', dedupeKey: 'held', dedupeMode: 'keep' },
      { task: 't', body: 'one', serialKey: 's', attributes: { region: 'eu' } },
      { task: 't', body: 'two', serialKey: 's', dedupeKey: 'two' },
      { task: 't', body: 'two again', dedupeKey: 'two' },
    ]);
    expect(got[0]).toBe(held);
    expect(got[3]).toBe(got[2]);
    expect(await sql(`select job_id::text as id, body, dedupe_key, serial_key, serial_wait, attributes from jobs.job_queue order by job_id`))
      .toEqual([
        { id: held, body: 'held', dedupe_key: 'held', serial_key: null, serial_wait: false, attributes: null },
        { id: got[1], body: 'one', dedupe_key: null, serial_key: 's', serial_wait: false, attributes: { region: 'eu' } },
        { id: got[2], body: 'two', dedupe_key: 'two', serial_key: 's', serial_wait: true, attributes: null },
      ]);
  });

  it('POST /jobs: bulk jobs take dedupeKey, serialKey and attributes; a bad one is a 400 naming the field', async () => {
    const token = 'bulk-keys-token-0123456789abcdef';
    const app = createApp({ queue: createQueue({ driver: shared, tasks: {} }), token });
    const post = async (body: unknown) => {
      const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    const jobs = [{ task: 't', dedupeKey: 'order-1', serialKey: 's', attributes: { tenant: 4 } }, { task: 't', dedupeKey: 'order-1' }];
    const first = await post({ jobs });
    expect(first.status).toBe(201);
    expect(first.body.ids[1]).toBe(first.body.ids[0]);
    // Sent again (after a lost answer): the same job, not a second one.
    expect(await post({ jobs })).toEqual(first);
    expect(await sql(`select dedupe_key, serial_key, attributes from jobs.job_queue`))
      .toEqual([{ dedupe_key: 'order-1', serial_key: 's', attributes: { tenant: 4 } }]);
    for (const [job, field, rule] of [
      [{ task: 't', serialKey: '' }, 'jobs[0].serialKey', /must be a non-empty text/],
      [{ task: 't', attributes: 'eu' }, 'jobs[0].attributes', /must be a JSON object/],
      [{ task: 't', dedupeKey: 'k', dedupeMode: 'replace' }, 'jobs[0].dedupeMode', /must be 'keep' or 'keep_waiting' in a bulk publish/],
      [{ task: 't', dependsOn: ['1'] }, 'jobs[0].dependsOn', /a job of a bulk publish takes no dependsOn/],
    ] as const) {
      const res = await post({ jobs: [job] });
      expect(res.status, field).toBe(400);
      expect(res.body, field).toMatchObject({ error: { field, message: expect.stringMatching(rule) } });
    }
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });

  it('a publisher role may publish a bulk with keys', async () => {
    const prefix = `b${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`set role ${prefix}_publisher`);
      const { rows } = await client.query(`select cardinality(jobs.publish_arrays(array['t', 't'], dedupe_keys => array['r', 'r'],
        serial_keys => array['s', null], attributes => '[{"a":1}, null]')) as n`);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
    }
    expect(await one(`select count(*)::int as n from jobs.job_queue`)).toEqual({ n: 1 });
  });
});
