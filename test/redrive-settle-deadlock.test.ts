// jobs.redrive_counts against the settle of a job published, after the
// redrive chose its dead letters, with one of their dedupe keys and serial
// keys. The redrive took its serial keys' locks, then inserted the dead
// letters; the insert of that key waited for the settle's transaction (which
// had deleted the job's row, so its key's index entry), while the settle
// waited in jobs.after_end for that serial key's lock, held by the redrive:
// a deadlock (40P01), the victim whichever closed the cycle: the redrive,
// or the settle (a drain's claim, which settles in it, failed then). Found
// by bench/keep-waiting-stress.ts. Forced
// here with sessions of their own: a publish holding the serial key (its
// job not yet committed when the redrive chose) pauses the redrive before
// its locks, and an uncommitted publish of an earlier dedupe key (the
// insert goes in dedupe key order) pauses it inside its insert, before the
// key the settle deletes. The session whose wait closes the cycle has the
// short deadlock_timeout (the other a long one), so the victim is the same
// every run. On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedBy, blockedOn, doneOrBlocked, lockSessions, outcome, type LockSession } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const publishSql = (key: string, serial: string | null) =>
  `select jobs.publish('sync.user', dedupe_key => '${key}', serial_key => ${serial ? `'${serial}'` : 'null'})::text as id`;
/** A dead letter of dedupe key (and serial key). */
const deadLetter = async (key: string, serial: string | null) => {
  const { id } = await one<{ id: string }>(publishSql(key, serial).replace(`'sync.user'`, `'sync.user', max_retries => 0`));
  await sql(`select jobs.fail(array[$1::bigint], 'boom')`, [id]);
  return id;
};
/** Until session s waits for a lock session other holds. */
const waitsFor = (s: LockSession, other: LockSession) => blockedBy(sql, s, other);
const statuses = () => sql(`select job_id::text as id, status from jobs.job order by job_id`);
const queued = () => sql(`select job_id::text as id, dedupe_key from jobs.job_queue order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('redrive and a settle of a job that took a dead letter\'s dedupe key after the redrive chose it', () => {
  for (const closer of ['redrive', 'settle'] as const) {
    it(`the ${closer} closing the cycle: no deadlock; the dead letter whose key the job holds stays, counted held_by_key`, async () => {
      const a = await deadLetter('ka', null);
      const b = await deadLetter('kb', 'sb');
      const [publisher, other, redriver, settler, rowHolder] =
        [await session(), await session(), await session(), await session(), await session()];
      // The first of the two to wait keeps waiting without looking for a deadlock; the second looks at once.
      await (closer === 'redrive' ? settler : redriver).query(`set deadlock_timeout = '1min'`);
      try {
        // A job of kb (and sb), not committed: the redrive finds kb free, and waits for sb.
        await publisher.query('begin');
        const { rows: [{ id: job }] } = await publisher.query(publishSql('kb', 'sb'));
        const redrive = outcome(redriver.query(`select * from jobs.redrive_counts(job_ids => $1::bigint[])`, [[a, b]]));
        await blockedOn(sql, redriver, ['advisory']);
        // A job of ka, not committed either: the redrive's insert (ka first) will wait for it.
        await other.query('begin');
        await other.query(publishSql('ka', null));
        await publisher.query('commit');
        await waitsFor(redriver, other);
        // The job of kb claimed, and settled: its row deleted, its settle hands sb on (jobs.after_end).
        let dependant: string | undefined;
        if (closer === 'settle') {
          // A dependant whose row another session holds pauses the settle after its delete, before sb.
          dependant = (await one<{ id: string }>(`select jobs.publish('next', depends_on => array[$1::bigint])::text as id`, [job])).id;
        }
        const [claimed] = await sql<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(5)`);
        expect(claimed!.id).toBe(job);
        if (dependant) {
          await rowHolder.query('begin');
          await rowHolder.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [dependant]);
        }
        await settler.query('begin');
        const settle = outcome(settler.query(`select jobs.settle_arrays(array[$1::bigint], array[$2::int], array['ack']) as r`,
                                             [claimed!.id, claimed!.attempt]));
        if (closer === 'redrive') {
          // The settle waits for sb (the redrive's); the redrive's insert goes on to kb once ka's publish commits.
          await waitsFor(settler, redriver);
          await other.query('commit');
        } else {
          await waitsFor(settler, rowHolder);
          await other.query('commit');
          // Unfixed, the redrive waits for the settle's transaction (kb's deleted entry) here; fixed, it is done.
          await doneOrBlocked(sql, redriver, redrive);
          await rowHolder.query('commit');
        }
        // Unfixed: 40P01 for the one that closed the cycle (the redrive; the settle, as a drain's claim would).
        expect(await redrive).toEqual([{ redriven: 0, held_by_key: 2, serial_later: 0 }]);
        const settled = await settle;
        await settler.query('commit');
        expect(settled).toEqual([{ r: expect.objectContaining({ succeeded: 1, stale: 0 }) }]);
        expect(await statuses()).toEqual([{ id: a, status: 'failure' }, { id: b, status: 'failure' }, { id: job, status: 'success' }]);
        expect((await queued()).map((q) => q.dedupe_key)).toEqual(closer === 'settle' ? ['ka', null] : ['ka']);
        // kb is free now: the next redrive puts its dead letter back; ka's stays (the job of ka holds it).
        expect(await sql(`select * from jobs.redrive_counts(job_ids => $1::bigint[])`, [[a, b]]))
          .toEqual([{ redriven: 1, held_by_key: 1, serial_later: 0 }]);
        expect(await one(`select dedupe_key, serial_key from jobs.job_queue where job_id = $1`, [b])).toEqual({ dedupe_key: 'kb', serial_key: 'sb' });
      } finally {
        await Promise.all([publisher, other, settler, rowHolder].map((s) => s.query('rollback')));
      }
    });
  }
});
