// `pgdrain publish` into a full queue names the flag that chose the queue
// (--queue), as bad input does, not the TypeScript option (options.queue),
// and exits 1 (README, Backpressure). dist/cli.mjs: `npm run build` first.
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();

it('a full queue: exit 1, one line naming --queue and the queue; nothing written', async () => {
  await db.sql(`select jobs.create_queue('cliful', max_size => 1)`);
  expect(await runCli(db.url, 'publish', 't.x', '--queue', 'cliful')).toMatchObject({ code: 0, stdout: expect.stringMatching(/^\d+\n$/) });
  const full = await runCli(db.url, 'publish', 't.x', '--queue', 'cliful');
  // Before: "pgdrain: options.queue: queue 'cliful' is full: …"
  expect(full).toMatchObject({ code: 1, stdout: '',
    stderr: expect.stringMatching(/^pgdrain: --queue: queue 'cliful' is full: 1 waiting job \+ 1 published > max_size 1;[^\n]*\n$/) });
  expect(await db.sql(`select count(*)::int as n from jobs.job_queue where queue = 'cliful'`)).toEqual([{ n: 1 }]);
});
