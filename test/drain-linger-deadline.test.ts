// A lingering drain that ends at its deadline says whether it left due work:
// 'deadline' when a job came due that it never claimed (no NOTIFY is sent
// when a scheduled job comes due, and its next poll was past the deadline),
// 'empty' when nothing was left (README "Fast pickup": 'deadline' still means
// it stopped with work left). Over neon-http, which cannot LISTEN.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { startNeonHttpServer } from './support/neon-http-server.js';

const db = await testDb();
const endpoint = await startNeonHttpServer(); // stands in for Neon's HTTP SQL endpoint
afterAll(() => endpoint.close());

const HOUR = 3_600_000;
const queue = () => createQueue({ driver: neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint }), tasks: { note: () => null } });

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('a drain lingering until its deadline', () => {
  it('that never claimed a job which came due meanwhile reports deadline, and counts it skipped', async () => {
    const q = queue();
    // Due in 1 s; the drain's budget ends in 2.5 s (3 s less the 0.5 s margin); no poll before then.
    await q.publish('note', {}, { delaySeconds: 1, timeoutSeconds: 1 });
    const report = await q.drain(10, Date.now() + 3000, { lingerMs: HOUR, pollMs: HOUR });
    expect(report).toMatchObject({ claimed: 0, skipped: 1, stoppedBy: 'deadline' });
    // Left as it was: not claimed, no attempt spent.
    expect(await db.sql('select attempt, lease_until from jobs.job_queue')).toEqual([{ attempt: 0, lease_until: null }]);
    await q.close();
  });

  it('with nothing due reports empty', async () => {
    const q = queue();
    await q.publish('note', {}, { delaySeconds: 3600 }); // not due before the deadline
    expect(await q.drain(10, Date.now() + 2000, { lingerMs: HOUR, pollMs: HOUR }))
      .toMatchObject({ claimed: 0, skipped: 0, stoppedBy: 'empty' });
    await q.close();
  });
});
