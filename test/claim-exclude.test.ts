// Exclusion filters for claims (graphile-worker's forbidden flags): a claim
// given exclude takes no job whose attributes contain any of its objects,
// in SQL (jobs.claim, jobs.claim_json), drain() and `pgdrain drain`.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue, migrate, type TaskMap } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const queueWith = (tasks: TaskMap = {}) => createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const client = new pg.Client({ connectionString: db.url }); // one session: claim_json remembers its head per session
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-exclude-'));
const TASKS = join(dir, 'tasks.mjs');
writeFileSync(TASKS, 'export const t = async (b) => ({ got: b });\n');

beforeAll(() => client.connect());
afterAll(async () => {
  await client.end();
  rmSync(dir, { recursive: true, force: true });
});
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

/** Publishes task t with body `body`, scheduled `ago` seconds ago (negative: later). */
async function put(body: string, attributes?: object, priority = 0, ago = 10, timeout = 1): Promise<void> {
  await sql(`select jobs.publish('t', to_jsonb($1::text), scheduled_at => now() - make_interval(secs => $2),
                                 priority => $3, attributes => $4::jsonb, timeout_seconds => $5)`,
            [body, ago, priority, attributes === undefined ? null : JSON.stringify(attributes), timeout]);
}
const bodies = async (text: string) => (await sql<{ body: string }>(text)).map((r) => r.body);
/** Jobs still pending, never claimed: attempt 0 and no lease. */
const untouched = () => bodies(`select body from jobs.job_queue where attempt = 0 and lease_until is null order by body`);

describe('exclude in SQL', () => {
  it('skips exactly the jobs whose attributes contain any given object, in claim order otherwise; with filter too', async () => {
    await put('p5-acme', { partner: 'acme' }, 5, 30);
    await put('p5-plain', undefined, 5, 20);
    await put('p5-bob', { partner: 'bob' }, 5, 25);
    await put('p0-zeta-eu', { partner: 'zeta', region: 'eu', x: 1 }, 0, 50);
    await put('p0-zeta-us', { partner: 'zeta', region: 'us' }, 0, 40);
    await put('p0-acme-gold', { partner: 'acme', tier: 'gold' }, 0, 45);
    await put('p9-plain', undefined, 9, 1);
    await put('pm1-empty', {}, -1, 60);
    await put('p9-later', undefined, 9, -3600);
    const exclude = `array['{"partner":"acme"}', '{"partner":"zeta","region":"eu"}']::jsonb[]`;
    expect(await bodies(`select body from jobs.claim(100, exclude => ${exclude})`))
      .toEqual(['p9-plain', 'p5-bob', 'p5-plain', 'p0-zeta-us', 'pm1-empty']);
    expect(await untouched()).toEqual(['p0-acme-gold', 'p0-zeta-eu', 'p5-acme', 'p9-later']);
    // The filter's path (the GIN index): both apply.
    expect(await bodies(`select body from jobs.claim(100, filter => '{"partner":"acme"}',
                                                     exclude => array['{"tier":"gold"}']::jsonb[])`)).toEqual(['p5-acme']);
    // Empty or null: nothing excluded.
    expect(await bodies(`select body from jobs.claim(100, exclude => '{}')`)).toEqual(['p0-zeta-eu', 'p0-acme-gold']);
  });

  it('finds the jobs behind more excluded jobs than its batch, at every priority, claim after claim of one session', async () => {
    const publishMany = (n: number, priority: number, ago: number) => sql(
      `select jobs.publish('t', to_jsonb('acme-' || i), scheduled_at => now() - make_interval(secs => $2 + i),
                           priority => $1, attributes => '{"partner":"acme","n":1}') from generate_series(1, $3) i`,
      [priority, ago, n]);
    await publishMany(30, 0, 100);
    await put('p0-a', undefined, 0, 30);
    await put('p0-b', { partner: 'bob' }, 0, 20);
    await put('p0-c', undefined, 0, 10);
    await publishMany(30, -1, 100);
    await put('pm1-a', undefined, -1, 30);
    await put('pm1-b', undefined, -1, 20);
    const claims: string[][] = [];
    for (let i = 0; i < 4; i++) {
      const { rows } = await client.query<{ r: { jobs: { body: string[] } | null } }>(
        `select jobs.claim_json(2, exclude => array['{"partner":"acme"}']::jsonb[]) as r`);
      claims.push((rows[0]!.r.jobs?.body ?? []).sort());
    }
    expect(claims).toEqual([['p0-a', 'p0-b'], ['p0-c', 'pm1-a'], ['pm1-b'], []]);
    expect((await untouched()).length).toBe(60);
  });

  it('the unfit count leaves excluded jobs out', async () => {
    await put('acme-long', { partner: 'acme' }, 0, 10, 60);
    const unfit = async (exclude: string) => (await sql<{ r: { unfit: number; count: number } }>(
      `select jobs.claim_json(10, null, 5, exclude => ${exclude}) as r`))[0]!.r;
    expect(await unfit(`array['{"partner":"acme"}']::jsonb[]`)).toMatchObject({ count: 0, unfit: 0 });
    expect(await unfit('null')).toMatchObject({ count: 0, unfit: 1 });
    expect(await untouched()).toEqual(['acme-long']);
  });

  it('refuses a bad exclude naming it, and claims nothing', async () => {
    await put('plain');
    const refused = (exclude: string, column: string, message: RegExp) =>
      expect(sql(`select jobs.claim_json(10, exclude => ${exclude})`)).rejects.toMatchObject({ code: 'PD014', column, message: expect.stringMatching(message) });
    await refused(`array['{"a":1}', '[1]']::jsonb[]`, 'exclude[2]', /^exclude\[2\]: must be a JSON object, got array$/);
    await refused(`array['{"a":1}', null]::jsonb[]`, 'exclude[2]', /got null$/);
    await refused(`array(select '{}'::jsonb from generate_series(1, 101))`, 'exclude', /must hold at most 100 JSON objects, got 101/);
    await refused(`'{{"{}"},{"{}"}}'::jsonb[]`, 'exclude', /one-dimensional/);
    // {} is in every job's attributes: it would exclude them all (reviewer W).
    await refused(`array['{"a":1}', '{}']::jsonb[]`, 'exclude[2]', /^exclude\[2\]: must not be empty/);
    await expect(sql(`select * from jobs.claim(10, exclude => array['"x"']::jsonb[])`))
      .rejects.toMatchObject({ code: 'PD014', column: 'exclude[1]' });
    expect(await untouched()).toEqual(['plain']);
  });
});

