// A bulk publish with dedupe mode keep_waiting whose key's holder, waiting to
// start, a claim is taking (jobs.claim_json's update holds its row, not yet
// committed) waits for that claim, as a single jobs.publish does, and answers
// from what it left: the holder started, so a new job takes the key; the
// claim rolled back, the holder (still waiting) is answered. Answered at
// once, the caller believed its work merged into a job that was starting
// with the payload it had before the publish. A holder the bulk answers
// stays unstarted until the bulk commits: a claim meanwhile skips it. The
// claim is held open from another session (no timing). On a real PostgreSQL.
import { beforeEach, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome, waits, type LockSession } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
/** Two sessions, both transactions rolled back after fn (a failed test leaves no row held). */
const withSessions = async (fn: (claimer: LockSession, publisher: LockSession) => Promise<void>) => {
  const [claimer, publisher] = [await session(), await session()];
  try {
    await fn(claimer, publisher);
  } finally {
    await claimer.query('rollback');
    await publisher.query('rollback');
  }
};
const one = async <R = Record<string, unknown>>(text: string, params?: unknown[]) => (await sql<R>(text, params))[0]!;
const bulk = (key: string) => `select (jobs.publish_arrays(array['sync.user'], dedupe_keys => array['${key}'],
                                                           dedupe_modes => array['keep_waiting']))[1]::text as id`;
