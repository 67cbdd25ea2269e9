// The Lambda handler drains only for a schedule's event or serves an HTTP
// proxy event; any other event is refused, logged, and drains nothing.
// Before, an empty event ({}) ran a drain with the function's settings: it is
// what an API Gateway integration that is not a proxy one makes of a request
// without a body (POST /drain with none, any GET), so anyone who could call
// the API drained the queue, no credential checked. The documented schedule
// shapes still drain: an EventBridge rule's Scheduled Event, the template's
// EventBridge Scheduler envelope, a rule's constant input {"pgdrain": {…}}.
// The handler runs in-process, against a real PostgreSQL.
import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { createLambdaHandler } from '../functions/lambda.js';
import { createQueue, type ValidationError } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const handler = createLambdaHandler({ work: { quick: async () => 'ok' } },
                                    { DATABASE_URL: db.url, PGDRAIN_TOKEN: 'lambda-event-shapes-token-0123' });
const context = () => {
  const end = Date.now() + 30_000;
  return { getRemainingTimeInMillis: () => end - Date.now(), awsRequestId: randomUUID() };
};
const waiting = async () => (await db.sql(`select count(*)::int as n from jobs.job_queue where lease_until is null`))[0]!.n;

let logged: string[];
beforeEach(async () => {
  logged = [];
  vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => { logged.push(args.join(' ')); });
  await db.sql('truncate jobs.job_queue, jobs.job');
  await queue.publish('work.quick', null, { timeoutSeconds: 5 });
});
afterEach(() => { vi.restoreAllMocks(); });

// An EventBridge Scheduler schedule without input invokes the function with {}, and so does an EventBridge
// rule whose target input is part of the matched event ($.detail: {} for a Scheduled Event) or an input
// transformer: refused as above, the error (and its log line) names the input that makes each drain. Before,
// it named the Scheduler's input only, and a rule's author was told nothing that fits a rule.
const EMPTY_HINT = '; an EventBridge Scheduler schedule without input sends this empty event too, and so does an '
  + 'EventBridge rule whose target input is part of the matched event ($.detail) or an input transformer: give the '
  + 'schedule the input {"pgdrain": {}}, and the rule\'s target the constant input {"pgdrain": {}} (or the matched event)';
