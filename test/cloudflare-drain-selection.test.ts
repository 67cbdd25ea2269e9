// The Cloudflare Worker's cron drain takes a filter and an exclude from
// DRAIN_FILTER / DRAIN_EXCLUDE (JSON text, or a JSON [vars] value), and its
// POST /drain takes them in the body. The demo Worker, bundled by `wrangler
// deploy --dry-run`, runs in workerd through Miniflare (as in
// test/cloudflare.test.ts), reaching the test PostgreSQL through Hyperdrive.
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { demoWorker } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';
import { ALL_JOBS, publishSelectionJobs, selectionOutcome } from './support/selection-jobs.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'selection-drain-token-0123456789';
const harness = workerHarness('pgdrain-worker-selection-');
const outdir = harness.dir;

beforeAll(async () => {
  const common = await demoWorker(outdir, db.url);
  const vars = { PGDRAIN_TOKEN: TOKEN, DRAIN_DEADLINE_SECONDS: '30' };
  const worker = (name: string, bindings: Record<string, unknown>) => routed({ ...common, name, bindings: { ...vars, ...bindings } });
  await harness.start({
    ...triggerHandlers,
    workers: [
      worker('text', { DRAIN_FILTER: '{"region":"eu"}', DRAIN_EXCLUDE: '[{"partner":"acme"}]' }),
      // [vars] DRAIN_EXCLUDE = [{ partner = "acme" }, { tier = "gold" }]: the Worker gets JSON, not text.
      worker('json-vars', { DRAIN_EXCLUDE: [{ partner: 'acme' }, { tier: 'gold' }] }),
      worker('plain', {}),
      worker('bad-filter', { DRAIN_FILTER: '{region:eu}' }),
      worker('bad-filter-array', { DRAIN_FILTER: '["eu"]' }),
      worker('bad-exclude', { DRAIN_EXCLUDE: '[{"partner":"acme"},3]' }),
      worker('bad-exclude-object', { DRAIN_EXCLUDE: '{"partner":"acme"}' }),
      // Set but blank: a mistake (a [vars] line left half-written), as the CLI's PGDRAIN_EXCLUDE='' is, not "none".
      worker('blank-filter', { DRAIN_FILTER: '' }),
      worker('blank-exclude', { DRAIN_EXCLUDE: ' ' }),
      worker('blank-topic', { DRAIN_TOPIC: ' \t' }),
      worker('long-topic', { DRAIN_TOPIC: 'x'.repeat(201) }),
    ],
  });
}, 180_000);

const scheduled = (name: string) => harness.stub(name).scheduled();
const post = async (name: string, body: unknown) => {
  const response = await harness.stub(name).fetch('http://worker/drain', {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() as any };
};

const { ran, untouched } = selectionOutcome(db);
beforeEach(() => publishSelectionJobs(db, queue, 'demo.math.sum'));

describe('Worker drains with filter and exclude', () => {
  it('the cron drain claims what DRAIN_FILTER and DRAIN_EXCLUDE select, as text or as JSON [vars]', async () => {
    expect(await scheduled('text')).toMatchObject({ outcome: 'ok' });
    expect(await ran()).toEqual(['eu']);
    expect(await scheduled('json-vars')).toMatchObject({ outcome: 'ok' });
    expect(await ran()).toEqual(['eu', 'plain', 'us']);
    expect(await untouched()).toEqual(['eu-acme', 'us-acme', 'us-bob-gold']);
  });

  it('POST /drain to the Worker takes filter and exclude in its body', async () => {
    expect(await post('plain', { filter: { partner: 'acme' }, exclude: [{ region: 'eu' }] }))
      .toMatchObject({ status: 200, body: { claimed: 1, succeeded: 1 } });
    expect(await ran()).toEqual(['us-acme']);
    expect(await post('plain', { exclude: [{ partner: 'acme' }, 'bob'] })).toMatchObject({ status: 400, body: { error: {
      code: 'invalid_argument', field: 'exclude[1]', message: 'exclude[1]: must be a JSON object' } } });
  });

  it('a bad or blank DRAIN_FILTER, DRAIN_EXCLUDE or DRAIN_TOPIC fails the cron drain and answers HTTP 500 naming it, and claims nothing', async () => {
    for (const [name, field, message] of [
      ['bad-filter', 'env.DRAIN_FILTER', /^env\.DRAIN_FILTER: must be valid JSON text, e\.g\./],
      ['bad-filter-array', 'env.DRAIN_FILTER', /^env\.DRAIN_FILTER: must be a JSON object$/],
      ['bad-exclude', 'env.DRAIN_EXCLUDE[1]', /^env\.DRAIN_EXCLUDE\[1\]: must be a JSON object$/],
      ['bad-exclude-object', 'env.DRAIN_EXCLUDE', /^env\.DRAIN_EXCLUDE: must be an array of JSON objects$/],
      ['blank-filter', 'env.DRAIN_FILTER', /^env\.DRAIN_FILTER: is set but empty: give a value or unset it$/],
      ['blank-exclude', 'env.DRAIN_EXCLUDE', /^env\.DRAIN_EXCLUDE: is set but empty: give a value or unset it$/],
      ['blank-topic', 'env.DRAIN_TOPIC', /^env\.DRAIN_TOPIC: is set but empty: give a value or unset it$/],
      ['long-topic', 'env.DRAIN_TOPIC', /^env\.DRAIN_TOPIC: must be at most 200 characters$/],
    ] as const) {
      expect(await scheduled(name), name).toMatchObject({ outcome: 'exception' });
      expect(await post(name, {}), name).toMatchObject({ status: 500, body: { error: {
        code: 'not_configured', field, message: expect.stringMatching(message) } } });
    }
    expect(await untouched()).toEqual(ALL_JOBS);
  });
});
