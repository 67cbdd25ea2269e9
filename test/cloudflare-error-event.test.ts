// A Worker handler that rejects with an event, as the Neon driver's
// WebSocket does ("Network connection lost."): in workerd an ErrorEvent's
// fields are getters of the runtime's own, JSON shows '{}', and the job kept
// 'non-Error thrown: {}'. The job's stored error names its type, message and
// error. A Worker of our own (createWorker, as the README says to write one)
// bundled by `wrangler deploy --dry-run`, run by Miniflare through Hyperdrive.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Miniflare } from 'miniflare';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { compatibilityDate, compatibilityFlags, hyperdriveUrl, root, wranglerDryRun } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerStub } from './support/worker-calls.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const dir = mkdtempSync(join(tmpdir(), 'pgdrain-worker-event-'));
let mf: Miniflare | undefined;

afterAll(async () => {
  await mf?.dispose();
  rmSync(dir, { recursive: true, force: true });
});

beforeAll(async () => {
  writeFileSync(join(dir, 'worker.mjs'), `
import { createWorker } from ${JSON.stringify(join(root, 'functions/cloudflare.ts'))};
export default createWorker({
  lost: async () => { throw new ErrorEvent('error', { message: 'Network connection lost.', error: new Error('socket closed') }); },
});
`);
  writeFileSync(join(dir, 'wrangler.toml'), `name = "pgdrain-event"\nmain = "worker.mjs"\ncompatibility_date = "${compatibilityDate}"\n`
    + `compatibility_flags = ${JSON.stringify(compatibilityFlags)}\n`);
  const out = join(dir, 'out');
  mkdirSync(out);
  await wranglerDryRun(['--outdir', out, '--config', join(dir, 'wrangler.toml')]);
  mf = new Miniflare({
    ...triggerHandlers,
    workers: [routed({ name: 'event', modules: true, modulesRoot: out, scriptPath: join(out, 'worker.js'), compatibilityDate,
                       compatibilityFlags, hyperdrives: { HYPERDRIVE: hyperdriveUrl(db.url) } })],
  });
  await mf.ready;
}, 180_000);

it('in workerd, a job whose handler rejects with an ErrorEvent keeps its type, message and error', async () => {
  const id = await queue.publish('lost', {}, { maxRetries: 0, timeoutSeconds: 5 });
  expect(await workerStub(mf!, 'event').scheduled()).toEqual({ outcome: 'ok' });
  const [row] = await db.sql<{ error: string }>('select error from jobs.job where job_id = $1', [id]);
  expect(row!.error).toMatch(/^non-Error thrown: ErrorEvent \{"type":"error","message":"Network connection lost\."\}\nCaused by: Error: socket closed\n/);
}, 60_000);
