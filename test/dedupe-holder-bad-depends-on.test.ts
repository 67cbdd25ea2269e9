// A keep publish (dedupe_mode keep or null, or keep_waiting) whose dedupe
// key a job holds was answered that job's id before depends_on was looked
// at: a bad depends_on (a job that does not exist, or ended without
// success: PD013) was refused or not by who held the key (a holder past its
// expiry lets go of the key, so that publish went on to PD013). Now
// depends_on is checked first, whatever the holder; a good one still gets
// the holder's id, and its dependencies stay unlocked (a publish that adds
// no job holds none of them). A bulk publish takes no depends_on at all
// (SQL: no such argument; TS and HTTP: refused naming the job), whoever
// holds a key. Real sessions.
import { beforeEach, expect, it } from 'vitest';
import { createQueue, publishBulk, ValidationError } from '../src/index.js';
import { testDb, idOf } from './support/db.js';
import { blocked, lockSessions, outcome, waits } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string) => outcome((await session()).query(text));
const shared = { ...db.driver, close: async () => {} };
const queue = createQueue({ driver: shared, tasks: {} });
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle, jobs.queue_admits');
  await sql(`select jobs.create_queue('cap', max_size => 5)`);
});

const NONE = `error PD013 depends_on: depends_on: job 999999 does not exist (never published, deleted by jobs.delete_jobs, `
  + `or ended and deleted by jobs.maintain's retention)`;

/** Each holder of key k, made by sql, and the publish's extra arguments. */
const HOLDERS: readonly (readonly [name: string, make: () => Promise<unknown>, extra: string])[] = [
  ['keep: a waiting holder without an expiry', () => sql(`select jobs.publish('a.run', dedupe_key => 'k')`), ''],
  ['keep: a waiting holder with an expiry', () => sql(`select jobs.publish('a.run', dedupe_key => 'k', expires_at => now() + interval '1 day')`), ''],
  ['keep: a running holder', () => sql(`select jobs.publish('a.run', dedupe_key => 'k'); select jobs.consume(1)`), ''],
  ['keep: a waiting holder of a bounded queue (the publish to another)', () =>
    sql(`select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k')`), ''],
  ['keep: a holder of its own bounded queue', () => sql(`select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k')`),
   `, queue => 'cap'`],
  ['keep_waiting: a waiting holder', () => sql(`select jobs.publish('a.run', dedupe_key => 'k')`), `, dedupe_mode => 'keep_waiting'`],
  ['keep_waiting: a waiting holder of a bounded queue', () => sql(`select jobs.publish('a.run', queue => 'cap', dedupe_key => 'k')`),
   `, dedupe_mode => 'keep_waiting', queue => 'cap'`],
  ['keep: a throttle window its ended job opened', () =>
    sql(`select jobs.ack(jobs.publish('a.run', dedupe_key => 'k', throttle_seconds => 3600))`), `, throttle_seconds => 3600`],
];

