// A group at its cap whose slot frees up is stepped over by a drain's next
// claims (the remembered group head) while newer jobs of other groups run.
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const T0 = '2030-01-01T00:00:00Z';

describe('the remembered group head', () => {
  it("does not pass over an older job whose group's slot came free", async () => {
    await sql(`select jobs.create_queue('gc', group_concurrency => 1)`);
    // Three jobs of a, then ten of other groups, all due.
    await sql(`select jobs.publish('gc.job', queue => 'gc', group_id => 'a', now => $1::timestamptz - interval '2 minutes') from generate_series(1, 3)`, [T0]);
    await sql(`select jobs.publish('gc.job', queue => 'gc', group_id => 'b' || i, now => $1::timestamptz - interval '1 minute') from generate_series(1, 10) i`, [T0]);
    const ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.job_queue order by job_id`)).map((r) => r.id);
    const client = new pg.Client({ connectionString: db.url }); // one session, as a drain's
    await client.connect();
    try {
      type Answer = { count: number; jobs: { id: string; attempt: number[] } | null }; // ids comma-separated
      const drainClaim = async (at: string, ack: string[] = []) => (await client.query<{ r: Answer }>(
        `select jobs.claim_json(1, null, null, now => $1, queue => 'gc', ids => $2::bigint[], attempts => $3::int[],
                                outcomes => $4::text[]) as r`,
        [at, ack, ack.map(() => 1), ack.map(() => 'ack')])).rows[0]!.r;
      expect((await drainClaim('2030-01-01T00:00:00.01Z')).jobs!.id).toBe(ids[0]); // a's first
      expect((await drainClaim('2030-01-01T00:00:00.02Z')).jobs!.id).toBe(ids[3]); // a full: b1's
      // a's first ends in this claim's settle: a's second is the oldest due job and its group has a free slot.
      expect((await drainClaim('2030-01-01T00:00:00.03Z', [ids[0]!])).jobs!.id).toBe(ids[1]);
    } finally {
      await client.end();
    }
  });
  it("a claim of another topic on the same session does not start past its own older jobs", async () => {
    await sql('truncate jobs.job_queue, jobs.job');
    await sql(`select jobs.create_queue('gc', group_concurrency => 5)`);
    // b's two jobs, then a's: a claim for a.% takes a's first and is remembered there.
    await sql(`select jobs.publish('b.job', queue => 'gc', group_id => 'g' || i, now => $1::timestamptz - interval '2 minutes') from generate_series(1, 2) i`, [T0]);
    await sql(`select jobs.publish('a.job', queue => 'gc', group_id => 'h' || i, now => $1::timestamptz - interval '1 minute') from generate_series(1, 2) i`, [T0]);
    await sql(`select jobs.publish('b.job', queue => 'gc', group_id => 'k', now => $1::timestamptz - interval '1 second')`, [T0]);
    const ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.job_queue order by job_id`)).map((r) => r.id);
    const client = new pg.Client({ connectionString: db.url }); // a pool's connection, lent to one drain then another
    await client.connect();
    try {
      const drainClaim = async (topic: string, at: string) => (await client.query<{ r: { jobs: { id: string } | null } }>(
        `select jobs.claim_json(1, $1, null, now => $2, queue => 'gc') as r`, [topic, at])).rows[0]!.r;
      expect((await drainClaim('a.%', '2030-01-01T00:00:00.01Z')).jobs!.id).toBe(ids[2]);
      // b.%'s oldest job is ids[0]; its newest (ids[4]) lies past a's remembered one.
      expect((await drainClaim('b.%', '2030-01-01T00:00:00.02Z')).jobs!.id).toBe(ids[0]);
    } finally {
      await client.end();
    }
  });
});
