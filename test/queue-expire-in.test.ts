// A queue's expire_in from TypeScript, the CLI and the dashboard:
// queues.create(name, { expiresInSeconds }) (publish's name for a job's own)
// / `pgdrain queue create NAME --expires-in SECONDS` (publish's flag) set it
// (null / --no-expires-in clear it, left out it stays), queues.list() /
// `queue list` / GET /dashboard show it, and bad values are refused naming
// the option or flag. A job published into the queue then expires that long
// after its run time: a drain ends it unstarted. pg-boss's queue option
// expireInSeconds (a running job's limit, timeoutSeconds here) is refused,
// naming timeoutSeconds. The CLI runs dist/cli.mjs (`npm run build` first).
// On a real PostgreSQL.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { serve, type ServerType } from '@hono/node-server';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`update jobs.queue set dead_letter = null`);
  await sql(`delete from jobs.queue where name <> 'default'`);
});

/** The queue's stored expire_in, in seconds (null: never). */
const expireIn = async (name: string) =>
  (await sql<{ e: number | null }>(`select expire_in::float8 as e from jobs.queue where name = $1`, [name]))[0]?.e;
/** Seconds between a job's run time and its expiry (null: none). */
const expiresAfter = async (id: string) => (await sql<{ s: number | null }>(
  `select extract(epoch from expires_at - scheduled_at)::float8 as s from jobs.job_queue where job_id = $1`, [id]))[0]!.s;

describe('TypeScript', () => {
  it('queues.create sets expiresInSeconds; list shows it; left out it stays, null clears it; publish takes it', async () => {
    await queue.queues.create('mail', { expiresInSeconds: 90 });
    expect(await expireIn('mail')).toBe(90);
    expect((await queue.queues.list()).find((q) => q.name === 'mail')).toMatchObject({ expiresInSeconds: 90 });
    expect((await queue.queues.list()).find((q) => q.name === 'default')).toMatchObject({ expiresInSeconds: null });
    const id = await queue.publish('t', {}, { queue: 'mail', delaySeconds: 30 });
    expect(await expiresAfter(id)).toBe(90);

    await queue.queues.create('mail', { maxSize: 5 });
    expect(await expireIn('mail')).toBe(90);
    await queue.queues.create('mail', { expiresInSeconds: 0.5 });
    expect(await expireIn('mail')).toBe(0.5);
    await queue.queues.create('mail', { expiresInSeconds: null });
    expect(await expireIn('mail')).toBeNull();
    expect((await queue.queues.list()).find((q) => q.name === 'mail')).toMatchObject({ expiresInSeconds: null, maxSize: 5 });
    // Jobs already published keep theirs.
    expect(await expiresAfter(id)).toBe(90);
  });

  it('a job of the queue not started expiresInSeconds after its run time never runs: the drain ends it as expired', async () => {
    await queue.queues.create('mail', { expiresInSeconds: 600 });
    const ran: string[] = [];
    const q = createQueue({ driver: { ...db.driver, close: async () => {} },
                            tasks: { t: async (body: { n: string }) => { ran.push(body.n); } } });
    // Due 20 minutes ago: past the queue's 10, so expired; the other is due now, with 10 minutes to start.
    const runAt = new Date(Date.now() - 20 * 60_000);
    const late = await q.publish('t', { n: 'late' }, { queue: 'mail', runAt });
    const fresh = await q.publish('t', { n: 'fresh' }, { queue: 'mail' });
    // A budget past the jobs' 60 s timeout, which the drain needs to take one.
    const report = await q.drain(10, new Date(Date.now() + 180_000), { queue: 'mail' });
    expect(report).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(ran).toEqual(['fresh']);
    expect(await q.getJob(late)).toMatchObject({ state: 'failure', attempts: 0,
      error: `expired: not started before ${new Date(runAt.getTime() + 600_000).toISOString()}` });
    expect(await q.getJob(fresh)).toMatchObject({ state: 'success' });
  });

  it("pg-boss's expireInSeconds (a running job's limit) is refused naming timeoutSeconds, before anything is written", async () => {
    const said = `options: unknown option "expireInSeconds" (pg-boss's expireInSeconds is timeoutSeconds)`;
    await expect(queue.queues.create('mail', { expireInSeconds: 900 } as never))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options', message: said });
    expect(await expireIn('mail')).toBeUndefined();
    await queue.queues.create('mail', { maxSize: 5 });
    await expect(queue.queues.create('mail', { expireInSeconds: 900, maxSize: 6 } as never))
      .rejects.toMatchObject({ name: 'ValidationError', field: 'options', message: said });
    expect((await queue.queues.list()).find((x) => x.name === 'mail')).toMatchObject({ maxSize: 5, expiresInSeconds: null });
    expect((await queue.queues.list())[0]).not.toHaveProperty('expireInSeconds');
  });

  it('bad values are a ValidationError naming options.expiresInSeconds, with publish\'s expiresInSeconds rule; nothing changes', async () => {
    await queue.queues.create('mail', { expiresInSeconds: 60 });
    for (const value of [0, -1, 315360001, Number.NaN, Number.POSITIVE_INFINITY, '60']) {
      const error = await queue.queues.create('mail', { expiresInSeconds: value as number }).then(() => null, (e: unknown) => e);
      expect(error, String(value)).toMatchObject({ name: 'ValidationError', field: 'options.expiresInSeconds' });
      if (typeof value === 'number' && Number.isFinite(value)) {
        const publishError = await queue.publish('t', {}, { expiresInSeconds: value }).then(() => null, (e: unknown) => e);
        expect((error as Error).message).toBe((publishError as Error).message);
      }
    }
    await expect(queue.queues.create('fresh', { expiresInSeconds: 0 })).rejects.toMatchObject({ field: 'options.expiresInSeconds' });
    expect(await expireIn('mail')).toBe(60);
    expect(await expireIn('fresh')).toBeUndefined();
  });
});

