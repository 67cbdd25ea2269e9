// A publish with depends_on and a serial key locks its dependencies (FOR KEY
// SHARE, jobs.lock_dependencies), then takes the serial key's lock. A
// transaction that took that key first — it published a job with the key, or
// acked the key's running job (jobs.after_end hands the key on under its
// lock) — and then acked a dependency (its row deleted: FOR UPDATE) waited
// for the publish, which waited for it: 40P01, the publish rolled back. The
// key cannot simply be locked first: an ack of a dependency sharing the key
// (its row, then the key) would deadlock with that order. Now, holding its
// dependencies, the publish only tries the key; held, it lets them go, waits
// for the key's holder holding neither, and takes them again. Forced
// interleavings, no timing: each step waits until a session is seen waiting
// for a lock (pg_blocking_pids).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { blockedBy, lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle, jobs.queue_admits');
});

/** Running jobs (claimed): the dependency D, and X holding serial key K. */
async function running() {
  const dep = await id(`jobs.publish('c.dep')`);
  const keyed = await id(`jobs.publish('c.keyed', serial_key => 'K')`);
  expect((await sql(`select job_id from jobs.consume(2)`)).length).toBe(2);
  return { dep, keyed };
}

/** What the transaction does first, and whether the new job then waits behind another of the key. */
const HOLDS_KEY = {
  'published a job with the key': [() => `select jobs.publish('t.own', serial_key => 'K')`, true],
  'acked the key\'s running job': [(keyed: string) => `select jobs.ack(${keyed}::bigint)`, false],
} as const;

const PUBLISHES = {
  'no dedupe key': '',
  'dedupe key (keep)': `, dedupe_key => 'k'`,
  'dedupe key (keep_waiting)': `, dedupe_key => 'k', dedupe_mode => 'keep_waiting'`,
} as const;

describe('a publish with depends_on and a serial key, and a transaction holding the key that acks a dependency', () => {
  for (const [holds, [first, behind]] of Object.entries(HOLDS_KEY)) {
    for (const [how, extra] of Object.entries(PUBLISHES)) {
      it(`the transaction ${holds}; the publish with ${how}: both commit`, async () => {
        const { dep, keyed } = await running();
        const app = await session();
        await app.query('begin');
        await app.query(first(keyed));
        const publisher = await session();
        const published = outcome(publisher.query(`select jobs.publish('p.job', serial_key => 'K',
          depends_on => array[${dep}::bigint]${extra})::text as id`));
        await blockedBy(sql, publisher, app);  // for the serial key
        const ack = outcome(app.query(`select jobs.ack(${dep}::bigint) as a`));
        expect(await ack).toEqual([{ a: true }]);  // 'error 40P01' on one side before
        await app.query('commit');
        const [row] = await published as { id: string }[];
        expect(await sql(`select task, waiting_deps, serial_wait from jobs.job_queue where job_id = $1`, [row!.id]))
          .toEqual([{ task: 'p.job', waiting_deps: 0, serial_wait: behind }]);
        expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
      });
    }
  }

  it('a dependency sharing the key, acked alone: the publish waits for it and commits (the order publish-keys-lock-order keeps)', async () => {
    const dep = await id(`jobs.publish('c.dep', serial_key => 'K')`);
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: dep }]);
    const app = await session();
    await app.query('begin');
    expect((await app.query(`select jobs.ack(${dep}::bigint) as a`)).rows).toEqual([{ a: true }]);
    const publisher = await session();
    const published = outcome(publisher.query(`select jobs.publish('p.job', serial_key => 'K',
      depends_on => array[${dep}::bigint])::text as id`));
    await blockedBy(sql, publisher, app);  // for the dependency's row (the ack deleted it)
    await app.query('commit');
    const [row] = await published as { id: string }[];
    expect(await sql(`select waiting_deps, serial_wait from jobs.job_queue where job_id = $1`, [row!.id]))
      .toEqual([{ waiting_deps: 0, serial_wait: false }]);
  });
});
