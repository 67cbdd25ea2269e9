// A lingering drain that still holds a connection with a handler hung past
// its timeout (its job settled, the call not returned), on a pool whose other
// connections another drain's handler holds, ends at its deadline: it waited
// for a change alone, which its deadline timer (off while it lingers) never
// sent, so it stayed until one of the handlers let go (here never) (4a37e87 covered only a
// drain with none of its own running).
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, defineTask } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();
const driver = pgDriver(db.url, { max: 3 }); // two connections for handlers, over every drain on it
afterAll(() => driver.close());

const releases: (() => void)[] = [];
const held = (ctx: { db: { query(text: string): Promise<unknown> } }) => ctx.db.query('select 1')
  .then(() => new Promise<void>((resolve) => releases.push(resolve)));
const tasks = {
  hung: defineTask('hung', async (_body: unknown, ctx) => held(ctx), { transactional: true }), // ignores its signal
  long: defineTask('long', async (_body: unknown, ctx) => held(ctx), { transactional: true }),
};
const queue = createQueue({ driver, tasks });

it('a lingering drain with a hung handler, its pool full, still ends at its deadline', async () => {
  await db.sql(`select jobs.create_queue('idle'), jobs.create_queue('busy')`);
  // 2 s, not 0.5 s: a claim answered after the job's timer ended (0.45 s on, a loaded machine's round trip)
  // nacks it unstarted (handler-end.ts), its handler never run (nothing hung).
  await db.sql(`select jobs.publish('hung', '{}'::jsonb, timeout_seconds => 2, max_retries => 0, queue => 'idle')`);
  const lingering = queue.drain(10, Date.now() + 6000, { queue: 'idle', lingerMs: 60_000, pollMs: 100 });
  // Its job timed out (failed) while its handler holds on; it lingers on its empty queue.
  await until(async () => (await db.sql(`select 1 from jobs.job where status = 'failure'`)).length > 0, 'the hung job to fail');
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 60, queue => 'busy')`);
  const busy = queue.drain(10, Date.now() + 120_000, { queue: 'busy' });
  try {
    // Unfixed, it returns only once a handler lets go: here, never (the test times out).
    const report = await lingering;
    expect(releases).toHaveLength(2); // both handlers still hold their connections
    expect(report).toMatchObject({ claimed: 1, failed: 1 });
  } finally {
    for (const release of releases) release();
    await busy;
  }
});
