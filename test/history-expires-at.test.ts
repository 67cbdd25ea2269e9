// jobs.job keeps a job's expires_at (the expiry it had while waiting) on every
// end path: settle (ack, final nack), lease expiry, expiry of a waiting job,
// a dependency's cascade (at once and deferred), jobs.cancel / cancel_bulk /
// fail / complete (jobs.end_waiting), jobs.purge_queue, and the archive.
import { beforeEach, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { yearLike } from './support/future-year.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
// Ahead of the real clock: a job published with it now is not refused, nor expired by the claims here.
const Y = yearLike(2031);
const EXPIRES = new Date(`${Y}-06-01T00:00:00Z`);
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
/** A job with EXPIRES as its expiry, due now unless args say otherwise. */
const publish = async (args = '') =>
  (await one<{ id: string }>(`select jobs.publish('t', expires_at => $1${args})::text as id`, [EXPIRES])).id;
const later = `, scheduled_at => now() + interval '1 hour'`;
const history = async (id: string) =>
  one<{ status: string; expires_at: Date | null }>(`select status, expires_at from jobs.job where job_id = $1`, [id]);
const claim = async (id: string) =>
  expect((await sql<{ id: string }>('select job_id::text as id from jobs.consume(10)')).map((r) => r.id)).toEqual([id]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.dependency');
});

it('settle: an ack and a final nack keep it; a job without one keeps null', async () => {
  const acked = await publish();
  await claim(acked);
  await sql(`select jobs.ack($1::bigint)`, [acked]);
  expect(await history(acked)).toEqual({ status: 'success', expires_at: EXPIRES });
  const nacked = await publish(', max_retries => 0');
  await claim(nacked);
  await sql(`select jobs.nack($1::bigint, 'no')`, [nacked]);
  expect(await history(nacked)).toEqual({ status: 'failure', expires_at: EXPIRES });
  const plain = (await one<{ id: string }>(`select jobs.publish('t')::text as id`)).id;
  await claim(plain);
  await sql(`select jobs.ack($1::bigint)`, [plain]);
  expect(await history(plain)).toEqual({ status: 'success', expires_at: null });
});

it('a lease that expired with its retries spent, and a waiting job past its expiry, keep it', async () => {
  const leased = await publish(', max_retries => 0');
  await claim(leased);
  expect(await one(`select jobs.expire(now => now() + interval '1 day') as n`)).toEqual({ n: 1 });
  expect(await history(leased)).toEqual({ status: 'failure', expires_at: EXPIRES });
  const stale = await publish(`, scheduled_at => '${Y}-05-01T00:00:00Z'`);
  expect(await one(`select jobs.expire(now => '${Y}-06-02T00:00:00Z') as n`)).toEqual({ n: 1 });
  expect(await history(stale)).toEqual({ status: 'failure', expires_at: EXPIRES });
});

it('cancel, cancel_bulk, fail, complete and purge_queue keep it, and so does a cascade, at once and deferred', async () => {
  const [cancelled, bulk, failed, completed] = [await publish(later), await publish(later), await publish(later), await publish(later)];
  await sql(`select jobs.cancel($1::bigint)`, [cancelled]);
  await sql(`select jobs.cancel_bulk(array[$1::bigint])`, [bulk]);
  await sql(`select jobs.fail(array[$1::bigint])`, [failed]);
  await sql(`select jobs.complete(array[$1::bigint])`, [completed]);
  for (const [id, status] of [[cancelled, 'cancelled'], [bulk, 'cancelled'], [failed, 'failure'], [completed, 'success']] as const) {
    expect(await history(id)).toEqual({ status, expires_at: EXPIRES });
  }
  await sql(`select jobs.create_queue('mail')`);
  const purged = await publish(`${later}, queue => 'mail'`);
  expect(await one(`select jobs.purge_queue('mail') as n`)).toEqual({ n: 1 });
  expect(await history(purged)).toEqual({ status: 'cancelled', expires_at: EXPIRES });
  // A dependant ends with its dependency (jobs.after_end)...
  const parent = await publish(later);
  const child = await publish(`, depends_on => array[${parent}::bigint]`);
  await sql(`select jobs.cancel($1::bigint)`, [parent]);
  expect(await history(child)).toEqual({ status: 'cancelled', expires_at: EXPIRES });
  // ...or, a serial key's head past the cascade's key budget (none left: the keys the caller holds), deferred to
  // the next expiry, which ends it then.
  const root = await publish(later);
  const head = await publish(`, depends_on => array[${root}::bigint], serial_key => 'k'`);
  await sql(`select jobs.after_end(null, array[$1::bigint], null, now(), false, 0)`, [root]);
  expect(await one(`select cancel_requested_at is not null as deferred from jobs.job_queue where job_id = $1`, [head]))
    .toEqual({ deferred: true });
  await sql(`select jobs.expire()`);
  expect(await history(head)).toEqual({ status: 'cancelled', expires_at: EXPIRES });
});

it('archived by jobs.maintain, it keeps it; getJob and jobs.all answer it for an ended job', async () => {
  const id = await queue.publish('t', null, { expiresAt: EXPIRES });
  await claim(id);
  await sql(`select jobs.ack($1::bigint)`, [id]);
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', expiresAt: EXPIRES });
  expect(await one(`select expires_at from jobs.all where job_id = $1`, [id])).toEqual({ expires_at: EXPIRES });
  await sql(`update jobs.job set ended_at = now() - interval '30 days'`);
  await sql(`select jobs.maintain(retention => '7 days', archive => true)`);
  expect(await one(`select expires_at from jobs.job_archive where job_id = $1`, [id])).toEqual({ expires_at: EXPIRES });
  expect(await queue.getJob(id)).toMatchObject({ state: 'success', expiresAt: EXPIRES });
});
