// A claim that commits but whose answer is lost (the connection drops as the
// server answers: test/support/reply-drop-proxy.ts): its jobs are leased to
// the drain call (its holder), which never hears of them. The drain ends with
// the claim's error once its running handlers ended and their outcomes
// settled; then it gives back what it still holds (jobs.release_holder), so
// those jobs run again at once, their attempt unspent, not once their leases
// pass with an attempt spent. A job whose handler still runs here stays leased.
import pg from 'pg';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { replyDropProxy, type ReplyDropProxy } from './support/reply-drop-proxy.js';

const db = await testDb();
const sql = db.sql;
let proxy: ReplyDropProxy;

beforeAll(async () => {
  proxy = await replyDropProxy(db.url);
});
afterAll(() => proxy.close());
beforeEach(() => sql('truncate jobs.job_queue, jobs.job'));

/** A promise and the function that resolves it. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  return [new Promise<void>((resolve) => (open = resolve)), () => open()];
}

const rows = () => sql<{ task: string; status: string; leased: boolean; attempt: number }>(
  `select task, 'active' as status, lease_until is not null as leased, attempt from jobs.job_queue
   union all select task, status, false, attempts from jobs.job order by 1`);

it("a claim whose answer is lost: its jobs are given back once the running handlers' outcomes settled", async () => {
  const [quickMayEnd, endQuick] = gate();
  const [slowMayEnd, endSlow] = gate();
  let started = 0;
  let lateRan = false;
  const queue = createQueue({
    driver: pgDriver(proxy.url),
    tasks: {
      quick: async () => { started++; await quickMayEnd; return 'quick done'; },
      slow: async () => { started++; await slowMayEnd; return 'slow done'; },
      late: async () => { lateRan = true; return 'late done'; },
    },
  });
  try {
    const [quick] = await queue.publishBulk([{ task: 'quick', body: {} }, { task: 'slow', body: {} }]) as string[];
    // Claimable once quick's ack landed: taken by the claim that carries that ack.
    await queue.publish('late', {}, { dependsOn: [quick!] });
    // flushIntervalMs at its most: quick's ack goes with the next claim, not in a settle of its own.
    const drained = queue.drain(10, Date.now() + 120_000, { workerId: 'lost-claim', flushIntervalMs: 60_000 })
      .then(() => 'returned', (e: unknown) => e);
    await until(async () => started === 2, 'quick and slow to start');
    // The claim carrying quick's ack (its outcomes, bound as text, {ack}: the only statement that sends it) commits,
    // late leased to this drain call, and its answer is lost.
    const dropped = proxy.dropReplyTo('{ack}');
    endQuick();
    await dropped;
    expect(await rows()).toEqual([
      { task: 'late', status: 'active', leased: true, attempt: 1 },
      { task: 'quick', status: 'success', leased: false, attempt: 1 },
      { task: 'slow', status: 'active', leased: true, attempt: 1 }, // still running here: never given back
    ]);
    endSlow();
    const error = await drained;
    // late: released, its attempt given back, claimable now; slow's outcome landed.
    expect(await rows()).toEqual([
      { task: 'late', status: 'active', leased: false, attempt: 0 },
      { task: 'quick', status: 'success', leased: false, attempt: 1 },
      { task: 'slow', status: 'success', leased: false, attempt: 1 },
    ]);
    expect(lateRan).toBe(false);
    expect(error).toMatchObject({ code: 'database_unavailable', lostClaimReleased: 1 });
    expect((error as Error).message).toMatch(/; 1 job a claim whose answer was lost had leased was given back$/);
  } finally {
    endQuick();
    endSlow();
    await queue.close();
  }
});

// release_holder sent before the lost claim's commit lands gives back nothing:
// here the claim waits on a lock (max_running's, held as by another drain's
// claim from that queue) when its connection is cut on the client's side (as
// a client-side timeout would end it), and the server runs it on, to its
// commit, once the lock is let go: after the drain's release_holder. Its
// jobs stay leased to that drain call, which is gone; once their leases pass
// an expiry takes them back, each attempt spent, its error naming the worker.
it('a lost claim that commits after the drain gave back what it held: its jobs wait for their leases, an attempt spent', async () => {
  await sql(`delete from jobs.queue where name = 'held'`);
  await sql(`select jobs.create_queue('held', max_running => 5)`);
  const lock = new pg.Client({ connectionString: db.url });
  await lock.connect();
  await lock.query(`select pg_advisory_lock(736043, hashtext('held'))`);
  let ran = 0;
  const queue = createQueue({ driver: pgDriver(proxy.url), tasks: { work: async () => { ran++; } } });
  try {
    await queue.publishBulk([{ task: 'work', body: {} }, { task: 'work', body: {} }], 'held');
    const sent = proxy.connectionSending('jobs.claim_json');
    const drained = queue.drain(10, Date.now() + 120_000, { queue: 'held', workerId: 'early-release' })
      .then(() => 'returned', (e: unknown) => e);
    const cut = await sent;
    await until(async () => (await sql(`select 1 from pg_stat_activity where query like '%jobs.claim_json%'
                                          and wait_event_type = 'Lock' and pid <> pg_backend_pid()`)).length > 0,
                'the claim to wait on the lock');
    cut();
    const error = await drained;
    expect(error).toMatchObject({ code: 'database_unavailable' });
    expect(error).not.toHaveProperty('lostClaimReleased'); // release_holder ran first: nothing was leased yet
    expect((error as Error).message).not.toMatch(/given back/);
    await lock.query(`select pg_advisory_unlock(736043, hashtext('held'))`);
    // The claim runs on to its commit: both jobs leased to the drain call that is gone, attempt 1.
    await until(async () => (await sql(`select 1 from jobs.job_queue where lease_until is not null`)).length === 2,
                'the cut claim to commit');
    expect(await rows()).toEqual([{ task: 'work', status: 'active', leased: true, attempt: 1 },
                                  { task: 'work', status: 'active', leased: true, attempt: 1 }]);
    // Once their leases pass (the clock moved past them), an expiry takes them back: each attempt spent.
    await sql(`select jobs.expire(now => now() + interval '2 hours')`);
    expect(await sql(`select attempt, lease_until is null as free, last_error like '%no outcome from worker early-release%' as named
                      from jobs.job_queue`)).toEqual([{ attempt: 1, free: true, named: true }, { attempt: 1, free: true, named: true }]);
    expect(ran).toBe(0);
  } finally {
    await lock.end();
    await queue.close();
  }
});
