// Concurrency per group through the TypeScript API, the CLI and HTTP: four
// drains side by side over many groups never run more of a group's jobs at
// once than its cap (counted inside the handlers); publish's group, getJob,
// `pgdrain show`, queues.create's groupConcurrency, and bad input named.
import { describe, expect, it, beforeEach } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';
import { postJobsTo } from './support/http-jobs.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const cli = (...args: string[]) => runCli(db.url, ...args);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const deadline = () => Date.now() + 120_000;
const settings = async (name = 'gc') =>
  (await sql<{ c: number | null; t: unknown }>('select group_concurrency as c, group_tiers as t from jobs.queue where name = $1', [name]))[0];

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('gc')`);
});

describe('drains side by side', () => {
  it('four drains over twelve groups: no group runs more than its cap (2, or 3 for tier pro); every job once', async () => {
    await queue.queues.create('gc', { groupConcurrency: { default: 2, tiers: { pro: 3 } } });
    const jobs = [];
    for (let g = 0; g < 12; g++) {
      for (let i = 0; i < 6; i++) jobs.push({ task: 'gc.job', body: { g }, group: { id: `g${g}`, ...(g % 3 === 0 ? { tier: 'pro' } : {}) } });
    }
    for (let i = 0; i < 8; i++) jobs.push({ task: 'gc.job', body: { g: null } }); // no group: never held back
    await queue.publishBulk(jobs, 'gc');
    const active = new Map<string, number>();
    const most = new Map<string, number>();
    const runs = new Map<string, number>();
    const tasks = { gc: { job: async (body: { g: number | null }, ctx: JobContext) => {
      runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
      const g = body.g === null ? 'none' : `g${body.g}`;
      active.set(g, (active.get(g) ?? 0) + 1);
      most.set(g, Math.max(most.get(g) ?? 0, active.get(g)!));
      try {
        await sleep(10);
      } finally {
        active.set(g, active.get(g)! - 1);
      }
      return null;
    } } };
    // Each drain has a pool of its own, as separate processes would, and runs
    // up to 8 handlers at once: without the caps a group's jobs would run 6 at once.
    const queues = Array.from({ length: 4 }, () => createQueue({ driver: pgDriver(db.url, { max: 4 }), tasks }));
    try {
      const reports = await Promise.all(queues.map((q) =>
        q.drain(10, deadline(), { queue: 'gc', concurrency: 8, lingerMs: 1000, pollMs: 50 })));
      expect(reports.reduce((n, r) => n + r.succeeded, 0)).toBe(80);
    } finally {
      await Promise.all(queues.map((q) => q.close()));
    }
    for (let g = 0; g < 12; g++) {
      expect(most.get(`g${g}`), `g${g}`).toBeLessThanOrEqual(g % 3 === 0 ? 3 : 2);
    }
    expect(runs.size).toBe(80);
    expect([...runs.values()].every((n) => n === 1)).toBe(true);
    expect(await sql(`select status, attempts, count(*)::int as n from jobs.job group by 1, 2`))
      .toEqual([{ status: 'success', attempts: 1, n: 80 }]);
  });
});

describe('TypeScript', () => {
  it('publish and publishBulk take group; getJob and history show it', async () => {
    const one = await queue.publish('gc.job', null, { queue: 'gc', group: { id: 'tenant-1', tier: 'pro' } });
    const [a, b] = await queue.publishBulk([{ task: 'gc.job', group: { id: 'tenant-2' } }, { task: 'gc.job' }], 'gc');
    expect((await queue.getJob(one))!.group).toEqual({ id: 'tenant-1', tier: 'pro' });
    expect((await queue.getJob(a!))!.group).toEqual({ id: 'tenant-2', tier: null });
    expect((await queue.getJob(b!))!.group).toBeNull();
    await sql(`select jobs.ack(job_id) from jobs.claim(10, queue => 'gc')`);
    expect(await queue.getJob(one)).toMatchObject({ state: 'success', group: { id: 'tenant-1', tier: 'pro' } });
  });

  it('refuses a bad group before any round trip, naming the option', async () => {
    const bad: [Promise<unknown>, string][] = [
      [queue.publish('t', null, { group: { id: '' } }), 'options.group.id'],
      [queue.publish('t', null, { group: { id: ' \t' } }), 'options.group.id'],
      [queue.publish('t', null, { group: { id: 'x'.repeat(201) } }), 'options.group.id'],
      [queue.publish('t', null, { group: { id: 'g', tier: '' } }), 'options.group.tier'],
      [queue.publish('t', null, { group: { id: 'g', tier: '\n' } }), 'options.group.tier'],
      [queue.publish('t', null, { group: 'g' as never }), 'options.group'],
      [queue.publish('t', null, { group: { tier: 'pro' } as never }), 'options.group.id'],
      [queue.publishBulk([{ task: 't' }, { task: 't', group: { id: 'g', tier: 7 as never } }]), 'jobs[1].group.tier'],
    ];
    for (const [call, field] of bad) await expect(call, field).rejects.toMatchObject({ name: 'ValidationError', field });
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });

  it('queues.create: a number, { default, tiers }, null; list shows it; bad ones named', async () => {
    await queue.queues.create('gc', { groupConcurrency: { default: 2, tiers: { pro: 5 } } });
    expect(await settings()).toEqual({ c: 2, t: { pro: 5 } });
    expect((await queue.queues.list()).find((q) => q.name === 'gc')).toMatchObject({ groupConcurrency: { default: 2, tiers: { pro: 5 } } });
    await queue.queues.create('gc', { maxSize: 10 }); // left out: kept
    expect(await settings()).toEqual({ c: 2, t: { pro: 5 } });
    await queue.queues.create('gc', { groupConcurrency: 3 }); // a number: no tiers
    expect((await queue.queues.list()).find((q) => q.name === 'gc')).toMatchObject({ groupConcurrency: 3 });
    for (const [value, field] of [[0, 'options.groupConcurrency'], [1.5, 'options.groupConcurrency'], ['2', 'options.groupConcurrency'],
      [{ default: 100_001 }, 'options.groupConcurrency.default'], [{ tiers: { pro: 1 } }, 'options.groupConcurrency.default'],
      [{ default: 2, tiers: { pro: 0 } }, 'options.groupConcurrency.tiers.pro'], [{ default: 2, other: 1 }, 'options.groupConcurrency']] as const) {
      await expect(queue.queues.create('gc', { groupConcurrency: value as never }), JSON.stringify(value)).rejects
        .toMatchObject({ name: 'ValidationError', field });
    }
    // A bad tier name: the rule, not zod's "Invalid key in record".
    for (const name of ['', '  ', 'x'.repeat(201)]) {
      await expect(queue.queues.create('gc', { groupConcurrency: { default: 2, tiers: { [name]: 1 } } })).rejects.toMatchObject({
        name: 'ValidationError', field: 'options.groupConcurrency.tiers',
        message: 'options.groupConcurrency.tiers: tier names must be non-empty texts of at most 200 characters, not only whitespace' });
    }
    await queue.queues.create('gc', { groupConcurrency: null });
    expect(await settings()).toEqual({ c: null, t: null });
  });
});

describe('HTTP and CLI', () => {
  const post = postJobsTo(queue);
  const groupOf = async (id: string) =>
    (await sql(`select group_id, group_tier from jobs.job_queue where job_id = $1`, [id]))[0];

  it('POST /jobs takes group (one, or per job of a bulk); a bad one answers 400 naming the field', async () => {
    const single = await post({ task: 't', queue: 'gc', group: { id: 'g1', tier: 'pro' } });
    expect(single.status).toBe(201);
    expect(await groupOf(single.body.id)).toEqual({ group_id: 'g1', group_tier: 'pro' });
    const many = await post({ queue: 'gc', jobs: [{ task: 't' }, { task: 't', group: { id: 'g2' } }] });
    expect(many.status).toBe(201);
    expect(await groupOf(many.body.ids[1])).toEqual({ group_id: 'g2', group_tier: null });
    for (const [body, field] of [[{ task: 't', group: { id: '' } }, 'group.id'], [{ task: 't', group: { id: '  ' } }, 'group.id'],
      [{ jobs: [{ task: 't', group: { id: 'g', tier: '' } }] }, 'jobs[0].group.tier']] as const) {
      const r = await post(body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body, JSON.stringify(body)).toMatchObject({ error: { field } });
    }
  });

  it('pgdrain publish --group --group-tier, show prints it; queue create --group-concurrency --group-tiers; bad flags exit 2', async () => {
    const r = await cli('publish', 't', '--queue', 'gc', '--group', 'g1', '--group-tier', 'pro');
    expect(r).toMatchObject({ code: 0 });
    const id = r.stdout.trim();
    expect(await groupOf(id)).toEqual({ group_id: 'g1', group_tier: 'pro' });
    expect((await cli('show', id)).stdout).toMatch(/^group\s+g1 \(tier pro\)$/m);
    const lone = await cli('publish', 't', '--group-tier', 'pro');
    expect(lone.code).toBe(2);
    expect(lone.stderr).toMatch(/--group-tier: needs --group/);
    expect((await cli('publish', 't', '--group', '')).stderr).toMatch(/--group/);
    for (const flags of [['--group', ' '], ['--group', 'g', '--group-tier', '\t']]) {
      const blank = await cli('publish', 't', ...flags);
      expect(blank.code, flags.join(' ')).toBe(2);
      expect(blank.stderr, flags.join(' ')).toMatch(new RegExp(`${flags.at(-2)}.*must be a non-empty text of at most 200 characters, not only whitespace`));
    }

    expect(await cli('queue', 'create', 'gc', '--group-concurrency', '2', '--group-tiers', '{"pro": 5}')).toMatchObject({ code: 0 });
    expect(await settings()).toEqual({ c: 2, t: { pro: 5 } });
    const table = await cli('queue', 'list');
    expect(table.stdout).toMatch(/group_concurrency/);
    expect(table.stdout.split('\n').find((l) => /^gc\b/.test(l))).toContain('2 (pro 5)');
    for (const [args, message] of [[['--group-concurrency', '0'], /--group-concurrency/],
      [['--group-tiers', '{"pro": 5}'], /--group-tiers: needs --group-concurrency/],
      [['--group-concurrency', '2', '--group-tiers', '{"pro": 0}'], /--group-tiers\.pro: must be an integer between 1 and 100000/],
      [['--group-concurrency', '2', '--group-tiers', '{"": 3}'], /--group-tiers: tier names must be non-empty texts of at most 200 characters/],
      [['--group-concurrency', '2', '--group-tiers', '{" ": 3}'], /--group-tiers: tier names must be non-empty texts of at most 200 characters, not only whitespace/]] as const) {
      const bad = await cli('queue', 'create', 'gc', ...args);
      expect(bad.code, args.join(' ')).toBe(2);
      expect(bad.stderr, args.join(' ')).toMatch(message);
    }
    expect(await settings()).toEqual({ c: 2, t: { pro: 5 } });
    expect(await cli('queue', 'create', 'gc', '--no-group-concurrency')).toMatchObject({ code: 0 });
    expect(await settings()).toEqual({ c: null, t: null });
  });
});
