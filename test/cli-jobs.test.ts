// `pgdrain jobs` (listJobs) and `pgdrain show <id>` (getJob) as a child
// process against a real PostgreSQL: what they print, and their exit codes.
import { beforeAll, describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const sql = db.sql;
const cli = (...args: string[]) => runCli(db.url, ...args);
const one = async (text: string) => (await sql<{ id: string }>(text))[0]!.id;

let pending: string;
let failed: string;
let other: string;

beforeAll(async () => {
  await sql(`select jobs.create_queue('mail')`);
  pending = await one(`select jobs.publish('email.send', '{"user": 42, "kind": "welcome"}', queue => 'mail')::text as id`);
  failed = await one(`select jobs.publish('email.send', '{"user": 42}', now() + interval '1 hour', queue => 'mail')::text as id`);
  await sql(`select jobs.fail(array[$1::bigint], E'bounced\\nsecond line')`, [failed]);
  other = await one(`select jobs.publish('report.build', '{"user": 7}')::text as id`);
});

describe('pgdrain jobs', () => {
  it('prints a table newest first, narrowed by every flag given', async () => {
    const all = await cli('jobs');
    expect(all.code, all.stderr).toBe(0);
    const lines = all.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^id\s+queue\s+task\s+state\s+attempts\s+created\s+ended\s+error$/);
    expect(lines.slice(2).map((l) => l.split(/\s+/).slice(0, 4))).toEqual([
      [other, 'default', 'report.build', 'pending'], [failed, 'mail', 'email.send', 'failure'], [pending, 'mail', 'email.send', 'pending']]);
    // The error's first line, and when it ended.
    expect(lines[3]).toMatch(/ \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ {2}failed: bounced$/);

    const narrowed = await cli('jobs', '--queue', 'mail', '--task', 'email.send', '--state', 'pending', '--body', '{"user":42}');
    expect(narrowed.stdout.trimEnd().split('\n').slice(2).map((l) => l.split(/\s+/)[0])).toEqual([pending]);
    const byBody = await cli('jobs', '--body', '{"kind":"welcome"}');
    expect(byBody.stdout.trimEnd().split('\n').slice(2).map((l) => l.split(/\s+/)[0])).toEqual([pending]);
    expect(await cli('jobs', '--state', 'running')).toEqual({ code: 0, stdout: 'no jobs\n', stderr: '' });
  });

  it('pages with --before and --limit, and prints JSON with --json', async () => {
    const first = await cli('jobs', '--limit', '2', '--json');
    expect(first.code, first.stderr).toBe(0);
    const page = JSON.parse(first.stdout) as { id: string; state: string; body: unknown; error: string | null }[];
    expect(page.map((j) => j.id)).toEqual([other, failed]);
    expect(page[1]).toMatchObject({ state: 'failure', body: { user: 42 }, error: 'failed: bounced\nsecond line' });
    const next = JSON.parse((await cli('jobs', '--limit', '2', '--before', failed, '--json')).stdout) as { id: string }[];
    expect(next.map((j) => j.id)).toEqual([pending]);
  });

  it('bad flags are usage errors (exit 2) naming the flag', async () => {
    for (const [args, message] of [
      [['--limit', '0'], /--limit.*must be an integer from 1 to 1000/],
      [['--limit', '1001'], /--limit.*must be an integer from 1 to 1000/],
      [['--state', 'waiting'], /--state: must be one of pending, scheduled, blocked, running, expired, success, failure, cancelled/],
      [['--body', '{user: 42}'], /--body.*must be valid JSON/],
      [['--body', ''], /--body.*is empty/],
      [['--body', '{"n": 12345678901234567890}'], /--body.*cannot be kept exactly/],
      [['--before', 'x'], /--before.*must be a job id/],
      [['--queue', 'bad queue'], /--queue.*must be dot-separated words/],
      [['--task', ''], /--task.*must be a non-empty task name/],
    ] as const) {
      const r = await cli('jobs', ...args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(message);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });
});

describe('pgdrain show', () => {
  it('prints one job, or its JSON as getJob answers it', async () => {
    const shown = await cli('show', failed);
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(new RegExp(`^id {12}${failed}\\ntask {10}email\\.send\\nqueue {9}mail\\nstate {9}failure\\n`));
    expect(shown.stdout).toMatch(/^attempts {6}0 of 4$/m);
    expect(shown.stdout).toMatch(/^body {10}\{"user":42\}$/m);
    // The whole error, its later lines indented under the first.
    expect(shown.stdout).toMatch(/^error {9}failed: bounced\n {14}second line\n$/m);
    expect(shown.stdout).not.toMatch(/^(result|progress|started) /m);
    const json = await cli('show', pending, '--json');
    expect(JSON.parse(json.stdout)).toMatchObject({ id: pending, task: 'email.send', queue: 'mail', state: 'pending',
                                                    body: { user: 42, kind: 'welcome' }, error: null });
  });

  it('exits 1 with "no job <id>" when there is none, and 2 on an id that is not one', async () => {
    const none = await cli('show', '999999');
    expect(none).toMatchObject({ code: 1, stdout: '' });
    expect(none.stderr).toMatch(/^pgdrain: no job 999999 \(never published, or deleted: by retention or deleteJobs\)\n$/);
    const bad = await cli('show', 'abc');
    expect(bad).toMatchObject({ code: 2, stdout: '' });
    expect(bad.stderr).toMatch(/^pgdrain: id: must be a job id.*"abc"/);
    expect((await cli('show')).code).toBe(2);
  });
});
