// The Lambda handler whose settings are wrong (no DATABASE_URL, a bad
// variable, no usable PGDRAIN_TOKEN / PGDRAIN_HMAC_SECRET), as the Worker
// answers then: an HTTP caller whose credentials pass gets 500
// not_configured naming the variable; anyone else gets 401, on every route,
// and learns nothing of the configuration; /healthz, which takes no
// credentials, says what is wrong; the misconfiguration is logged; a
// scheduled invocation fails naming it. The handler runs in-process with
// Function URL and API Gateway (REST, named stage) events, against a real
// PostgreSQL.
import { createHmac, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'lambda-misconfigured-token-0123';
const SECRET = 'lambda-misconfigured-secret-0123';
const tasks = { work: { quick: async () => 'ok' } };
const context = () => {
  const end = Date.now() + 30_000;
  return { getRemainingTimeInMillis: () => end - Date.now(), awsRequestId: randomUUID() };
};

function functionUrl(method: string, path: string, headers: Record<string, string>, body?: string) {
  return {
    version: '2.0', routeKey: '$default', rawPath: path, rawQueryString: '',
    headers: { host: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws', 'content-type': 'application/json', ...headers },
    requestContext: {
      accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws',
      domainPrefix: 'abcdefghijklmnop', requestId: randomUUID(), routeKey: '$default', stage: '$default',
      time: '23/Nov/2026:02:40:00 +0000', timeEpoch: Date.now(),
      http: { method, path, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
    },
    ...(body === undefined ? {} : { body, isBase64Encoded: false }),
  };
}
/** API Gateway REST (payload 1.0) on stage prod: `path` without the stage, requestContext.path with it. */
function restApi(method: string, path: string, headers: Record<string, string>) {
  const host = 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com';
  const all = { host, ...headers };
  return {
    resource: '/{proxy+}', path, httpMethod: method, headers: all,
    multiValueHeaders: Object.fromEntries(Object.entries(all).map(([k, v]) => [k, [v]])),
    queryStringParameters: null, multiValueQueryStringParameters: null, pathParameters: { proxy: path.slice(1) }, stageVariables: null,
    requestContext: { resourcePath: '/{proxy+}', httpMethod: method, path: `/prod${path}`, accountId: '123456789012', stage: 'prod',
                      requestTimeEpoch: Date.now(), requestId: randomUUID(), domainName: host, apiId: 'a1b2c3d4e5' },
    body: null, isBase64Encoded: false,
  };
}
const scheduled = { version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {},
                    time: '2026-11-23T02:40:00Z', region: 'us-east-1', resources: [] };

function signed(method: string, path: string, body: string): Record<string, string> {
  const ts = (Date.now() / 1000).toFixed(3);
  const mac = createHmac('sha256', SECRET).update(`${ts}\n${method}\n${path}\n${body}`).digest('hex');
  return { 'x-pgdrain-timestamp': ts, 'x-pgdrain-signature': `sha256=${mac}` };
}

type Handler = ReturnType<typeof createLambdaHandler>;
async function call(handler: Handler, event: unknown): Promise<{ status: number; body: any }> {
  const answer = await handler(event, context()) as { statusCode: number; body: string };
  return { status: answer.statusCode, body: JSON.parse(answer.body) };
}

// Every route of the app, with a body where it takes one.
const ROUTES = [['POST', '/drain', '{}'], ['POST', '/jobs', '{"task":"work.quick"}'], ['POST', '/events/signup', '{}'],
                ['GET', '/jobs'], ['GET', '/jobs/1'], ['GET', '/stats'], ['GET', '/metrics'], ['GET', '/dashboard'],
                ['POST', '/dashboard/pause', 'queue=default'], ['GET', '/no-such-route']] as const;
const ANONYMOUS: Record<string, string>[] = [{}, { authorization: 'Bearer not-the-token-0123456789' },
                                              { authorization: `Basic ${btoa('x:wrong-password-0123456')}` }];

let logged: string[];
beforeEach(() => {
  logged = [];
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => { logged.push(args.join(' ')); });
});
afterEach(() => { vi.restoreAllMocks(); });

const good = { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: SECRET };

describe('a Lambda whose settings are wrong', () => {
  for (const [what, env, field] of [
    ['no DATABASE_URL', { PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: SECRET }, 'DATABASE_URL'],
    ['a bad PGDRAIN_BATCH_SIZE', { ...good, PGDRAIN_BATCH_SIZE: 'lots' }, 'PGDRAIN_BATCH_SIZE'],
    ['a PGDRAIN_FILTER that is no JSON', { ...good, PGDRAIN_FILTER: '{"tenant": acme-internal}' }, 'PGDRAIN_FILTER'],
  ] as const) {
    it(`${what}: 401 to a caller without credentials on every route, 500 naming ${field} to one with; logged; schedules fail`, async () => {
      const handler = createLambdaHandler(tasks, env);
      for (const [method, path, body] of ROUTES) {
        for (const headers of ANONYMOUS) {
          const answer = await call(handler, functionUrl(method, path, headers, body));
          expect(answer, `${method} ${path} ${JSON.stringify(headers)}`).toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
          expect(JSON.stringify(answer.body), `${method} ${path}`).not.toContain(field);
        }
        const notConfigured = { status: 500, body: { error: { code: 'not_configured', field, message: expect.stringMatching(`^${field}: `) } } };
        expect(await call(handler, functionUrl(method, path, { authorization: `Bearer ${TOKEN}` }, body)), `${method} ${path}`)
          .toEqual(notConfigured);
        expect(await call(handler, functionUrl(method, path, signed(method, path, body ?? ''), body)), `${method} ${path} signed`)
          .toEqual(notConfigured);
      }
      // Behind API Gateway on a stage: routed as the app routes (the stage is no route), credentials first all the same.
      expect(await call(handler, restApi('POST', '/drain', {}))).toMatchObject({ status: 401 });
      expect(await call(handler, restApi('GET', '/healthz', {}))).toMatchObject({ status: 500, body: { error: { field } } });
      expect(await call(handler, functionUrl('GET', '/healthz', {}))).toMatchObject({
        status: 500, body: { error: { code: 'not_configured', field } } });
      // /healthz tells anyone the rule, never the setting's value (Node's JSON.parse quotes it).
      expect(JSON.stringify(await call(handler, functionUrl('GET', '/healthz', {})))).not.toMatch(/acme|lots/);
      expect(logged.length).toBeGreaterThan(0);
      expect(logged.every((line) => line.startsWith(`pgdrain: the function is misconfigured: ${field}: `))).toBe(true);
      await expect(handler(scheduled, context())).rejects.toMatchObject({ name: 'ValidationError', field });
    });
  }

  for (const [what, env, field] of [
    ['neither PGDRAIN_TOKEN nor PGDRAIN_HMAC_SECRET', { DATABASE_URL: db.url }, 'PGDRAIN_TOKEN'],
    ['a PGDRAIN_TOKEN with a space in it', { DATABASE_URL: db.url, PGDRAIN_TOKEN: 'a token with spaces 0123' }, 'PGDRAIN_TOKEN'],
  ] as const) {
    it(`${what}: every HTTP caller gets 401, /healthz names ${field}, logged; scheduled drains still run`, async () => {
      const handler = createLambdaHandler(tasks, env);
      for (const [method, path, body] of ROUTES) {
        for (const headers of [...ANONYMOUS, { authorization: `Bearer ${TOKEN}` }, { authorization: `Bearer ${env.PGDRAIN_TOKEN ?? ''}` }]) {
          expect(await call(handler, functionUrl(method, path, headers, body)), `${method} ${path} ${JSON.stringify(headers)}`)
            .toMatchObject({ status: 401, body: { error: { code: 'unauthorized' } } });
        }
      }
      expect(await call(handler, functionUrl('GET', '/healthz', {}))).toMatchObject({
        status: 500, body: { error: { code: 'not_configured', field, message: expect.stringMatching(`^${field}: `) } } });
      expect(logged.length).toBeGreaterThan(0);
      expect(logged.every((line) => line.startsWith(`pgdrain: the function is misconfigured: ${field}: `))).toBe(true);
      expect(await handler(scheduled, context())).toMatchObject({ stoppedBy: 'empty' });
    });
  }
});

describe('a Lambda\'s DATABASE_URL', () => {
  it('POSTGRES:// (the scheme in capitals) is a postgres:// URL, as pg reads it: HTTP and scheduled drains run', async () => {
    await db.sql('truncate jobs.job_queue, jobs.job');
    const handler = createLambdaHandler(tasks, { ...good, DATABASE_URL: db.url.replace(/^postgres(ql)?:/, 'POSTGRES:') });
    const job = '{"task":"work.quick","timeoutSeconds":5}';
    expect(await call(handler, functionUrl('POST', '/jobs', { authorization: `Bearer ${TOKEN}` }, job))).toMatchObject({ status: 201 });
    expect(await handler(scheduled, context())).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(logged).toEqual([]);
  });
});
