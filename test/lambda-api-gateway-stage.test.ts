// API Gateway in front of the Lambda handler with a named stage, as AWS
// delivers its events: a REST API (payload 1.0) gives the path without the
// stage in `path` and the path as requested (`/prod/jobs`) in
// requestContext.path; an HTTP API (payload 2.0) on a stage other than
// $default gives the path as requested, stage first, in rawPath. A caller
// uses the URL it was given (https://ID.execute-api.REGION.amazonaws.com/prod/jobs)
// and signs that path.
import { createHmac, randomUUID } from 'node:crypto';
import { beforeEach, expect, it } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { testDb } from './support/db.js';

const db = await testDb();
const TOKEN = 'lambda-token-0123456789abcdef';
const SECRET = 'lambda-hmac-secret-0123456789';
const handler = createLambdaHandler({ work: { quick: async () => 'ok' } },
  { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN, PGDRAIN_HMAC_SECRET: SECRET });
/** A context whose remaining time runs down, as Lambda's does. */
const context = (ms = 30_000) => {
  const end = Date.now() + ms;
  return { getRemainingTimeInMillis: () => end - Date.now(), awsRequestId: randomUUID() };
};
const HOST = 'a1b2c3d4e5.execute-api.us-east-1.amazonaws.com';

function signed(method: string, pathAndQuery: string, body: string): Record<string, string> {
  const ts = (Date.now() / 1000).toFixed(3);
  const mac = createHmac('sha256', SECRET).update(`${ts}\n${method}\n${pathAndQuery}\n${body}`).digest('hex');
  return { 'x-pgdrain-timestamp': ts, 'x-pgdrain-signature': `sha256=${mac}` };
}

function restApi(method: string, path: string, body: string | null, extra: Record<string, string>) {
  const headers = { host: HOST, 'content-type': 'application/json', ...extra };
  return {
    resource: '/{proxy+}', path, httpMethod: method, headers,
    multiValueHeaders: Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: null, multiValueQueryStringParameters: null, pathParameters: { proxy: path.slice(1) }, stageVariables: null,
    requestContext: {
      resourceId: 'abc123', resourcePath: '/{proxy+}', httpMethod: method, requestTime: '06/Dec/2026:07:30:00 +0000',
      path: `/prod${path}`, accountId: '123456789012', protocol: 'HTTP/1.1', stage: 'prod', domainPrefix: 'a1b2c3d4e5',
      requestTimeEpoch: Date.now(), requestId: randomUUID(), identity: { sourceIp: '203.0.113.7' },
      domainName: HOST, apiId: 'a1b2c3d4e5',
    },
    body, isBase64Encoded: false,
  };
}

function httpApi(method: string, path: string, body: string | null, extra: Record<string, string>) {
  const rawPath = `/prod${path}`;
  return {
    version: '2.0', routeKey: 'ANY /{proxy+}', rawPath, rawQueryString: '',
    headers: { host: HOST, 'content-type': 'application/json', ...extra },
    requestContext: {
      accountId: '123456789012', apiId: 'a1b2c3d4e5', domainName: HOST, domainPrefix: 'a1b2c3d4e5',
      requestId: randomUUID(), routeKey: 'ANY /{proxy+}', stage: 'prod', time: '06/Dec/2026:07:30:00 +0000', timeEpoch: Date.now(),
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
    },
    pathParameters: { proxy: path.slice(1) },
    ...(body === null ? {} : { body, isBase64Encoded: false }),
  };
}

beforeEach(async () => {
  await db.sql('truncate jobs.job_queue, jobs.job');
});

for (const [name, event] of [['a REST API', restApi], ['an HTTP API', httpApi]] as const) {
  it(`behind ${name} on a named stage: routes answer, and a request signed over the URL's path is taken`, async () => {
    const body = JSON.stringify({ task: 'work.quick' });
    const withToken = await handler(event('POST', '/jobs', body, { authorization: `Bearer ${TOKEN}` }), context()) as any;
    expect([withToken.statusCode, JSON.parse(withToken.body)]).toEqual([201, { id: expect.any(String) }]);
    const stats = await handler(event('GET', '/stats', null, { authorization: `Bearer ${TOKEN}` }), context()) as any;
    expect(stats.statusCode).toBe(200);
    const page = await handler(event('GET', '/dashboard', null, { authorization: `Bearer ${TOKEN}` }), context()) as any;
    expect([page.statusCode, page.body]).toEqual([200, expect.stringContaining('<h1>pgdrain</h1>')]);
    const bySignature = await handler(event('POST', '/jobs', body, signed('POST', '/prod/jobs', body)), context()) as any;
    expect([bySignature.statusCode, JSON.parse(bySignature.body)]).toEqual([201, { id: expect.any(String) }]);
    // The stage is no route of its own: /prod alone, or another stage's name, is still an unknown route.
    const unknown = await handler(event('GET', '/nope', null, { authorization: `Bearer ${TOKEN}` }), context()) as any;
    expect([unknown.statusCode, JSON.parse(unknown.body).error.code]).toEqual([404, 'not_found']);
  });
}
