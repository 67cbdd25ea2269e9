// A hint's call, pasted where it is meant to go, works for any name it is
// given. Before: an SQL publish (bulk too), redrive or subscribe to `it's`,
// which no queue can be named, was told to run jobs.create_queue('it''s')
// (which refuses the name); the CLI and the HTTP API told a queue named `-x`
// to run `pgdrain queue create -x`, which reads -x as a flag (unknown option);
// and a hint's quote came through to TS and the shell unescaped. A delete
// refused while jobs wait names `pgdrain queue purge -- -x` (before: the SQL). The hinted
// commands are run here for real: SQL against PostgreSQL, the CLI through
// sh. dist/cli.mjs: `npm run build` first.
import { execFile } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { asCommand, asTsCalls } from '../src/hint-calls.js';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { sqlErrorOf, testDb } from './support/db.js';
import { CLI, runCli } from './support/drain-process.js';

const db = await testDb();
const queue = createQueue({ driver: { ...db.driver, close: async () => {} }, tasks: {} });
const TOKEN = 'hint-odd-names-token-0123456789';
const app = createApp({ queue, token: TOKEN });

/** A command line run by sh, `pgdrain` being this build's CLI: its exit code and stderr. */
function shell(command: string): Promise<{ code: number; stdout: string; stderr: string }> {
  const line = command.replace(/^pgdrain /, `'${process.execPath}' '${CLI}' `);
  return new Promise((done) => execFile('sh', ['-c', line], { env: { ...process.env, DATABASE_URL: db.url }, timeout: 30_000 },
    (error, stdout, stderr) => done({ code: error ? Number(error.code) : 0, stdout, stderr })));
}

const hinted = (message: string, lead: string) => message.slice(message.indexOf(lead) + lead.length).replace(/\n$/, '').replace(/\) first$/, '');

describe("a name no queue can have (it's) is told the rule, not a create that fails", () => {
  const RULE = "queue: must be a queue name: dot-separated words of letters, digits, _ : or - (at most 200 characters), got 'it''s'";
  it.each([
    [`select jobs.publish('t.x', queue => $1)`],
    [`select jobs.publish_bulk(array[row('t.x', '{}', null, null, null, null)]::jobs.bulk_job[], queue => $1)`],
    [`select jobs.redrive(queue => $1)`],
    [`select jobs.subscribe('ev.x', $1)`],
  ])('%s', async (statement) => {
    const e = await sqlErrorOf(db.sql, statement, ["it's"]);
    expect([e.code, e.message]).toEqual(['PD009', RULE]);
    expect((await sqlErrorOf(db.sql, `select jobs.create_queue($1)`, ["it's"])).code).toBe('PD009'); // why: the rule holds
  });
});

it('an SQL hint, run as given, creates the queue (a name with : . and -)', async () => {
  const e = await sqlErrorOf(db.sql, `select jobs.publish('t.x', queue => $1)`, ['-odd:q.x-1']);
  const call = hinted(e.message, 'create it with ');
  expect(call).toBe("jobs.create_queue('-odd:q.x-1')");
  await db.sql(`select ${call}`);
  await db.sql(`select jobs.publish('t.x', queue => $1)`, ['-odd:q.x-1']);
});

describe('a CLI hint, run by sh as given, works for a name with a leading dash', () => {
  beforeAll(async () => {
    await queue.queues.create('-full', { maxSize: 1 });
    await queue.publish('t.x', {}, { queue: '-full' });
    await queue.queues.create('-dead');
    await queue.queues.create('-mail', { deadLetter: '-dead' });
    await queue.queues.create('-busy');
    await queue.publish('t.x', {}, { queue: '-busy' });
  });

  it('an unknown queue: pgdrain queue create -- -x', async () => {
    const { stderr } = await runCli(db.url, 'publish', 't.x', '--queue', '-x');
    const command = hinted(stderr, 'create it with ');
    expect(command).toBe('pgdrain queue create -- -x');
    expect(await shell(command)).toMatchObject({ code: 0, stderr: '' });
    expect((await runCli(db.url, 'publish', 't.x', '--queue', '-x')).code).toBe(0);
  });

  it('a full queue: --max-size before the --', async () => {
    const { stderr } = await runCli(db.url, 'publish', 't.x', '--queue', '-full');
    const command = hinted(stderr, 'raise it with ');
    expect(command).toBe('pgdrain queue create --max-size N -- -full');
    expect(await shell(command.replace(' N ', ' 5 '))).toMatchObject({ code: 0, stderr: '' });
    expect((await runCli(db.url, 'publish', 't.x', '--queue', '-full')).code).toBe(0);
  });

  it('a dead-letter target: --no-dead-letter before the --', async () => {
    const { stderr } = await runCli(db.url, 'queue', 'delete', '--', '-dead');
    const command = hinted(stderr, 'give that one another (');
    expect(command).toBe('pgdrain queue create --no-dead-letter -- -mail');
    expect(await shell(command)).toMatchObject({ code: 0, stderr: '' });
    expect((await runCli(db.url, 'queue', 'delete', '--', '-dead')).code).toBe(0);
  });

  it('a queue with jobs: pgdrain queue purge -- -busy', async () => {
    const { stderr } = await runCli(db.url, 'queue', 'delete', '--', '-busy');
    const command = hinted(stderr, 'purge it first (').replace(/\)$/, '');
    expect(command).toBe('pgdrain queue purge -- -busy');
    expect(await shell(command)).toMatchObject({ code: 0, stdout: '1\n', stderr: '' });
    expect(await runCli(db.url, 'queue', 'delete', '--', '-busy')).toMatchObject({ code: 0, stdout: 'deleted\n' });
  });
});

it('the HTTP API and the dashboard name the same command', async () => {
  const auth = { Authorization: `Bearer ${TOKEN}` };
  const res = await app.request('/jobs', { method: 'POST', body: JSON.stringify({ task: 't.x', queue: '-http' }),
                                           headers: { ...auth, 'Content-Type': 'application/json' } });
  expect(((await res.json()) as { error: { message: string } }).error.message)
    .toBe("queue: no queue named '-http'; create it with pgdrain queue create -- -http");
  const page = await app.request('/dashboard?queue=-http', { headers: auth });
  expect(((await page.json()) as { error: { message: string } }).error.message)
    .toBe('queue: no queue named "-http"; create it with pgdrain queue create -- -http');
});

it("a quote in a hint's name is escaped for TS and quoted for the shell", async () => {
  const ts = asTsCalls("queue: no queue named 'it''s'; create it with jobs.create_queue('it''s')");
  expect(ts).toBe("queue: no queue named 'it''s'; create it with queues.create('it\\'s')");
  const command = hinted(asCommand(ts), 'create it with ');
  expect(command).toBe("pgdrain queue create 'it'\\''s'");
  // The word sh reads is the name.
  expect((await shell(command.replace('pgdrain queue create', 'printf %s'))).stdout).toBe("it's");
});
