// The Worker's POST /drain whose caller goes away, in workerd (Miniflare) with
// wrangler.toml's compatibility flags (enable_request_signal): the drain stops
// claiming, its running job finishes and is acked (or, hanging, is stopped
// and retried after the Worker's 24 s grace), and the jobs it had not
// claimed stay pending. The caller is a second Worker calling this one
// through a service binding and aborting its fetch: workerd cancels the
// incoming request as it does when a client disconnects, and request.signal
// fires ("The client has disconnected"). Its own HTTP listener here does not
// notice a TCP client's disconnect while the handler runs (probed with raw
// sockets, through Miniflare's entry and a direct socket), so a socket
// client could not show it.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { compatibilityDate, compatibilityFlags, hyperdriveUrl, root, wranglerDryRun } from './support/worker-bundle.js';
import { routed, workerStub } from './support/worker-calls.js';

const db = await testDb();
const sql = db.sql;
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'test-drain-token-0123456789';
const LOCK = 4242; // the advisory lock the test holds while the first job waits for it
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-worker-disconnect-'));
const out = join(dir, 'out');
let mf: Miniflare;
let holder: pg.Client | undefined;
/** What the Workers logged, in order. */
const logs: string[] = [];

afterAll(async () => {
  await holder?.end().catch(() => {});
  await mf?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

// Your own Worker, as the README says to write one: a transactional task that waits for an advisory lock.
const workerEntry = `
import { createWorker } from ${JSON.stringify(join(root, 'functions/cloudflare.ts'))};
import { defineTask } from ${JSON.stringify(join(root, 'src/define-task.ts'))};
const waits = defineTask('lock.waits', async (body, ctx) => {
  await ctx.db.query('select pg_advisory_xact_lock($1)', [body.key]);
  return { got: body.key };
}, { transactional: true });
// hangs: logs that it began, then never ends, whatever its signal says.
export default createWorker({ lock: { waits }, hangs: () => { console.log('hangs began'); return new Promise(() => {}); } });
`;

// The caller: /start fetches the pgdrain Worker's POST /drain and waits, until
// /abort (a later request to the same isolate) has it abort that fetch.
const callerScript = `
let abortNow = false;
export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === '/abort') { abortNow = true; return new Response('aborting'); }
    abortNow = false;
    const gone = new AbortController();
    const answer = env.PGDRAIN.fetch('http://worker/drain', { method: 'POST', signal: gone.signal,
      headers: { authorization: 'Bearer ' + env.TOKEN, 'content-type': 'application/json' }, body: await request.text() })
      .then(async (r) => 'answered ' + r.status + ' ' + await r.text(), (e) => 'aborted: ' + e.name);
    let settled;
    void answer.then((a) => (settled = a));
    while (!abortNow && settled === undefined) await scheduler.wait(20);
    if (settled !== undefined) return new Response(settled);
    gone.abort();
    return new Response(await answer);
  },
};
`;

beforeAll(async () => {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(dir, 'worker.mjs'), workerEntry);
  writeFileSync(join(dir, 'wrangler.toml'), `name = "pgdrain-disconnect"\nmain = "worker.mjs"\ncompatibility_date = "${compatibilityDate}"\n`
    + `compatibility_flags = ${JSON.stringify(compatibilityFlags)}\n`);
  await wranglerDryRun(['--outdir', out, '--config', join(dir, 'wrangler.toml')]);
  mf = new Miniflare({
    handleStructuredLogs: ({ level, message }: { level: string; message: string }) => {
      logs.push(message);
      if (level === 'error' || level === 'warn') console.error(message);
    },
    workers: [
      { name: 'caller', modules: true, script: callerScript, compatibilityDate, serviceBindings: { PGDRAIN: 'pgdrain' },
        bindings: { TOKEN } },
      // As deployed from wrangler.toml: its compatibility flags; a budget long enough that only the stop ends the drain.
      { name: 'pgdrain', modules: true, modulesRoot: out, scriptPath: join(out, 'worker.js'), compatibilityDate, compatibilityFlags,
        bindings: { PGDRAIN_TOKEN: TOKEN, DRAIN_DEADLINE_SECONDS: '60' }, hyperdrives: { HYPERDRIVE: hyperdriveUrl(db.url) } },
    ].map(routed),
  });
  await mf.ready;
}, 120_000);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  logs.length = 0;
});

