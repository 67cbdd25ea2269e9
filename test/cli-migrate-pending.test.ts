// `pgdrain migrate --print` printed every migration, whatever the database
// had applied: a DBA reviewing what `migrate` would do to theirs (or applying
// it by hand) had to find the pending ones in 9,000 lines. `--print --pending`
// reads the database's jobs.migration and prints those only, changing nothing.
import pg from 'pg';
import { expect, it } from 'vitest';
import { latestVersion, migrationSql } from '../src/migrate.js';
import { emptyDb, testDb, withClient } from './support/db.js';
import { runCli } from './support/drain-process.js';

const all = Array.from({ length: latestVersion }, (_, i) => i + 1).join(', ');

it('a new database: every migration, the script migrate would run; once run, none', async () => {
  const empty = await emptyDb();
  const printed = await runCli('', 'migrate', '--print', '--pending', empty.url);
  expect(printed).toEqual({ code: 0, stdout: migrationSql(), stderr: `pgdrain: pending migrations ${all}\n` });
  expect(await withClient(empty.url, async (c) => (await c.query(`select to_regclass('jobs.migration') as t`)).rows))
    .toEqual([{ t: null }]); // printing changed nothing
  await withClient(empty.url, (c: pg.Client) => c.query(printed.stdout));
  expect(await runCli('', 'migrate', empty.url)).toEqual({ code: 0, stdout: '', stderr: 'pgdrain: schema is up to date\n' });
  expect(await runCli('', 'migrate', '--print', '--pending', '--dsn', empty.url))
    .toEqual({ code: 0, stdout: '', stderr: 'pgdrain: schema is up to date\n' });
});

it('a database one migration behind: that one only, in the same transaction and lock', async () => {
  const db = await testDb();
  await db.sql('delete from jobs.migration where version = $1', [latestVersion]);
  const run = await runCli(db.url, 'migrate', '--print', '--pending');
  expect([run.code, run.stderr]).toEqual([0, `pgdrain: pending migrations ${latestVersion}\n`]);
  expect(run.stdout.match(/^-- \d{4}_\S+\.sql$/gm)).toEqual([expect.stringMatching(new RegExp(`^-- ${String(latestVersion).padStart(4, '0')}_`))]);
  expect(run.stdout).toMatch(/^begin;\n[\s\S]*pg_advisory_xact_lock[\s\S]*commit;\n$/);
  expect(run.stdout).toContain(`values (${latestVersion}, `);
  expect(await db.sql('select count(*)::int as n from jobs.migration')).toEqual([{ n: latestVersion - 1 }]);
});

it('--pending without --print, or with --roles: exit 2 naming the flag, nothing connects', async () => {
  const nowhere = 'postgres://nobody@127.0.0.1:1/none';
  expect(await runCli(nowhere, 'migrate', '--pending')).toEqual({ code: 2, stdout: '',
    stderr: 'pgdrain: --pending: goes with --print (migrate applies the pending migrations anyway)\n' });
  expect(await runCli(nowhere, 'migrate', '--print', '--pending', '--roles')).toEqual({ code: 2, stdout: '',
    stderr: 'pgdrain: --roles: is not printed: run jobs.create_roles after the script, or migrate --roles\n' });
});

// Another tool's schema jobs (no jobs.migration): migrate refuses it, but
// --print --pending printed every migration and exited 0, a script that makes
// pgdrain's tables beside that tool's (or fails on a name both use).
it('a schema jobs another tool made: refused as migrate refuses it, nothing printed', async () => {
  const empty = await emptyDb();
  await withClient(empty.url, (c: pg.Client) => c.query('create schema jobs; create table jobs.worker_config (id int)'));
  const said = 'pgdrain: migration failed: schema jobs holds relation jobs.worker_config that pgdrain did not make';
  expect(await runCli('', 'migrate', empty.url)).toMatchObject({ code: 1, stdout: '', stderr: expect.stringContaining(said) });
  expect(await runCli('', 'migrate', '--print', '--pending', empty.url))
    .toMatchObject({ code: 1, stdout: '', stderr: expect.stringContaining(said) });
});

// A script printed for one database, run on another (or on this one after it
// changed) whose jobs.migration holds other versions: it held only what the
// first lacked, so it skipped the rest, or failed on the first object that was
// there with an error naming that object. It stops first, naming the reason.
it('a printed script run on a database with other migrations applied: refused before any of it runs', async () => {
  const db = await testDb();
  await db.sql('delete from jobs.migration where version = $1', [latestVersion]);
  const { stdout: script } = await runCli(db.url, 'migrate', '--print', '--pending');
  await db.sql('delete from jobs.migration where version = $1', [latestVersion - 1]); // now two behind
  const error = await withClient(db.url, (c: pg.Client) => c.query(script).then(() => null, (e: Error) => e.message));
  expect(error).toBe(`this script was printed for a database with migrations 1-${latestVersion - 1} applied, not this one: print it again, pgdrain migrate --print --pending`);
  expect(await db.sql('select count(*)::int as n from jobs.migration')).toEqual([{ n: latestVersion - 2 }]);
});
