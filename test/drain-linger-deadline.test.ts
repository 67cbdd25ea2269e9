// A lingering drain that ends at its deadline says whether it left due work:
// 'deadline' when a job came due that it never claimed (no NOTIFY is sent
// when a scheduled job comes due, and its next poll was past the deadline),
// 'empty' when nothing was left (README "Fast pickup": 'deadline' still means
// it stopped with work left). Over neon-http, which cannot LISTEN.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import type { Driver, QueryOptions } from '../src/db/driver.js';
import { neonHttpDriver } from '../src/db/neon-http.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { startNeonHttpServer } from './support/neon-http-server.js';

const db = await testDb();
const endpoint = await startNeonHttpServer(); // stands in for Neon's HTTP SQL endpoint
afterAll(() => endpoint.close());

const HOUR = 3_600_000;
// A drain's deadline: a first claim sent up to 4.5 s late (a loaded machine; 0.5 s settle margin) still has a
// budget. At 2 s, one sent 1.5 s late had none, and the drain said 'deadline' with nothing due.
const DEADLINE_MS = 5000;
/** Calls `answered` once a claim's answer has come (claim_json), then goes on. */
function claimWatch(driver: Driver, answered: () => void): Driver {
  return {
    ...driver,
    query: async <R,>(text: string, params?: readonly unknown[], options?: QueryOptions) => {
      const result = await driver.query<R>(text, params, options);
      if (text.includes('jobs.claim_json(')) answered();
      return result;
    },
  };
}
const queue = (answered = () => {}) => createQueue({
  driver: claimWatch(neonHttpDriver(db.url, { fetchEndpoint: endpoint.endpoint }), answered), tasks: { note: () => null } });

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

describe('a drain lingering until its deadline', () => {
  it('that never claimed a job which came due meanwhile reports deadline, and counts it skipped', async () => {
    // Not due at the drain's first claim; made due (in SQL) once that claim has answered: no poll comes before
    // the deadline. Before, it was due in 1 s against a 3 s deadline: a first claim sent 1 s late (a loaded
    // machine) found it due with its 1 s timeout still fitting, and claimed it.
    let answered!: () => void;
    const firstClaim = new Promise<void>((resolve) => { answered = resolve; });
    const q = queue(() => answered());
    await q.publish('note', {}, { delaySeconds: 3600, timeoutSeconds: 1 });
    const drained = q.drain(10, Date.now() + DEADLINE_MS, { lingerMs: HOUR, pollMs: HOUR });
    await firstClaim;
    await db.sql('update jobs.job_queue set scheduled_at = now()');
    const report = await drained;
    expect(report).toMatchObject({ claimed: 0, skipped: 1, stoppedBy: 'deadline' });
    // Left as it was: not claimed, no attempt spent.
    expect(await db.sql('select attempt, lease_until from jobs.job_queue')).toEqual([{ attempt: 0, lease_until: null }]);
    await q.close();
  });

  it('with nothing due reports empty', async () => {
    const q = queue();
    await q.publish('note', {}, { delaySeconds: 3600 }); // not due before the deadline
    expect(await q.drain(10, Date.now() + DEADLINE_MS, { lingerMs: HOUR, pollMs: HOUR }))
      .toMatchObject({ claimed: 0, skipped: 0, stoppedBy: 'empty' });
    await q.close();
  });
});