for (const [name, make, extra] of HOLDERS) {
  it(`${name}: a depends_on naming no job is PD013, not the holder's id; a good one gets the holder's`, async () => {
    await make();
    const holder = (await sql<{ id: string }>(`select coalesce((select job_id from jobs.job_queue where dedupe_key = 'k'),
      (select job_id from jobs.job where dedupe_key = 'k'))::text as id`))[0]!.id;
    // Unfixed: [{ id: holder }].
    expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[999999]${extra})::text as id`)).toBe(NONE);
    const failed = await id(`jobs.publish('b.run', max_retries => 0)`);
    await sql(`select jobs.fail(array[${failed}::bigint], 'boom')`);
    expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${failed}]${extra})::text as id`))
      .toBe(`error PD013 depends_on: depends_on: job ${failed} already ended as failure, so this job could never run`);
    const dep = await id(`jobs.publish('c.run')`);
    expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}]${extra})::text as id`))
      .toEqual([{ id: holder }]);
    expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
  });
}

it('TypeScript: publish with a dependsOn naming no job, whose key a waiting job holds: a ValidationError naming dependsOn', async () => {
  await sql(`select jobs.publish('a.run', dedupe_key => 'k')`);
  for (const dedupeMode of [undefined, 'keep', 'keep_waiting'] as const) {
    const got = await queue.publish('a.run', {}, { dedupeKey: 'k', dedupeMode, dependsOn: ['999999'] }).then(() => null, (e: unknown) => e);
    expect(got).toBeInstanceOf(ValidationError);
    expect((got as ValidationError).message).toMatch(/^options\.dependsOn: job 999999 does not exist/);
  }
});

it('bulk: a job with dependsOn is refused naming it, whether its key is held or not', async () => {
  await sql(`select jobs.publish('a.run', dedupe_key => 'k')`);
  for (const dedupeMode of [undefined, 'keep_waiting'] as const) {
    for (const dedupeKey of ['k', 'free']) {
      const got = await publishBulk(shared, [{ task: 'a.run', dedupeKey, dedupeMode, dependsOn: ['999999'] } as never])
        .then(() => null, (e: unknown) => e);
      expect(got).toBeInstanceOf(ValidationError);
      expect((got as ValidationError).message).toMatch(/^jobs\[0\]\.dependsOn: /);
    }
  }
});

it('a keep publish answered with the holder holds no lock of its dependencies: one can end before it commits', async () => {
  const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
  const dep = await id(`jobs.publish('c.run')`);
  const app = await session();
  await app.query('begin');
  expect((await app.query(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}::bigint])::text as id`)).rows)
    .toEqual([{ id: holder }]);
  const admin = await session();
  const cancel = outcome(admin.query(`select jobs.cancel(${dep}::bigint) as c`));
  const waited = await waits(sql, admin, cancel);
  await app.query('commit');
  expect(waited).toBe(false);
  expect(await cancel).toEqual([{ c: 'cancelled' }]);
});

it('keep_waiting answered with a holder that depends on the same job, while that job is acked: no deadlock', async () => {
  // The publish locks the holder's row (FOR UPDATE), then looked at its
  // dependency; the ack deletes the dependency's row, then locks its
  // dependants' (the holder's). Checking depends_on by locking the rows
  // closed that cycle (40P01). A third session's share lock of the holder
  // orders the two: the publish waits for it first, the ack behind it.
  const dep = await id(`jobs.publish('c.run')`);
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: dep }]);
  const holder = await id(`jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}::bigint])`);
  const other = await session();
  await other.query('begin');
  await other.query(`select 1 from jobs.job_queue where job_id = ${holder} for share`);
  const app = await session();
  const publish = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
    depends_on => array[${dep}::bigint])::text as id`));
  await blocked(sql, app);
  const worker = await session();
  const ack = outcome(worker.query(`select jobs.ack(${dep}::bigint)::text as a`));
  await blocked(sql, worker);
  await other.query('commit');
  // Unfixed: one of them 'error 40P01 undefined: deadlock detected'.
  expect(await publish).toEqual([{ id: holder }]);
  expect(await ack).toEqual([expect.anything()]);  // its rows, not an error
  expect(await sql(`select status from jobs.job where job_id = ${dep}`)).toEqual([{ status: 'success' }]);
});

it('a depends_on job waiting past its expiry, or a null, is PD013 when the holder would answer too', async () => {
  const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
  const dep = await id(`jobs.publish('c.run', expires_at => '2020-01-01T00:00:00Z', now => '2019-12-31T00:00:00Z')`);
  expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}])::text as id`))
    .toBe(`error PD013 depends_on: depends_on: job ${dep} expired at 2020-01-01T00:00:00.000Z (not started before it): `
      + 'it ends as a failure, so this job could never run');
  expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[null::bigint])::text as id`))
    .toBe('error PD013 depends_on: depends_on: must not contain null');
  expect(await one(`select jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}], now => '2019-12-31T00:00:00Z')::text as id`))
    .toEqual([{ id: holder }]);
});
