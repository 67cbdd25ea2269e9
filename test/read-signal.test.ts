// The reads (getJob, listJobs, queueSize, queues.list, queues.subscriptions,
// listSchedules) take { signal } as the admin calls do (send.ts): checked at
// the edge, an aborted one rejects before any query, and one that fires
// while the read waits gives it up and ends its connection, so its pool slot
// is free again.
import { expect, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, listSchedules, type Queue } from '../src/index.js';
import { countingDriver } from './support/counting-driver.js';
import { testDb } from './support/db.js';
import { proxiedUrl } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const counts = new Map<string, number>();
// A counter, not a stand-in: every statement still runs on the real database.
const counted = countingDriver(db.driver, counts);
const queue = createQueue({ driver: counted, tasks: {} });
const sent = () => [...counts.values()].reduce((a, b) => a + b, 0);

/** Every read of the TypeScript API, with options holding signal. */
function reads(q: Queue, driver: Driver, id: string, signal: unknown): [string, () => Promise<unknown>][] {
  const o = { signal } as { signal: AbortSignal };
  return [
    ['getJob', () => q.getJob(id, o)],
    ['listJobs', () => q.listJobs({ queue: 'reads' }, o)],
    ['listJobs()', () => q.listJobs(undefined, o)],
    ['queueSize', () => q.queueSize('reads', { state: 'pending', ...o })],
    ['queues.list', () => q.queues.list(o)],
    ['queues.subscriptions', () => q.queues.subscriptions('reads.event', o)],
    ['queues.subscriptions()', () => q.queues.subscriptions(undefined, o)],
    ['listSchedules', () => listSchedules(driver, o)],
  ];
}

it('a signal that is not an AbortSignal is refused naming it, and an aborted one rejects with its reason: no statement is sent', async () => {
  await sql(`select jobs.create_queue('reads')`);
  await sql(`select jobs.subscribe('reads.event', 'reads')`);
  await sql(`select jobs.schedule('reads.tick', '0 9 * * *', 'reads.job', runner => 'drains')`);
  const id = await queue.publish('reads.job', {}, { queue: 'reads' });
  const before = sent();
  for (const [name, read] of reads(queue, counted, id, 'soon')) {
    await expect(read(), name).rejects.toMatchObject({ code: 'invalid_argument', field: 'options.signal',
                                                       message: 'options.signal: must be an AbortSignal' });
  }
  const reason = new Error('caller gave up');
  for (const [name, read] of reads(queue, counted, id, AbortSignal.abort(reason))) await expect(read(), name).rejects.toBe(reason);
  expect(sent()).toBe(before);
  // Options of a read are { signal } alone, checked as the admin calls' are.
  await expect(queue.getJob(id, { timeoutMs: 5 } as never)).rejects
    .toMatchObject({ field: 'options', message: 'options: unknown option "timeoutMs"' });
  await expect(queue.queues.list(5 as never)).rejects.toMatchObject({ field: 'options', message: 'options: must be an object' });
  expect(sent()).toBe(before);
  // A live signal answers as no signal does.
  const live = new AbortController().signal;
  for (const [name, read] of reads(queue, counted, id, live)) {
    const plain = reads(queue, counted, id, undefined).find(([n]) => n === name)![1];
    expect(await read(), name).toEqual(await plain());
  }
  expect(await queue.getJob(id, { signal: live })).toMatchObject({ id, queue: 'reads', state: 'pending' });
  expect((await queue.queues.subscriptions('reads.event', { signal: live })).map((s) => s.queue)).toEqual(['reads']);
  expect((await listSchedules(counted, { signal: live })).map((s) => s.name)).toEqual(['reads.tick']);
});

it('a read through a frozen network is given up when its signal fires, its connection ended: the pool slot is free again', async () => {
  const { proxy, url } = await proxiedUrl(db.url);
  // One connection: a read that kept it after giving up would leave none for the next.
  const driver = pgDriver(url, { max: 1 });
  const frozen = createQueue({ driver });
  try {
    const id = await frozen.publish('reads.frozen', {});
    for (const [name, read] of reads(frozen, driver, id, undefined)) {
      await read(); // the pool's connection, open
      proxy.freezeOpen(); // no reply, no error, ever, on it; new connections get through
      // Before: the signal was not taken, and the read waited as long as TCP would.
      const [, given] = reads(frozen, driver, id, AbortSignal.timeout(500)).find(([n]) => n === name)!;
      await expect(given(), name).rejects.toMatchObject({ name: 'TimeoutError' });
      expect(await read(), name).toBeDefined(); // on a new connection
    }
  } finally {
    await frozen.close();
    await proxy.close();
  }
});
