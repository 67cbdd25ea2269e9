// throttle_seconds (pg-boss singletonSeconds): a dedupe key's job answers
// publishes of the key for a window after it was written, even once it has
// ended (sql/0032_throttle.sql). Times are injected (`now =>`), never slept.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import pg from 'pg';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, migrate, publish, publishBulk, ValidationError } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
// A fixed clock: windows are measured from it. Ahead of the real clock,
// which jobs.run_maintenance() reads.
const T = `${yearLike(2030)}-01-01T00:00:00Z`;
/** The time `seconds` after T. */
const sinceT = (seconds: number) => new Date(Date.parse(T) + seconds * 1000);
const at = (seconds: number) => `'${T}'::timestamptz + make_interval(secs => ${seconds})`;
const throttled = (seconds: number, now: number, key = 'k', c: pg.Client | null = null) => {
  const text = `select jobs.publish('sync.user', '{"n":1}', now => ${at(now)}, dedupe_key => '${key}',
                                    throttle_seconds => ${seconds})::text as id`;
  return c ? c.query<{ id: string }>(text).then((r) => r.rows[0]!.id) : one<{ id: string }>(text).then((r) => r.id);
};
/** Runs the job now: claimed and acked, it is in jobs.job. */
const endJob = async (id: string) => {
  expect(await sql(`select job_id::text as id from jobs.consume(10, ${at(0)})`)).toEqual([{ id }]);
  await sql(`select jobs.ack($1::bigint, null, ${at(1)})`, [id]);
};
const counts = () => one(`select (select count(*)::int from jobs.job_queue) as active, (select count(*)::int from jobs.job) as ended,
                                 (select count(*)::int from jobs.throttle) as windows`);

const clients: pg.Client[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.end()));
});
async function connected(n: number): Promise<pg.Client[]> {
  while (clients.length < n) {
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    clients.push(c);
  }
  return clients.slice(0, n);
}

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle');
});

