// jobs.maintain in a REPEATABLE READ or SERIALIZABLE transaction (an app's,
// or every call's where the database's or role's default_transaction_isolation
// says so) whose snapshot predates another session's change of a row it
// would take: an ended job past retention, an ended throttle window, a
// passed lease. Locking that row raised 40001 and rolled back the whole pass
// (its other steps' work too). Such a pass leaves the row to the session
// that changed it (never lost, never done twice) and does the rest. Two real
// sessions on a real PostgreSQL.
import pg from 'pg';
import { beforeEach, expect, it } from 'vitest';
import { capturePlans, explainSession } from '../bench/explain.js';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';
import { minute, T0 } from './support/schedule-clock.js';
import { asPivot } from './support/ssi-pivot.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive, jobs.throttle, jobs.recurring, jobs.tick_miss');
});

/** Ended jobs 1..n, ended 8 days before T0 (past a 7-day retention), in job_id order. */
const oldJobs = (n: number) => sql(
  `insert into jobs.job (job_id, task, status, attempts, priority, max_retries, timeout, scheduled_at, created_at, ended_at)
   select g, 'x.y', 'success', 1, 0, 3, 60, $2::timestamptz - interval '9 days', $2::timestamptz - interval '9 days',
          $2::timestamptz - interval '8 days' + g * interval '1 ms'
   from generate_series(1, $1::int) g`, [n, T0]);

/** An app session in a transaction of this level, its snapshot taken. */
async function snapshot(level: string) {
  const app = await session();
  await app.query(`begin isolation level ${level}`);
  await app.query('select count(*) from jobs.job');
  return app;
}

/** The app's maintain pass at T0 (plus options), its counts or its error, committed. */
async function pass(app: Awaited<ReturnType<typeof snapshot>>, options = '') {
  const answer = await outcome(app.query(`select jobs.maintain(now => '${T0}'${options}) as r`));
  await app.query(answer instanceof Array ? 'commit' : 'rollback');
  return answer instanceof Array ? (answer[0] as { r: Record<string, number> }).r : answer;
}

for (const level of ['repeatable read', 'serializable']) {
  for (const archive of [false, true]) {
    it(`${level}: retention ${archive ? 'archiving' : 'deleting'} jobs leaves one another pass took after the snapshot to it, and takes the rest`, async () => {
      await oldJobs(3);
      const app = await snapshot(level);
      // Another pass takes the oldest, commits.
      expect(await sql(`select jobs.maintain(now => '${T0}', max_rows => 1, archive => ${archive}) as r`))
        .toMatchObject([{ r: archive ? { archived: 1 } : { deleted: 1 } }]);
      // Unfixed: error 40001 (could not serialize access due to concurrent update).
      expect(await pass(app, `, archive => ${archive}`)).toMatchObject(archive ? { archived: 2, deleted: 0 } : { deleted: 2, archived: 0 });
      expect(await sql(`select (select count(*)::int from jobs.job) as job, (select count(*)::int from jobs.job_archive) as archive`))
        .toEqual([{ job: 0, archive: archive ? 3 : 0 }]);
    });
  }

  it(`${level}: an ended throttle window a throttled publish renewed after the snapshot is kept, the others deleted`, async () => {
    await sql(`insert into jobs.throttle (dedupe_key, job_id, until) values ('k1', 1, $1::timestamptz - interval '1 hour'),
                 ('k2', 2, $1::timestamptz - interval '1 hour')`, [T0]);
    const app = await snapshot(level);
    // k1's window ended (its job gone): a throttled publish takes the key anew, its window an hour on.
    const { id } = (await sql<{ id: string }>(
      `select jobs.publish('t.run', dedupe_key => 'k1', throttle_seconds => 3600, now => $1) as id`, [T0]))[0]!;
    // Unfixed: error 40001, no window deleted.
    expect(await pass(app)).toMatchObject({ windows: 1 });
    expect(await sql(`select dedupe_key, job_id::text as id, until from jobs.throttle`))
      .toEqual([{ dedupe_key: 'k1', id, until: new Date(minute(60)) }]);
  });

  it(`${level}: a passed lease another expiry took after the snapshot is not expired twice, the others are`, async () => {
    for (const task of ['a', 'b']) await sql(`select jobs.publish($1, now => $2, timeout_seconds => 60)`, [task, minute(-10)]);
    await sql(`select count(*) from jobs.consume(2, now => $1)`, [minute(-10)]);  // leases end at minute -9
    const app = await snapshot(level);
    expect(await sql(`select jobs.expire(1, now => $1) as n`, [T0])).toEqual([{ n: 1 }]);  // the first's, commits
    // Unfixed: error 40001, no lease expired.
    expect(await pass(app)).toMatchObject({ expired: 1 });
    expect(await sql(`select task, attempt, lease_until, last_error like 'timed out%' as timed_out from jobs.job_queue order by task`))
      .toEqual([{ task: 'a', attempt: 1, lease_until: null, timed_out: true }, { task: 'b', attempt: 1, lease_until: null, timed_out: true }]);
  });

  it(`${level}: a passed lease its drain acked after the snapshot is left acked, the others expired`, async () => {
    for (const task of ['a', 'b']) await sql(`select jobs.publish($1, now => $2, timeout_seconds => 60)`, [task, minute(-10)]);
    const { id } = (await sql<{ id: string }>(`select min(job_id)::text as id from (select job_id from jobs.consume(2, now => $1)) c`, [minute(-10)]))[0]!;
    const app = await snapshot(level);
    expect(await sql(`select jobs.ack($1::bigint, now => $2) as ok`, [id, minute(-9.5)])).toEqual([{ ok: true }]);
    // Unfixed: error 40001.
    expect(await pass(app)).toMatchObject({ expired: 1 });
    expect(await sql(`select task, status from jobs.job`)).toEqual([{ task: 'a', status: 'success' }]);
    expect(await sql(`select task, lease_until from jobs.job_queue`)).toEqual([{ task: 'b', lease_until: null }]);
  });
}

