// A bulk publish with dedupe mode keep_waiting whose key's running holder is
// being settled by another transaction (its row held) waits for that
// settle, as a single jobs.publish does, and answers from what it left: a
// new job when the holder ended or went to retry, the holder when it was
// given back unstarted. Answered at once with the holder's id, the caller
// of a bulk racing an ack believed its work queued while the job answered
// had ended and nothing would run it. Inside a REPEATABLE READ or
// SERIALIZABLE transaction that wait ends in 40001, for a bulk as for a
// single publish (what README says). The settle is held open from another
// session (no timing). On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { blockedOn, lockSessions, outcome, waits, type LockSession } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
/** Two sessions, the settler's transaction rolled back after fn (a failed test leaves no row held). */
const withSessions = async (fn: (settler: LockSession, publisher: LockSession) => Promise<void>) => {
  const [settler, publisher] = [await session(), await session()];
  try {
    await fn(settler, publisher);
  } finally {
    await settler.query('rollback');
  }
};
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const bulk = (key: string) => `select (jobs.publish_arrays(array['sync.user'], dedupe_keys => array['${key}'],
                                                           dedupe_modes => array['keep_waiting']))[1]::text as id`;
/** A job of key (and serial key s), claimed: running, its holder. */
const running = async (key: string, serial = 's') => {
  const { id } = await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => $1, serial_key => $2)::text as id`, [key, serial]);
  expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id }]);
  return id;
};

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('bulk keep_waiting: a holder a settle is ending is waited for, not answered', () => {
  for (const [settle, how] of [
    ['ack', 'ended a success: the bulk writes a new job'],
    ['nack', 'went to retry: the bulk takes the key from it, the new job behind it on its serial key'],
    ['release', 'given back unstarted (waiting again, attempt 0): the bulk answers it'],
  ] as const) {
    it(`${settle}: ${how}; the serial key's lock is not held while it waits`, async () => {
      const holder = await running('user:1');
      await withSessions(async (settler, publisher) => {
        await settler.query('begin');
        // The holder's row, as a settle holds it while its transaction runs.
        await settler.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [holder]);
        const answer = outcome(publisher.query(bulk('user:1')));
        // Unfixed, the bulk answered the holder here, without waiting.
        expect(await waits(sql, publisher, answer)).toBe(true);
        // The settle hands the holder's serial key on (jobs.after_end takes its lock): not held by the waiting bulk.
        expect((await settler.query(`select pg_try_advisory_xact_lock(736038, hashtext('s')) as free`)).rows).toEqual([{ free: true }]);
        const call = { ack: `jobs.ack($1::bigint)`, nack: `jobs.nack($1::bigint, 'boom', now())`, release: `jobs.release(array[$1::bigint])` }[settle];
        await settler.query(`select ${call}`, [holder]);
        await settler.query('commit');
        const [{ id }] = await answer as [{ id: string }];
        const queued = await sql(`select job_id::text as id, dedupe_key, serial_key, serial_wait from jobs.job_queue order by job_id`);
        if (settle === 'release') {
          expect(id).toBe(holder);
          expect(queued).toEqual([{ id: holder, dedupe_key: 'user:1', serial_key: 's', serial_wait: false }]);
        } else if (settle === 'nack') {
          expect(id).not.toBe(holder);
          expect(queued).toEqual([{ id: holder, dedupe_key: null, serial_key: 's', serial_wait: false },
                                  { id, dedupe_key: 'user:1', serial_key: 's', serial_wait: true }]);
        } else {
          expect(id).not.toBe(holder);
          expect(queued).toEqual([{ id, dedupe_key: 'user:1', serial_key: null, serial_wait: false }]);
          expect(await sql(`select job_id::text as id, status from jobs.job`)).toEqual([{ id: holder, status: 'success' }]);
        }
      });
    });
  }

  it('two holders one settle ends, each row waited for alone: no deadlock, both keys get new jobs', async () => {
    const [x1, x2] = [await running('k1', 's1'), await running('k2', 's2')];
    await withSessions(async (settler, publisher) => {
      await settler.query('begin');
      // The settle holds x2 (as the first row of its batch)...
      await settler.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [x2]);
      const answer = outcome(publisher.query(`select jobs.publish_arrays(array['a', 'b'], dedupe_keys => array['k1', 'k2'],
                                                dedupe_modes => array['keep_waiting', 'keep_waiting'])::text[] as ids`));
      expect(await waits(sql, publisher, answer)).toBe(true);
      // ...then takes x1 and ends both: the bulk holds neither row, nor their serial keys, while it waits.
      const attempts = await sql<{ attempt: number }>(`select attempt from jobs.job_queue where job_id = any($1::bigint[]) order by job_id`, [[x1, x2]]);
      const settled = await settler.query(`select jobs.settle_arrays($1::bigint[], $2::integer[], array['ack', 'ack']) as r`,
                                          [[x1, x2], attempts.map((a) => a.attempt)]);
      expect(Number(settled.rows[0].r.succeeded)).toBe(2);
      await settler.query('commit');
      const [{ ids }] = await answer as [{ ids: string[] }];
      expect(ids).not.toContain(x1);
      expect(ids).not.toContain(x2);
      expect(await sql(`select dedupe_key from jobs.job_queue where job_id = any($1::bigint[]) order by dedupe_key`, [ids]))
        .toEqual([{ dedupe_key: 'k1' }, { dedupe_key: 'k2' }]);
    });
  });

  it('holders settled one after another, another held at each pass: each waited for in turn, no PD011 after four passes', async () => {
    // Drains settling a big bulk's running holders batch after batch: each pass finds a new one held, and gets further.
    const keys = ['m1', 'm2', 'm3', 'm4', 'm5'];
    const holders: string[] = [];
    for (const [i, k] of keys.entries()) holders.push(await running(k, `t${i}`));
    const settlers = await Promise.all(keys.map(() => session()));
    const publisher = await session();
    try {
      await settlers[0]!.query('begin');
      await settlers[0]!.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [holders[0]]);
      const answer = outcome(publisher.query(`select jobs.publish_arrays(array_fill('sync.user'::text, array[5]), dedupe_keys => $1::text[],
                                                dedupe_modes => array_fill('keep_waiting'::text, array[5]))::text[] as ids`, [keys]));
      expect(await waits(sql, publisher, answer)).toBe(true);
      for (let i = 1; i < keys.length; i++) {
        // The next holder's settle takes its row before this one's commits: the bulk's next pass finds it held.
        await settlers[i]!.query('begin');
        await settlers[i]!.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [holders[i]]);
        await settlers[i - 1]!.query(`select jobs.ack($1::bigint)`, [holders[i - 1]]);
        await settlers[i - 1]!.query('commit');
        // Unfixed: the fourth pass refused it (PD011 dedupe_key, kept changing hands) with the fifth holder held.
        expect(await waits(sql, publisher, answer), `pass ${i + 1}: ${JSON.stringify(await Promise.race([answer, 'waiting']))}`).toBe(true);
      }
      await settlers[4]!.query(`select jobs.ack($1::bigint)`, [holders[4]]);
      await settlers[4]!.query('commit');
      const [{ ids }] = await answer as [{ ids: string[] }];
      expect(ids.filter((id) => holders.includes(id))).toEqual([]);
      expect(await sql(`select dedupe_key, serial_key from jobs.job_queue where job_id = any($1::bigint[]) order by dedupe_key`, [ids]))
        .toEqual(keys.map((k) => ({ dedupe_key: k, serial_key: null })));
      expect(await sql(`select count(*)::int as n from jobs.job where status = 'success'`)).toEqual([{ n: 5 }]);
    } finally {
      await Promise.all(settlers.map((s) => s.query('rollback')));
    }
  });
});

