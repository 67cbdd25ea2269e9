// How many connections a Lambda instance holds while its scheduled drain
// lingers (PGDRAIN_LINGER_SECONDS): its pool's PGDRAIN_POOL_MAX, and one
// more, the drain's LISTEN session, which is outside the pool. So
// ReservedConcurrentExecutions × (PGDRAIN_POOL_MAX + 1) is what a function
// whose drains linger may take (deploy/lambda/README "Connections"). Counted
// in pg_stat_activity while a transactional handler holds a connection and
// the drain, having found its queue empty, listens; the handler runs in-process.
import { randomUUID } from 'node:crypto';
import { expect, it, vi } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { defineTask } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const POOL_MAX = 3;

const hold = defineTask('tx.hold', async (body: { s: number }, ctx) => {
  await ctx.db.query('select pg_sleep($1)', [body.s]);
}, { transactional: true });
const handler = createLambdaHandler({ tx: { hold } }, { DATABASE_URL: db.url, PGDRAIN_POOL_MAX: String(POOL_MAX),
                                                        PGDRAIN_LINGER_SECONDS: '3', PGDRAIN_POLL_SECONDS: '60' });
const context = (ms: number) => {
  const end = Date.now() + ms;
  return { getRemainingTimeInMillis: () => end - Date.now(), awsRequestId: randomUUID() };
};
const scheduled = { version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {},
                    time: '2026-12-06T18:00:00Z', region: 'us-east-1', resources: [] };

/** The instance's sessions: its pool's (pgdrain-lambda) and its LISTEN session (pgdrain-events). */
const sessions = async () => (await db.sql<{ application_name: string; n: number }>(
  `select application_name, count(*)::int as n from pg_stat_activity
    where datname = $1 and application_name in ('pgdrain-lambda', 'pgdrain-events') group by 1 order by 1`, [db.name]));

it('a lingering scheduled drain holds PGDRAIN_POOL_MAX connections and its LISTEN session: one more', async () => {
  // A transactional drain runs POOL_MAX - 1 jobs at once, each holding a connection; its own statements (the
  // check for cancel requests of jobs running past 2 s) open the last one. The pool keeps them open (idle) while
  // the drain, its queue found empty when the jobs end, lingers on its LISTEN session.
  await db.sql(`select jobs.publish('tx.hold', '{"s": 0.2}', timeout_seconds => 5, priority => 1),
                       jobs.publish('tx.hold', '{"s": 5}', timeout_seconds => 10),
                       jobs.publish('tx.hold', '{"s": 5}', timeout_seconds => 10)`);
  const drained = handler(scheduled, context(25_000));
  await vi.waitFor(async () => expect(await sessions()).toEqual([{ application_name: 'pgdrain-events', n: 1 },
                                                                 { application_name: 'pgdrain-lambda', n: POOL_MAX }]),
                   { timeout: 15_000, interval: 50 });
  expect(await drained).toMatchObject({ claimed: 3, succeeded: 3, stoppedBy: 'empty' });
  // Its LISTEN session closed before the invocation returned (never frozen with the function); the pool stays warm.
  expect((await sessions()).map((s) => s.application_name)).toEqual(['pgdrain-lambda']);
}, 40_000);