it('an empty event is told the input an EventBridge Scheduler schedule, or a rule, needs', async () => {
  const rule = { version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events',
                 time: '2026-12-07T03:00:00Z', region: 'us-east-1', resources: [], detail: {} };
  await expect(handler(rule.detail, context())).rejects.toMatchObject({ message: expect.stringMatching(/its event\)/) });
  await expect(handler(rule.detail, context())).rejects.toMatchObject({ message: expect.stringContaining(EMPTY_HINT) });
  expect((await handler(rule, context()) as { claimed: number }).claimed).toBe(1); // the matched event drains
  await expect(handler({ 'body-json': {} }, context())).rejects.toThrow(/its event\)$/);
  expect(logged).toHaveLength(3);
  expect(JSON.parse(logged[0]!).error).toMatch(new RegExp(`${EMPTY_HINT.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
});

// API Gateway REST, integration type AWS (not AWS_PROXY): the event is the
// request's body as sent (no mapping template), or the console's "Method
// Request passthrough" template's output.
it.each([
  ['an empty event (a request without a body)', {}],
  ['the passthrough template of a POST /drain', { 'body-json': {}, params: { path: {}, querystring: {}, header: {} },
    'stage-variables': {}, context: { 'http-method': 'POST', 'resource-path': '/drain', stage: 'prod' } }],
  ['a body of a POST /jobs', { task: 'work.quick' }],
])('%s is refused, logged, and drains nothing', async (_, event) => {
  await expect(handler(event, context())).rejects.toMatchObject({ name: 'ValidationError', field: 'event',
    message: expect.stringMatching(/^event: is neither a schedule .* nor an HTTP event of a Function URL or an API Gateway proxy integration: nothing was drained/) });
  expect(await waiting()).toBe(1);
  expect(logged).toHaveLength(1);
  expect(JSON.parse(logged[0]!)).toMatchObject({ pgdrain: 'refused', error: expect.stringMatching(/^event: is neither/),
                                                 event: { keys: Object.keys(event) } });
});

it.each([
  ["an EventBridge rule's Scheduled Event", { version: '0', id: randomUUID(), 'detail-type': 'Scheduled Event', source: 'aws.events',
    time: '2026-12-07T03:00:00Z', region: 'us-east-1', resources: [], detail: {} }],
  ["the template's EventBridge Scheduler envelope", { source: 'aws.scheduler', 'detail-type': 'Scheduled Event', id: 'd32c5kddcf5bb8c3',
    time: '2026-12-07T03:00:00Z', resources: ['arn:aws:scheduler:us-east-1:123456789012:schedule/default/pgdrain-drain'], pgdrain: {} }],
  ["a rule's constant input", { pgdrain: { batchSize: 5 } }],
])('%s drains', async (_, event) => {
  expect(await handler(event, context())).toMatchObject({ claimed: 1, succeeded: 1 });
  expect(await waiting()).toBe(0);
});

// The log names the event's keys, not its values, and never a caller's text at length: a key of 100 000
// characters (a body's, through a non-proxy integration) was logged whole.
it('the refusal logs at most 10 keys of at most 40 characters, no value', async () => {
  const long = 'k'.repeat(100_000);
  const event = Object.fromEntries([[long, 'secret-value'], ...Array.from({ length: 20 }, (_, i) => [`key${i}`, 'secret-value'])]);
  await expect(handler(event, context())).rejects.toMatchObject({ field: 'event' });
  expect(logged).toHaveLength(1);
  expect(logged[0]!.length).toBeLessThan(1000);
  expect(logged[0]).not.toContain('secret-value');
  expect(JSON.parse(logged[0]!).event).toEqual({ keys: [`${'k'.repeat(40)}…`, ...Array.from({ length: 9 }, (_, i) => `key${i}`)] });
  expect(await waiting()).toBe(1);
});

// An Application Load Balancer's Lambda target: not API Gateway (no integration timeout, query passed as
// sent, multi-value headers when the target group turns them on), an HTTP event all the same.
const alb = (multi: boolean, method: string, path: string, query: Record<string, string>, body: string) => ({
  requestContext: { elb: { targetGroupArn: 'arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/pgdrain/0123456789abcdef' } },
  httpMethod: method, path, body, isBase64Encoded: false,
  ...(multi
    ? { multiValueQueryStringParameters: Object.fromEntries(Object.entries(query).map(([k, v]) => [k, [v]])),
        multiValueHeaders: { authorization: ['Bearer lambda-event-shapes-token-0123'], host: ['pgdrain-123.us-east-1.elb.amazonaws.com'],
                             'content-type': ['application/json'] } }
    : { queryStringParameters: query,
        headers: { authorization: 'Bearer lambda-event-shapes-token-0123', host: 'pgdrain-123.us-east-1.elb.amazonaws.com',
                   'content-type': 'application/json' } }),
});
it.each([false, true])('an ALB event (multi-value headers: %s) is served as HTTP', async (multi) => {
  const listed = await handler(alb(multi, 'GET', '/jobs', { task: 'work%2Equick', state: 'pending' }, ''), context()) as { statusCode: number; body: string };
  expect(listed.statusCode).toBe(200);
  expect(JSON.parse(listed.body).jobs).toHaveLength(1);
  const drained = await handler(alb(multi, 'POST', '/drain', {}, '{"budgetSeconds": 10}'), context()) as { statusCode: number; body: string };
  expect(drained.statusCode).toBe(200);
  expect(JSON.parse(drained.body)).toMatchObject({ claimed: 1, succeeded: 1 });
  const bad = await handler(alb(multi, 'POST', '/jobs', {}, '{"task": x}'), context()) as { statusCode: number; body: string };
  expect([bad.statusCode, JSON.parse(bad.body)]).toEqual([400, { error: { code: 'invalid_argument', field: 'body',
    message: 'body: must be valid JSON' } }]);
  expect(logged).toEqual([]);
});

// An event refused for a drain setting at its top level is logged as any refused event: a POST /jobs or
// POST /drain body through a non-proxy integration ({"task": …, "queue": …}, {"batchSize": 5}) failed naming
// event.queue with no refusal logged, so an operator watching for {"pgdrain": "refused"} did not see it.
it.each([
  ['a POST /jobs body', { task: 'work.quick', queue: 'default' }, 'event.queue'],
  ['a POST /drain body', { batchSize: 5 }, 'event.batchSize'],
  ['a bad pgdrain input', { pgdrain: { batchSize: 0 } }, 'event.pgdrain.batchSize'],
  ['an unknown key of 5000 characters in pgdrain (its log line cut)', { pgdrain: { ['k'.repeat(5000)]: 1 } }, 'event.pgdrain'],
])('%s is refused naming its field, and logged', async (_, event, field) => {
  const thrown = await handler(event, context()).catch((e: unknown) => e) as ValidationError;
  expect(thrown).toMatchObject({ name: 'ValidationError', field });
  // The runtime logs it whole (message, field and rule): cut as the log line is.
  expect(JSON.stringify([thrown.message, { ...thrown }]).length).toBeLessThan(2000);
  expect(logged).toHaveLength(1);
  expect(JSON.parse(logged[0]!).error).toBe(thrown.message);
  expect(logged[0]!.length).toBeLessThan(1000);
  expect(JSON.parse(logged[0]!)).toMatchObject({ pgdrain: 'refused', error: expect.stringMatching(new RegExp(`^${field}: `)),
                                                 event: { keys: Object.keys(event) } });
  expect(await waiting()).toBe(1);
});
