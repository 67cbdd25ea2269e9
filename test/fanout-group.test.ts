// publish_event's group (pg-boss's publish(event, data, { group })): every
// subscriber's job carries group_id / group_tier, so each queue's
// group_concurrency caps them with the group's other jobs; bad groups are
// refused as publish refuses them (same code, field and rule) at the SQL,
// TypeScript, CLI (dist/cli.mjs: `npm run build` first) and HTTP edges with
// nothing written; a publisher role may pass them (the grant names the new
// signature). On a real PostgreSQL, real roles.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

type Row = { queue: string; group_id: string | null; group_tier: string | null };
/** Each job's queue and group. */
const jobs = () => sql<Row>(`select queue, group_id, group_tier from jobs.job_queue order by queue, job_id`);
const publishSql = async (text: string, params?: unknown[]) =>
  (await sql<{ ids: string[] }>(`select ${text}::text[] as ids`, params))[0]!.ids;
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a rejection'); }, (e: unknown) => e);
const both = (group_id: string | null, group_tier: string | null = null) =>
  [{ queue: 'crm', group_id, group_tier }, { queue: 'mail', group_id, group_tier }];

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.subscription, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  // mail: one running job of a group at a time; crm: no cap.
  await sql(`select jobs.create_queue('mail', group_concurrency => 1); select jobs.create_queue('crm')`);
  await sql(`select jobs.subscribe('user.created', 'mail'); select jobs.subscribe('user.created', 'crm')`);
});

describe('SQL', () => {
  it("group_id, group_tier go on every subscriber's job; the queue's group_concurrency caps them", async () => {
    for (let i = 0; i < 3; i++) await publishSql(`jobs.publish_event('user.created', group_id => 'acme')`);
    await publishSql(`jobs.publish_event('user.created', group_id => 'beta', group_tier => 'pro')`);
    await publishSql(`jobs.publish_event('user.created')`);
    expect(await jobs()).toEqual([
      ...Array(3).fill(both('acme')[0]), both('beta', 'pro')[0], both(null)[0],
      ...Array(3).fill(both('acme')[1]), both('beta', 'pro')[1], both(null)[1]]);
    // mail: one of acme's three, beta's, the ungrouped one; crm (no cap): all five.
    const claimed = (q: string) => sql<{ g: string | null }>(`select q.group_id as g from jobs.claim(10, queue => $1) c
      join jobs.job_queue q using (job_id) order by c.job_id`, [q]);
    expect(await claimed('mail')).toEqual([{ g: 'acme' }, { g: 'beta' }, { g: null }]);
    expect(await claimed('crm')).toHaveLength(5);
  });

  it('bad groups raise what jobs.publish raises for them (PD019, column, message), and write nothing', async () => {
    const cases = ["group_id => ''", `group_id => '${'x'.repeat(201)}'`, "group_id => 'g', group_tier => ''",
                   `group_id => 'g', group_tier => '${'x'.repeat(201)}'`, "group_tier => 'pro'"];
    for (const arg of cases) {
      const event = await sqlErrorOf(sql, `select jobs.publish_event('user.created', ${arg})`);
      const job = await sqlErrorOf(sql, `select jobs.publish('t', ${arg})`);
      expect({ arg, code: event.code, column: event.column, message: event.message })
        .toEqual({ arg, code: job.code, column: job.column, message: job.message });
      expect(event.code, arg).toBe('PD019');
      expect(event.column, arg).toMatch(/^group_(id|tier)$/);
    }
    expect(await jobs()).toEqual([]);
  });

  it('a publisher may publish an event with a group (the grant takes the new signature)', async () => {
    const prefix = `fg${Date.now().toString(36)}`; // roles are cluster-wide
    await migrate(db.driver, { roles: prefix });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`set role ${prefix}_publisher`);
      const { rows } = await client.query(`select cardinality(jobs.publish_event('user.created', group_id => 'acme',
        group_tier => 'pro')) as n`);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
    }
    expect(await jobs()).toEqual(both('acme', 'pro'));
  });
});

