// A Worker's bindings and a Lambda's variables are refused with their rule in
// the project's words, as `pgdrain drain` refuses a bad PGDRAIN_* variable:
// 'must be an integer from 1 to 10000, got "lots"'. The value given is in
// the error (the log, a failed scheduled drain), never a secret's, and never in
// an HTTP answer (/healthz answers anyone). Before, zod's words came out
// ('Invalid input: expected number, received NaN', 'Invalid option: expected one
// of "hyperdrive"|...'), and '0x10', '1e3' were taken as a batch size.
// The Worker in workerd (Miniflare), the Lambda handler in process, against a real PostgreSQL.
import { randomUUID } from 'node:crypto';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { readSettings as workerSettings } from '../functions/cloudflare-settings.js';
import { createLambdaHandler } from '../functions/lambda.js';
import { readSettings as lambdaSettings } from '../functions/lambda-settings.js';
import { testDb } from './support/db.js';
import { demoWorker } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const TOKEN = 'adapter-setting-words-token-0123';
const harness = workerHarness('pgdrain-setting-words-');
// Not a URL (a scheme left out), with a key in its query.
const PROXY = '10.0.0.5:8080/v2?key=proxy-key-hunter2';
const SECONDS = 'must be a number of seconds greater than 0 and at most 840 (a cron invocation runs at most 15 minutes)';
// Binding, value, rule: each Worker has one bad binding.
const WORKER_CASES = [
  ['DRAIN_BATCH', 'abc', 'must be an integer from 1 to 1000'],
  ['DRAIN_BATCH', '0x10', 'must be an integer from 1 to 1000'],
  ['DRAIN_BATCH', '2.5', 'must be an integer from 1 to 1000'],
  ['DRAIN_DEADLINE_SECONDS', 'abc', SECONDS],
  ['DRAIN_DEADLINE_SECONDS', 'Infinity', SECONDS],
  ['DRAIN_DEADLINE_SECONDS', '0', SECONDS],
  ['DATABASE_DRIVER', 'mysql', 'must be hyperdrive, neon, neon-http or pg'],
  ['PGDRAIN_POLL_SECONDS', 'soon', 'must be a number of seconds from 0.05 to 3600'],
] as const;

beforeAll(async () => {
  const common = await demoWorker(harness.dir, db.url);
  await harness.start({ ...triggerHandlers, workers: WORKER_CASES.map(([binding, value], i) =>
    routed({ ...common, name: `w${i}`, bindings: { PGDRAIN_TOKEN: TOKEN, [binding]: value } })).concat(
    routed({ ...common, name: 'proxy', bindings: { PGDRAIN_TOKEN: TOKEN, DATABASE_DRIVER: 'neon', DATABASE_URL: db.url, NEON_WS_PROXY: PROXY } })) });
}, 120_000);

describe('the Worker', () => {
  it.each(WORKER_CASES.map((c, i) => [i, ...c] as const))('w%i: %s=%s', async (i, binding, value, rule) => {
    const response = await harness.stub(`w${i}`).fetch('http://worker/drain', {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: '{}' });
    expect([response.status, await response.json()]).toEqual([500,
      { error: { code: 'not_configured', field: `env.${binding}`, message: `env.${binding}: ${rule}` } }]);
    expect(await harness.stub(`w${i}`).scheduled()).toEqual({ outcome: 'exception' });
    // The error itself (what the Worker logs, and the failed cron drain throws) quotes the value.
    expect(() => workerSettings({ [binding]: value })).toThrow(`env.${binding}: ${rule}, got ${JSON.stringify(value)}`);
  });

  // As `pgdrain drain --linger 0x10` (and PGDRAIN_LINGER_SECONDS=0x10) refuses it: Number() read '0x10' as 16 s, '0b1' as 1.
  it.each([['PGDRAIN_LINGER_SECONDS', '0x10', 'from 0 to 86400'], ['PGDRAIN_POLL_SECONDS', '0b1', 'from 0.05 to 3600'],
           ['PGDRAIN_LINGER_SECONDS', '0o7', 'from 0 to 86400']])('%s=%s is refused, as the CLI refuses it', (binding, value, range) => {
    const rule = `must be a number of seconds ${range}, got ${JSON.stringify(value)}`;
    expect(() => workerSettings({ [binding]: value })).toThrow(`env.${binding}: ${rule}`);
    expect(() => lambdaSettings({ DATABASE_URL: db.url, [binding]: value })).toThrow(`${binding}: ${rule}`);
  });

  // The Neon driver's own check quoted it ('got "10.0.0.5:8080/v2?key=…"'), and /healthz answered that to anyone.
  it('NEON_WS_PROXY, refused by the Neon driver, is quoted in the log, not in an HTTP answer', async () => {
    const response = await harness.stub('proxy').fetch('http://worker/healthz');
    expect([response.status, await response.json()]).toEqual([500,
      { error: { code: 'not_configured', field: 'env.NEON_WS_PROXY', message: 'env.NEON_WS_PROXY: must be a ws:// or wss:// URL' } }]);
    expect(await harness.stub('proxy').scheduled()).toEqual({ outcome: 'exception' });
  });

  it('a secret binding is never quoted', () => {
    expect(() => workerSettings({ DATABASE_URL: 'mysql://u:hunter2-secret@h/db' })).toThrow(/^env\.DATABASE_URL: must be a postgres:\/\/ URL$/);
  });
});

