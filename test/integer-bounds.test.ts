// An integer past every bound (1e16, 1e20, -1e300) is refused naming its
// bound, as 2000000 is: zod's int() takes only safe integers, so such a value
// was told "must be an integer", which it is (options.ts integerCheck).
// publish's priority and maxRetries, drain's batchSize, HTTP POST /jobs and
// POST /drain alike; a fraction is still "must be an integer".
import { serve } from '@hono/node-server';
import { afterAll, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { createApp } from '../src/http/index.js';
import { readSettings } from '../functions/cloudflare-settings.js';
import { scheduleInput } from '../functions/lambda-events.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const TOKEN = 'test-token-0123456789abcdef';
const base = await new Promise<string>((done) => {
  const server = serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
    (info) => done(`http://127.0.0.1:${info.port}`));
  afterAll(() => new Promise((r) => server.close(r)));
});
const post = async (path: string, raw: string) => {
  const res = await fetch(`${base}${path}`, { method: 'POST', body: raw,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
  return (await res.json() as { error: { message: string } }).error.message;
};
const rejection = (p: Promise<unknown>) => p.then(() => 'published', (e: Error) => e.message);

describe('an integer past its bound', () => {
  it('is refused naming the bound in TypeScript', async () => {
    // Unfixed: "options.priority: must be an integer" for all three.
    expect(await rejection(queue.publish('t', {}, { priority: 1e16 }))).toBe('options.priority: must be at most 1000000');
    expect(await rejection(queue.publish('t', {}, { priority: -1e300 }))).toBe('options.priority: must be at least -1000000');
    expect(await rejection(queue.publish('t', {}, { maxRetries: 1e20 }))).toBe('options.maxRetries: must be at most 1000');
    expect(await rejection(queue.drain(1e20, Date.now() + 1000))).toBe('batchSize: must be at most 10000');
    expect(await rejection(queue.publish('t', {}, { priority: 1.5 }))).toBe('options.priority: must be an integer');
    expect(await db.sql('select job_id from jobs.job_queue')).toEqual([]);
  });

  it('is refused naming the bound over HTTP', async () => {
    expect(await post('/jobs', '{"task":"t","priority":1e20}')).toBe('priority: must be at most 1000000');
    expect(await post('/jobs', '{"jobs":[{"task":"t","maxRetries":1e16}]}')).toBe('jobs[0].maxRetries: must be at most 1000');
    expect(await post('/drain', '{"batchSize":1e20}')).toBe('batchSize: must be at most 1000 (the server\'s maximum)');
    expect(await post('/jobs', '{"task":"t","priority":2.5}')).toBe('priority: must be an integer');
  });

  it('is refused naming the bound by the Lambda and Worker adapters', () => {
    const thrown = (f: () => unknown) => { try { f(); return 'accepted'; } catch (e) { return (e as Error).message; } };
    expect(thrown(() => scheduleInput({ pgdrain: { batchSize: 1e20 } }))).toMatch(/batchSize: must be at most 10000$/);
    expect(thrown(() => scheduleInput({ pgdrain: { batchSize: 1.5 } }))).toMatch(/batchSize: must be an integer$/);
    expect(thrown(() => readSettings({ DATABASE_URL: 'postgres://x@h/d', PGDRAIN_TOKEN: TOKEN, DRAIN_BATCH: '1e20' } as never)))
      .toMatch(/DRAIN_BATCH: must be an integer from 1 to 1000, got "1e20"$/);
  });
});
