// A transactional task's heartbeat (src/run-handler.ts JobRun) when a beat
// is answered after the handler's ack committed but before the drain saw
// the COMMIT answer (a slow wire, a busy event loop): the database no longer
// has the delivery running because it succeeded, not because its lease was
// lost, so ctx.signal must not fire 'lease lost'. Over a real PostgreSQL;
// the driver only holds the transaction's answer back until a beat has
// been answered (every statement still runs).
import { beforeEach, describe, expect, it } from 'vitest';
import type { Driver } from '../src/db/driver.js';
import { createQueue, defineTask, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const deadline = () => Date.now() + 120_000;

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
});

/**
 * db.driver whose transaction() answers only once a jobs.extend_lease
 * statement sent after the transaction committed has answered, as if the
 * COMMIT's answer came late; records those answers.
 */
function lateCommitAnswer(answers: (Date | null)[]): Driver {
  const driver = db.driver;
  let committed = false;
  let beatAfterCommit: (() => void) | undefined;
  const beaten = new Promise<void>((resolve) => (beatAfterCommit = resolve));
  return {
    ...driver, close: async () => {},
    query: (text, params, options) => {
      const result = driver.query(text, params, options);
      if (!text.includes('jobs.extend_lease') || !committed) return result;
      return result.then((r) => {
        answers.push((r.rows[0] as { until: Date | null }).until);
        beatAfterCommit!();
        return r;
      });
    },
    transaction: async (fn) => {
      const value = await driver.transaction(fn);
      committed = true;
      await beaten;
      return value;
    },
  } as Driver;
}

describe('a transactional task with heartbeatSeconds', () => {
  it("a beat answered null after its ack committed is not a lost lease: ctx.signal fires 'job settled', not 'lease lost'", async () => {
    const answers: (Date | null)[] = [];
    const reasons: string[] = [];
    const tx = defineTask('tx.quick', async (_b: unknown, ctx: JobContext) => {
      ctx.signal.addEventListener('abort', () => reasons.push((ctx.signal.reason as Error).message), { once: true });
      return 'done';
    }, { transactional: true, heartbeatSeconds: 1 });
    const q = createQueue({ driver: lateCommitAnswer(answers), tasks: { tx } });
    const id = await q.publish('tx.quick', null, { timeoutSeconds: 30, maxRetries: 0 });
    expect(await q.drain(5, deadline())).toMatchObject({ claimed: 1, succeeded: 1, stale: 0 });
    // The beat came after the commit: the database had the job ended as a success.
    expect(answers).toEqual([null]);
    expect(await q.getJob(id)).toMatchObject({ state: 'success', result: 'done' });
    expect(reasons).toEqual(['job settled']);
  });
});
