// A publish answered with the job holding its dedupe key in another queue
// answers as a bulk with that key does (jobs.publish_keyed): its queue must
// exist (PD009), and it needs no room there (it adds no job, so a full queue
// does not refuse it with PD010). jobs.publish answered a running holder, a
// waiting one with an expiry (keep) and a keep_waiting holder at once, even
// for a queue that does not exist, and refused with PD010 a collide with a
// holder waiting without an expiry. Real sessions.
import { beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { lockSessions, outcome } from './support/lock-sessions.js';

const db = await testDb();
const sql = db.sql;
const session = lockSessions(db.url);
const one = async (text: string) => outcome((await session()).query(text));
const NOPE = `error PD009 queue: queue: no queue named 'nope'; create it with jobs.create_queue('nope')`;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.queue_admits');
  await sql(`select jobs.create_queue('cap', max_size => 1)`);
  await sql(`select jobs.create_queue('other')`);
  await sql(`select jobs.publish('x.run', queue => 'cap')`);  // cap is full
});

const holders = {
  'waiting without an expiry': `select jobs.publish('a.run', queue => 'other', dedupe_key => 'k')`,
  'waiting with an expiry': `select jobs.publish('a.run', queue => 'other', dedupe_key => 'k', expires_at => now() + interval '1 day')`,
  running: `select jobs.publish('a.run', queue => 'other', dedupe_key => 'k'); select jobs.claim_json(1, queue => 'other')`,
};
const modes = [['keep', 'null'], ['keep_waiting', `'keep_waiting'`]] as const;
const single = (queue: string, mode: string) =>
  `select jobs.publish('a.run', queue => '${queue}', dedupe_key => 'k', dedupe_mode => ${mode})::text as id`;
const bulk = (queue: string, mode: string) =>
  `select (jobs.publish_arrays(array['a.run'], queue => '${queue}', dedupe_keys => array['k'], dedupe_modes => array[${mode}]::text[]))[1]::text as id`;

for (const [name, holder] of Object.entries(holders)) {
  for (const [mode, modeSql] of modes) {
    if (mode === 'keep_waiting' && name === 'running') continue;  // keep_waiting takes the key from a running job
    it(`${mode}, a holder ${name} in another queue: a full queue answers its id, one that does not exist PD009, as a bulk`, async () => {
      await sql(holder);
      const { id } = (await sql<{ id: string }>(`select job_id::text as id from jobs.job_queue where dedupe_key = 'k'`))[0]!;
      const jobs = async () => (await sql<{ n: number }>('select count(*)::int as n from jobs.job_queue'))[0]!.n;
      const before = await jobs();
      // Unfixed (keep, without an expiry): error PD010 queue: queue 'cap' is full: ...
      expect(await one(single('cap', modeSql))).toEqual([{ id }]);
      expect(await one(bulk('cap', modeSql))).toEqual([{ id }]);
      // Unfixed (the others): the holder's id.
      expect(await one(single('nope', modeSql))).toBe(NOPE);
      expect(await one(bulk('nope', modeSql))).toBe(NOPE);
      expect(await jobs()).toBe(before);
      expect(await sql(`select * from jobs.queue_admits`)).toEqual([{ queue: 'cap', admits: '1' }]);
    });
  }
}
