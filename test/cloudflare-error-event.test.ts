// A Worker handler that rejects with an event, as the Neon driver's
// WebSocket does ("Network connection lost."): in workerd an ErrorEvent's
// fields are getters of the runtime's own, JSON shows '{}', and the job kept
// 'non-Error thrown: {}'. The job's stored error names its type, message and
// error. A Worker of our own (createWorker, as the README says to write one)
// bundled by `wrangler deploy --dry-run`, run by Miniflare through Hyperdrive.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { compatibilityDate, compatibilityFlags, hyperdriveUrl, root, wranglerDryRun } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const harness = workerHarness('pgdrain-worker-event-');
const dir = harness.dir;

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
  await harness.start({
    ...triggerHandlers,
    workers: [routed({ name: 'event', modules: true, modulesRoot: out, scriptPath: join(out, 'worker.js'), compatibilityDate,
                       compatibilityFlags, hyperdrives: { HYPERDRIVE: hyperdriveUrl(db.url) } })],
  });
}, 180_000);

it('in workerd, a job whose handler rejects with an ErrorEvent keeps its type, message and error', async () => {
  const id = await queue.publish('lost', {}, { maxRetries: 0, timeoutSeconds: 5 });
  expect(await harness.stub('event').scheduled()).toEqual({ outcome: 'ok' });
  const [row] = await db.sql<{ error: string }>('select error from jobs.job where job_id = $1', [id]);
  expect(row!.error).toMatch(/^non-Error thrown: ErrorEvent \{"type":"error","message":"Network connection lost\."\}\nCaused by: Error: socket closed\n/);
}, 60_000);
