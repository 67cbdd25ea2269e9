// How many connections a Worker invocation holds while its cron drain lingers
// over pg (DATABASE_DRIVER = "pg", PGDRAIN_LINGER_SECONDS): its pool's 4 and
// the drain's LISTEN session, outside the pool: 5 of the 6 a Worker
// invocation may have open, leaving the handlers' own fetch() calls 1, not 2
// (README "Cloudflare Workers and Neon"). Counted in pg_stat_activity while
// the pool is full and the drain, its queue found empty, listens. A Worker of
// our own with a transactional task (createWorker, as the README says to
// write one), bundled by `wrangler deploy --dry-run`, run by Miniflare.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it, vi } from 'vitest';
import { testDb } from './support/db.js';
import { compatibilityDate, compatibilityFlags, root, wranglerDryRun } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const harness = workerHarness('pgdrain-worker-linger-');
const dir = harness.dir;

beforeAll(async () => {
  writeFileSync(join(dir, 'worker.mjs'), `
import { createWorker } from ${JSON.stringify(join(root, 'functions/cloudflare.ts'))};
import { defineTask } from ${JSON.stringify(join(root, 'src/define-task.ts'))};
const hold = defineTask('tx.hold', async (body, ctx) => { await ctx.db.query('select pg_sleep($1)', [body.s]); }, { transactional: true });
export default createWorker({ tx: { hold } });
`);
  writeFileSync(join(dir, 'wrangler.toml'), `name = "pgdrain-linger"\nmain = "worker.mjs"\ncompatibility_date = "${compatibilityDate}"\n`
    + `compatibility_flags = ${JSON.stringify(compatibilityFlags)}\n`);
  const out = join(dir, 'out');
  mkdirSync(out);
  await wranglerDryRun(['--outdir', out, '--config', join(dir, 'wrangler.toml')]);
  // The URL names the Worker's sessions, its LISTEN session's too.
  const url = new URL(db.url);
  url.searchParams.set('application_name', 'pgdrain-worker');
  await harness.start({
    ...triggerHandlers,
    workers: [routed({ name: 'linger', modules: true, modulesRoot: out, scriptPath: join(out, 'worker.js'), compatibilityDate,
                       compatibilityFlags, bindings: { DATABASE_DRIVER: 'pg', DATABASE_URL: url.href, DRAIN_DEADLINE_SECONDS: '25',
                                                       PGDRAIN_LINGER_SECONDS: '3', PGDRAIN_POLL_SECONDS: '60' } })],
  });
}, 180_000);

/** The Worker's sessions: pooled, and listening. */
const sessions = async () => (await db.sql<{ listening: boolean; n: number }>(
  `select query like 'listen %' as listening, count(*)::int as n from pg_stat_activity
    where datname = $1 and application_name = 'pgdrain-worker' group by 1 order by 1`, [db.name]));

it('a cron drain lingering over pg holds its pool\'s 4 connections and its LISTEN session: 5 of 6', async () => {
  // A transactional Worker runs 3 jobs at once, each holding a connection; the drain's own statements (the check
  // for cancel requests of jobs running past 2 s) open the fourth. The pool keeps them open (idle) while the drain,
  // its queue found empty when the jobs end, lingers on its LISTEN session.
  await db.sql(`select jobs.publish('tx.hold', '{"s": 5}', timeout_seconds => 10) from generate_series(1, 3)`);
  const run = harness.stub('linger').scheduled();
  await vi.waitFor(async () => expect(await sessions()).toEqual([{ listening: false, n: 4 }, { listening: true, n: 1 }]),
                   { timeout: 15_000, interval: 50 });
  expect(await run).toEqual({ outcome: 'ok' });
  expect(await db.sql(`select status, count(*)::int as n from jobs.job group by 1`)).toEqual([{ status: 'success', n: 3 }]);
}, 60_000);