describe('CLI', () => {
  it('queue create --expires-in sets it, --no-expires-in clears it; queue list shows it; bad ones exit 2 naming the flag', async () => {
    expect(await cli('queue', 'create', 'mail', '--expires-in', '3600')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBe(3600);
    expect(await cli('queue', 'create', 'mail', '--max-size', '4')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBe(3600);
    const list = await cli('queue', 'list');
    expect(list.stdout).toMatch(/retry_delay_max\s+expires_in\s+dead_letter/);
    expect(list.stdout).toMatch(/^mail\s+4\s.*\s3600$/m);
    expect(JSON.parse((await cli('queue', 'list', '--json')).stdout))
      .toContainEqual(expect.objectContaining({ name: 'mail', expiresInSeconds: 3600 }));

    for (const value of ['0', '-5', '315360001', 'soon', '']) {
      const r = await cli('queue', 'create', 'mail', '--expires-in', value);
      expect(r.code, value).toBe(2);
      expect(r.stderr, value).toMatch(/--expires-in: must be a number of seconds from 0.001 to 315360000/);
    }
    expect(await expireIn('mail')).toBe(3600);
    expect(await cli('queue', 'create', 'mail', '--no-expires-in')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBeNull();
    expect((await cli('queue', 'create', '--help')).stdout).toMatch(/--no-expires-in\s+clear --expires-in \(never\)/);
    // The old spelling is no flag: nothing changes.
    const old = await cli('queue', 'create', 'mail', '--expire-in', '900');
    expect(old.code).toBe(2);
    expect(old.stderr).toMatch(/unknown option '--expire-in'\s+\(Did you mean --expires-in\?\)/);
    expect(await expireIn('mail')).toBeNull();
  });
});

describe('HTTP dashboard', () => {
  let server: ServerType | undefined;
  afterAll(async () => {
    await new Promise((r) => server?.close(r));
  });

  it('GET /dashboard shows each queue\'s expire_in (– for none)', async () => {
    const TOKEN = 'queue-expire-in-token-0123456789';
    const base = await new Promise<string>((done) => {
      server = serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
        (info) => done(`http://127.0.0.1:${info.port}`));
    });
    await queue.queues.create('mail', { expiresInSeconds: 90 });
    await queue.queues.create('quick', { expiresInSeconds: 1.5 });
    const text = await (await fetch(`${base}/dashboard`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(text).toContain('<th>expire_in</th>');
    // The row's cells, the last being expire_in.
    const cells = (name: string) => {
      const row = text.split('<tr>').find((r) => r.includes(`>${name}</a></td>`))!;
      return [...row.matchAll(/<td[^>]*>([\s\S]*?)<\/td>/g)].map((m) => m[1]!.replace(/<[^>]+>/g, '').trim());
    };
    expect(cells('mail').at(-1)).toBe('1 min 30 s');
    expect(cells('quick').at(-1)).toBe('1.5 s');
    expect(cells('default').at(-1)).toBe('–');
  });
});
