// A queue's expire_in from TypeScript, the CLI and the dashboard:
// queues.create(name, { expireInSeconds }) / `pgdrain queue create NAME
// --expire-in SECONDS` set it (null / --no-expire-in clear it, left out it
// stays), queues.list() / `queue list` / GET /dashboard show it, and bad
// values are refused naming the option or flag. A job published into the
// queue then expires that long after its run time. The CLI runs dist/cli.mjs
// (`npm run build` first). On a real PostgreSQL.
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
  it('queues.create sets expireInSeconds; list shows it; left out it stays, null clears it; publish takes it', async () => {
    await queue.queues.create('mail', { expireInSeconds: 90 });
    expect(await expireIn('mail')).toBe(90);
    expect((await queue.queues.list()).find((q) => q.name === 'mail')).toMatchObject({ expireInSeconds: 90 });
    expect((await queue.queues.list()).find((q) => q.name === 'default')).toMatchObject({ expireInSeconds: null });
    const id = await queue.publish('t', {}, { queue: 'mail', delaySeconds: 30 });
    expect(await expiresAfter(id)).toBe(90);

    await queue.queues.create('mail', { maxSize: 5 });
    expect(await expireIn('mail')).toBe(90);
    await queue.queues.create('mail', { expireInSeconds: 0.5 });
    expect(await expireIn('mail')).toBe(0.5);
    await queue.queues.create('mail', { expireInSeconds: null });
    expect(await expireIn('mail')).toBeNull();
    expect((await queue.queues.list()).find((q) => q.name === 'mail')).toMatchObject({ expireInSeconds: null, maxSize: 5 });
    // Jobs already published keep theirs.
    expect(await expiresAfter(id)).toBe(90);
  });

  it('bad values are a ValidationError naming options.expireInSeconds, with publish\'s expiresInSeconds rule; nothing changes', async () => {
    await queue.queues.create('mail', { expireInSeconds: 60 });
    for (const value of [0, -1, 315360001, Number.NaN, Number.POSITIVE_INFINITY, '60']) {
      const error = await queue.queues.create('mail', { expireInSeconds: value as number }).then(() => null, (e: unknown) => e);
      expect(error, String(value)).toMatchObject({ name: 'ValidationError', field: 'options.expireInSeconds' });
      if (typeof value === 'number' && Number.isFinite(value)) {
        const publishError = await queue.publish('t', {}, { expiresInSeconds: value }).then(() => null, (e: unknown) => e);
        expect((error as Error).message).toBe((publishError as Error).message.replace('expiresInSeconds', 'expireInSeconds'));
      }
    }
    await expect(queue.queues.create('fresh', { expireInSeconds: 0 })).rejects.toMatchObject({ field: 'options.expireInSeconds' });
    expect(await expireIn('mail')).toBe(60);
    expect(await expireIn('fresh')).toBeUndefined();
  });
});

describe('CLI', () => {
  it('queue create --expire-in sets it, --no-expire-in clears it; queue list shows it; bad ones exit 2 naming the flag', async () => {
    expect(await cli('queue', 'create', 'mail', '--expire-in', '3600')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBe(3600);
    expect(await cli('queue', 'create', 'mail', '--max-size', '4')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBe(3600);
    const list = await cli('queue', 'list');
    expect(list.stdout).toMatch(/retry_delay_max\s+expire_in\s+dead_letter/);
    expect(list.stdout).toMatch(/^mail\s+4\s.*\s3600$/m);
    expect(JSON.parse((await cli('queue', 'list', '--json')).stdout))
      .toContainEqual(expect.objectContaining({ name: 'mail', expireInSeconds: 3600 }));

    for (const value of ['0', '-5', '315360001', 'soon', '']) {
      const r = await cli('queue', 'create', 'mail', '--expire-in', value);
      expect(r.code, value).toBe(2);
      expect(r.stderr, value).toMatch(/--expire-in <seconds>.*must be a number of seconds from 0.001 to 315360000/);
    }
    expect(await expireIn('mail')).toBe(3600);
    expect(await cli('queue', 'create', 'mail', '--no-expire-in')).toMatchObject({ code: 0 });
    expect(await expireIn('mail')).toBeNull();
    expect((await cli('queue', 'create', '--help')).stdout).toMatch(/--no-expire-in\s+clear --expire-in \(never\)/);
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
    await queue.queues.create('mail', { expireInSeconds: 90 });
    await queue.queues.create('quick', { expireInSeconds: 1.5 });
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
