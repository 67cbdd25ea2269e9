// queue.waitFor through PgBouncer in transaction mode (the pooler README
// recommends for many pods): its LISTEN runs on a server connection that goes
// back to PgBouncer's pool once the LISTEN's transaction ends, so the
// pgdrain_completed NOTIFY never reaches it. The job below ends 1 s into a
// 5 s wait: the answer must be its outcome (at the timeout, when waitFor
// asks once more), not "job still active".
import { afterAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
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
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await db.sql('select jobs.consume(1)');
  await db.sql(`select jobs.ack($1::bigint, '{"done":true}')`, [id]);
  await expect(waiting).resolves.toMatchObject({ status: 'success', result: { done: true } });
});
