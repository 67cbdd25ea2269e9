// A drain's last look may carry outcomes the drain buffered (flushIntervalMs):
// here a job of its own that ended while the handlers of a drain given
// `concurrency` held its pool's slots, so it waited for one until its deadline
// and its look went with that job's ack. A look rolled back whole (a deadlock
// victim, 40P01: a trigger raises it once, standing in for a deadlock) is not
// sent again (it is only for counting), and the ack it carried goes with the
// drain's final settle: nothing is lost, the job is counted once.
import { afterAll, expect, it } from 'vitest';
import { defineTask } from '../src/index.js';
import { fullPool } from './support/full-pool.js';
import { until } from './support/drain-process.js';

let releaseGate!: () => void;
const gated = new Promise<void>((resolve) => (releaseGate = resolve));
let gateRunning = false;
const { db, driver, releases, queue } = await fullPool({
  gate: defineTask('gate', async () => {
    gateRunning = true;
    await gated;
  }),
});
afterAll(() => driver.close());

it("a last look rolled back whole leaves its outcomes to the final settle", async () => {
  await db.sql(`select jobs.create_queue('explicit'), jobs.create_queue('own')`);
  await db.sql(`create sequence settle_tries`);
  // The first statement that settles the job (a delete from jobs.job_queue) fails as a deadlock victim would.
  await db.sql(`create function public.fail_first_settle() returns trigger language plpgsql as $$
    begin
      if nextval('public.settle_tries') = 1 then raise exception 'deadlock detected' using errcode = '40P01'; end if;
      return old;
    end $$`);
  await db.sql(`create trigger fail_first_settle before delete on jobs.job_queue for each row
                when (old.queue = 'own') execute function public.fail_first_settle()`);
  await db.sql(`select jobs.publish('gate', '{}'::jsonb, timeout_seconds => 2, queue => 'own')`);
  await db.sql(`select jobs.publish('long', '{}'::jsonb, timeout_seconds => 100, queue => 'explicit') from generate_series(1, 2)`);
  // Pool-bound (pool of 3: two handler slots): its ack waits for the next claim (flushIntervalMs).
  const own = queue.drain(10, Date.now() + 4000, { queue: 'own', flushIntervalMs: 60_000 });
  await until(async () => gateRunning, 'its job to run');
  const explicit = queue.drain(10, Date.now() + 120_000, { queue: 'explicit', concurrency: 2 });
  await until(async () => releases.length === 2, "the explicit drain's handlers to hold the other slots");
  try {
    releaseGate(); // its ack is buffered; no slot is free, so it waits until its deadline, then looks
    const report = await own;
    // batches 2: its claim of the job and one that found none; the look, rolled back, is neither counted nor sent again.
    expect(report).toMatchObject({ claimed: 1, succeeded: 1, batches: 2, stoppedBy: 'deadline' });
    // Two tries: the look's (rolled back) and the final settle's.
    expect(await db.sql(`select last_value::int as n from settle_tries`)).toEqual([{ n: 2 }]);
    expect(await db.sql(`select status from jobs.job where task = 'gate'`)).toEqual([{ status: 'success' }]);
  } finally {
    for (const release of releases) release();
    await explicit;
  }
});