/** The ids a claim_json of up to 5 jobs took. */
const claimed = (r: { rows: { c: { jobs: { id: string } | null } }[] }) => r.rows[0]!.c.jobs?.id.split(',') ?? [];
const claim = `select jobs.claim_json(5) as c`;
/** A job of key (and serial key s), waiting to start: its holder. */
const waiting = async (key: string, serial = 's') =>
  (await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => $1, serial_key => $2)::text as id`, [key, serial])).id;
const queued = () => sql(`select job_id::text as id, dedupe_key, serial_key, serial_wait, attempt
                          from jobs.job_queue order by job_id`);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
});

describe('bulk keep_waiting: a waiting holder a claim is taking is waited for, not answered', () => {
  it('the claim commits: the holder started, a new job takes the key, behind it on its serial key', async () => {
    const holder = await waiting('user:1');
    await withSessions(async (claimer, publisher) => {
      await claimer.query('begin');
      expect(claimed(await claimer.query(claim))).toEqual([holder]);
      const answer = outcome(publisher.query(bulk('user:1')));
      // Unfixed, the bulk answered the holder here, without waiting for the claim.
      expect(await waits(sql, publisher, answer)).toBe(true);
      await claimer.query('commit');
      const [{ id }] = await answer as [{ id: string }];
      expect(id).not.toBe(holder);
      expect(await queued()).toEqual([{ id: holder, dedupe_key: null, serial_key: 's', serial_wait: false, attempt: 1 },
                                      { id, dedupe_key: 'user:1', serial_key: 's', serial_wait: true, attempt: 0 }]);
    });
  });

  it('the claim rolls back: the holder, still waiting, is answered and nothing written', async () => {
    const holder = await waiting('user:2');
    await withSessions(async (claimer, publisher) => {
      await claimer.query('begin');
      expect(claimed(await claimer.query(claim))).toEqual([holder]);
      const answer = outcome(publisher.query(bulk('user:2')));
      expect(await waits(sql, publisher, answer)).toBe(true);
      await claimer.query('rollback');
      expect(await answer).toEqual([{ id: holder }]);
      expect(await queued()).toEqual([{ id: holder, dedupe_key: 'user:2', serial_key: 's', serial_wait: false, attempt: 0 }]);
    });
  });

  it('a holder taken by a claim among others (one key of three): the others answered or written as ever', async () => {
    const [a, b] = [await waiting('k1', 's1'), await waiting('k2', 's2')];
    await withSessions(async (claimer, publisher) => {
      await claimer.query('begin');
      // The claim holds b's row (a, locked first by another claim, is not its to take).
      const other = await session();
      await other.query('begin');
      await other.query(`select 1 from jobs.job_queue where job_id = $1 for update`, [a]);
      expect(claimed(await claimer.query(claim))).toEqual([b]);
      await other.query('rollback');
      const answer = outcome(publisher.query(`select jobs.publish_arrays(array['x', 'y', 'z'], dedupe_keys => array['k1', 'k2', 'k3'],
                                                dedupe_modes => array['keep_waiting', 'keep_waiting', 'keep_waiting'])::text[] as ids`));
      expect(await waits(sql, publisher, answer)).toBe(true);
      await claimer.query('commit');
      const [{ ids }] = await answer as [{ ids: string[] }];
      expect(ids[0]).toBe(a);
      expect(ids[1]).not.toBe(b);
      expect(await sql(`select dedupe_key from jobs.job_queue where job_id = any($1::bigint[]) order by dedupe_key`, [ids]))
        .toEqual([{ dedupe_key: 'k1' }, { dedupe_key: 'k2' }, { dedupe_key: 'k3' }]);
    });
  });
});

describe('bulk keep_waiting: a holder written since its pass by a publish not taking the key\'s lock', () => {
  it('started before the bulk read it (its writer claimed it, then committed): a new job takes the key', async () => {
    // A keep publish (it takes no lock of the key) writes the key and claims its job in one transaction: the bulk,
    // finding the key free, waits for that insert, and its key then goes to that job, running by then.
    await withSessions(async (writer, publisher) => {
      await writer.query('begin');
      const { id } = (await writer.query(`select jobs.publish('sync.user', dedupe_key => 'user:5', serial_key => 's')::text as id`)).rows[0];
      expect(claimed(await writer.query(claim))).toEqual([id]);
      const answer = outcome(publisher.query(bulk('user:5')));
      expect(await waits(sql, publisher, answer)).toBe(true);
      await writer.query('commit');
      // Unfixed, the bulk answered the job its writer had started.
      const [{ id: answered }] = await answer as [{ id: string }];
      expect(answered).not.toBe(id);
      expect(await queued()).toEqual([{ id, dedupe_key: null, serial_key: 's', serial_wait: false, attempt: 1 },
                                      { id: answered, dedupe_key: 'user:5', serial_key: 's', serial_wait: true, attempt: 0 }]);
    });
  });
});

describe('bulk keep_waiting: a holder it answered stays unstarted until the bulk commits', () => {
  it('a claim while the bulk is uncommitted skips the holder; after the commit it takes it', async () => {
    const holder = await waiting('user:3');
    await withSessions(async (claimer, publisher) => {
      await publisher.query('begin');
      expect((await publisher.query(bulk('user:3'))).rows).toEqual([{ id: holder }]);
      // Unfixed, the bulk held no lock on the holder: this claim started it under the open transaction's answer.
      expect(claimed(await claimer.query(claim))).toEqual([]);
      await publisher.query('commit');
      expect(claimed(await claimer.query(claim))).toEqual([holder]);
    });
  });

  it('a settle handing a serial key on to the holder, and one ending its dependency, are not held back by it', async () => {
    // The holder heads its serial key after a running job (serial_wait), and depends on another running job.
    const first = await one<{ id: string }>(`select jobs.publish('sync.user', serial_key => 's')::text as id`);
    const dep = await one<{ id: string }>(`select jobs.publish('sync.user')::text as id`);
    expect((await sql(`select job_id::text as id from jobs.consume(5) order by job_id`)).map((r) => r.id)).toEqual([first.id, dep.id]);
    const holder = await one<{ id: string }>(`select jobs.publish('sync.user', dedupe_key => 'user:4', serial_key => 's',
                                               depends_on => array[$1::bigint])::text as id`, [dep.id]);
    await withSessions(async (settler, publisher) => {
      await publisher.query('begin');
      expect((await publisher.query(bulk('user:4'))).rows).toEqual([{ id: holder.id }]);
      // Both settles update the holder's row (serial_wait, waiting_deps) without waiting for the bulk's commit.
      await settler.query('begin');
      const settles = outcome(settler.query(`select jobs.ack($1::bigint), jobs.ack($2::bigint)`, [first.id, dep.id]));
      expect(await waits(sql, settler, settles)).toBe(false);
      await settler.query('commit');
      expect(await sql(`select serial_wait, waiting_deps from jobs.job_queue where job_id = $1`, [holder.id]))
        .toEqual([{ serial_wait: false, waiting_deps: 0 }]);
      await publisher.query('commit');
    });
  });
});
