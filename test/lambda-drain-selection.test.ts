// The Lambda adapter takes a drain's filter and exclude: PGDRAIN_FILTER /
// PGDRAIN_EXCLUDE (JSON text, as for `pgdrain drain`) and a schedule's
// `pgdrain: { filter, exclude }`, which wins over them; POST /drain takes them
// in its body. The bundle built by scripts/build-lambda.mjs runs through
// lambda-local against a real PostgreSQL, as in test/lambda.test.ts.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import lambdaLocal from 'lambda-local';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { ALL_JOBS, publishSelectionJobs, selectionOutcome } from './support/selection-jobs.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} } });
const TOKEN = 'lambda-selection-token-0123456789';

const dir = mkdtempSync(join(tmpdir(), 'pgdrain-lambda-selection-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
writeFileSync(join(dir, 'tasks.mjs'), 'export const t = async () => "done";\n');
execFileSync(process.execPath, ['scripts/build-lambda.mjs', '--tasks', join(dir, 'tasks.mjs'), '--outdir', dir], { encoding: 'utf8' });

let instances = 0;
/** A cold instance of the bundle (ES modules load once per path) with this environment. */
function coldBundle(): string {
  const bundle = join(dir, `instance-${++instances}.mjs`);
  copyFileSync(join(dir, 'index.mjs'), bundle);
  return bundle;
}

/** One invocation; lambda-local leaves its environment in process.env, so it is taken out again. */
async function invoke(bundle: string, env: Record<string, string>, event: unknown): Promise<any> {
  const before = { ...process.env };
  try {
    return await lambdaLocal.execute({ event, lambdaPath: bundle, esm: true, lambdaHandler: 'handler', timeoutMs: 20_000,
                                       environment: { DATABASE_URL: db.url, PGDRAIN_TOKEN: TOKEN, ...env }, verboseLevel: 0 });
  } finally {
    for (const key of Object.keys(process.env)) if (!(key in before)) delete process.env[key];
    Object.assign(process.env, before);
  }
}

const scheduler = (pgdrain?: object) => ({
  source: 'aws.scheduler', 'detail-type': 'Scheduled Event', time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
  id: 'd32c5kddcf5bb8c3', resources: ['arn:aws:scheduler:us-east-1:123456789012:schedule/default/pgdrain-drain'],
  ...(pgdrain ? { pgdrain } : {}),
});
const functionUrlDrain = (body: unknown) => ({
  version: '2.0', routeKey: '$default', rawPath: '/drain', rawQueryString: '',
  headers: { host: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws', 'content-type': 'application/json',
             authorization: `Bearer ${TOKEN}` },
  requestContext: {
    accountId: 'anonymous', apiId: 'abcdefghijklmnop', domainName: 'abcdefghijklmnop.lambda-url.us-east-1.on.aws',
    domainPrefix: 'abcdefghijklmnop', requestId: 'c6af9ac6-7b61-11e6-9a41-93e8deadbeef', routeKey: '$default',
    stage: '$default', time: '23/Nov/2026:02:40:00 +0000', timeEpoch: Date.now(),
    http: { method: 'POST', path: '/drain', protocol: 'HTTP/1.1', sourceIp: '203.0.113.7', userAgent: 'curl/8.5.0' },
  },
  body: JSON.stringify(body), isBase64Encoded: false,
});

const { ran, untouched } = selectionOutcome(db);
beforeEach(() => publishSelectionJobs(db, queue, 't'));

describe('Lambda drains with filter and exclude', () => {
  it('PGDRAIN_FILTER / PGDRAIN_EXCLUDE select a scheduled drain\'s jobs; a schedule\'s own filter and exclude win', async () => {
    const bundle = coldBundle();
    const env = { PGDRAIN_FILTER: '{"region":"eu"}', PGDRAIN_EXCLUDE: '[{"partner":"acme"}]' };
    expect(await invoke(bundle, env, scheduler())).toMatchObject({ claimed: 1, succeeded: 1, stoppedBy: 'empty' });
    expect(await ran()).toEqual(['eu']);
    // Each replaces its variable: this drain excludes gold, not acme.
    expect(await invoke(bundle, env, scheduler({ filter: { region: 'us' }, exclude: [{ tier: 'gold' }] })))
      .toMatchObject({ claimed: 2, succeeded: 2 });
    expect(await ran()).toEqual(['eu', 'us', 'us-acme']);
    // The variables apply to scheduled drains only; POST /drain takes its own in the body.
    const answer = await invoke(bundle, env, functionUrlDrain({ exclude: [{ region: 'eu' }, { tier: 'gold' }] }));
    expect(answer).toMatchObject({ statusCode: 200 });
    expect(JSON.parse(answer.body)).toMatchObject({ claimed: 1, succeeded: 1 });
    expect(await ran()).toEqual(['eu', 'plain', 'us', 'us-acme']);
  });

  // As every other setting of the function (PGDRAIN_BATCH_SIZE, PGDRAIN_HMAC_SECRET, …): a SAM or CloudFormation
  // template sets a variable from a parameter whose default is '', and cannot leave it out. The CLI and the Worker
  // refuse theirs set blank instead (no template stands in front of them).
  it('PGDRAIN_FILTER / PGDRAIN_EXCLUDE set empty count as unset, as the function\'s other settings do', async () => {
    const env = { PGDRAIN_FILTER: '', PGDRAIN_EXCLUDE: '', PGDRAIN_BATCH_SIZE: '' };
    expect(await invoke(coldBundle(), env, scheduler())).toMatchObject({ claimed: 6, succeeded: 6, stoppedBy: 'empty' });
    expect(await ran()).toEqual(ALL_JOBS);
  });

  it('bad variables fail every invocation naming the variable (HTTP ones answer 500), and claim nothing', async () => {
    for (const [variable, value, field, rule] of [
      ['PGDRAIN_FILTER', '{region:eu}', 'PGDRAIN_FILTER', /^PGDRAIN_FILTER: must be valid JSON text, e\.g\./],
      ['PGDRAIN_FILTER', '["eu"]', 'PGDRAIN_FILTER', /^PGDRAIN_FILTER: must be a JSON object$/],
      ['PGDRAIN_EXCLUDE', '{"partner":"acme"}', 'PGDRAIN_EXCLUDE', /^PGDRAIN_EXCLUDE: must be an array of JSON objects$/],
      ['PGDRAIN_EXCLUDE', '[{"partner":"acme"},"bob"]', 'PGDRAIN_EXCLUDE[1]', /^PGDRAIN_EXCLUDE\[1\]: must be a JSON object$/],
      ['PGDRAIN_EXCLUDE', JSON.stringify(Array.from({ length: 101 }, () => ({}))), 'PGDRAIN_EXCLUDE',
       /^PGDRAIN_EXCLUDE: must hold at most 100 objects$/],
    ] as const) {
      const bundle = coldBundle();
      const message = expect.stringMatching(rule);
      await expect(invoke(bundle, { [variable]: value }, scheduler()), `${variable}=${value}`)
        .rejects.toMatchObject({ errorType: 'ValidationError', errorMessage: message });
      const answer = await invoke(bundle, { [variable]: value }, functionUrlDrain({}));
      expect(answer).toMatchObject({ statusCode: 500 });
      expect(JSON.parse(answer.body)).toEqual({ error: { code: 'not_configured', field, message } });
    }
    expect(await untouched()).toEqual(ALL_JOBS);
  });

  it('a schedule\'s bad filter or exclude fails the invocation naming event.pgdrain\'s field, and claims nothing', async () => {
    const bundle = coldBundle();
    for (const [pgdrain, message] of [
      [{ filter: 'region=eu' }, 'event.pgdrain.filter: must be a JSON object'],
      [{ exclude: [{ partner: 'acme' }, null] }, 'event.pgdrain.exclude[1]: must be a JSON object'],
      [{ exclude: 'acme' }, 'event.pgdrain.exclude: must be an array of JSON objects'],
    ] as const) {
      await expect(invoke(bundle, {}, scheduler(pgdrain))).rejects.toMatchObject({ errorType: 'ValidationError', errorMessage: message });
    }
    expect(await untouched()).toEqual(ALL_JOBS);
  });
});