for (const level of ['repeatable read', 'serializable']) {
  it(`${level}: an expiry whose end reaches a dependant changed after the snapshot is left whole to the next pass, the others expired`, async () => {
    const { a } = (await sql<{ a: string }>(`select jobs.publish('a', now => $1, timeout_seconds => 60, max_retries => 0)::text as a`, [minute(-10)]))[0]!;
    await sql(`select jobs.publish('b', now => $1, timeout_seconds => 60)`, [minute(-10)]);
    await sql(`select count(*) from jobs.consume(2, now => $1)`, [minute(-10)]);
    const { d } = (await sql<{ d: string }>(`select jobs.publish('d', depends_on => array[$1::bigint], now => $2)::text as d`, [a, minute(-10)]))[0]!;
    const app = await snapshot(level);
    await sql(`update jobs.job_queue set priority = priority where job_id = $1`, [d]);  // d's row changed, committed
    // Unfixed: error 40001, neither lease expired.
    expect(await pass(app)).toMatchObject({ expired: 1 });
    // a's end (and what it does to d) undone together: a still running, its lease passed; b back to pending.
    expect(await sql(`select task, lease_until is null as released from jobs.job_queue order by task`))
      .toEqual([{ task: 'a', released: false }, { task: 'b', released: true }, { task: 'd', released: true }]);
    const next = await snapshot(level);
    expect(await pass(next)).toMatchObject({ expired: 1 });
    expect(await sql(`select task, status from jobs.job order by task`)).toMatchObject([{ task: 'a', status: 'failure' }, { task: 'd' }]);
  });

  it(`${level}: a claim whose snapshot predates another drain's ack of a passed lease expires the others and claims`, async () => {
    for (const task of ['a', 'b']) await sql(`select jobs.publish($1, now => $2, timeout_seconds => 60)`, [task, minute(-10)]);
    const { id } = (await sql<{ id: string }>(`select min(job_id)::text as id from (select job_id from jobs.consume(2, now => $1)) c`, [minute(-10)]))[0]!;
    const app = await snapshot(level);
    expect(await sql(`select jobs.ack($1::bigint, now => $2) as ok`, [id, minute(-9.5)])).toEqual([{ ok: true }]);
    const answer = await outcome(app.query(`select jobs.claim_json(5, now => '${T0}')->>'count' as n`));
    await app.query('commit');
    // Unfixed: error 40001 (the claim's expiry locking a's row).
    expect(answer).toEqual([{ n: '1' }]);  // b, expired and claimed again
    expect(await sql(`select task, attempt from jobs.job_queue`)).toEqual([{ task: 'b', attempt: 2 }]);
  });
}

