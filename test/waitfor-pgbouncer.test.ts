// queue.waitFor through PgBouncer in transaction mode (the pooler README
// recommends for many pods): its LISTEN runs on a server connection that goes
// back to PgBouncer's pool once the LISTEN's transaction ends, so the
// pgdrain_completed NOTIFY never reaches it. The job below ends once waitFor
// has asked for it (and found it active), inside a 5 s wait: the answer must
// be its outcome (at the timeout, when waitFor asks once more), not "job
// still active".
import { afterAll, expect, it } from 'vitest';
import { JOB_STATE_SQL } from '../src/db/job-outcome.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { startPgBouncer } from './support/pgbouncer.js';

const db = await testDb();
const bouncer = await startPgBouncer(db.url, 'transaction');
const viaBouncer = new URL(db.url);
viaBouncer.port = String(bouncer.port);
const queue = createQueue({ connectionString: viaBouncer.href });
afterAll(async () => {
  await queue.close();
  await bouncer.stop();
});

it('waitFor answers with the outcome of a job that ended while it waited', async () => {
  const id = (await db.sql<{ id: string }>(`select jobs.publish('t', '{}', timeout_seconds => 30)::text as id`))[0]!.id;
  const waiting = queue.waitFor(id, { timeoutMs: 5000 });
  waiting.catch(() => {});
  // Its first check of the job has answered (a server session of PgBouncer's, idle after it): an end before
  // would be answered at once, without the wait this test is about.
  await until(async () => (await db.sql(`select 1 from pg_stat_activity where datname = current_database() and state = 'idle'
                                         and query = $1`, [JOB_STATE_SQL])).length, 'waitFor to ask for the job');
  await db.sql('select jobs.consume(1)');
  await db.sql(`select jobs.ack($1::bigint, '{"done":true}')`, [id]);
  await expect(waiting).resolves.toMatchObject({ status: 'success', result: { done: true } });
});
