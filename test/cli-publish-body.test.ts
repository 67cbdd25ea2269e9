// `pgdrain publish` takes the body as --body too, as `schedule add` does
// (before: only the positional [json], and --body was an unknown option);
// given both, it is a usage error that publishes nothing. dist/cli.mjs: `npm run build` first.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();

const bodyOf = async (id: string) => (await db.sql<{ body: unknown }>(`select body from jobs.job_queue where job_id = $1`, [id]))[0]?.body;

it('--body: the job body, as the positional JSON', async () => {
  const flag = await runCli(db.url, 'publish', 'pb.flag', '--body', '{"to":"a"}', '--priority', '2');
  expect(flag).toMatchObject({ code: 0, stderr: '', stdout: expect.stringMatching(/^\d+\n$/) });
  expect(await bodyOf(flag.stdout.trim())).toEqual({ to: 'a' });
  const positional = await runCli(db.url, 'publish', 'pb.pos', '[1,2]');
  expect(positional.code).toBe(0);
  expect(await bodyOf(positional.stdout.trim())).toEqual([1, 2]);
});

it('both: exit 2 naming the two, nothing published; bad --body JSON names --body', async () => {
  expect(await runCli(db.url, 'publish', 'pb.both', '{"a":1}', '--body', '{"b":2}')).toMatchObject({ code: 2, stdout: '',
    stderr: 'pgdrain: --body: give the body as the [json] argument or --body, not both\n' });
  expect(await runCli(db.url, 'publish', 'pb.bad', '--body', '{nope')).toMatchObject({ code: 2, stdout: '',
    stderr: expect.stringMatching(/--body/) });
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where task in ('pb.both', 'pb.bad')`)).toEqual([{ n: 0 }]);
});
