// publish_event's per-job timeout and max_retries (pg-boss's publish(event,
// data, options)): set on every subscriber's job, each queue's defaults
// when left out, and refused as publish refuses them (same code, field and
// rule) at the SQL, TypeScript, CLI (dist/cli.mjs: `npm run build` first)
// and HTTP edges, with nothing written. On a real PostgreSQL, real roles.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

type Row = { queue: string; timeout: string; max_retries: number };
const jobs = () => sql<Row>(`select queue, timeout::text, max_retries from jobs.job_queue order by queue`);
const publishSql = async (text: string) => (await sql<{ ids: string[] }>(`select ${text}::text[] as ids`))[0]!.ids;
const errorOf = (p: Promise<unknown>) => p.then(() => { throw new Error('expected a rejection'); }, (e: unknown) => e);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.subscription');
  await sql(`delete from jobs.queue where name <> 'default'`);
  // mail: its own timeout; crm: its own retries; the rest: the global defaults (60 s, 3).
  await sql(`select jobs.create_queue('mail', default_timeout => 300); select jobs.create_queue('crm', default_max_retries => 7)`);
  await sql(`select jobs.subscribe('user.created', 'mail'); select jobs.subscribe('user.created', 'crm')`);
});

describe('SQL', () => {
  it('timeout and max_retries go on every subscriber\'s job; left out, each queue\'s default, then the global one', async () => {
    expect(await publishSql(`jobs.publish_event('user.created', timeout => 5.5, max_retries => 0)`)).toHaveLength(2);
    expect(await jobs()).toEqual([{ queue: 'crm', timeout: '5.5', max_retries: 0 }, { queue: 'mail', timeout: '5.5', max_retries: 0 }]);
    await sql('truncate jobs.job_queue');
    await publishSql(`jobs.publish_event('user.created', timeout => 5)`);
    await publishSql(`jobs.publish_event('user.created', max_retries => 1)`);
    await publishSql(`jobs.publish_event('user.created')`);
    expect(await sql(`select queue, timeout::text, max_retries from jobs.job_queue order by queue, job_id`)).toEqual([
      { queue: 'crm', timeout: '5', max_retries: 7 }, { queue: 'crm', timeout: '60', max_retries: 1 },
      { queue: 'crm', timeout: '60', max_retries: 7 },
      { queue: 'mail', timeout: '5', max_retries: 3 }, { queue: 'mail', timeout: '300', max_retries: 1 },
      { queue: 'mail', timeout: '300', max_retries: 3 },
    ]);
  });

  it('bad values raise what jobs.publish raises for them (code, column, message), and write nothing', async () => {
    const cases: [string, string][] = [
      ['timeout => 0', 'PD002'], ['timeout => 86401', 'PD002'], ["timeout => 'NaN'", 'PD002'],
      ['max_retries => -1', 'PD003'], ['max_retries => 1001', 'PD003'],
    ];
    for (const [arg, code] of cases) {
      const event = await sqlErrorOf(sql, `select jobs.publish_event('user.created', ${arg})`);
      // jobs.publish names its timeout timeout_seconds (DESIGN's contract); publish_event's is timeout.
      const job = await sqlErrorOf(sql, `select jobs.publish('t', ${arg.replace('timeout', 'timeout_seconds')})`);
      const asEvent = (text: string | undefined) => text?.replace('timeout_seconds', 'timeout');
      expect({ arg, code: event.code, column: event.column, message: event.message })
        .toEqual({ arg, code, column: asEvent(job.column), message: asEvent(job.message) });
    }
    expect(await jobs()).toEqual([]);
  });

  it('a publisher may publish an event with them (the grant takes the new signature)', async () => {
    const prefix = `fo${Date.now().toString(36)}`; // roles are cluster-wide
    await migrate(db.driver, { roles: prefix });
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`set role ${prefix}_publisher`);
      const { rows } = await client.query(`select cardinality(jobs.publish_event('user.created', timeout => 9, max_retries => 2)) as n`);
      expect(rows).toEqual([{ n: 2 }]);
    } finally {
      await client.end();
    }
    expect(await jobs()).toEqual([{ queue: 'crm', timeout: '9', max_retries: 2 }, { queue: 'mail', timeout: '9', max_retries: 2 }]);
  });
});

