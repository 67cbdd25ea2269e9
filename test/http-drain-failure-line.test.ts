// POST /drain answers each failure's first line: one line can be a whole
// upstream answer (an HTTP client's error quoting the body), and 100 such
// failures passed Lambda's 6 MB cap on a reply (20 of 400 KB: an 8 MB answer),
// though failure-list.ts keeps the count at 100 for that cap. The line is cut
// to 1000 characters; jobs.job keeps the error as every error is kept (cut at
// MAX_ERROR_CHARS, src/error-text.ts), longer than the line.
import { serve } from '@hono/node-server';
import { afterAll, describe, expect, it } from 'vitest';
import { createQueue, type TaskMap } from '../src/index.js';
import { createApp } from '../src/http/index.js';
import { MAX_ERROR_CHARS } from '../src/error-text.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'test-token-0123456789abcdef';
const LINE = `upstream said: ${'x'.repeat(400_000)}`;
const tasks: TaskMap = { big: async () => { throw new Error(LINE); }, short: async () => { throw new Error('nope'); } };
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks });
const base = await new Promise<string>((done) => {
  const server = serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
    (info) => done(`http://127.0.0.1:${info.port}`));
  afterAll(() => new Promise((r) => server.close(r)));
});

describe('POST /drain failures', () => {
  it('carry the first line cut to 1000 characters; jobs.job keeps the error as errors are kept', async () => {
    await queue.publishBulk([...Array.from({ length: 5 }, () => ({ task: 'big', maxRetries: 0, timeoutSeconds: 10 })),
                             { task: 'short', maxRetries: 0, timeoutSeconds: 10 }]);
    const res = await fetch(`${base}/drain`, { method: 'POST', body: '{"budgetSeconds": 30}',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } });
    const text = await res.text();
    expect(res.status).toBe(200);
    // Unfixed: each big failure carried its 400 KB line (a 2 MB answer).
    expect(text.length).toBeLessThan(10_000);
    const report = JSON.parse(text) as { failed: number; failures: { task: string; error: string }[] };
    expect(report.failed).toBe(6);
    const big = report.failures.filter((f) => f.task === 'big');
    expect(big).toHaveLength(5);
    for (const f of big) expect(f.error).toBe(`Error: ${LINE.slice(0, 993)}…`);
    expect(report.failures.find((f) => f.task === 'short')!.error).toBe('Error: nope');
    const stored = await db.sql<{ e: string }>(`select error as e from jobs.job where task = 'big'`);
    for (const { e } of stored) {
      expect(e.startsWith(`Error: ${LINE.slice(0, 2000)}`)).toBe(true);
      expect(e).toMatch(/\n… \(\d+ characters cut\)$/);
      expect(e.length).toBeLessThanOrEqual(MAX_ERROR_CHARS);
    }
    expect(stored).toHaveLength(5);
  });
});
