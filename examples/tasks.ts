// A tasks module: `pgdrain drain --tasks dist/examples/tasks.js` runs these.
// Nested exports serve dotted names: demo.math.sum → demo.math.sum.
import type { JobContext } from '../src/index.js';

export const demo = {
  math: {
    async sum(body: { a: number; b: number }) {
      return { sum: body.a + body.b };
    },
  },
  email: {
    async send(body: { to: string }, ctx: JobContext) {
      await new Promise((r) => setTimeout(r, 20));
      // Follow-up work is just another job.
      await ctx.publish('demo.audit.log', { event: 'email.sent', to: body.to });
      return { delivered: body.to };
    },
  },
  audit: {
    async log(body: { event: string }) {
      return { logged: body.event };
    },
  },
  // Fails on its first attempt, succeeds on the retry.
  async flaky(_body: unknown, ctx: JobContext) {
    if (ctx.job.attempt === 1) throw new Error('upstream returned 503, will retry');
    return { ok: true, attempt: ctx.job.attempt };
  },
};