// Two passes at once (docs/scheduling.md: two runs at once take different
// rows): the second skips the rows the first holds and takes the next ones,
// as under READ COMMITTED, so its full share tells run_maintenance that more
// are left. (Under SERIALIZABLE, two such passes that read each other's
// rows cannot both commit: one rolls back whole, by design.)
for (const level of ['repeatable read']) {
  it(`${level}: a pass while another holds the oldest ended jobs and windows takes the next ones`, async () => {
    await oldJobs(6);
    await sql(`insert into jobs.throttle (dedupe_key, job_id, until)
               select 'k' || g, 100 + g, $1::timestamptz - interval '1 hour' + g * interval '1 s' from generate_series(1, 6) g`, [T0]);
    const first = await snapshot(level);
    const held = await outcome(first.query(`select jobs.maintain(now => '${T0}', max_rows => 3) as r`));
    const second = await snapshot(level);
    const answer = await pass(second, ', max_rows => 3');
    await first.query(held instanceof Array ? 'commit' : 'rollback');
    expect(held).toMatchObject([{ r: { deleted: 3, windows: 3 } }]);
    // Unfixed: deleted 0, windows 0 (it listed the first's rows, all held: skipped), and so caught up.
    expect(answer).toMatchObject({ deleted: 3, windows: 3 });
    expect(await sql(`select (select count(*)::int from jobs.job) as jobs, (select count(*)::int from jobs.throttle) as windows`))
      .toEqual([{ jobs: 0, windows: 0 }]);
  });
}

// SERIALIZABLE's read/write dependencies are not a changed row: the pass is
// the pivot of a dangerous structure (a reader still open read what it
// writes; it read what another transaction, committed first, wrote), and
// every write of the step fails so, whatever the rows. That failure is the
// whole transaction's (docs/concurrency.md: it rolls back whole), not one
// row's to leave.
for (const [table, due] of [
  ['jobs.job', () => oldJobs(3)],
  ['jobs.throttle', () => sql(`insert into jobs.throttle (dedupe_key, job_id, until) values ('k1', 1, $1::timestamptz - interval '1 hour')`, [T0])],
  ['jobs.job_queue', async () => {
    await sql(`select jobs.publish('a', now => $1, timeout_seconds => 60)`, [minute(-10)]);
    await sql(`select count(*) from jobs.consume(1, now => $1)`, [minute(-10)]);
  }],
  ['jobs.tick_miss', () => sql(`insert into jobs.tick_miss (schedule, due, missed_at) values ('gone', $1, $1)`, [T0])],
] as const) {
  it(`serializable: a pass whose writes to ${table} fail for read/write dependencies fails whole (40001), its rows as they were`, async () => {
    await due();
    const before = await sql(`select * from ${table} order by 1`);
    const answer = await asPivot(session, table, (app) => pass(app));
    // Unfixed: the pass's counts, all 0, committed: each block's write failed, was caught as a changed
    // row's and split down to single rows (10,000 ended jobs: 18 s; 100,000: 211 s), nothing done.
    expect(typeof answer === 'string' ? answer : JSON.stringify(answer)).toMatch(/^error 40001 .*read\/write dependencies/);
    expect(await sql(`select * from ${table} order by 1`)).toEqual(before);
  });
}

// READ COMMITTED re-reads a changed row: there each step stays one statement
// and lists no rows apart (auto_explain's nested statements), whatever the
// plan cache does (a generic plan from the sixth call on).
it('read committed: each step one statement, as before, from the first pass to the seventh', async () => {
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await explainSession(c);
    for (let call = 1; call <= 7; call++) {
      await sql('truncate jobs.job_queue, jobs.job, jobs.throttle');
      await oldJobs(3);
      await sql(`insert into jobs.throttle (dedupe_key, job_id, until) values ('k', 9, $1::timestamptz - interval '1 hour')`, [T0]);
      await sql(`select jobs.publish('a', now => $1, timeout_seconds => 60)`, [minute(-10)]);
      await sql(`select count(*) from jobs.consume(1, now => $1)`, [minute(-10)]);
      const plans = await capturePlans(c, async () => {
        expect((await c.query(`select jobs.maintain(now => '${T0}') as r`)).rows[0].r).toMatchObject({ deleted: 3, windows: 1, expired: 1 });
      });
      const texts = plans.map((p) => p.statement);
      expect(texts.filter((t) => /^(with old as|delete from jobs\.throttle t|with expired as)/.test(t)), `call ${call}`)
        .toEqual(['with old as (', 'delete from jobs.throttle t using (', 'with expired as (']);
      expect(texts.filter((t) => /apart|^array\(/.test(t)), `call ${call}`).toEqual([]);
    }
  } finally {
    await c.end();
  }
});
