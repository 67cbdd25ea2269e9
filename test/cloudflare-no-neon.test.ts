// pgdrain/cloudflare where @neondatabase/serverless (an optional peer
// dependency) is not installed. The Worker's sources are copied into a temp
// project whose node_modules links every package of this repository's but
// that one, so the package cannot be resolved from them; `wrangler deploy
// --dry-run` bundles the Worker there, and Miniflare runs it in workerd.
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { until } from './support/drain-process.js';
import { hyperdriveUrl, wranglerDryRun } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerStub } from './support/worker-calls.js';

const root = resolve(import.meta.dirname, '..');
const db = await testDb();
const TOKEN = 'test-drain-token-0123456789';
// Outside the repository: no node_modules above it holds the package.
const project = mkdtempSync(join(tmpdir(), 'pgdrain-no-neon-'));
const out = join(project, 'out');
let bundle = '';
let mf: Miniflare;
const logs: string[] = [];

afterAll(async () => {
  await mf?.dispose();
  rmSync(project, { recursive: true, force: true });
});

beforeAll(async () => {
  for (const dir of ['src', 'functions']) cpSync(join(root, dir), join(project, dir), { recursive: true });
  mkdirSync(join(project, 'node_modules'));
  for (const name of readdirSync(join(root, 'node_modules'))) {
    if (name.startsWith('.') || name === '@neondatabase') continue;
    symlinkSync(join(root, 'node_modules', name), join(project, 'node_modules', name));
  }
  writeFileSync(join(project, 'worker.mjs'), "import { createWorker } from './functions/cloudflare.ts';\n"
    + 'export default createWorker({ math: { sum: async (b) => ({ sum: b.a + b.b }) } });\n');
  writeFileSync(join(project, 'wrangler.toml'),
    'name = "no-neon"\nmain = "worker.mjs"\ncompatibility_date = "2026-04-01"\ncompatibility_flags = ["nodejs_compat"]\n');
  await wranglerDryRun(['--outdir', out], project);
  bundle = readFileSync(join(out, 'worker.js'), 'utf8');
  // The module given as is: Miniflare's scriptPath walker refuses an import it
  // cannot find, where workerd (wrangler dev, Cloudflare) resolves a dynamic
  // import only when it runs.
  const common = {
    // modulesRoot: module names are relative to it, and workerd refuses '..' in them.
    modules: [{ type: 'ESModule' as const, path: join(out, 'worker.js'), contents: bundle }], modulesRoot: out,
    compatibilityDate: '2026-04-01', compatibilityFlags: ['nodejs_compat'],
  };
  const vars = { PGDRAIN_TOKEN: TOKEN, DRAIN_DEADLINE_SECONDS: '20' };
  mf = new Miniflare({
    ...triggerHandlers,
    handleStructuredLogs: ({ message }: { message: string }) => { logs.push(message); },
    workers: [
      { ...common, name: 'hyperdrive', bindings: vars, hyperdrives: { HYPERDRIVE: hyperdriveUrl(db.url) } },
      { ...common, name: 'neon', bindings: { ...vars, DATABASE_URL: db.url } },
      { ...common, name: 'neon-http', bindings: { ...vars, DATABASE_URL: db.url, DATABASE_DRIVER: 'neon-http' } },
    ].map(routed),
  });
  await mf.ready;
}, 120_000);

const worker = async (name: string) => workerStub(mf, name);
const scheduled = async (name: string) => (await worker(name)).scheduled({ cron: '* * * * *' });
const post = async (name: string) => {
  const response = await (await worker(name)).fetch('http://worker/drain',
    { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: await response.json() as any };
};

describe('Cloudflare Worker without @neondatabase/serverless installed', () => {
  it('bundles: the Neon import is left for run time, and no Neon code is in the bundle', () => {
    expect(bundle).toContain('import("@neondatabase/serverless")');
    expect(bundle).not.toMatch(/NeonDbError/); // a class of the package (the bundle with it holds it)
  });

  it('drains through Hyperdrive with pg', async () => {
    await db.sql(`select jobs.publish('math.sum', '{"a": 2, "b": 3}', timeout_seconds => 10)`);
    expect(await scheduled('hyperdrive')).toMatchObject({ outcome: 'ok' });
    expect(await db.sql(`select status, result from jobs.job`)).toEqual([{ status: 'success', result: { sum: 5 } }]);
  });

  it('asked for a Neon driver, fails naming the package and how to install it, and the jobs stay queued', async () => {
    await db.sql(`truncate jobs.job_queue, jobs.job`);
    await db.sql(`select jobs.publish('math.sum', '{"a": 1, "b": 1}', timeout_seconds => 10)`);
    const message = /^env\.DATABASE_DRIVER: the neon(-http)? driver.* needs @neondatabase\/serverless, which could not be loaded .*npm install @neondatabase\/serverless/;
    for (const name of ['neon', 'neon-http']) {
      expect(await post(name), name).toMatchObject({
        status: 500, body: { error: { code: 'not_configured', field: 'env.DATABASE_DRIVER', message: expect.stringMatching(message) } } });
      const logged = logs.length;
      expect(await scheduled(name), name).toMatchObject({ outcome: 'exception' });
      // workerd hands its logs over on their own: the line may come after the call's answer.
      await until(async () => /npm install @neondatabase\/serverless/.test(logs.slice(logged).join('\n')), `${name}: the logged fix`);
    }
    expect(await post('neon')).toMatchObject({ body: { error: { message: expect.stringMatching(/the neon driver \(the default without HYPERDRIVE\)/) } } });
    expect(await post('neon-http')).toMatchObject({ body: { error: { message: expect.stringMatching(/^env\.DATABASE_DRIVER: the neon-http driver needs/) } } });
    expect(await db.sql('select attempt from jobs.job_queue')).toEqual([{ attempt: 0 }]);
  });
});