describe('TypeScript', () => {
  it('publishEvent takes publish\'s timeoutSeconds and maxRetries', async () => {
    expect(await queue.publishEvent('user.created', {}, { timeoutSeconds: 12, maxRetries: 4 })).toHaveLength(2);
    await queue.publishEvent('user.created', {}, { maxRetries: 0 });
    expect(await sql(`select queue, timeout::text, max_retries from jobs.job_queue order by queue, job_id`)).toEqual([
      { queue: 'crm', timeout: '12', max_retries: 4 }, { queue: 'crm', timeout: '60', max_retries: 0 },
      { queue: 'mail', timeout: '12', max_retries: 4 }, { queue: 'mail', timeout: '300', max_retries: 0 },
    ]);
  });

  it('bad values are publish\'s ValidationError, naming options.timeoutSeconds / options.maxRetries; nothing written', async () => {
    const cases = [{ timeoutSeconds: 0 }, { timeoutSeconds: Number.NaN }, { maxRetries: 1.5 }, { maxRetries: 1001 }];
    for (const options of cases) {
      const event = await errorOf(queue.publishEvent('user.created', {}, options));
      const job = await errorOf(queue.publish('t', {}, options));
      expect(event).toMatchObject({ code: 'invalid_argument', field: `options.${Object.keys(options)[0]}` });
      expect({ options, field: (event as Error & { field: string }).field, message: (event as Error).message })
        .toEqual({ options, field: (job as Error & { field: string }).field, message: (job as Error).message });
    }
    expect(await jobs()).toEqual([]);
  });

  // timeoutSeconds, maxRetries, priority, runAt and delaySeconds are refused by
  // the TS checks with the SQL's bounds: none reaches the database. Attributes
  // that are a plain object whose JSON is not one (its toJSON gives a string)
  // are refused by it alone (a Date is refused by the TS checks: test/publish-plain-json.test.ts).
  it('a check only the database makes names the option as publish\'s do (attributes → options.attributes)', async () => {
    const options = { attributes: { toJSON: () => 'eu' } as unknown as Record<string, never> };
    const event = await errorOf(queue.publishEvent('user.created', {}, options));
    const job = await errorOf(queue.publish('t', {}, options));
    expect(event).toMatchObject({ code: 'invalid_argument', field: 'options.attributes',
                                  message: 'options.attributes: must be a JSON object, got string' });
    expect((event as Error).cause).toMatchObject({ code: 'PD014', column: 'attributes' });
    expect(job).toMatchObject({ field: (event as Error & { field: string }).field, message: (event as Error).message });
    expect(await jobs()).toEqual([]);
  });
});

describe('CLI', () => {
  it('event publish --timeout --max-retries, named and checked as publish\'s flags', async () => {
    const published = await cli('event', 'publish', 'user.created', '--timeout', '7', '--max-retries', '2');
    expect(published).toMatchObject({ code: 0 });
    expect(published.stdout.trim().split('\n')).toHaveLength(2);
    expect(await jobs()).toEqual([{ queue: 'crm', timeout: '7', max_retries: 2 }, { queue: 'mail', timeout: '7', max_retries: 2 }]);
    await sql('truncate jobs.job_queue');
    for (const flag of [['--timeout', '0'], ['--max-retries', '1001'], ['--max-retries', 'x']]) {
      const event = await cli('event', 'publish', 'user.created', ...flag);
      const job = await cli('publish', 't', ...flag);
      expect({ flag, code: event.code, stderr: event.stderr }).toEqual({ flag, code: 2, stderr: job.stderr });
      expect(event.stderr).toContain(flag[0]);
    }
    expect(await jobs()).toEqual([]);
  });
});

describe('HTTP', () => {
  const TOKEN = 'fanout-options-token-0123456789';
  const app = createApp({ queue, token: TOKEN });
  const post = async (path: string, body: unknown) => {
    const res = await app.request(path, { method: 'POST', body: JSON.stringify(body),
                                          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    return { status: res.status, body: (await res.json()) as any };
  };

  it('POST /events/:event takes timeoutSeconds and maxRetries as POST /jobs does', async () => {
    expect(await post('/events/user.created', { timeoutSeconds: 30, maxRetries: 1 })).toMatchObject({ status: 201 });
    expect(await jobs()).toEqual([{ queue: 'crm', timeout: '30', max_retries: 1 }, { queue: 'mail', timeout: '30', max_retries: 1 }]);
    await sql('truncate jobs.job_queue');
    for (const options of [{ timeoutSeconds: 0 }, { timeoutSeconds: '5' }, { maxRetries: -1 }]) {
      const event = await post('/events/user.created', options);
      const job = await post('/jobs', { task: 't', ...options });
      expect(event).toMatchObject({ status: 400, body: { error: { code: 'invalid_argument', field: Object.keys(options)[0] } } });
      expect({ options, event }).toEqual({ options, event: job });
    }
    expect(await jobs()).toEqual([]);
  });
});
