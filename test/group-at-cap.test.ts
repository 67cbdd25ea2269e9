// Why a claim of a group-limited queue came back short: jobs.claim_json's
// "atGroupConcurrency" (a due job the claim would take waits for its group,
// at its cap), and the drain report's queueAtGroupConcurrency through
// TypeScript, HTTP and the CLI's text report.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;

type Claim = { count: number; unfit: number; paused: boolean; atMaxRunning: boolean; atGroupConcurrency: boolean };
const claimJson = async (n: number, options: { pattern?: string; maxTimeout?: number; queue?: string } = {}) =>
  (await sql<{ r: Claim }>('select jobs.claim_json($1, $2, $3, queue => $4) as r',
                           [n, options.pattern ?? null, options.maxTimeout ?? null, options.queue ?? 'gc']))[0]!.r;
const publish = (n: number, group: string | null, options: { task?: string; tier?: string; timeout?: number; later?: boolean; queue?: string } = {}) =>
  sql(`select jobs.publish($1::text, jsonb_build_object('i', i), queue => $2::text, group_id => $3::text, group_tier => $4::text,
                           timeout_seconds => $5::numeric, scheduled_at => case when $6::boolean then now() + interval '1 hour' end)
       from generate_series(1, $7) i`,
      [options.task ?? 'gc.job', options.queue ?? 'gc', group, options.tier ?? null, options.timeout ?? 60, options.later ?? false, n]);
const ackRunning = () => sql(`select jobs.ack(job_id) from jobs.job_queue where queue = 'gc' and lease_until is not null`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('gc', group_concurrency => 1)`);
  await sql(`select jobs.create_queue('free')`);
});

describe('jobs.claim_json answers atGroupConcurrency', () => {
  it('true when a due job of the claim\'s selection waits for its full group; false when none does', async () => {
    await publish(2, 'a');
    await publish(1, null);
    // One of a and the ungrouped one: a's second waits.
    expect(await claimJson(10)).toMatchObject({ count: 2, atGroupConcurrency: true, atMaxRunning: false });
    expect(await claimJson(10)).toMatchObject({ count: 0, atGroupConcurrency: true, paused: false });
    // Not of this claim's pattern, or its timeout does not fit (counted as unfit instead): not held for it.
    expect(await claimJson(10, { pattern: 'gc.other' })).toMatchObject({ count: 0, atGroupConcurrency: false });
    expect(await claimJson(10, { maxTimeout: 30 })).toMatchObject({ count: 0, unfit: 1, atGroupConcurrency: false });
    // A paused queue says paused.
    await sql(`select jobs.pause_queue('gc')`);
    expect(await claimJson(10)).toMatchObject({ count: 0, paused: true, atGroupConcurrency: false });
    await sql(`select jobs.resume_queue('gc')`);
    // a's slot comes free: its last job goes, nothing is left waiting.
    await ackRunning();
    expect(await claimJson(10)).toMatchObject({ count: 1, atGroupConcurrency: false });
    // A job of the full group scheduled for later is not due: it waits for its time, not its group.
    await publish(1, 'a', { later: true });
    expect(await claimJson(10)).toMatchObject({ count: 0, atGroupConcurrency: false });
    // An empty queue.
    await ackRunning();
    expect(await claimJson(10)).toMatchObject({ count: 0, atGroupConcurrency: false });
  });

  it('counts against the cap of the job\'s tier; a full batch and a queue without group_concurrency say false', async () => {
    await sql(`select jobs.create_queue('gc', group_tiers => '{"pro": 3}')`);
    // Two of p running, at group_concurrency's 1 but below pro's 3: none held.
    await publish(2, 'p', { tier: 'pro' });
    expect(await claimJson(10)).toMatchObject({ count: 2, atGroupConcurrency: false });
    await ackRunning();
    await sql(`select jobs.create_queue('gc', group_tiers => '{"pro": 2}')`);
    await publish(3, 'p', { tier: 'pro' });
    expect(await claimJson(10)).toMatchObject({ count: 2, atGroupConcurrency: true });
    await ackRunning();
    // The claim got all it asked for: not held, though the group is full now.
    await publish(2, 'p', { tier: 'pro' });
    expect(await claimJson(2)).toMatchObject({ count: 2, atGroupConcurrency: false });
    await publish(3, 'a', { queue: 'free' });
    expect(await claimJson(10, { queue: 'free' })).toMatchObject({ count: 3, atGroupConcurrency: false });
  });
});

describe('the drain report', () => {
  it('queueAtGroupConcurrency: true when full groups cut its claim to none; HTTP and the CLI pass it on', async () => {
    await publish(2, 'a', { timeout: 10 }); // fits the HTTP and CLI drains' 20 s budgets
    const held = await sql<{ job_id: string }>(`select job_id::text from jobs.claim(10, queue => 'gc')`); // another consumer runs one of a
    expect(held).toHaveLength(1);
    const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { gc: { job: async () => null } } });
    expect(await queue.drain(10, deadline(), { queue: 'gc' })).toMatchObject({
      claimed: 0, stoppedBy: 'empty', queueAtGroupConcurrency: true, queueAtMaxRunning: false, queuePaused: false });

    const app = createApp({ queue, token: 'test-token-0123456789abcdef' });
    const answer = await app.fetch(new Request('http://localhost/drain', {
      method: 'POST', headers: { authorization: 'Bearer test-token-0123456789abcdef', 'content-type': 'application/json' },
      body: JSON.stringify({ batchSize: 10, budgetSeconds: 20, queue: 'gc' }) }));
    expect(answer.status).toBe(200);
    expect(await answer.json()).toMatchObject({ claimed: 0, queueAtGroupConcurrency: true });
    const dir = mkdtempSync(join(tmpdir(), 'pgdrain-group-at-cap-'));
    const tasksFile = join(dir, 'noop.mjs');
    writeFileSync(tasksFile, 'export const gc = { job: () => null };\n');
    const text = await runCli(db.url, 'drain', '--tasks', tasksFile, '--queue', 'gc', '--deadline', '20')
      .finally(() => rmSync(dir, { recursive: true, force: true }));
    expect(text).toMatchObject({ code: 0 });
    expect(text.stdout).toContain('at their group_concurrency');

    await sql('select jobs.ack($1::bigint)', [held[0]!.job_id]);
    expect(await queue.drain(10, deadline(), { queue: 'gc' }))
      .toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty', queueAtGroupConcurrency: false });
  });
});
