// A drain whose deadline is already within its settle margin (a Lambda with
// under ~1.5 s left, an HTTP drain with a short budget) can start no job: it
// sends one claim with no budget, which takes none and counts the due jobs
// it left, so its report says why it ran nothing (DESIGN: "Its report says
// how many due jobs it left alone because they could not fit").
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const ran: string[] = [];
const q = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: { quick: async () => { ran.push('quick'); } } });

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  ran.length = 0;
});

describe('a drain with no budget', () => {
  it('counts the due jobs it left in skipped, claiming none', async () => {
    await q.publishBulk(Array.from({ length: 3 }, () => ({ task: 'quick', timeoutSeconds: 1 })));
    await q.publish('quick', null, { delaySeconds: 3600 }); // not due: not counted
    const report = await q.drain(10, Date.now() + 200); // the default settle margin is 500 ms
    expect(report).toMatchObject({ claimed: 0, skipped: 3, batches: 1, stoppedBy: 'deadline' });
    expect(ran).toEqual([]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where attempt = 0 and lease_until is null`)).toEqual([{ n: 4 }]);
  });

  it('counts them as well with a deadline already past, and when it would linger', async () => {
    await q.publishBulk(Array.from({ length: 2 }, () => ({ task: 'quick', timeoutSeconds: 1 })));
    expect(await q.drain(10, Date.now() - 1000)).toMatchObject({ claimed: 0, skipped: 2, stoppedBy: 'deadline' });
    expect(await q.drain(10, Date.now() + 100, { lingerMs: 60_000 })).toMatchObject({ claimed: 0, skipped: 2, stoppedBy: 'deadline' });
    expect(ran).toEqual([]);
    expect(await sql(`select count(*)::int as n from jobs.job_queue where attempt = 0 and lease_until is null`)).toEqual([{ n: 2 }]);
  });

  it('on an empty queue still says deadline: it stopped for want of time', async () => {
    expect(await q.drain(10, Date.now() + 200)).toMatchObject({ claimed: 0, skipped: 0, stoppedBy: 'deadline' });
    expect(await q.drain(10, Date.now() + 200, { lingerMs: 60_000 })).toMatchObject({ claimed: 0, skipped: 0, stoppedBy: 'deadline' });
  });
});
