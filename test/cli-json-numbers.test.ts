// Every JSON the CLI takes reads its numbers as parseJson does: an integer
// past 2^53 (or a number past the double's range) is refused, exit 2 naming
// the flag, never stored changed. `publish x '{"id":12345678901234567890}'`,
// publish --body, event publish's body, complete --result and schedule add
// --body read it with plain JSON.parse and stored 12345678901234567000, while
// --attributes and jobs --body refused it. dist/cli.mjs: `npm run build` first.
import { expect, it, vi } from 'vitest';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';
import { json } from '../src/cli/flag-parsers.js';

const db = await testDb();
const BIG = '{"id":12345678901234567890}';
const CRON = ['--cron', '0 9 * * *', '--task', 'jn.tick'];

await db.sql(`select jobs.subscribe('jn.ev', 'default', 'jn.ev')`);
const pending = (await db.sql<{ id: string }>(`select jobs.publish('jn.pending', '{}'::jsonb)::text as id`))[0]!.id;

const count = async () => (await db.sql<{ n: number }>(
  `select (select count(*) from jobs.job_queue where task like 'jn.%' and task <> 'jn.pending')
        + (select count(*) from jobs.recurring where name like 'jn%')
        + 1 - (select count(*) from jobs.job_queue where job_id = $1) as n`, [pending]))[0]!.n;

it.each([
  [['publish', 'jn.pos', BIG], 'json'],
  [['publish', 'jn.flag', '--body', BIG], '--body'],
  [['event', 'publish', 'jn.ev', BIG], 'json'],
  [['event', 'publish', 'jn.ev', '[1e400]'], 'json'],
  [['publish', 'jn.tiny', '{"x":-1.5e-400}'], 'json'],
  [['complete', pending, '--result', BIG], '--result'],
  [['schedule', 'add', 'jn1', ...CRON, '--body', BIG], '--body'],
])('pgdrain %j: refused naming %s, nothing written', async (args, field) => {
  const run = await runCli(db.url, ...args);
  expect(run.stderr).toMatch(new RegExp(`^pgdrain: ${field}: the number (12345678901234567890|1e400|-1.5e-400) cannot be kept exactly`));
  expect(run.code).toBe(2);
  expect(Number(await count())).toBe(0);
});

it('a number a double holds exactly is still taken, and bad JSON still says so', async () => {
  const run = await runCli(db.url, 'publish', 'jn.ok', '{"id":9007199254740991,"x":1.5,"e":1e3,"z":0e-400,"d":5e-324}');
  expect(run.code).toBe(0);
  expect((await db.sql(`select body from jobs.job_queue where job_id = $1`, [run.stdout.trim()]))[0]!.body)
    .toEqual({ id: 9007199254740991, x: 1.5, e: 1000, z: 0, d: 5e-324 });
  const bad = await runCli(db.url, 'publish', 'jn.bad', '{oops');
  expect(bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/^pgdrain: json: must be JSON \(/) });
});

// json() parsed each text twice (JSON.parse for its words, then parseJson for its numbers): once now, the words kept.
it('json() parses a text once; bad JSON, a blank text and a number it cannot keep are said as before', () => {
  const parse = vi.spyOn(JSON, 'parse');
  const text = '{"a":[1,2.5,"x"]}';
  try {
    expect(json(text)).toEqual({ a: [1, 2.5, 'x'] });
    expect(parse.mock.calls.filter(([t]) => t === text)).toHaveLength(1);
  } finally {
    parse.mockRestore();
  }
  const parserSays = (t: string) => {
    try {
      JSON.parse(t);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error(`${t} is JSON`);
  };
  // A blank text is no JSON here, though parseJson takes it as no value.
  for (const t of ['', ' ', '{oops']) expect(() => json(t)).toThrow(`must be JSON (${parserSays(t)})`);
  expect(() => json(BIG)).toThrow(/^the number 12345678901234567890 cannot be kept exactly/);
  expect(json('null')).toBe(null);
});