describe('throttle_seconds', () => {
  it('within the window after its job ended, the same id comes back and nothing is written; after it, a new job', async () => {
    const first = await throttled(60, 0);
    await endJob(first);
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
    const row = await one(`select job_id::text as id, until from jobs.throttle`);
    expect(row).toEqual({ id: first, until: sinceT(60) });

    expect(await throttled(60, 30)).toBe(first);
    expect(await throttled(60, 59.999)).toBe(first);
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
    expect(await one(`select job_id::text as id, until from jobs.throttle`)).toEqual(row);

    // At until the window has ended: a new job, which opens a new window.
    const second = await throttled(60, 60);
    expect(second).not.toBe(first);
    expect(await counts()).toEqual({ active: 1, ended: 1, windows: 1 });
    expect(await one(`select job_id::text as id, until from jobs.throttle`))
      .toEqual({ id: second, until: sinceT(120) });
    expect(await throttled(60, 100)).toBe(second);
  });

  it('an active job answers as before, past its window too; keys are global and windows per key', async () => {
    const first = await throttled(10, 0);
    expect(await throttled(10, 5)).toBe(first);
    expect(await throttled(10, 3600)).toBe(first); // still pending: the active key holds it
    // A plain keyed publish (no throttle) still gets the active job, from any queue.
    await sql(`select jobs.create_queue('other')`);
    expect((await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'k', queue => 'other')::text as id`)).id)
      .toBe(first);
    const other = await throttled(10, 0, 'k2');
    expect(other).not.toBe(first);
    expect(await counts()).toEqual({ active: 2, ended: 0, windows: 2 });
  });

  it('a publish without throttle_seconds neither reads nor opens a window', async () => {
    const first = await throttled(3600, 0);
    await endJob(first);
    const plain = (await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'k', now => ${at(10)})::text as id`)).id;
    expect(plain).not.toBe(first);
    expect(await one(`select job_id::text as id from jobs.throttle`)).toEqual({ id: first });
    // While the plain job is active it answers; the window's job does once it ended.
    expect(await throttled(3600, 20)).toBe(plain);
    await sql(`select jobs.ack(job_id, null, ${at(30)}) from jobs.consume(10, ${at(25)})`);
    expect(await throttled(3600, 40)).toBe(first);
  });

  it('a job ended by the transaction that wrote it: a throttled publish waiting on that transaction answers its id', async () => {
    // The race a key's lock closes: B looks while A's job is written and
    // already ended, uncommitted; without the lock B finds neither the
    // active job nor the window and writes a second job once A commits.
    const [a, b] = (await connected(2)) as [pg.Client, pg.Client];
    await a.query('begin');
    try {
      const first = await throttled(60, 0, 'k', a);
      await a.query(`select jobs.ack(job_id, null, ${at(1)}) from jobs.consume(10, ${at(0)})`);
      const pid = (await b.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
      const second = throttled(60, 5, 'k', b);
      // B is waiting for A (on the key's lock; without it, on A's uncommitted index entry).
      for (let i = 0; i < 500; i++) {
        const waiting = await one<{ n: number }>(`select count(*)::int as n from pg_locks where pid = $1 and not granted`, [pid]);
        if (waiting.n > 0) break;
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(await one(`select count(*)::int as n from pg_locks where pid = $1 and not granted`, [pid])).toEqual({ n: 1 });
      await a.query('commit');
      expect(await second).toBe(first);
      expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
    } finally {
      await a.query('rollback').catch(() => {});
    }
  });

  it('20 concurrent publishers: in the window after the job ended all get its id; after it, exactly one new job', async () => {
    const cs = await connected(20);
    const first = await throttled(60, 0);
    await endJob(first);
    const inWindow = await Promise.all(cs.map((c) => throttled(60, 30, 'k', c)));
    expect(new Set(inWindow)).toEqual(new Set([first]));
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });

    const after = await Promise.all(cs.map((c) => throttled(60, 120, 'k', c)));
    expect(new Set(after).size).toBe(1);
    expect(after[0]).not.toBe(first);
    expect(await counts()).toEqual({ active: 1, ended: 1, windows: 1 });
    // Again with the new job ended between rounds, and a fresh key beside it.
    await sql(`select jobs.ack(job_id, null, ${at(121)}) from jobs.consume(10, ${at(120)})`);
    const mixed = await Promise.all(cs.map((c, i) => throttled(60, 150, i % 2 ? 'k' : 'fresh', c)));
    expect(new Set(mixed.filter((_, i) => i % 2))).toEqual(new Set([after[0]]));
    expect(new Set(mixed.filter((_, i) => !(i % 2))).size).toBe(1);
    expect(await counts()).toEqual({ active: 1, ended: 2, windows: 2 });
  });

  it('a window whose job expired unstarted is open to a new job, which opens the window anew: before its expiry ended it and after', async () => {
    /** A throttled job of key that expires, unstarted, 10 s after T. */
    const expiring = async (key: string) => (await one<{ id: string }>(`select jobs.publish('sync.user', '{"n":1}', now => ${at(0)},
      dedupe_key => '${key}', throttle_seconds => 60, expires_at => ${at(10)})::text as id`)).id;
    const windowOf = (key: string) => one(`select job_id::text as id, until from jobs.throttle where dedupe_key = $1`, [key]);

    // Still waiting in job_queue past its expiry: the publish takes its key, and its window.
    const waiting = await expiring('k');
    expect(await throttled(60, 5)).toBe(waiting); // not expired yet: it holds the window
    const second = await throttled(60, 20);
    expect(second).not.toBe(waiting);
    expect(await windowOf('k')).toEqual({ id: second, until: sinceT(80) });
    expect(await throttled(60, 30)).toBe(second);
    // The next claim's expiry ends the first as expired; the second holds key and window.
    expect(await one(`select jobs.expire(now => ${at(40)}) as n`)).toEqual({ n: 1 });
    expect(await one(`select status, error from jobs.job where job_id = $1`, [waiting]))
      .toEqual({ status: 'failure', error: `expired: not started before ${sinceT(10).toISOString()}` });
    expect(await throttled(60, 45)).toBe(second);

    // Already ended as expired, nothing active: its window is open to a new job.
    const ended = await expiring('k2');
    expect(await one(`select jobs.expire(now => ${at(20)}) as n`)).toEqual({ n: 1 });
    const next = await throttled(60, 30, 'k2');
    expect(next).not.toBe(ended);
    expect(await windowOf('k2')).toEqual({ id: next, until: sinceT(90) });
    expect(await throttled(60, 40, 'k2')).toBe(next);
    expect(await counts()).toEqual({ active: 2, ended: 2, windows: 2 });
  });

  it('a job that ran holds its window however it ended: an expiry while it waited for its retry too', async () => {
    const first = (await one<{ id: string }>(`select jobs.publish('sync.user', '{"n":1}', now => ${at(0)}, dedupe_key => 'k',
      throttle_seconds => 60, expires_at => ${at(10)}, max_retries => 2)::text as id`)).id;
    expect(await sql(`select job_id::text as id from jobs.consume(10, ${at(0)})`)).toEqual([{ id: first }]);
    await sql(`select jobs.nack($1::bigint, 'boom', ${at(30)}, ${at(1)})`, [first]); // its retry due after its expiry
    expect(await throttled(60, 20)).toBe(first); // waiting past its expiry, but it ran
    expect(await one(`select jobs.expire(now => ${at(30)}) as n`)).toEqual({ n: 1 });
    expect(await one(`select status, attempts, error from jobs.job where job_id = $1`, [first]))
      .toEqual({ status: 'failure', attempts: 1, error: `expired: not started before ${sinceT(10).toISOString()}\nboom` }); // its last error kept
    expect(await throttled(60, 40)).toBe(first);
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
  });

  it('past its window, a job waiting to retry past its expiry answers no throttled publish: a new job, as a plain publish makes', async () => {
    const first = (await one<{ id: string }>(`select jobs.publish('sync.user', '{"n":1}', now => ${at(0)}, dedupe_key => 'k',
      throttle_seconds => 60, expires_at => ${at(10)}, max_retries => 2)::text as id`)).id;
    expect(await sql(`select job_id::text as id from jobs.consume(10, ${at(0)})`)).toEqual([{ id: first }]);
    await sql(`select jobs.nack($1::bigint, 'boom', ${at(30)}, ${at(1)})`, [first]); // its retry due after its expiry
    expect(await throttled(60, 20)).toBe(first); // in its window: it ran, so it holds it
    // Its window over, it still waits (no claim has expired it): it will never run again, so it holds the key no more,
    // as a plain publish lets go of it. Before: the throttled publish answered it, and the work asked for never ran.
    const second = await throttled(60, 70);
    expect(second).not.toBe(first);
    expect(await one(`select job_id::text as id, until from jobs.throttle where dedupe_key = 'k'`))
      .toEqual({ id: second, until: sinceT(130) });
    expect(await throttled(60, 80)).toBe(second);
    // The first still ends as expired, keyless, at the next expiry; the second holds key and window.
    expect(await one(`select jobs.expire(now => ${at(90)}) as n`)).toEqual({ n: 1 });
    expect(await one(`select status, attempts, dedupe_key from jobs.job where job_id = $1`, [first]))
      .toEqual({ status: 'failure', attempts: 1, dedupe_key: null });
    expect(await throttled(60, 100)).toBe(second);
  });

  it('SQL refuses a bad throttle_seconds (PD011, column throttle_seconds) and writes nothing', async () => {
    const cases: [string, string][] = [
      [`throttle_seconds => 60`, 'throttle_seconds: needs a dedupe_key (the key it throttles)'],
      [`dedupe_key => 'k', throttle_seconds => 0`, 'throttle_seconds: must be greater than 0 and at most 2592000 seconds (30 days), got 0'],
      [`dedupe_key => 'k', throttle_seconds => -1`, 'throttle_seconds: must be greater than 0 and at most 2592000 seconds (30 days), got -1'],
      [`dedupe_key => 'k', throttle_seconds => 2592000.5`, 'throttle_seconds: must be greater than 0 and at most 2592000 seconds (30 days), got 2592000.5'],
      [`dedupe_key => 'k', throttle_seconds => 'NaN'`, 'throttle_seconds: must be greater than 0 and at most 2592000 seconds (30 days), got NaN'],
      [`dedupe_key => 'k', dedupe_mode => 'replace', throttle_seconds => 60`,
       'throttle_seconds: cannot be given with dedupe_mode replace (a throttle keeps the first job of its window, a replace the latest)'],
    ];
    for (const [args, message] of cases) {
      const e = await sqlErrorOf(sql, `select jobs.publish('sync.user', ${args})`);
      expect(e).toMatchObject({ code: 'PD011', column: 'throttle_seconds', message });
    }
    // The bounds themselves are fine.
    await sql(`select jobs.publish('sync.user', dedupe_key => 'a', throttle_seconds => 2592000)`);
    await sql(`select jobs.publish('sync.user', dedupe_key => 'b', throttle_seconds => 0.001, dedupe_mode => 'keep')`);
    expect(await counts()).toEqual({ active: 2, ended: 0, windows: 2 });
  });

  it('maintenance deletes ended windows, at most max_rows a pass, and never a live one', async () => {
    for (const [key, seconds] of [['a', 10], ['b', 20], ['c', 30], ['live', 3600]] as const) await throttled(seconds, 0, key);
    const windows = () => sql(`select dedupe_key from jobs.throttle order by dedupe_key`);
    expect(await one(`select jobs.maintain(max_rows => 2, now => ${at(100)}) as r`))
      .toEqual({ r: { expired: 0, ticks: 0, deleted: 0, archived: 0, windows: 2, misses: 0, left: 0 } });
    expect(await windows()).toEqual([{ dedupe_key: 'c' }, { dedupe_key: 'live' }]); // the oldest first
    await sql(`select jobs.maintain(now => ${at(100)})`);
    expect(await windows()).toEqual([{ dedupe_key: 'live' }]);
    await sql(`select jobs.maintain(now => ${at(3599)})`);
    expect(await windows()).toEqual([{ dedupe_key: 'live' }]);
    // The procedure pg_cron runs passes the same delete (real clock: T is ahead, nothing goes).
    await sql(`call jobs.run_maintenance()`);
    expect(await windows()).toEqual([{ dedupe_key: 'live' }]);
    await sql(`select jobs.maintain(now => ${at(3600)})`);
    expect(await windows()).toEqual([]);
  });

  it('<prefix>_publisher (and _worker) may publish with a throttle', async () => {
    const prefix = `th${Date.now().toString(36)}`;
    await migrate(db.driver, { roles: prefix });
    const c = (await connected(1))[0]!;
    for (const role of ['publisher', 'worker']) {
      await c.query('begin');
      try {
        await c.query(`set local role ${prefix}_${role}`);
        // At the clock's time: a role may not give another (jobs.check_now).
        const publishAt = async () => (await c.query<{ id: string }>(`select jobs.publish('sync.user', '{"n":1}',
          dedupe_key => 'role:${role}', throttle_seconds => 60)::text as id`)).rows[0]!.id;
        const a = await publishAt();
        expect(await publishAt()).toBe(a);
        await expect(c.query('select count(*) from jobs.throttle')).rejects.toMatchObject({ code: '42501' });
      } finally {
        await c.query('rollback');
      }
    }
  });
});

