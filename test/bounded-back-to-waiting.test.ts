// A bounded queue's max_size bounds what calls add to it (each admitted:
// jobs.admit). Jobs already in it that come (back) to waiting are never
// refused, so they may take it past max_size: refusing a retry, a release
// or an expired lease would lose or fail a job that was admitted, and a
// dependant or a serial key's next job was admitted when published (running,
// blocked and serial-waiting jobs are not counted). A redrive of dead
// letters is a new admit, refused past max_size (redrive-bounded-*). What
// each path does, and that publishes are refused until the queue is back
// under max_size. Real PostgreSQL, in any isolation: these write no admit.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const waiting = async () => (await sql<{ n: number }>(
  `select count(*)::int as n from jobs.job_queue where queue = 'capped' and lease_until is null and waiting_deps = 0 and not serial_wait`))[0]!.n;
const publish = async (options = '') => (await sql<{ id: string }>(
  `select jobs.publish('a.run', queue => 'capped'${options})::text as id`))[0]!.id;
const claim = async () => (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(1, queue => 'capped')`))[0]!.id;
const later = new Date(Date.now() + 3_600_000).toISOString();
const retried = new Date(Date.now() + 86_400_000).toISOString();  // past any retry's delay

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`select jobs.create_queue('capped', max_size => 1)`);
});

// Each: a running job, one waiting (the queue full), then the path makes another wait.
const paths: [string, () => Promise<void>][] = [
  ['a retry after a failed attempt (jobs.nack)', async () => {
    await publish();
    const id = await claim();
    await publish();
    await sql(`select jobs.nack($1::bigint, 'boom')`, [id]);
  }],
  ['a job released unstarted (jobs.release)', async () => {
    await publish();
    const id = await claim();
    await publish();
    await sql(`select jobs.release(array[$1::bigint])`, [id]);
  }],
  ['an expired lease put back (jobs.expire)', async () => {
    await publish();
    await claim();
    await publish();
    expect(await sql(`select jobs.expire(now => $1) as n`, [later])).toEqual([{ n: 1 }]);
  }],
  ['a dependant unblocked when its dependency ends', async () => {
    await publish();
    const id = await claim();
    await publish(`, depends_on => array[${id}]`);  // blocked: not counted
    await publish();
    await sql(`select jobs.ack($1::bigint)`, [id]);
  }],
  ["a serial key's next job, once the one before ends", async () => {
    await sql(`select jobs.publish('a.run', queue => 'capped', serial_key => 's')`);
    const id = await claim();
    await publish(`, serial_key => 's'`);  // waits behind it: not counted
    await publish();
    await sql(`select jobs.ack($1::bigint)`, [id]);
  }],
];

for (const [name, path] of paths) {
  it(`${name}: waits, past max_size; publishes are refused until the queue is back under it`, async () => {
    await path();
    expect(await waiting()).toBe(2);
    await expect(publish()).rejects.toThrow(/queue 'capped' is full: 2 waiting jobs \+ 1 published > max_size 1/);
    await sql(`select jobs.ack(array(select job_id from jobs.consume(2, now => $1, queue => 'capped')))`, [retried]);
    expect(await publish()).toMatch(/^\d+$/);
  });
}

it('a reschedule of waiting jobs in a full queue moves them (they were counted, and still are)', async () => {
  const id = await publish();
  expect(await sql(`select jobs.reschedule(array[$1::bigint], run_at => $2) as n`, [id, later])).toEqual([{ n: 1 }]);
  expect(await waiting()).toBe(1);
  await expect(publish()).rejects.toThrow(/is full: 1 waiting job \+ 1 published/);
});

it('blocked dependants are admitted while the queue has room, each not counted: any number may wait once their dependency ends', async () => {
  await publish();
  const id = await claim();
  for (let i = 0; i < 3; i++) await publish(`, depends_on => array[${id}]`);
  expect(await waiting()).toBe(0);
  await sql(`select jobs.ack($1::bigint)`, [id]);
  expect(await waiting()).toBe(3);
});
