// POST /drain whose claim committed but whose answer was lost (the
// connection dropped as the server answered: test/support/reply-drop-proxy.ts)
// gives that claim's jobs back (jobs.release_holder) and its error says how
// many (PgDrainError.lostClaimReleased). The 503's message hides a database
// error's words, the count's with them: the answer carried none, so its caller
// could not tell those jobs run again at once, attempt unspent. It now carries
// lostClaimReleased, as it carries unrecorded.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, expect, it } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { pgDriver } from '../src/db/pg.js';
import { createApp, type ErrorBody } from '../src/http/index.js';
import { errorAnswer } from '../src/http/errors.js';
import { createQueue, PgDrainError } from '../src/index.js';
import { testDb } from './support/db.js';
import { replyDropProxy, type ReplyDropProxy } from './support/reply-drop-proxy.js';

const db = await testDb();
let proxy: ReplyDropProxy;
beforeAll(async () => {
  proxy = await replyDropProxy(db.url);
});
afterAll(() => proxy.close());
beforeEach(() => db.sql('truncate jobs.job_queue, jobs.job'));
const TOKEN = 'http-drain-lost-claim-token-0123456789';

it("POST /drain's error answer says how many jobs of a lost claim were given back", async () => {
  let ran = 0;
  const queue = createQueue({ driver: pgDriver(proxy.url), tasks: { work: async () => { ran++; } } });
  await queue.publishBulk([{ task: 'work', body: {} }, { task: 'work', body: {} }]);
  const server = createApp({ queue, token: TOKEN, onError: () => {} });
  try {
    const dropped = proxy.dropReplyTo('jobs.claim_json'); // the first claim commits, both jobs leased; its answer is lost
    const res = await server.request('/drain', { method: 'POST', body: JSON.stringify({ batchSize: 10, budgetSeconds: 120 }),
                                                 headers: { Authorization: `Bearer ${TOKEN}`, 'Content-Type': 'application/json' } });
    await dropped;
    expect(ran).toBe(0);
    expect(res.status).toBe(503);
    // Unfixed: { code, message: 'database unavailable', field: null }, no count.
    expect(await res.json() as ErrorBody).toEqual({ error: { code: 'database_unavailable', message: 'database unavailable',
                                                             field: null, lostClaimReleased: 2 } });
    expect(await db.sql('select count(*)::int as n from jobs.job_queue where lease_until is null and attempt = 0'))
      .toEqual([{ n: 2 }]);
  } finally {
    await queue.close();
  }
});

it('the error answer carries lostClaimReleased only as a whole number over 0', () => {
  const withCount = (lostClaimReleased: unknown) => Object.assign(new PgDrainError('database_unavailable', 'gone'), { lostClaimReleased });
  expect(errorAnswer(withCount(3)).lostClaimReleased).toBe(3);
  for (const odd of [0, -1, 1.5, '3', { n: 3 }, null]) expect(errorAnswer(withCount(odd))).not.toHaveProperty('lostClaimReleased');
});

// The Lambda's HTTP answer is this app's: a Function URL event to the handler answers the same.
it("the Lambda's POST /drain answer carries lostClaimReleased too", async () => {
  await db.sql(`select jobs.publish('work', '{}', timeout_seconds => 5) from generate_series(1, 3)`);
  const handler = createLambdaHandler({ work: async () => {} }, { DATABASE_URL: proxy.url, PGDRAIN_TOKEN: TOKEN, PGDRAIN_POOL_MAX: '2' });
  const end = Date.now() + 60_000;
  const body = JSON.stringify({ batchSize: 10, budgetSeconds: 50 });
  const dropped = proxy.dropReplyTo('jobs.claim_json');
  const answer = await handler({
    version: '2.0', routeKey: '$default', rawPath: '/drain', rawQueryString: '', body, isBase64Encoded: false,
    headers: { host: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws', 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    requestContext: { accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws',
                      domainPrefix: 'abcdefghijklmnop', requestId: randomUUID(), routeKey: '$default', stage: '$default',
                      time: '23/Nov/2026:02:40:00 +0000', timeEpoch: Date.now(),
                      http: { method: 'POST', path: '/drain', protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' } },
  }, { getRemainingTimeInMillis: () => end - Date.now(), awsRequestId: randomUUID() }) as { statusCode: number; body: string };
  await dropped;
  expect(answer.statusCode).toBe(503);
  expect(JSON.parse(answer.body)).toEqual({ error: { code: 'database_unavailable', message: 'database unavailable', field: null,
                                                     lostClaimReleased: 3 } });
});
