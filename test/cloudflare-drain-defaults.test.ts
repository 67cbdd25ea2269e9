// The Worker's DRAIN_TOPIC, DRAIN_QUEUE, DRAIN_FILTER and DRAIN_EXCLUDE are
// the defaults of POST /drain, as DRAIN_BATCH and DRAIN_DEADLINE_SECONDS are,
// not the cron drain's alone: a Worker deployed to drain the mail queue
// drains it when asked over HTTP with no body. A request's own field
// replaces its binding (as a Lambda schedule's input replaces a variable);
// the others still apply. The demo Worker, bundled by `wrangler deploy
// --dry-run`, in workerd (Miniflare) through Hyperdrive.
import { beforeAll, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { publishSelectionJobs, selectionOutcome } from './support/selection-jobs.js';
import { demoWorker } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'drain-defaults-token-0123456789';
const harness = workerHarness('pgdrain-worker-defaults-');
const outdir = harness.dir;

beforeAll(async () => {
  const common = await demoWorker(outdir, db.url);
  const worker = (name: string, bindings: Record<string, unknown>) =>
    routed({ ...common, name, bindings: { PGDRAIN_TOKEN: TOKEN, DRAIN_DEADLINE_SECONDS: '30', ...bindings } });
  await harness.start({
    ...triggerHandlers,
    workers: [
      worker('us-not-acme', { DRAIN_FILTER: '{"region":"us"}', DRAIN_EXCLUDE: [{ partner: 'acme' }] }),
      worker('mail-sums', { DRAIN_QUEUE: 'mail', DRAIN_TOPIC: 'demo.math.%' }),
    ],
  });
}, 180_000);

const post = async (name: string, body: unknown) => {
  const response = await harness.stub(name).fetch('http://worker/drain', {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() as any };
};
const { ran } = selectionOutcome(db);

describe('POST /drain to the Worker takes DRAIN_* as its defaults', () => {
  it('DRAIN_FILTER and DRAIN_EXCLUDE apply to a request that gives none; one given replaces its binding only', async () => {
    await publishSelectionJobs(db, queue, 'demo.math.sum');
    expect(await post('us-not-acme', {})).toMatchObject({ status: 200, body: { claimed: 2, succeeded: 2 } });
    expect(await ran()).toEqual(['us', 'us-bob-gold']);
    // Its own filter; DRAIN_EXCLUDE still keeps acme out.
    expect(await post('us-not-acme', { filter: { region: 'eu' } })).toMatchObject({ status: 200, body: { claimed: 1 } });
    expect(await ran()).toEqual(['eu', 'us', 'us-bob-gold']);
    // Its own exclude, none: acme's jobs of the region DRAIN_FILTER names.
    expect(await post('us-not-acme', { exclude: [] })).toMatchObject({ status: 200, body: { claimed: 1 } });
    expect(await ran()).toEqual(['eu', 'us', 'us-acme', 'us-bob-gold']);
  });

  it('DRAIN_QUEUE and DRAIN_TOPIC apply to a request that gives none, as to the cron drain; one given replaces its binding', async () => {
    await db.sql(`truncate jobs.job_queue, jobs.job; select jobs.create_queue('mail')`);
    try {
      const sum = (queueName: string) => queue.publish('demo.math.sum', { a: 1, b: 2 }, { queue: queueName, timeoutSeconds: 5 });
      const [mailSum, , defaultSum] = [await sum('mail'),
        await queue.publish('demo.audit.log', { event: 'x' }, { queue: 'mail', timeoutSeconds: 5 }), await sum('default')];
      const succeeded = async () => (await db.sql<{ job_id: string }>(`select job_id::text from jobs.job where status = 'success' order by 1`))
        .map((r) => r.job_id);
      expect(await post('mail-sums', {})).toMatchObject({ status: 200, body: { claimed: 1, succeeded: 1 } });
      expect(await succeeded()).toEqual([mailSum]);
      expect(await post('mail-sums', { queue: 'default' })).toMatchObject({ status: 200, body: { claimed: 1, succeeded: 1 } });
      expect(await succeeded()).toEqual([mailSum, defaultSum].sort());
      expect(await post('mail-sums', { topic: 'demo.audit.%' })).toMatchObject({ status: 200, body: { claimed: 1, succeeded: 1 } });
      expect(await db.sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
    } finally {
      await db.sql(`truncate jobs.job_queue, jobs.job; delete from jobs.queue where name = 'mail'`);
    }
  });
});
