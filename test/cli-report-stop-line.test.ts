// The CLI's report line for a stop that cut jobs short ('stopped at once: …')
// said '0 waiting for a connection released, no attempt spent' when the stop
// nacked running jobs and released none: each part is said only for a count
// over 0 now. A real drain on a real PostgreSQL, stopped by its hardSignal.
import { expect, it } from 'vitest';
import { formatReport } from '../src/cli/format.js';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';

const db = await testDb();

it("a stop that nacked a running job and released none says nothing of releases", async () => {
  let started = 0;
  const q = createQueue({
    driver: { ...db.driver, close: async () => {} },
    tasks: { hang: async (_: unknown, ctx: JobContext) => {
      started++;
      await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
    } },
  });
  await q.publish('hang', {});
  const hard = new AbortController();
  const drained = q.drain(1, Date.now() + 120_000, { hardSignal: hard.signal });
  await until(async () => started === 1, 'the job to start');
  hard.abort(new Error('stop'));
  const report = await drained;
  expect(report.interrupted).toEqual({ nacked: 1, released: 0 });
  const line = formatReport(report).split('\n').find((l) => l.includes('stopped at once'));
  // Unfixed: '…, failed with no retries left); 0 waiting for a connection released, no attempt spent'.
  expect(line).toBe('  stopped at once: 1 running job(s) nacked, their attempt spent (retried, or failed with no retries left)');
});
