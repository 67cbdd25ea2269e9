// A POST /drain whose caller disconnects stops as on a signal; with no grace
// (createApp's graceMs left out: running jobs may finish until their timeout),
// a job whose lease was extended past the drain's stop is stopped there, its
// attempt spent, and its error says what stopped the drain: the caller's going,
// not "the drain's signal" (which reads as a shutdown, and there was none).
// The real app in process, against a real PostgreSQL.
import { describe, expect, it } from 'vitest';
import { createApp } from '../src/http/index.js';
import { createQueue, type JobContext } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'disconnect-deadline-token-0123456789';

describe('a POST /drain whose caller disconnects, a job running on to the drain\'s stop', () => {
  it('is stopped there, its error naming the disconnect', async () => {
    const caller = new AbortController();
    const queue = createQueue({ driver: db.driver, tasks: {
      deaf: async (_b: unknown, ctx: JobContext) => {
        expect(await ctx.extendLease(600)).toBeInstanceOf(Date); // past the drain's stop: only the stop ends it
        caller.abort(); // the caller hangs up
        await new Promise((resolve) => ctx.signal.addEventListener('abort', resolve, { once: true }));
      },
    } });
    const app = createApp({ queue, token: TOKEN });
    const id = await queue.publish('deaf', null, { timeoutSeconds: 1, maxRetries: 0 });
    const res = await app.request('/drain', { method: 'POST', signal: caller.signal,
      headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ batchSize: 1, budgetSeconds: 3 }) });
    expect(await res.json()).toMatchObject({ claimed: 1, failed: 1, stoppedBy: 'signal' });
    expect(await queue.getJob(id)).toMatchObject({ state: 'failure', attempts: 1,
      error: "did not stop by the drain's deadline after its POST /drain caller disconnected" });
  });
});
