// A queue's max_running: at most N of its jobs run at once, whatever the
// number of drains (jobs.pick counts them under an advisory lock). SQL,
// TypeScript and CLI settings; drains side by side; a killed drain's slots
// coming back when its leases expire; the drain report's queueAtMaxRunning.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type JobContext } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { runCli, spawnCli, until } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const shared = { ...db.driver, close: async () => {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const deadline = () => Date.now() + 120_000; // the jobs' 60 s timeouts fit

type Claim = { count: number; atMaxRunning: boolean; paused: boolean };
const claimJson = async (n: number, queue = 'mr') =>
  (await sql<{ r: Claim }>('select jobs.claim_json($1, queue => $2) as r', [n, queue]))[0]!.r;
const claimIds = async (n: number, queue = 'mr') =>
  (await sql<{ job_id: string }>('select job_id from jobs.claim($1, queue => $2)', [n, queue])).map((r) => r.job_id);
const publish = (n: number, queue = 'mr', timeout = 60) =>
  sql(`select jobs.publish('mr.job', jsonb_build_object('i', i), queue => $1, timeout_seconds => $2) from generate_series(1, $3) i`,
      [queue, timeout, n]);
const maxRunning = async (name = 'mr') =>
  (await sql<{ m: number | null }>('select max_running as m from jobs.queue where name = $1', [name]))[0]!.m;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('mr', max_running => 3)`);
  await sql(`select jobs.create_queue('free')`);
});

describe('jobs.pick honours max_running', () => {
  it('claims at most max_running minus running; an ack frees a slot; clearing it frees the rest', async () => {
    await publish(10);
    expect(await claimIds(10)).toHaveLength(3);
    // At the limit: nothing, and claim_json says why.
    expect(await claimIds(10)).toHaveLength(0);
    expect(await claimJson(10)).toMatchObject({ count: 0, atMaxRunning: true, paused: false });
    // One acked: one slot.
    await sql(`select jobs.ack(job_id) from jobs.job_queue where queue = 'mr' and lease_until is not null limit 1`);
    expect(await claimJson(10)).toMatchObject({ count: 1, atMaxRunning: true });
    expect(await claimJson(10)).toMatchObject({ count: 0, atMaxRunning: true });
    // Left out keeps it; null clears it.
    await sql(`select jobs.create_queue('mr', max_size => 100)`);
    expect(await maxRunning()).toBe(3);
    expect(await claimIds(10)).toHaveLength(0);
    await sql(`select jobs.create_queue('mr', max_running => null)`);
    expect(await maxRunning()).toBeNull();
    expect(await claimJson(10)).toMatchObject({ count: 6, atMaxRunning: false });
  });

  it('jobs already running when the limit is set take their slots; clearing it drops them', async () => {
    await sql(`select jobs.create_queue('mr', max_running => null)`);
    await publish(6);
    expect(await claimIds(4)).toHaveLength(4); // claimed while unlimited: no slots
    await sql(`select jobs.create_queue('mr', max_running => 5)`);
    expect(await sql(`select count(*)::int as n from jobs.running_slot where queue = 'mr'`)).toEqual([{ n: 4 }]);
    expect(await claimJson(10)).toMatchObject({ count: 1, atMaxRunning: true });
    await sql(`select jobs.create_queue('mr', max_running => null)`);
    expect(await sql(`select count(*)::int as n from jobs.running_slot`)).toEqual([{ n: 0 }]);
    expect(await claimJson(10)).toMatchObject({ count: 1, atMaxRunning: false });
  });

  it('a job a dedupe replace moved to another queue counts in that queue only', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 1)`);
    await sql(`select jobs.create_queue('free', max_running => 1)`);
    const [moved] = (await sql<{ id: string }>(`select jobs.publish('mr.job', dedupe_key => 'k', queue => 'mr')::text as id`));
    expect(await claimIds(1)).toEqual([moved!.id]);
    // Retried at once: pending again, its slot in 'mr' not yet cleared (no claim of 'mr' since).
    await sql('select jobs.nack($1::bigint, $2, now())', [moved!.id, 'again']);
    await sql(`select jobs.publish('mr.job', dedupe_key => 'k', queue => 'free', dedupe_mode => 'replace')`);
    await publish(1, 'free');
    await publish(1, 'mr');
    expect(await claimIds(10, 'free')).toEqual([moved!.id]);
    // 'free' has its one job running: nothing more; 'mr' has none running: its job goes.
    expect(await claimJson(10, 'free')).toMatchObject({ count: 0, atMaxRunning: true });
    expect(await claimJson(10, 'mr')).toMatchObject({ count: 1 });
  });

  it('a full queue hands out nothing without waiting for the lock of a transaction that claimed from it', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 1)`);
    await publish(3);
    expect(await claimIds(1)).toHaveLength(1); // committed: the one slot is taken
    const holder = new pg.Client({ connectionString: db.url });
    const other = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await other.connect();
    try {
      // A transaction claims from the full queue (nothing) and stays open.
      await holder.query('begin');
      expect((await holder.query(`select job_id from jobs.claim(1, queue => 'mr')`)).rows).toHaveLength(0);
      // Waiting for a lock it held would end in lock_not_available here, not in an answer.
      await other.query(`set lock_timeout = '5s'`);
      const { rows } = await other.query<{ r: Claim }>(`select jobs.claim_json(10, queue => 'mr') as r`);
      expect(rows[0]!.r).toMatchObject({ count: 0, atMaxRunning: true });
    } finally {
      await holder.query('rollback').catch(() => {});
      await Promise.all([holder.end(), other.end()]);
    }
  });

  it('atMaxRunning is false when no job waits, and on a paused queue', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 1)`);
    await publish(1);
    expect(await claimIds(1)).toHaveLength(1);
    expect(await claimJson(10)).toMatchObject({ count: 0, atMaxRunning: false }); // nothing waits
    await publish(1);
    expect(await claimJson(10)).toMatchObject({ count: 0, atMaxRunning: true });
    await sql(`select jobs.pause_queue('mr')`);
    expect(await claimJson(10)).toMatchObject({ count: 0, atMaxRunning: false, paused: true });
  });

  it('the field is false when the queue ran out of jobs before the limit, and on a queue without max_running', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 5)`);
    await publish(2);
    expect(await claimJson(10)).toMatchObject({ count: 2, atMaxRunning: false });
    await publish(20, 'free');
    expect(await claimJson(10, 'free')).toMatchObject({ count: 10, atMaxRunning: false });
    expect(await claimJson(100, 'free')).toMatchObject({ count: 10, atMaxRunning: false });
    expect(await claimJson(100, 'free')).toMatchObject({ count: 0, atMaxRunning: false });
  });

  it('consume and a filtered claim honour it too', async () => {
    await sql(`select jobs.publish('mr.job', attributes => '{"t": 1}', queue => 'mr') from generate_series(1, 5)`);
    expect((await sql(`select * from jobs.consume(2, queue => 'mr')`))).toHaveLength(2);
    expect((await sql(`select * from jobs.claim(10, queue => 'mr', filter => '{"t": 1}')`))).toHaveLength(1);
    expect((await sql(`select * from jobs.consume(10, queue => 'mr')`))).toHaveLength(0);
  });

  it('an expired lease frees its slot: the claim expires it first', async () => {
    await publish(5, 'mr', 30);
    expect(await claimIds(10)).toHaveLength(3);
    // Two minutes on, the three leases have passed: the claim reaps them and takes three again.
    const later = await sql<{ job_id: string; attempt: number }>(
      `select job_id, attempt from jobs.claim(10, queue => 'mr', now => now() + interval '2 minutes')`);
    expect(later).toHaveLength(3);
  });

  it('a queue without max_running takes no lock; one with it holds its lock until commit', async () => {
    await publish(2, 'free');
    await publish(2, 'mr');
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      const locks = async () => Number((await client.query<{ n: string }>(
        `select count(*) as n from pg_locks where locktype = 'advisory' and classid = 736043 and pid = pg_backend_pid()`)).rows[0]!.n);
      await client.query('begin');
      await client.query(`select * from jobs.claim(1, queue => 'free')`);
      expect(await locks()).toBe(0);
      await client.query(`select * from jobs.claim(1, queue => 'mr')`);
      expect(await locks()).toBe(1);
      await client.query('commit');
      expect(await locks()).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('a claim of a limited queue outside READ COMMITTED is refused (its snapshot could miss claims)', async () => {
    await publish(1);
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query('begin isolation level repeatable read');
      const e = await sqlErrorOf((t) => client.query(t), `select * from jobs.claim(1, queue => 'mr')`);
      expect(e).toMatchObject({ code: '0A000', message: expect.stringContaining('READ COMMITTED') });
      await client.query('rollback');
      await client.query('begin isolation level repeatable read');
      expect((await client.query(`select * from jobs.claim(1, queue => 'free')`)).rowCount).toBe(0);
      await client.query('commit');
    } finally {
      await client.end();
    }
  });
});

describe('settings: refused naming max_running, left out keeps, null clears', () => {
  it('SQL', async () => {
    for (const bad of [0, -1, 100001]) {
      const e = await sqlErrorOf(sql, 'select jobs.create_queue($1, max_running => $2)', ['mr', bad]);
      expect(e).toMatchObject({ code: 'PD015', column: 'max_running', message: expect.stringMatching(/^max_running: must be between 1 and 100000/) });
    }
    expect(await maxRunning()).toBe(3);
    await sql(`select jobs.create_queue('mr', max_running => 100000)`);
    expect(await maxRunning()).toBe(100000);
    // Positional calls of the arguments before it keep their meaning.
    await sql(`select jobs.create_queue('mr', 10)`);
    expect(await sql(`select max_size, max_running from jobs.queue where name = 'mr'`)).toEqual([{ max_size: 10, max_running: 100000 }]);
  });

  it('TypeScript: queues.create and queues.list', async () => {
    const queue = createQueue({ driver: shared, tasks: {} });
    for (const bad of [0, 1.5, 100_001, '2']) {
      await expect(queue.queues.create('mr', { maxRunning: bad as number })).rejects
        .toMatchObject({ name: 'ValidationError', field: 'options.maxRunning' });
    }
    await queue.queues.create('mr', { maxSize: 5 });
    expect((await queue.queues.list()).find((q) => q.name === 'mr')).toMatchObject({ maxSize: 5, maxRunning: 3 });
    await queue.queues.create('mr', { maxRunning: 7 });
    expect(await maxRunning()).toBe(7);
    await queue.queues.create('mr', { maxRunning: null });
    expect((await queue.queues.list()).find((q) => q.name === 'mr')).toMatchObject({ maxSize: 5, maxRunning: null });
  });

  it('CLI: queue create --max-running N, --no-max-running; queue list shows it', async () => {
    const bad = await runCli(db.url, 'queue', 'create', 'mr', '--max-running', '0');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--max-running/);
    expect(await maxRunning()).toBe(3);
    expect(await runCli(db.url, 'queue', 'create', 'mr', '--max-size', '9')).toMatchObject({ code: 0 });
    expect(await maxRunning()).toBe(3);
    expect(await runCli(db.url, 'queue', 'create', 'mr', '--max-running', '4')).toMatchObject({ code: 0 });
    expect(await maxRunning()).toBe(4);
    const table = await runCli(db.url, 'queue', 'list');
    expect(table.stdout).toMatch(/max_running/);
    expect(table.stdout.split('\n').find((l) => /^mr\b/.test(l))).toMatch(/\b4\b/);
    const json = await runCli(db.url, 'queue', 'list', '--json');
    expect((JSON.parse(json.stdout) as { name: string; maxRunning: number | null }[]).find((q) => q.name === 'mr'))
      .toMatchObject({ maxRunning: 4, maxSize: 9 });
    expect(await runCli(db.url, 'queue', 'create', 'mr', '--no-max-running')).toMatchObject({ code: 0 });
    expect(await maxRunning()).toBeNull();
  });
});

describe('drains side by side', () => {
  it('four drains on a queue with max_running 2: at most 2 handlers at once, every job once', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 2)`);
    await publish(40);
    let active = 0;
    let most = 0;
    const runs = new Map<string, number>();
    const tasks = { mr: { job: async (_body: unknown, ctx: JobContext) => {
      runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
      most = Math.max(most, ++active);
      try {
        await sleep(15);
      } finally {
        active--;
      }
      return null;
    } } };
    // Each drain has a pool of its own, as separate processes would, and runs
    // one handler at a time: without the limit, four would run at once. (A
    // drain that settles a job claims again in the same statement, so the
    // drains that got the slots first keep them; the others linger, polling.)
    const queues = Array.from({ length: 4 }, () => createQueue({ driver: pgDriver(db.url, { max: 4 }), tasks }));
    try {
      const reports = await Promise.all(queues.map((q) =>
        q.drain(10, deadline(), { queue: 'mr', concurrency: 1, lingerMs: 1000, pollMs: 50 })));
      expect(reports.reduce((n, r) => n + r.succeeded, 0)).toBe(40);
      expect(reports.filter((r) => r.claimed > 0).length).toBeGreaterThan(1);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
    expect(most).toBeLessThanOrEqual(2);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(runs.size).toBe(40);
    expect(await sql(`select status, attempts, count(*)::int as n from jobs.job group by 1, 2`))
      .toEqual([{ status: 'success', attempts: 1, n: 40 }]);
  });

  it("a killed drain's slots come back when its leases expire; nothing is lost", async () => {
    await sql(`select jobs.create_queue('mr', max_running => 2)`);
    await publish(3, 'mr', 5);
    const dir = mkdtempSync(join(tmpdir(), 'pgdrain-max-running-'));
    const tasksFile = join(dir, 'hang.mjs');
    writeFileSync(tasksFile, 'export const mr = { job: () => new Promise(() => {}) };\n');
    const held = spawnCli(['drain', '--tasks', tasksFile, '--queue', 'mr', '--deadline', '120', '--json'], { DATABASE_URL: db.url });
    let killedIds: string[];
    try {
      killedIds = await until(async () => {
        const rows = await sql<{ job_id: string }>(`select job_id::text from jobs.job_queue where queue = 'mr' and lease_until is not null`);
        return rows.length === 2 && rows.map((r) => r.job_id);
      }, 'the CLI drain holding 2 slots');
      held.child.kill('SIGKILL');
      expect((await held.exited).signal).toBe('SIGKILL');
    } finally {
      held.child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
    // Dead, it settled nothing: both still hold their lease.
    expect(await sql(`select count(*)::int as n from jobs.job_queue where queue = 'mr' and lease_until is not null`)).toEqual([{ n: 2 }]);

    const runs: string[] = [];
    const queue = createQueue({ driver: shared, tasks: { mr: { job: async (_b: unknown, ctx: JobContext) => void runs.push(ctx.job.id) } } });
    // While the leases last, the third job waits: the queue is at its max_running.
    const blocked = await queue.drain(10, deadline(), { queue: 'mr' });
    expect(blocked).toMatchObject({ claimed: 0, stoppedBy: 'empty', queueAtMaxRunning: true });

    await until(async () => (await sql<{ n: number }>(
      `select count(*)::int as n from jobs.job_queue where lease_until > now()`))[0]!.n === 0, 'the leases to pass', 30_000, 100);
    const report = await queue.drain(10, deadline(), { queue: 'mr' });
    expect(report).toMatchObject({ claimed: 3, succeeded: 3, stoppedBy: 'empty', queueAtMaxRunning: false });
    expect(runs).toHaveLength(3);
    const ended = await sql<{ job_id: string; status: string; attempts: number }>(
      `select job_id::text, status, attempts from jobs.job order by job_id`);
    expect(ended.map((j) => j.status)).toEqual(['success', 'success', 'success']);
    for (const j of ended) expect(j.attempts).toBe(killedIds!.includes(j.job_id) ? 2 : 1);
  });
});