describe('keep_waiting in a REPEATABLE READ or SERIALIZABLE transaction: a holder being acked is a serialization failure', () => {
  const single = (key: string) => `select jobs.publish('sync.user', dedupe_key => '${key}', dedupe_mode => 'keep_waiting')::text as id`;
  for (const level of ['repeatable read', 'serializable']) {
    for (const [kind, publish] of [['a single publish', single], ['a bulk publish', bulk]] as const) {
      it(`${level}, ${kind}: waits for the ack, then fails with 40001 and writes nothing; sent again, a new job takes the key`, async () => {
        const holder = await running('user:2');
        await withSessions(async (settler, publisher) => {
          await settler.query('begin');
          await settler.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [holder]);
          // The publish's snapshot, taken at its first statement, has the holder running.
          await publisher.query(`begin isolation level ${level}`);
          const answer = outcome(publisher.query(publish('user:2')));
          expect(await waits(sql, publisher, answer)).toBe(true);
          await settler.query(`select jobs.ack($1::bigint)`, [holder]);
          await settler.query('commit');
          // The row it waited for was deleted since its snapshot: PostgreSQL cannot go on in that snapshot.
          expect(await answer).toMatch(/^error 40001 /);
          await publisher.query('rollback');
          expect(await sql(`select count(*)::int as n from jobs.job_queue`)).toEqual([{ n: 0 }]);
          // Its transaction run again (a new snapshot): the key is free, a new job holds it.
          await publisher.query(`begin isolation level ${level}`);
          const [{ id }] = (await publisher.query(publish('user:2'))).rows as [{ id: string }];
          await publisher.query('commit');
          expect(id).not.toBe(holder);
          expect(await sql(`select job_id::text as id, dedupe_key from jobs.job_queue`)).toEqual([{ id, dedupe_key: 'user:2' }]);
        });
      });
    }
  }
});

describe('bulk keep_waiting: a holder held again at every pass', () => {
  it('a holder held again at each of four passes: PD011 dedupe_key, nothing written', async () => {
    // Its serial key's lock (taken in each pass, after the key's) held from a third session pauses each pass until the
    // holder's row is held again: the same row re-locked between passes, with no timing.
    const x = await running('k', 's');
    const pauser = await session();
    const pause = () => pauser.query(`begin; select pg_advisory_xact_lock(736038, hashtext('s'))`);
    await withSessions(async (settler, publisher) => {
      try {
        await pause();
        await settler.query('begin');
        await settler.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [x]);
        const answer = outcome(publisher.query(bulk('k')));
        for (let pass = 1; ; pass++) {
          await blockedOn(sql, publisher, ['advisory']);
          await pauser.query('commit');
          // The fourth finds it held again: refused, not waited for.
          if (pass === 4) break;
          // The pass found the holder held: it waits for the row, its serial-key locks let go.
          await blockedOn(sql, publisher, ['transactionid', 'tuple']);
          await pause();
          await settler.query('commit');
          await blockedOn(sql, publisher, ['advisory']);
          await settler.query('begin');
          await settler.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [x]);
        }
        expect(await waits(sql, publisher, answer)).toBe(false);
        expect(await answer).toBe('error PD011 dedupe_key: dedupe_key: kept changing hands while publishing; try again');
        expect(await sql(`select job_id::text as id, dedupe_key, serial_key from jobs.job_queue`)).toEqual([
          { id: x, dedupe_key: 'k', serial_key: 's' },
        ]);
      } finally {
        await pauser.query('rollback');
      }
    });
  });
});
