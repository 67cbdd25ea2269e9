// A replace or keep_waiting publish and its dedupe key's running holder's own
// transactional handler (its row held after jobs.set_progress), in the other
// orders than dedupe-takeover-own-handler's: the handler publishing first, a
// second handler publishing with the key (before, it waited for the key's lock
// held by a publish waiting for the holder's row: 40P01), modes mixed, the holder
// acked while the publish waits, a third session holding the row. Forced
// interleavings, no timing: each step waits until a session is seen waiting for a lock (pg_locks).
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { testDb, idOf } from './support/db.js';
import { blocked, blockedBy, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const sessions = lockSessions(db.url);
const opened: LockSession[] = [];
/** A session of this test, its transaction (if any) rolled back after it: a failed test leaves no lock held. */
const session = async () => {
  const s = await sessions();
  opened.push(s);
  return s;
};
const id = idOf(sql);
const publish = (mode: string) => `select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => '${mode}')::text as id`;
/** A running job (of key, if given), and its handler's session: in a transaction holding its row (jobs.set_progress). */
const running = async (key: string | null): Promise<[string, LockSession]> => {
  const job = await id(`jobs.publish('a.run', dedupe_key => ${key ? `'${key}'` : 'null'})`);
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: job }]);
  const handler = await session();
  await handler.query('begin');
  expect((await handler.query(`select jobs.set_progress(${job}, 1, '1') as p`)).rows).toEqual([{ p: true }]);
  return [job, handler];
};
const keyHolder = async () => sql(`select job_id::text as id from jobs.job_queue where dedupe_key = 'k'`);

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.query('rollback').catch(() => {})));
});
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency, jobs.throttle, jobs.queue_admits');
});

describe('a key-taking publish and its running holder\'s own handler, other orders: no deadlock', () => {
  for (const [mine, theirs] of [['replace', 'keep_waiting'], ['keep_waiting', 'replace']] as const) {
    it(`the handler publishes first (${mine}), then the app (${theirs}) waits for its lock and is answered with its job`, async () => {
      const [holder, handler] = await running('k');
      const first = (await handler.query(publish(mine))).rows;
      const app = await session();
      const answer = outcome(app.query(publish(theirs)));
      await blocked(sql, app);  // for the handler's lock of the key
      await handler.query('commit');
      expect(await answer).toEqual(first);
      expect(first).not.toEqual([{ id: holder }]);
      expect(await keyHolder()).toEqual(first);
    });
  }

  it('a second handler publishing with the key (replace) waits for the row, the holder\'s (keep_waiting) goes through', async () => {
    const [holder, h1] = await running('k');
    const [, h2] = await running(null);
    const theirs = outcome(h2.query(publish('replace')));
    await blocked(sql, h2);  // for the holder's row
    const mine = await outcome(h1.query(publish('keep_waiting')));
    await h1.query('commit');
    expect(await theirs).toEqual(mine);  // the holder's handler's new job, waiting: rewritten by the replace
    await h2.query('commit');
    expect(mine).not.toEqual([{ id: holder }]);
    expect(await keyHolder()).toEqual(mine);
  });

  it('the holder acked by its handler while the publish waits: the publish writes a new job', async () => {
    const [holder, handler] = await running('k');
    const app = await session();
    const answer = outcome(app.query(publish('keep_waiting')));
    await blocked(sql, app);
    await handler.query(`select jobs.ack(${holder})`);
    await handler.query('commit');
    const [row] = await answer as [{ id: string }];
    expect(row.id).not.toBe(holder);
    expect(await keyHolder()).toEqual([row]);
  });

  it('a third session holds the row (a lease extension): the handler and the app both wait for it, then one job', async () => {
    const holder = await id(`jobs.publish('a.run', dedupe_key => 'k')`);
    expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: holder }]);
    const [third, handler, app] = [await session(), await session(), await session()];
    await third.query('begin');
    await third.query(`select 1 from jobs.job_queue where job_id = ${holder} for update`);
    await handler.query('begin');
    const answer = outcome(app.query(publish('replace')));
    await blocked(sql, app);
    const mine = outcome(handler.query(publish('keep_waiting')));
    await blocked(sql, handler);
    await third.query('commit');
    const m = await mine;  // first or second: the app's publish, if second, waits for the handler's commit
    await handler.query('commit');
    const a = await answer;
    expect(a).toEqual(m);
    expect(await keyHolder()).toEqual(m);
  });

  it('no try at the first look, then a running holder held by its handler (a serial key waited for): the handler\'s publish goes through', async () => {
    // The app's keep_waiting publish finds the key free and waits for its serial key's lock; meanwhile a job takes
    // the key, runs, and its handler holds its row. Taking the key's lock without a try, the publish kept it
    // while it then waited for that row, and the handler's publish of the key waited for the lock: 40P01.
    const serial = await session();
    await serial.query('begin');
    await serial.query(`select jobs.publish('a.run', serial_key => 's')`);
    const app = await session();
    const answer = outcome(app.query(`select jobs.publish('a.run', dedupe_key => 'k', dedupe_mode => 'keep_waiting',
                                                          serial_key => 's')::text as id`));
    await blockedBy(sql, app, serial);  // for the serial key's lock
    const [holder, handler] = await running('k');
    await serial.query('commit');
    await blockedBy(sql, app, handler);  // for the holder's row
    const mine = await outcome(handler.query(publish('replace')));
    await handler.query('commit');
    expect(mine).not.toEqual([{ id: holder }]);
    expect(await answer).toEqual(mine);  // the handler's new job, not started yet
    expect(await keyHolder()).toEqual(mine);
  });

  it('no running holder and the key\'s lock free: no try, the job written by the publish\'s own transaction (no subtransaction)', async () => {
    const own = `select xmin::text = (pg_current_xact_id()::text::bigint % 4294967296)::text as own
                 from jobs.job_queue where dedupe_key = 'k'`;
    const app = await session();
    for (const mode of ['replace', 'keep_waiting', 'replace']) {  // free, then its waiting holder (answered, replaced)
      await app.query('begin');
      await app.query(publish(mode));
      expect({ mode, rows: (await app.query(own)).rows }).toEqual({ mode, rows: [{ own: mode !== 'keep_waiting' }] });
      await app.query('commit');
    }
    // A running holder: a try (a subtransaction of its own), which waits for no row holding the key's lock.
    expect(await sql(`select count(*)::int as n from jobs.consume(1)`)).toEqual([{ n: 1 }]);
    await app.query('begin');
    await app.query(publish('replace'));
    expect((await app.query(own)).rows).toEqual([{ own: false }]);
    await app.query('commit');
  });
});
