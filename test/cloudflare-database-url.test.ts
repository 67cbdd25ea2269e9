// The Worker's DATABASE_URL binding, in workerd (Miniflare) on the demo
// Worker's bundle: a URL's scheme is case-insensitive (POSTGRES://, as pg,
// the Neon drivers and the CLI read it), and a Worker that binds HYPERDRIVE
// but chooses another driver with DATABASE_DRIVER is told what to do about
// the missing URL, not to bind what it has bound.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { demoWorker } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerStub } from './support/worker-calls.js';
import { startWsProxy } from './support/ws-proxy.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'database-url-token-0123456789';
const proxy = await startWsProxy();
const outdir = mkdtempSync(join(tmpdir(), 'pgdrain-worker-url-'));
let mf: Miniflare | undefined;
const upperScheme = db.url.replace(/^postgres(ql)?:/, 'POSTGRES:');

afterAll(async () => {
  await mf?.dispose();
  await proxy.close();
  rmSync(outdir, { recursive: true, force: true });
});

beforeAll(async () => {
  const { hyperdrives, ...common } = await demoWorker(outdir, db.url);
  const worker = (name: string, bindings: Record<string, unknown>, bound = {}) =>
    routed({ ...common, name, bindings: { PGDRAIN_TOKEN: TOKEN, ...bindings }, ...bound });
  mf = new Miniflare({
    ...triggerHandlers,
    workers: [
      worker('pg-upper', { DATABASE_DRIVER: 'pg', DATABASE_URL: upperScheme }),
      worker('neon-upper', { DATABASE_URL: upperScheme, NEON_WS_PROXY: proxy.url }),
      worker('pg-hyperdrive-bound', { DATABASE_DRIVER: 'pg' }, { hyperdrives }),
      worker('pg-nothing-bound', { DATABASE_DRIVER: 'pg' }),
    ],
  });
  await mf.ready;
}, 180_000);

beforeEach(() => db.sql('truncate jobs.job_queue, jobs.job'));

const post = async (name: string, path: string, body: unknown) => {
  const response = await workerStub(mf!, name).fetch(`http://worker${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() as any };
};

describe('the Worker\'s DATABASE_URL', () => {
  for (const name of ['pg-upper', 'neon-upper']) {
    it(`${name}: a POSTGRES:// URL (scheme in capitals) is a postgres:// URL: POST /jobs, POST /drain and the cron drain run`, async () => {
      expect(await post(name, '/jobs', { task: 'demo.math.sum', body: { a: 1, b: 2 }, timeoutSeconds: 5 }))
        .toMatchObject({ status: 201 });
      expect(await post(name, '/drain', { budgetSeconds: 10 })).toMatchObject({ status: 200, body: { claimed: 1, succeeded: 1 } });
      await queue.publish('demo.math.sum', { a: 2, b: 3 }, { timeoutSeconds: 5 });
      expect(await workerStub(mf!, name).scheduled()).toEqual({ outcome: 'ok' });
      expect(await db.sql('select status, count(*)::int as n from jobs.job group by 1')).toEqual([{ status: 'success', n: 2 }]);
    }, 60_000);
  }

  it('missing while HYPERDRIVE is bound (DATABASE_DRIVER chose pg): says how to use the binding, not to bind it', async () => {
    expect(await post('pg-hyperdrive-bound', '/drain', {})).toEqual({ status: 500, body: { error: {
      code: 'not_configured', field: 'env.DATABASE_URL',
      message: 'env.DATABASE_URL: must be set for DATABASE_DRIVER = "pg" (wrangler secret put DATABASE_URL); to connect '
        + 'through the bound HYPERDRIVE instead, unset DATABASE_DRIVER or set it to "hyperdrive"' } } });
    expect(await post('pg-nothing-bound', '/drain', {})).toEqual({ status: 500, body: { error: {
      code: 'not_configured', field: 'env.DATABASE_URL',
      message: 'env.DATABASE_URL: must be set (wrangler secret put DATABASE_URL), or bind HYPERDRIVE' } } });
    expect(await workerStub(mf!, 'pg-hyperdrive-bound').scheduled()).toEqual({ outcome: 'exception' });
  }, 60_000);
});