describe('the drain report', () => {
  it('queueAtMaxRunning: true when the limit cut its claim to none, false otherwise; HTTP passes it on', async () => {
    await sql(`select jobs.create_queue('mr', max_running => 1)`);
    await publish(3);
    const held = await claimIds(1); // another consumer holds the one slot
    const queue = createQueue({ driver: shared, tasks: { mr: { job: async () => null } } });
    expect(await queue.drain(10, deadline(), { queue: 'mr' }))
      .toMatchObject({ claimed: 0, stoppedBy: 'empty', queueAtMaxRunning: true, queuePaused: false });

    const app = createApp({ queue, token: 'test-token-0123456789abcdef' });
    const answer = await app.fetch(new Request('http://localhost/drain', {
      method: 'POST', headers: { authorization: 'Bearer test-token-0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ batchSize: 10, budgetSeconds: 20, queue: 'mr' }) }));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ claimed: 0, queueAtMaxRunning: true });
    // The CLI's text report says why it claimed nothing.
    const dir = mkdtempSync(join(tmpdir(), 'pgdrain-max-running-'));
    const tasksFile = join(dir, 'noop.mjs');
    writeFileSync(tasksFile, 'export const mr = { job: () => null };\n');
    const text = await runCli(db.url, 'drain', '--tasks', tasksFile, '--queue', 'mr', '--deadline', '20')
      .finally(() => rmSync(dir, { recursive: true, force: true }));
    expect(text).toMatchObject({ code: 0 });
    expect(text.stdout).toContain('the queue is at its max_running');

    await sql('select jobs.ack($1::bigint)', [held[0]]);
    // One at a time now: each claim takes its one slot, then none is left to take.
    expect(await queue.drain(10, deadline(), { queue: 'mr' }))
      .toMatchObject({ claimed: 2, succeeded: 2, stoppedBy: 'empty', queueAtMaxRunning: false });
    // A queue without max_running.
    await publish(2, 'free');
    expect(await queue.drain(10, deadline(), { queue: 'free' }))
      .toMatchObject({ claimed: 2, succeeded: 2, queueAtMaxRunning: false });
  });
});