describe('throttleSeconds in TypeScript, the CLI and HTTP', () => {
  it('publish takes throttleSeconds; bad ones and bulk ones are refused naming the field', async () => {
    const first = await publish(db.driver, 'sync.user', { n: 1 }, { dedupeKey: 'ts', throttleSeconds: 3600 });
    await sql(`select jobs.ack(job_id) from jobs.consume(10)`);
    expect(await publish(db.driver, 'sync.user', { n: 2 }, { dedupeKey: 'ts', throttleSeconds: 3600 })).toBe(first);
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });

    const refused = async (options: object, field: string, message: RegExp) => {
      const e = await publish(db.driver, 'sync.user', null, options as never).catch((error: unknown) => error);
      expect(e).toBeInstanceOf(ValidationError);
      expect(e).toMatchObject({ field });
      expect((e as Error).message).toMatch(message);
    };
    await refused({ throttleSeconds: 60 }, 'options.throttleSeconds', /needs a dedupe key/);
    await refused({ dedupeKey: 'k', throttleSeconds: 0 }, 'options.throttleSeconds', /must be greater than 0/);
    await refused({ dedupeKey: 'k', throttleSeconds: 2592001 }, 'options.throttleSeconds', /at most 2592000 seconds \(30 days\)/);
    await refused({ dedupeKey: 'k', throttleSeconds: Number.NaN }, 'options.throttleSeconds', /./);
    await refused({ dedupeKey: 'k', throttleSeconds: '60' }, 'options.throttleSeconds', /./);
    await refused({ dedupeKey: 'k', dedupeMode: 'replace', throttleSeconds: 60 }, 'options.throttleSeconds', /cannot be given with dedupeMode 'replace'/);
    const bulk = await publishBulk(db.driver, [{ task: 'a' }, { task: 'b', dedupeKey: 'k', throttleSeconds: 60 } as never])
      .catch((error: unknown) => error);
    expect(bulk).toBeInstanceOf(ValidationError);
    expect(bulk).toMatchObject({ field: 'jobs[1].throttleSeconds' });
    expect((bulk as Error).message).toMatch(/a bulk publish takes none/);
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
  });

  it('CLI: publish --dedupe-key K --throttle SECONDS; a bad --throttle exits 2 naming it', async () => {
    const cli = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((done) => {
      execFile(process.execPath, [resolve('dist/cli.mjs'), ...args], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
        (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr }));
    });
    const a = await cli('publish', 'sync.user', '{"n":1}', '--dedupe-key', 'cli', '--throttle', '3600');
    expect(a).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\n$/) });
    await sql(`select jobs.ack(job_id) from jobs.consume(10)`);
    const b = await cli('publish', 'sync.user', '{"n":2}', '--dedupe-key', 'cli', '--throttle', '3600');
    expect(b).toMatchObject({ code: 0, stdout: a.stdout });
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
    for (const [args, message] of [
      [['--dedupe-key', 'cli', '--throttle', '0'], /--throttle: must be a number of seconds greater than 0 and at most 2592000/],
      [['--dedupe-key', 'cli', '--throttle', 'soon'], /--throttle: must be a number of seconds/],
      [['--throttle', '60'], /^pgdrain: --throttle: needs a dedupe key/],
      [['--dedupe-key', 'cli', '--dedupe-mode', 'replace', '--throttle', '60'], /^pgdrain: --throttle: cannot be given with dedupeMode 'replace'/],
    ] as const) {
      const r = await cli('publish', 'sync.user', ...args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
  });

  it('HTTP: POST /jobs takes throttleSeconds; a bad one, or one in a bulk, is a 400 naming it', async () => {
    const token = 'throttle-test-token-0123456789';
    const app = createApp({ queue: createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} }), token });
    const post = async (body: unknown) => {
      const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify(body),
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } });
      return { status: res.status, body: await res.json() as Record<string, any> };
    };
    const a = await post({ task: 'sync.user', dedupeKey: 'http', throttleSeconds: 3600 });
    expect(a.status).toBe(201);
    await sql(`select jobs.ack(job_id) from jobs.consume(10)`);
    expect(await post({ task: 'sync.user', dedupeKey: 'http', throttleSeconds: 3600 })).toEqual({ status: 201, body: { id: a.body.id } });
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
    const bad = await post({ task: 'sync.user', dedupeKey: 'http', throttleSeconds: 0 });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ field: 'throttleSeconds', message: expect.stringMatching(/^throttleSeconds: must be greater than 0/) });
    const keyless = await post({ task: 'sync.user', throttleSeconds: 60 });
    expect(keyless.status).toBe(400);
    expect(keyless.body.error).toMatchObject({ field: 'throttleSeconds', message: expect.stringMatching(/needs a dedupe key/) });
    const bulk = await post({ jobs: [{ task: 'sync.user', dedupeKey: 'http', throttleSeconds: 60 }] });
    expect(bulk.status).toBe(400);
    expect(bulk.body.error).toMatchObject({ field: 'jobs[0].throttleSeconds',
      message: expect.stringMatching(/^jobs\[0\]\.throttleSeconds: a job of a bulk publish takes no throttleSeconds: publish a throttled job one per request/) });
    expect(await counts()).toEqual({ active: 0, ended: 1, windows: 1 });
  });
});
