// A keyed publish with depends_on answered with its dedupe key's holder adds
// no job, so it holds none of its dependencies' locks (docs/job-keys.md).
// Answered at its first look, before any lock, it held none; but answered
// once it held them — a job took the key while it waited for a serial key's
// lock (looked up again under the locks), or inserted the key first
// (its insert then loses: a pass more) — it had locked them (FOR KEY SHARE,
// jobs.lock_dependencies) and kept them to commit: an ack of a dependency
// waited for the publishing transaction. Now those locks are let go with
// the answer. Forced interleavings, no timing: each step waits until a
// session is seen waiting for a lock (pg_locks).
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { blocked, blockedBy, doneOrBlocked, lockSessions, outcome, waits } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const id = idOf(sql);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle, jobs.queue_admits');
});

/** A running job D (claimed), for the publish to depend on. */
async function runningDependency() {
  const dep = await id(`jobs.publish('c.run')`);
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: dep }]);
  return dep;
}

/** A running job D and a running holder H of dedupe key k (both claimed). */
async function runningDependencyAndHolder() {
  const dep = await id(`jobs.publish('c.run')`);
  const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
  expect((await sql(`select job_id from jobs.consume(2)`)).length).toBe(2);
  return { dep, holder };
}

/** An ack of dep in a session of its own: whether it waited for a lock, and its answer. */
async function ackOf(dep: string) {
  const worker = await session();
  const ack = outcome(worker.query(`select jobs.ack(${dep}::bigint) as a`));
  return { waited: await waits(sql, worker, ack), ack };
}

const MODES = {
  keep: '',
  'keep with a throttle window': `, throttle_seconds => 3600`,
  keep_waiting: `, dedupe_mode => 'keep_waiting'`,
} as const;

describe('a publish answered with a job that took its key while it held its dependencies\' locks', () => {
  for (const [mode, extra] of Object.entries(MODES)) {
    it(`${mode}: the key inserted first by an open transaction: answered, and an ack of its dependency does not wait`, async () => {
      const dep = await runningDependency();
      const other = await session();
      await other.query('begin');
      const holder = (await other.query(`select jobs.publish('a.run', dedupe_key => 'k')::text as id`)).rows[0].id as string;
      const app = await session();
      await app.query('begin');
      const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k',
        depends_on => array[${dep}::bigint]${extra})::text as id`));
      await blocked(sql, app);  // its insert waits for the other's
      await other.query('commit');
      expect(await published).toEqual([{ id: holder }]);
      const { waited, ack } = await ackOf(dep);
      await app.query('commit');
      expect(waited).toBe(false);  // true before: the publish held the dependency's row
      expect(await ack).toEqual([{ a: true }]);
      expect(await sql(`select job_id::text as id, waiting_deps from jobs.job_queue where task = 'a.run'`))
        .toEqual([{ id: holder, waiting_deps: 0 }]);
      expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
    });
  }

  const WAITS = {
    'keep, at its serial key\'s lock (looked up again under the locks)': [`serial_key => 's'`, ''],
    'keep, at its bounded queue\'s lock': [`queue => 'bq'`, ''],
    'keep_waiting, at its serial key\'s lock': [`serial_key => 's'`, `, dedupe_mode => 'keep_waiting'`],
  } as const;
  for (const [how, [lock, extra]] of Object.entries(WAITS)) {
    it(`${how}: the key taken meanwhile is answered, and an ack of its dependency does not wait`, async () => {
      await sql(`select jobs.create_queue('bq', max_size => 100) where not exists (select from jobs.queue where name = 'bq')`);
      const dep = await runningDependency();
      const lockHolder = await session();
      await lockHolder.query('begin');
      await lockHolder.query(`select jobs.publish('s.run', ${lock})`);
      const app = await session();
      await app.query('begin');
      const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', ${lock},
        depends_on => array[${dep}::bigint]${extra})::text as id`));
      await blocked(sql, app);
      const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
      await lockHolder.query('commit');
      expect(await published).toEqual([{ id: holder }]);
      const { waited, ack } = await ackOf(dep);
      await app.query('commit');
      expect(waited).toBe(false);  // true before
      expect(await ack).toEqual([{ a: true }]);
      expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
    });
  }

  it('keep_waiting: the answered holder is still held until the publish commits (a claim passes over it)', async () => {
    const dep = await runningDependency();
    const other = await session();
    await other.query('begin');
    const holder = (await other.query(`select jobs.publish('a.run', dedupe_key => 'k')::text as id`)).rows[0].id as string;
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint])::text as id`));
    await blocked(sql, app);
    await other.query('commit');
    expect(await published).toEqual([{ id: holder }]);
    expect(await sql(`select job_id from jobs.consume(5)`)).toEqual([]);
    await app.query('commit');
    expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: holder }]);
  });

  it('keep_waiting taking a running holder that a transaction acks, then acking the dependency: no deadlock', async () => {
    // The publish locked its dependency, then found the holder's row held
    // (the ack deleting it) and waited for that row, a pass more; the
    // transaction then acked the dependency, waiting for the publish: 40P01.
    // Now the publish lets its locks go before it waits for the row.
    const { dep, holder } = await runningDependencyAndHolder();
    const lockHolder = await session();
    await lockHolder.query('begin');
    await lockHolder.query(`select jobs.publish('s.run', serial_key => 's')`);
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      serial_key => 's', depends_on => array[${dep}::bigint])::text as id`));
    await blocked(sql, app);  // at the serial key's lock (its dependency tried, let go: depends-on-serial-lock-order)
    const handler = await session();
    await handler.query('begin');
    expect((await handler.query(`select jobs.ack(${holder}::bigint) as a`)).rows).toEqual([{ a: true }]);
    const ackDep = outcome(handler.query(`select jobs.ack(${dep}::bigint) as a`));
    // Waited for the publish's lock of the dependency before depends-on-serial-lock-order's
    // fix; now the publish holds none while it waits for the serial key.
    await doneOrBlocked(sql, handler, ackDep);
    await lockHolder.query('commit');
    const acked = await ackDep;
    await handler.query('commit');
    const answer = await published;
    await app.query('commit');
    expect({ acked, answer }).toEqual({ acked: [{ a: true }], answer: [{ id: expect.any(String) }] });  // one 'error 40P01' before
    const [row] = answer as { id: string }[];
    expect(await sql(`select job_id::text as id, dedupe_key, waiting_deps from jobs.job_queue where task = 'a.run'`))
      .toEqual([{ id: row!.id, dedupe_key: 'k', waiting_deps: 0 }]);
    expect(await sql(`select job_id::text as id, status from jobs.job where job_id in (${dep}, ${holder}) order by job_id`))
      .toEqual([{ id: dep, status: 'success' }, { id: holder, status: 'success' }]);
  });

  it('a publish that inserts still holds its dependency until it commits', async () => {
    const dep = await runningDependency();
    const app = await session();
    await app.query('begin');
    const child = (await app.query(`select jobs.publish('a.run', dedupe_key => 'k', serial_key => 's',
      depends_on => array[${dep}::bigint])::text as id`)).rows[0].id as string;
    const { waited, ack } = await ackOf(dep);
    expect(waited).toBe(true);
    await app.query('commit');
    expect(await ack).toEqual([{ a: true }]);
    expect(await sql(`select job_id::text as id, waiting_deps from jobs.job_queue where job_id = ${child}`))
      .toEqual([{ id: child, waiting_deps: 0 }]);
    expect(await sql(`select count(*)::int as n from jobs.dependency`)).toEqual([{ n: 0 }]);
  });
});