describe('the Lambda', () => {
  const context = () => ({ getRemainingTimeInMillis: () => 30_000, awsRequestId: randomUUID() });
  const scheduled = { version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {},
                      time: '2026-11-23T02:40:00Z', region: 'us-east-1', resources: [] };
  const host = 'abcdefghijklmnop.lambda-url.us-east-1.on.aws';
  const healthz = { version: '2.0', routeKey: '$default', rawPath: '/healthz', rawQueryString: '', headers: { host },
    requestContext: { accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: host, domainPrefix: 'abcdefghijklmnop',
                      requestId: randomUUID(), routeKey: '$default', stage: '$default', time: '23/Nov/2026:02:40:00 +0000',
                      timeEpoch: Date.now(), http: { method: 'GET', path: '/healthz', protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl' } } };

  it.each([
    ['PGDRAIN_BATCH_SIZE', 'lots', 'must be an integer from 1 to 10000'],
    ['PGDRAIN_BATCH_SIZE', '1e3', 'must be an integer from 1 to 10000'],
    ['PGDRAIN_SAFETY_MARGIN_MS', '-1', 'must be an integer from 0 to 60000'],
    ['PGDRAIN_POOL_MAX', '101', 'must be an integer from 1 to 100'],
    ['PGDRAIN_MAX_BUDGET_SECONDS', '0', 'must be an integer from 1 to 900'],
    ['PGDRAIN_API_GATEWAY_TIMEOUT_SECONDS', '30s', 'must be an integer from 1 to 900'],
    ['PGDRAIN_QUEUE', 'bad q', 'must be dot-separated words of letters, digits, _ : or -'],
    ['PGDRAIN_LINGER_SECONDS', 'long', 'must be a number of seconds from 0 to 86400'],
  ])('%s=%s', async (variable, value, rule) => {
    const env = { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN, [variable]: value };
    vi.spyOn(console, 'error').mockImplementation(() => {});
    try {
      const handler = createLambdaHandler({}, env);
      await expect(handler(scheduled, context())).rejects.toThrow(`${variable}: ${rule}, got ${JSON.stringify(value)}`);
      const answer = await createLambdaHandler({}, env)(healthz, context()) as { statusCode: number; body: string };
      expect([answer.statusCode, JSON.parse(answer.body)]).toEqual([500,
        { error: { code: 'not_configured', field: variable, message: `${variable}: ${rule}` } }]);
    } finally {
      vi.restoreAllMocks();
    }
  });

  // A schedule's input too: a topic past 200 characters was refused in zod's words ('Too big: expected string
  // to have <=200 characters'), one of only whitespace was let through to fail as the drain's options.topic.
  it.each([['too long', 'x'.repeat(201), 'must be at most 200 characters'], ['blank', ' \t', 'must be a non-empty pattern'],
            ['a number', 5, 'must be a string']])('a schedule\'s pgdrain.topic, %s', async (_, topic, rule) => {
    const handler = createLambdaHandler({}, { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN });
    await expect(handler({ ...scheduled, pgdrain: { topic } }, context())).rejects.toThrow(new RegExp(`^event\\.pgdrain\\.topic: ${rule}$`));
  });

  it('DATABASE_URL is never quoted', () => {
    expect(() => lambdaSettings({ DATABASE_URL: 'mysql://u:hunter2-secret@h/db' })).toThrow(/^DATABASE_URL: must be a postgres:\/\/ URL$/);
  });
});