describe('TypeScript', () => {
  it("publishEvent takes publish's group", async () => {
    expect(await queue.publishEvent('user.created', {}, { group: { id: 'acme', tier: 'pro' } })).toHaveLength(2);
    await queue.publishEvent('user.created', {}, { group: { id: 'beta' } });
    await queue.publishEvent('user.created', {});
    expect(await jobs()).toEqual([both('acme', 'pro')[0], both('beta')[0], both(null)[0],
                                  both('acme', 'pro')[1], both('beta')[1], both(null)[1]]);
  });

  it("bad groups are publish's ValidationError, naming the option; nothing written", async () => {
    const cases: object[] = [{ group: { id: '' } }, { group: { id: 'x'.repeat(201) } }, { group: { id: 'g', tier: '' } },
      { group: { id: 'g', tier: 7 } }, { group: { tier: 'pro' } }, { group: 'g' }, { group: { id: 'g', other: 1 } }];
    for (const options of cases) {
      const event = await errorOf(queue.publishEvent('user.created', {}, options as never));
      const job = await errorOf(queue.publish('t', {}, options as never));
      expect(event).toMatchObject({ name: 'ValidationError', field: expect.stringMatching(/^options\.group/) });
      expect({ options, field: (event as Error & { field: string }).field, message: (event as Error).message })
        .toEqual({ options, field: (job as Error & { field: string }).field, message: (job as Error).message });
    }
    expect(await jobs()).toEqual([]);
  });
});

describe('CLI', () => {
  it("event publish --group --group-tier, checked as publish's flags", async () => {
    const published = await cli('event', 'publish', 'user.created', '{"n":1}', '--group', 'acme', '--group-tier', 'pro');
    expect(published).toMatchObject({ code: 0 });
    expect(published.stdout.trim().split('\n')).toHaveLength(2);
    expect(await cli('event', 'publish', 'user.created', '--group', 'beta')).toMatchObject({ code: 0 });
    expect(await jobs()).toEqual([both('acme', 'pro')[0], both('beta')[0], both('acme', 'pro')[1], both('beta')[1]]);
    await sql('truncate jobs.job_queue');
    const bad = [['--group', ''], ['--group', 'x'.repeat(201)], ['--group', 'g', '--group-tier', ''], ['--group-tier', 'pro']];
    for (const flags of bad) {
      const event = await cli('event', 'publish', 'user.created', ...flags);
      const job = await cli('publish', 't', ...flags);
      expect({ flags, code: event.code, stderr: event.stderr }).toEqual({ flags, code: 2, stderr: job.stderr });
      expect(event.stderr).toMatch(/--group/);
    }
    expect(await jobs()).toEqual([]);
  });
});

describe('HTTP', () => {
  const TOKEN = 'fanout-group-token-0123456789abcdef';
  const app = createApp({ queue, token: TOKEN });
  const post = async (path: string, body: unknown) => {
    const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('POST /events/:event takes group as POST /jobs does; a bad one answers 400 naming the field', async () => {
    expect(await post('/events/user.created', { group: { id: 'acme', tier: 'pro' } })).toMatchObject({ status: 201 });
    expect(await jobs()).toEqual(both('acme', 'pro'));
    await sql('truncate jobs.job_queue');
    const bad: object[] = [{ group: { id: '' } }, { group: { id: 'g', tier: '' } }, { group: { tier: 'pro' } }, { group: 'g' }];
    for (const options of bad) {
      const event = await post('/events/user.created', options);
      const job = await post('/jobs', { task: 't', ...options });
      expect(event).toMatchObject({ status: 400, body: { error: { code: 'invalid_argument', field: expect.stringMatching(/^group/) } } });
      expect({ options, event }).toEqual({ options, event: job });
    }
    expect(await jobs()).toEqual([]);
  });
});