describe('a keep_waiting publish with depends_on waiting for its holder\'s row', () => {
  it('a transaction acking the dependency, then the holder, while another holds the holder\'s row: no deadlock', async () => {
    // The publish found the running holder's row held (a transactional
    // handler's progress), rolled its try back (its dependency unlocked)
    // and waited for the row; a transaction then acked the dependency and
    // waited for the row too, behind the publish. Holding the row once it
    // got it, the publish's next try waited for the dependency: 40P01.
    const { dep, holder } = await runningDependencyAndHolder();
    const progress = await session();
    await progress.query('begin');
    expect((await progress.query(`select jobs.set_progress(${holder}, 1, '1') as p`)).rows).toEqual([{ p: true }]);
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint])::text as id`));
    await blocked(sql, app);  // for the holder's row
    const worker = await session();
    await worker.query('begin');
    const ackDep = outcome(worker.query(`select jobs.ack(${dep}::bigint) as a`));
    const ackHolder = outcome(worker.query(`select jobs.ack(${holder}::bigint) as a`));
    await blocked(sql, worker);  // the dependency's ack, or the holder's, behind the publish
    await progress.query('commit');
    // Each commits once its statements answer: which waits for which is not the test's.
    const [acks, answer] = await Promise.all([
      Promise.all([ackDep, ackHolder]).then(async (a) => { await worker.query('commit'); return a; }),
      published.then(async (a) => { await app.query('commit'); return a; }),
    ]);
    expect({ acks, answer }).toEqual({ acks: [[{ a: true }], [{ a: true }]], answer: [{ id: expect.any(String) }] });  // a 40P01 before
    const [row] = answer as { id: string }[];
    expect(await sql(`select job_id::text as id, dedupe_key, waiting_deps from jobs.job_queue where task = 'a.run'`))
      .toEqual([{ id: row!.id, dedupe_key: 'k', waiting_deps: 0 }]);
  });
});

describe('a keep_waiting publish with depends_on: its key\'s holder at the first look', () => {
  it('an ack of a dependency the expired holder shares, its row held meanwhile: no deadlock', async () => {
    // The expired holder H depends on D, as the publish does. The publish's
    // first look locked H's row (FOR UPDATE, to let it go), then its try
    // locked D (FOR KEY SHARE); an ack of D deletes D's row, then locks its
    // dependant H's (jobs.after_end): with the publish between the two, 40P01.
    // The row held by a third session lets the ack delete D first.
    const dep = await runningDependency();
    const holder = await id(`jobs.publish('a.run', dedupe_key => 'k', depends_on => array[${dep}::bigint],
      expires_at => now() + interval '1 hour')`);
    const rowHolder = await session();
    await rowHolder.query('begin');
    await rowHolder.query(`select from jobs.job_queue where job_id = ${holder} for share`);
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint], now => now() + interval '2 hours')::text as id`));
    await blocked(sql, app);  // for H's row
    const worker = await session();
    const ack = outcome(worker.query(`select jobs.ack(${dep}::bigint) as a`));
    await blocked(sql, worker);  // D deleted, H's row waited for
    await rowHolder.query('commit');
    const [acked, answer] = await Promise.all([ack, published.then(async (a) => { await app.query('commit'); return a; })]);
    expect({ acked, answer }).toEqual({ acked: [{ a: true }], answer: [{ id: expect.any(String) }] });  // a 40P01 before
    const [row] = answer as { id: string }[];
    expect(await sql(`select job_id::text as id, dedupe_key, waiting_deps from jobs.job_queue where task = 'a.run' order by job_id`))
      .toEqual([{ id: holder, dedupe_key: null, waiting_deps: 0 }, { id: row!.id, dedupe_key: 'k', waiting_deps: 0 }]);
  });

  it('a transaction acking the dependency, then cancelling the expired holder: no deadlock', async () => {
    // The publish locked the expired holder's row (to let it go), then
    // waited for the dependency the transaction acked; its cancel of the
    // holder then waited for the publish: 40P01.
    const dep = await runningDependency();
    const holder = await id(`jobs.publish('a.run', dedupe_key => 'k', expires_at => now() + interval '1 hour')`);
    const worker = await session();
    await worker.query('begin');
    expect((await worker.query(`select jobs.ack(${dep}::bigint) as a`)).rows).toEqual([{ a: true }]);
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint], now => now() + interval '2 hours')::text as id`));
    await blocked(sql, app);  // for the dependency
    const cancelled = await outcome(worker.query(`select jobs.cancel(${holder}::bigint) is not null as c`));
    await worker.query(cancelled instanceof Array ? 'commit' : 'rollback');
    const answer = await published;
    await app.query('commit');
    expect({ cancelled, answer }).toEqual({ cancelled: [{ c: true }], answer: [{ id: expect.any(String) }] });  // a 40P01 before
    const [row] = answer as { id: string }[];
    expect(await sql(`select job_id::text as id, dedupe_key, waiting_deps from jobs.job_queue where task = 'a.run'`))
      .toEqual([{ id: row!.id, dedupe_key: 'k', waiting_deps: 0 }]);
  });

  it('a holder claimed while the first look waited for its row, then a transaction acking the dependency and cancelling it: no deadlock', async () => {
    // Unstarted when looked up without a lock, the holder was claimed while
    // the publish waited for its row (FOR UPDATE); got once the claim
    // committed, the row (running now) was held while the publish's try
    // waited for the dependency the transaction acked, whose cancel of the
    // holder then waited for the publish: 40P01. Now that row is let go
    // (the try rolled back) and the holder taken after the dependencies.
    const dep = await runningDependency();
    const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
    const claimer = await session();
    await claimer.query('begin');
    expect((await claimer.query(`select job_id::text as id from jobs.consume(1)`)).rows).toEqual([{ id: holder }]);
    const worker = await session();
    await worker.query('begin');
    expect((await worker.query(`select jobs.ack(${dep}::bigint) as a`)).rows).toEqual([{ a: true }]);
    const app = await session();
    await app.query('begin');
    const published = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint])::text as id`));
    await blocked(sql, app);  // for the holder's row, held by the claim
    await claimer.query('commit');
    await blockedBy(sql, app, worker);  // for the dependency, acked by the worker
    const cancelled = await outcome(worker.query(`select jobs.cancel(${holder}::bigint) as c`));
    await worker.query(cancelled instanceof Array ? 'commit' : 'rollback');
    const answer = await published;
    await app.query('commit');
    expect({ cancelled, answer }).toEqual({ cancelled: [{ c: 'cancelling' }], answer: [{ id: expect.any(String) }] });  // a 40P01 before
    const [row] = answer as { id: string }[];
    expect(await sql(`select job_id::text as id, dedupe_key, waiting_deps from jobs.job_queue where task = 'a.run' order by job_id`))
      .toEqual([{ id: holder, dedupe_key: null, waiting_deps: 0 }, { id: row!.id, dedupe_key: 'k', waiting_deps: 0 }]);
  });

  it('a full bounded queue: its unstarted holder is answered, not PD010', async () => {
    await sql(`select jobs.create_queue('full1', max_size => 1) where not exists (select from jobs.queue where name = 'full1')`);
    const dep = await runningDependency();
    const holder = await id(`jobs.publish('a.run', queue => 'full1', dedupe_key => 'k')`);
    expect(await sql(`select jobs.publish('a.run', queue => 'full1', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
      depends_on => array[${dep}::bigint])::text as id`)).toEqual([{ id: holder }]);
  });
});
