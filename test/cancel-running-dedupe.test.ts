// Cancelling a running job frees its dedupe key at once (graphile-worker's
// remove_job clears the key of a locked job too): a keep-mode publish with the
// key makes a new job, which runs, instead of answering the id of the job
// being cancelled. The cancelled job still ends as cancelled, its serial key
// held until then. jobs.cancel, jobs.cancel_key and jobs.cancel_bulk, and a
// real drain. On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('ckq')`);
});

const publish = async (v: number, extra = '') =>
  (await sql<{ id: string }>(`select jobs.publish('ck.task', jsonb_build_object('v', ${v}), queue => 'ckq',
                                dedupe_key => 'user:7:sync'${extra})::text as id`))[0]!.id;
const claim = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(1, queue => 'ckq')`)).map((r) => r.id);
const states = async () => sql(`select job_id::text as id, state, body, dedupe_key, serial_key from jobs.all where queue = 'ckq' order by job_id`);

describe('SQL: cancelling a running job frees its dedupe key', () => {
  for (const [how, cancel] of [
    ['jobs.cancel_key', () => sql(`select jobs.cancel_key('user:7:sync', 'superseded') as r`)],
    ['jobs.cancel', (id: string) => sql(`select jobs.cancel($1::bigint, 'superseded') as r`, [id])],
    ['jobs.cancel_bulk', (id: string) => sql(`select jobs.cancel_bulk(array[$1::bigint], 'superseded') as r`, [id])],
  ] as const) {
    it(`${how}: a keep publish with the key makes a new job that runs; the cancelled one ends cancelled`, async () => {
      const first = await publish(1, `, serial_key => 'acct:7'`);
      expect(await claim()).toEqual([first]);
      expect((await cancel(first))[0]!.r).toBe(how === 'jobs.cancel_bulk' ? 1 : 'cancelling');
      // The key is free at once; the serial key stays with the running job.
      expect(await states()).toEqual([{ id: first, state: 'running', body: { v: 1 }, dedupe_key: null, serial_key: 'acct:7' }]);
      const second = await publish(2);
      expect(second).not.toBe(first);
      expect(await claim()).toEqual([second]);
      // The first one's drain reports (a handler that stopped): it ends cancelled, not retried.
      await sql(`select jobs.nack($1::bigint, 'aborted')`, [first]);
      await sql(`select jobs.ack($1::bigint)`, [second]);
      expect(await sql(`select job_id::text as id, state, body, error from jobs.all where queue = 'ckq' order by job_id`)).toEqual([
        { id: first, state: 'cancelled', body: { v: 1 }, error: 'cancelled: superseded\naborted' },
        { id: second, state: 'success', body: { v: 2 }, error: null },
      ]);
    });
  }

  it('a job not yet running ends at once, as before: its key is free too', async () => {
    const first = await publish(1);
    expect(await sql(`select jobs.cancel_key('user:7:sync') as r`)).toEqual([{ r: 'cancelled' }]);
    expect(await publish(2)).not.toBe(first);
  });
});

describe('TypeScript: cancelByKey during a drain', () => {
  it('the republished job is a new one and runs; the cancelled one ends cancelled', async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => { started = resolve; });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const ran: unknown[] = [];
    const tasks = {
      ck: {
        task: async (body: { v: number }, ctx: JobContext) => {
          ran.push(body.v);
          if (body.v !== 1) return 'done';
          started();
          // Until the test has cancelled and republished, or the drain aborts it.
          await Promise.race([gate, new Promise((resolve) => ctx.signal.addEventListener('abort', resolve))]);
          throw new Error('stopped');
        },
      },
    };
    const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
    const first = await queue.publish('ck.task', { v: 1 }, { queue: 'ckq', dedupeKey: 'acct:9', timeoutSeconds: 20 });
    const drained = queue.drain(5, Date.now() + 60_000, { queue: 'ckq' });
    await running;
    expect(await queue.cancelByKey('acct:9', 'superseded')).toBe('cancelling');
    const second = await queue.publish('ck.task', { v: 2 }, { queue: 'ckq', dedupeKey: 'acct:9', timeoutSeconds: 20 });
    expect(second).not.toBe(first);
    release();
    await drained;
    // A drain that started after the cancel runs the new job if the first drain had stopped claiming.
    await queue.drain(5, Date.now() + 60_000, { queue: 'ckq' });
    expect(ran.sort()).toEqual([1, 2]);
    expect((await queue.getJob(first))).toMatchObject({ state: 'cancelled', error: expect.stringMatching(/^cancelled: superseded/) });
    expect((await queue.getJob(second))).toMatchObject({ state: 'success', result: 'done' });
  });
});
