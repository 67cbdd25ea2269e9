// /healthz of a Worker or Lambda that has no usable credential answers, to
// anyone (it takes none), what is wrong by the setting's name and the rule,
// never a value. Before, a Worker with neither PGDRAIN_TOKEN nor
// PGDRAIN_HMAC_SECRET said "env.PGDRAIN_TOKEN: give a token, an hmacSecret or
// both: ...": createApp's option names, settings no Worker has. Every other
// route still answers 401 (test/cloudflare.test.ts, test/lambda-misconfigured.test.ts).
// A blank secret (only whitespace) is said to be blank, in the Worker, the Lambda and `pgdrain serve`
// alike, not "at least 16 characters" (or, 16+ spaces as the HMAC secret, taken); empty stays unset.
// The Worker in workerd (Miniflare), the Lambda handler in process, against a real PostgreSQL.
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { testDb } from './support/db.js';
import { compatibilityDate, compatibilityFlags, wranglerDryRun } from './support/worker-bundle.js';
import { routed, triggerHandlers, workerHarness } from './support/worker-calls.js';

const db = await testDb();
const SHORT = 'short-Secret-7'; // a value that must never come back
const workers = workerHarness('pgdrain-healthz-settings-');
const ENVS = {
  none: { DATABASE_URL: db.url },
  'short-token': { DATABASE_URL: db.url, PGDRAIN_TOKEN: SHORT },
  'short-secret': { DATABASE_URL: db.url, PGDRAIN_HMAC_SECRET: SHORT },
  'blank-token': { DATABASE_URL: db.url, PGDRAIN_TOKEN: ' '.repeat(20) },
  'blank-secret': { DATABASE_URL: db.url, PGDRAIN_TOKEN: 'healthz-settings-token-0123456789', PGDRAIN_HMAC_SECRET: ' \t'.repeat(10) },
} as const;
const BLANK = 'is set but blank (only whitespace): give a secret of at least 16 characters, or unset it';

beforeAll(async () => {
  await wranglerDryRun(['--outdir', workers.dir]);
  const common = { modules: true, modulesRoot: workers.dir, scriptPath: join(workers.dir, 'cloudflare-demo.js'),
                   compatibilityDate, compatibilityFlags };
  await workers.start({ ...triggerHandlers, workers: Object.entries(ENVS).map(([name, bindings]) => routed({ ...common, name, bindings })) });
}, 120_000);

async function workerHealthz(name: keyof typeof ENVS) {
  const response = await workers.stub(name).fetch('http://worker/healthz');
  return { status: response.status, text: await response.text() };
}

async function lambdaHealthz(env: Record<string, string>) {
  const host = 'abcdefghijklmnop.lambda-url.us-east-1.on.aws';
  const event = { version: '2.0', routeKey: '$default', rawPath: '/healthz', rawQueryString: '', headers: { host },
    requestContext: { accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: host, domainPrefix: 'abcdefghijklmnop',
                      requestId: randomUUID(), routeKey: '$default', stage: '$default', time: '23/Nov/2026:02:40:00 +0000',
                      timeEpoch: Date.now(), http: { method: 'GET', path: '/healthz', protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl' } } };
  const answer = await createLambdaHandler({}, env)(event, { getRemainingTimeInMillis: () => 30_000, awsRequestId: randomUUID() }) as
    { statusCode: number; body: string };
  return { status: answer.statusCode, text: answer.body };
}

const notConfigured = (field: string, message: string) => ({ status: 500, text: JSON.stringify({ error: { code: 'not_configured', message, field } }) });

it('the Worker names the bindings to set, and how', async () => {
  expect(await workerHealthz('none')).toEqual(notConfigured('env.PGDRAIN_TOKEN', 'env.PGDRAIN_TOKEN: is not set, nor '
    + 'PGDRAIN_HMAC_SECRET: set one (wrangler secret put PGDRAIN_TOKEN) to serve HTTP requests'));
  expect(await workerHealthz('short-token'))
    .toEqual(notConfigured('env.PGDRAIN_TOKEN', 'env.PGDRAIN_TOKEN: must be a string of at least 16 characters'));
  expect(await workerHealthz('short-secret'))
    .toEqual(notConfigured('env.PGDRAIN_HMAC_SECRET', 'env.PGDRAIN_HMAC_SECRET: must be a string of at least 16 characters'));
  for (const name of ['short-token', 'short-secret'] as const) expect((await workerHealthz(name)).text).not.toContain(SHORT);
  // Blank: said as such, not as too short (20 spaces were taken as an HMAC secret before).
  expect(await workerHealthz('blank-token')).toEqual(notConfigured('env.PGDRAIN_TOKEN', `env.PGDRAIN_TOKEN: ${BLANK}`));
  expect(await workerHealthz('blank-secret')).toEqual(notConfigured('env.PGDRAIN_HMAC_SECRET', `env.PGDRAIN_HMAC_SECRET: ${BLANK}`));
}, 60_000);

it('the Lambda names its variables the same way', async () => {
  expect(await lambdaHealthz(ENVS.none)).toEqual(notConfigured('PGDRAIN_TOKEN',
    'PGDRAIN_TOKEN: is not set, nor PGDRAIN_HMAC_SECRET: set one on the function to serve HTTP events'));
  expect(await lambdaHealthz(ENVS['short-token']))
    .toEqual(notConfigured('PGDRAIN_TOKEN', 'PGDRAIN_TOKEN: must be a string of at least 16 characters'));
  expect(await lambdaHealthz(ENVS['short-secret']))
    .toEqual(notConfigured('PGDRAIN_HMAC_SECRET', 'PGDRAIN_HMAC_SECRET: must be a string of at least 16 characters'));
  for (const env of [ENVS['short-token'], ENVS['short-secret']]) expect((await lambdaHealthz(env)).text).not.toContain(SHORT);
  expect(await lambdaHealthz(ENVS['blank-token'])).toEqual(notConfigured('PGDRAIN_TOKEN', `PGDRAIN_TOKEN: ${BLANK}`));
  expect(await lambdaHealthz(ENVS['blank-secret'])).toEqual(notConfigured('PGDRAIN_HMAC_SECRET', `PGDRAIN_HMAC_SECRET: ${BLANK}`));
});
