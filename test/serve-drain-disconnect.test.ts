// `pgdrain serve` (the built CLI as a process: run `npm run build` first):
// a POST /drain whose caller goes away stops as on a signal. It claims no
// more, its running job is stopped after --grace (0 here) and retried with
// the error recorded, and the jobs it had not claimed stay pending for the
// next drain. Every wait is for an event: the job running, the drain's end
// in GET /metrics.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { startServe } from './support/serve-process.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'test-token-0123456789abcdef';
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-serve-disconnect-'));
// blocks: runs until its ctx.signal fires (its timeout, or the drain's stop after its grace); says on stderr that it began.
writeFileSync(join(dir, 'tasks.mjs'), `
export const blocks = (body, ctx) => {
  console.error('blocks ' + body.n + ' began');
  return new Promise((_, fail) => ctx.signal.addEventListener('abort', () => fail(ctx.signal.reason)));
};
`);

const servers: ReturnType<typeof startServe>[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.child.kill('SIGINT');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const auth = { authorization: `Bearer ${TOKEN}` };

describe('pgdrain serve: a drain whose caller goes away', () => {
  it('stops claiming: its running job is retried with the error recorded, the others stay pending, unclaimed', async () => {
    const server = startServe(db.url, ['--tasks', join(dir, 'tasks.mjs'), '--grace', '0'], { PGDRAIN_TOKEN: TOKEN }, dir);
    servers.push(server);
    const url = await server.url;
    // A 3 s timeout each: without the stop, the drain would run all three, one after another, and end 'empty'.
    const first = await queue.publish('blocks', { n: 1 }, { timeoutSeconds: 3, priority: 10 });
    const rest = await queue.publishBulk([{ task: 'blocks', body: { n: 2 }, timeoutSeconds: 3 },
                                          { task: 'blocks', body: { n: 3 }, timeoutSeconds: 3 }]);
    const gone = new AbortController();
    const answer = fetch(`${url}/drain`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ batchSize: 1, budgetSeconds: 60 }), signal: gone.signal,
    }).then(() => 'answered', () => 'aborted');
    // Its handler began (not only its claim, in the database: a stop before the drain reads the claim's answer gives it back unspent).
    await until(async () => server.stderr().includes('blocks 1 began'), 'the first job to run');
    gone.abort();
    expect(await answer).toBe('aborted');

    // The drain ended (its counter in /metrics), stopped by its caller's going as by a signal.
    const ended = await until(async () => {
      const text = await (await fetch(`${url}/metrics`, { headers: auth })).text();
      return /^pgdrain_drains_total\{/m.test(text) && text;
    }, 'the drain to end');
    expect(ended).toMatch(/^pgdrain_drains_total\{stopped_by="signal"\} 1$/m);
    expect(ended).toMatch(/^pgdrain_drains_running 0$/m);

    // Nothing is lost: the running job is back for its retry with why it stopped; the others were never claimed.
    expect(await sql(`select job_id::text as id, attempt, lease_until is null as free, last_error
                      from jobs.job_queue order by job_id`)).toEqual([
      // What stopped it: its caller's going (a Worker has no shutdown signal to name).
      { id: first, attempt: 1, free: true, last_error: 'did not stop within graceMs=0 after its POST /drain caller disconnected' },
      { id: rest[0], attempt: 0, free: true, last_error: null },
      { id: rest[1], attempt: 0, free: true, last_error: null },
    ]);
    expect(await sql('select count(*)::int as n from jobs.job')).toEqual([{ n: 0 }]);
  });

  it('a shutdown during its grace waits for it: the running job is stopped at the grace and retried, not left leased', async () => {
    const server = startServe(db.url, ['--tasks', join(dir, 'tasks.mjs'), '--grace', '3'], { PGDRAIN_TOKEN: TOKEN }, dir);
    const url = await server.url;
    await sql('delete from jobs.job_queue');
    const job = await queue.publish('blocks', { n: 4 }, { timeoutSeconds: 30 });
    const gone = new AbortController();
    const answer = fetch(`${url}/drain`, {
      method: 'POST', headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ batchSize: 1, budgetSeconds: 60 }), signal: gone.signal,
    }).then(() => 'answered', () => 'aborted');
    await until(async () => server.stderr().includes('blocks 4 began'), 'the job to run');
    // SIGTERM: the server waits for its connections; then the caller goes, closing the last one while the drain is in its 3 s grace.
    server.child.kill('SIGTERM');
    await until(async () => server.stderr().includes('shutting down'), 'the server to shut down');
    gone.abort();
    expect(await answer).toBe('aborted');
    expect(await server.exited).toBe(0);

    // Its connection closed does not end the drain: serve exits once it has settled its job (before, it exited at once,
    // the job left leased, no error recorded, until its lease ran out 30 s later).
    expect(await sql(`select job_id::text as id, attempt, lease_until is null as free, last_error from jobs.job_queue`)).toEqual([
      // The shutdown came first: it stopped the drain, and the error names it.
      { id: job, attempt: 1, free: true, last_error: "did not stop within graceMs=3000 after the server's shutdown (SIGTERM)" },
    ]);
  });
});