const worker = async (name: string) => workerStub(mf, name);
/** Has the caller Worker start a POST /drain of batchSize 1; resolves to how that fetch ended once /abort aborts it. */
const startDrain = async () => (await worker('caller')).fetch('http://caller/start', { method: 'POST', headers: {},
                                                                body: JSON.stringify({ batchSize: 1 }) }).then((r) => r.text());
const abortDrain = async () => (await (await worker('caller')).fetch('http://caller/abort', { method: 'GET', headers: {} })).text();

describe('Cloudflare Worker: a POST /drain whose caller goes away', () => {
  it('stops claiming: the running job finishes and is acked, the others stay pending, unclaimed', async () => {
    expect(compatibilityFlags).toContain('enable_request_signal');
    // The lock is held across awaits: a session of its own.
    holder = new pg.Client({ connectionString: db.url });
    await holder.connect();
    await holder.query('select pg_advisory_lock($1)', [LOCK]);

    const first = await queue.publish('lock.waits', { key: LOCK }, { timeoutSeconds: 30, priority: 10 });
    const rest = await queue.publishBulk([{ task: 'lock.waits', body: { key: 1 }, timeoutSeconds: 30 },
                                          { task: 'lock.waits', body: { key: 2 }, timeoutSeconds: 30 }]);
    const answer = startDrain();
    await until(async () => (await sql(`select 1 from pg_locks where locktype = 'advisory' and objid = $1 and not granted`, [LOCK])).length,
                'the first job to wait for the lock');
    await abortDrain();
    expect(await answer).toBe('aborted: AbortError');
    // The first job may finish now: a drain that goes on would claim the next as soon as it is acked.
    await holder.query('select pg_advisory_unlock($1)', [LOCK]);

    const metrics = async () => (await (await worker('pgdrain')).fetch('http://worker/metrics', {
      method: 'GET', headers: { authorization: `Bearer ${TOKEN}` } })).text();
    const ended = await until(async () => { const text = await metrics(); return /^pgdrain_drains_total\{/m.test(text) && text; },
                              'the drain to end');
    expect(ended).toMatch(/^pgdrain_drains_total\{stopped_by="signal"\} 1$/m);
    expect(ended).toMatch(/^pgdrain_drain_jobs_total\{outcome="succeeded"\} 1$/m);

    expect(await sql('select job_id::text as id, status, result from jobs.job')).toEqual([
      { id: first, status: 'success', result: { got: LOCK } },
    ]);
    expect(await sql(`select job_id::text as id, attempt, lease_until is null as free from jobs.job_queue order by job_id`)).toEqual([
      { id: rest[0], attempt: 0, free: true },
      { id: rest[1], attempt: 0, free: true },
    ]);
  });

  it('stops a running job that outlasts the grace (24 s), retried with the error recorded, inside the 30 s waitUntil keeps', async () => {
    const hung = await queue.publish('hangs', {}, { timeoutSeconds: 50, priority: 10 });
    const [next] = await queue.publishBulk([{ task: 'hangs', body: {}, timeoutSeconds: 50 }]);
    const answer = startDrain();
    // Its handler began (not only its claim, in the database: a stop before the Worker reads the claim's answer gives it back unspent).
    await until(async () => logs.some((m) => m.includes('hangs began')), 'the hanging job to run');
    await abortDrain();
    expect(await answer).toBe('aborted: AbortError');
    // Without the stop it would run on to its 50 s timeout (past the 30 s a disconnected Worker gets), then take the next.
    await until(async () => (await sql(`select 1 from jobs.job_queue where job_id = $1 and lease_until is null
                                        and last_error = 'did not stop within graceMs=24000 after its POST /drain caller disconnected'`, [hung])).length,
                'the hanging job to be stopped after the grace', 45_000, 200);
    expect(await sql('select job_id::text as id, attempt from jobs.job_queue order by job_id')).toEqual([
      { id: hung, attempt: 1 }, { id: next, attempt: 0 },
    ]);
  });
});
