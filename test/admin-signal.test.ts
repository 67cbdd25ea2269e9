// The admin calls (cancel, reschedule, fail, complete, cancelByKey,
// deleteJobs, redrive, queues.*) take { signal } as publish does (send.ts):
// checked at the edge, and when it fires the call rejects with its reason and
// its connection is ended, so the statement never runs later.
import { expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createQueue, type Queue } from '../src/index.js';
import { testDb } from './support/db.js';
import { proxiedUrl } from './support/tcp-proxy.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });

/** Every admin call that changes jobs or queues, with options holding signal. */
function calls(q: Queue, id: string, signal: unknown): [string, () => Promise<unknown>][] {
  const o = { signal } as { signal: AbortSignal };
  return [
    ['cancel', () => q.cancel(id, 'r', o)],
    ['cancel([])', () => q.cancel([id], 'r', o)],
    ['reschedule', () => q.reschedule([id], { priority: 5, ...o })],
    ['fail', () => q.fail([id], 'r', o)],
    ['complete', () => q.complete([id], null, o)],
    ['cancelByKey', () => q.cancelByKey('sig-key', 'r', o)],
    ['deleteJobs', () => q.deleteJobs([id], o)],
    ['redrive', () => q.redrive({ ids: [id] }, o)],
    ['queues.create', () => q.queues.create('sig', { maxSize: 5, ...o })],
    ['queues.pause', () => q.queues.pause('sig', o)],
    ['queues.resume', () => q.queues.resume('sig', o)],
    ['queues.purge', () => q.queues.purge('sig', { reason: 'r', ...o })],
    ['queues.delete', () => q.queues.delete('sig', o)],
    ['queues.deleteEnded', () => q.queues.deleteEnded('sig', { maxRows: 5, ...o })],
    ['queues.subscribe', () => q.queues.subscribe('sig.event', 'sig', { task: 't', ...o })],
    ['queues.unsubscribe', () => q.queues.unsubscribe('sig.event', 'sig', o)],
  ];
}

/** What the calls above could change: the job, the queue, the subscription. */
const state = async (id: string) => sql(`select (select row(state, priority)::text from jobs.all where job_id = $1::bigint) as job,
  (select count(*)::int from jobs.job where job_id = $1::bigint) as ended,
  (select row(paused, max_size)::text from jobs.queue where name = 'sig') as queue,
  (select count(*)::int from jobs.subscriptions where event = 'sig.event') as subscriptions`, [id]);

it('a signal that is not an AbortSignal is refused naming it, and an aborted one rejects with its reason: nothing changes', async () => {
  await sql(`select jobs.create_queue('sig')`);
  const id = await queue.publish('sig.job', {}, { queue: 'sig', dedupeKey: 'sig-key' });
  const before = await state(id);
  for (const [name, call] of calls(queue, id, 'soon')) {
    await expect(call(), name).rejects.toMatchObject({ code: 'invalid_argument', field: 'options.signal',
                                                       message: 'options.signal: must be an AbortSignal' });
  }
  const reason = new Error('caller gave up');
  for (const [name, call] of calls(queue, id, AbortSignal.abort(reason))) await expect(call(), name).rejects.toBe(reason);
  expect(await state(id)).toEqual(before);
  // Options of a call that takes only a signal are checked too.
  await expect(queue.queues.pause('sig', { timeoutMs: 5 } as never)).rejects
    .toMatchObject({ field: 'options', message: 'options: unknown option "timeoutMs"' });
  await expect(queue.fail([id], 'r', 5 as never)).rejects.toMatchObject({ field: 'options', message: 'options: must be an object' });
  // A live signal changes nothing else.
  const live = new AbortController().signal;
  expect(await queue.reschedule([id], { priority: 7, signal: live })).toBe(1);
  expect(await queue.queues.pause('sig', { signal: live })).toBe(true);
  expect(await state(id)).toEqual([{ job: '(pending,7)', ended: 0, queue: '(t,)', subscriptions: 0 }]);
  expect(await queue.cancel(id, undefined, { signal: live })).toBe('cancelled');
  expect(await queue.redrive({ ids: [id], includeCancelled: true }, { signal: live })).toEqual({ redriven: 1, heldByKey: 0, serialLater: 0 });
  await sql(`select jobs.cancel_bulk(array[$1::bigint], null)`, [id]);
  await sql(`select jobs.resume_queue('sig')`);
});

it('an admin call through a frozen network is given up when its signal fires, its connection ended: the pool slot is free again', async () => {
  await sql(`select jobs.create_queue('frozen')`);
  const { proxy, url } = await proxiedUrl(db.url);
  // One connection: a call that kept it after giving up would leave none for the next.
  const frozen = createQueue({ driver: pgDriver(url, { max: 1 }) });
  try {
    expect(await frozen.queues.resume('frozen')).toBe(true); // the connection, open
    proxy.freezeOpen(); // no reply, no error, ever, on it; new connections get through
    // Before: the signal was not taken, and the call waited as long as TCP would.
    await expect(frozen.queues.pause('frozen', { signal: AbortSignal.timeout(500) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(await frozen.queues.pause('frozen')).toBe(true); // on a new connection
    expect(await sql(`select paused from jobs.queue where name = 'frozen'`)).toEqual([{ paused: true }]);
  } finally {
    await frozen.close();
    await proxy.close();
  }
});

it('a call given up while it waits for a connection leaves the connection it then gets open in the pool: it sent nothing on it', async () => {
  await sql(`select jobs.create_queue('waits')`);
  const driver = pgDriver(db.url, { max: 1 });
  const one = createQueue({ driver });
  try {
    const pidOf = async (q: { query: typeof driver.query }) => (await q.query<{ p: number }>('select pg_backend_pid() as p')).rows[0]!.p;
    // The pool's one connection, held by a transaction while calls wait for it and are given up.
    const held = await driver.transaction(async (tx) => {
      const reasons = [1, 2, 3].map((i) => new Error(`caller ${i} gave up`));
      const calls = reasons.map((reason) => {
        const c = new AbortController();
        const call = one.queues.pause('waits', { signal: c.signal });
        c.abort(reason);
        return call.catch((error: unknown) => error);
      });
      expect(await Promise.all(calls)).toEqual(reasons);
      return pidOf(tx);
    });
    // Before: each given-up call ended the connection it got once the transaction let it go, and the next opened another.
    expect(await pidOf(driver)).toBe(held);
    expect(await one.queues.pause('waits', { signal: new AbortController().signal })).toBe(true);
    expect(await sql(`select paused from jobs.queue where name = 'waits'`)).toEqual([{ paused: true }]);
  } finally {
    await driver.close();
  }
});
