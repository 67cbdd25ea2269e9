// The Worker's POST /drain, in workerd (Miniflare) on the demo bundle, whose
// first claim committed but whose answer was lost (the connection dropped as
// the server answered: test/support/reply-drop-proxy.ts, behind the
// Hyperdrive binding): its 503 answer carries lostClaimReleased, as
// `pgdrain serve`'s and the Lambda's do (http-drain-lost-claim), and the jobs
// wait again, attempt unspent.
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { replyDropProxy, type ReplyDropProxy } from './support/reply-drop-proxy.js';
import { demoWorker } from './support/worker-bundle.js';
import { routed, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const TOKEN = 'worker-lost-claim-token-0123456789';
const harness = workerHarness('pgdrain-worker-lost-claim-');
let proxy: ReplyDropProxy;

beforeAll(async () => {
  proxy = await replyDropProxy(db.url);
  const common = await demoWorker(harness.dir, proxy.url);
  await harness.start({ workers: [routed({ ...common, name: 'w', bindings: { PGDRAIN_TOKEN: TOKEN, DRAIN_DEADLINE_SECONDS: '30' } })] });
}, 180_000);
afterAll(() => proxy?.close());
beforeEach(() => db.sql('truncate jobs.job_queue, jobs.job'));

it("the Worker's POST /drain answer carries lostClaimReleased", async () => {
  await db.sql(`select jobs.publish('demo.math.sum', '{"a": 1, "b": 2}', timeout_seconds => 5) from generate_series(1, 2)`);
  const dropped = proxy.dropReplyTo('jobs.claim_json');
  const response = await harness.stub('w').fetch('http://worker/drain', {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ batchSize: 10, budgetSeconds: 20 }) });
  const text = await response.text();
  await dropped;
  expect({ status: response.status, body: JSON.parse(text) }).toEqual({ status: 503, body: { error: {
    code: 'database_unavailable', message: 'database unavailable', field: null, lostClaimReleased: 2 } } });
  expect(await db.sql('select count(*)::int as n from jobs.job_queue where lease_until is null and attempt = 0')).toEqual([{ n: 2 }]);
}, 60_000);