describe('exclude in drain()', () => {
  it('runs the others and leaves excluded jobs pending; the drain ends empty, not stuck or out of time', async () => {
    await put('acme-1', { partner: 'acme' });
    await put('acme-long', { partner: 'acme', tier: 'gold' }, 0, 10, 60); // would not fit the budget: not "skipped"
    await put('plain');
    await put('bob', { partner: 'bob' });
    const ran: string[] = [];
    const q = queueWith({ t: (b: string) => void ran.push(b) });
    const report = await q.drain(10, Date.now() + 10_000, { exclude: [{ partner: 'acme' }] });
    expect(report).toMatchObject({ claimed: 2, succeeded: 2, skipped: 0, stoppedBy: 'empty' });
    expect(ran.sort()).toEqual(['bob', 'plain']);
    expect(await untouched()).toEqual(['acme-1', 'acme-long']);
  });

  it('refuses a bad exclude naming options.exclude[i], and claims nothing', async () => {
    await put('plain');
    const q = queueWith({ t: () => {} });
    const refused = (exclude: unknown, field: string) =>
      expect(q.drain(10, Date.now() + 10_000, { exclude: exclude as never })).rejects.toMatchObject({ code: 'invalid_argument', field });
    await refused([{ a: 1 }, [1]], 'options.exclude[1]');
    await refused([null], 'options.exclude[0]');
    await refused({ partner: 'acme' }, 'options.exclude');
    await refused(Array.from({ length: 101 }, () => ({})), 'options.exclude');
    await refused([{ a: 'nul \u0000' }], 'options.exclude[0]');
    // Reviewer W: a Map went as {}, and so did { partner: undefined } (an unset
    // variable): {} excluded every job with attributes. A Date reached SQL as a string.
    await refused([{ a: 1 }, new Map([['partner', 'acme']])], 'options.exclude[1]');
    await refused([{ partner: undefined }], 'options.exclude[0]');
    await refused([new Date()], 'options.exclude[0]');
    await refused([{}], 'options.exclude[0]');
    await expect(q.drain(10, Date.now() + 10_000, { exclude: [{ partner: undefined }] }))
      .rejects.toThrow('options.exclude[0]: must not be empty: {} is in every job\'s attributes, so it would exclude them all');
    await expect(q.drain(10, Date.now() + 10_000, { filter: new Map() as never }))
      .rejects.toThrow('options.filter: must be a plain JSON object, not a class instance');
    expect(await untouched()).toEqual(['plain']);
  });

  it('a worker role may claim with exclude (its grants name the signatures)', async () => {
    const prefix = `x${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    await put('acme', { partner: 'acme' });
    await put('plain');
    await client.query('begin');
    try {
      await client.query(`set local role ${prefix}_worker`);
      const { rows } = await client.query(`select jobs.claim_json(10, exclude => array['{"partner":"acme"}']::jsonb[])::jsonb -> 'jobs' -> 'body' as b`);
      expect(rows).toEqual([{ b: ['plain'] }]);
      const claimed = await client.query(`select body from jobs.claim(10, exclude => array['{"partner":"bob"}']::jsonb[])`);
      expect(claimed.rows).toEqual([{ body: 'acme' }]);
    } finally {
      await client.query('rollback');
    }
  });
});

describe('pgdrain drain --exclude', () => {
  const CLI = resolve('dist/cli.mjs');
  const cli = (args: string[], env: NodeJS.ProcessEnv = {}) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [CLI, 'drain', '--tasks', TASKS, '--deadline', '20', ...args],
               { env: { ...process.env, DATABASE_URL: db.url, ...env }, cwd: dir, timeout: 30_000 },
               (error, stdout, stderr) => done({ code: error ? (typeof error.code === 'number' ? error.code : null) : 0, stdout, stderr }));
    });

  it('takes a JSON array of objects as the flag or PGDRAIN_EXCLUDE; refuses anything else with exit 2', async () => {
    await put('acme', { partner: 'acme' });
    await put('bob', { partner: 'bob' });
    await put('plain');
    const bad = [
      [await cli(['--exclude', '[1]']), /--exclude.*exclude\[0\]: must be a JSON object/],
      [await cli(['--exclude', '{"partner":"acme"}']), /--exclude.*exclude: must be an array of JSON objects/],
      [await cli([], { PGDRAIN_EXCLUDE: '[{"partner":"acme"}, null]' }), /PGDRAIN_EXCLUDE.*exclude\[1\]: must be a JSON object/],
      // Reviewer W: JSON.parse made this 12345678901234567000, and the job it meant ran.
      [await cli(['--exclude', '[{"acct":12345678901234567890}]']), /--exclude.*cannot be kept exactly/],
      [await cli(['--exclude', '[{"a":"\\u0000"}]']), /--exclude.*exclude\[0\]: must not contain \\u0000/],
    ] as const;
    for (const [run, message] of bad) {
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(message);
    }
    expect(await untouched()).toEqual(['acme', 'bob', 'plain']);

    const flag = await cli(['--exclude', '[{"partner":"acme"},{"partner":"bob"}]', '--json']);
    expect(flag.code).toBe(0);
    expect(JSON.parse(flag.stdout)).toMatchObject({ claimed: 1, stoppedBy: 'empty' });
    const env = await cli(['--json'], { PGDRAIN_EXCLUDE: '[{"partner":"acme"}]' });
    expect(JSON.parse(env.stdout)).toMatchObject({ claimed: 1, stoppedBy: 'empty' });
    expect(await sql(`select body from jobs.job order by body`)).toEqual([{ body: 'bob' }, { body: 'plain' }]);
    expect(await untouched()).toEqual(['acme']);
  });
});
