// A bad pgdrain.tick_wait_ms (or pgdrain.tick_budget) fails every claim
// that would wait for a bounded queue's tick (PDC03 naming it), and was
// reported only by jobs.maintain. `pgdrain stats` and the dashboard report
// it too, from the one statement each already makes
// (jobs.tick_settings_error), naming the setting and the rule; nothing
// when the settings are good. Their sessions read it as a drain's of the
// same role and database would: here, set on the database. Real CLI, real
// server, real PostgreSQL.
import { serve, type ServerType } from '@hono/node-server';
import { afterAll, expect, it } from 'vitest';
import { pgDriver } from '../src/db/pg.js';
import { createApp } from '../src/http/index.js';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';
import { runCli } from './support/drain-process.js';

const db = await testDb();
const TOKEN = 'settings-token-0123456789';
const RULE = "pgdrain.tick_wait_ms: must be a duration as PostgreSQL's time settings take one";
const setOnDatabase = (value: string | null) => db.sql(value === null ? `alter database "${db.name}" reset pgdrain.tick_wait_ms`
  : `alter database "${db.name}" set pgdrain.tick_wait_ms = '${value}'`);

const servers: ServerType[] = [];
const drivers: { close(): Promise<void> }[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => new Promise((done) => s.close(done))));
  await Promise.all(drivers.map((d) => d.close()));
  await setOnDatabase(null);
});

/** The dashboard's page, from a server whose pool opens its sessions now (they read the database's settings). */
async function dashboard(): Promise<string> {
  const driver = pgDriver(db.url);
  drivers.push(driver);
  const queue = createQueue({ driver, tasks: {} });
  const base = await new Promise<string>((done) => {
    servers.push(serve({ fetch: createApp({ queue, token: TOKEN }).fetch, port: 0, hostname: '127.0.0.1' },
                       (info) => done(`http://127.0.0.1:${info.port}`)));
  });
  const res = await fetch(`${base}/dashboard`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.status).toBe(200);
  return res.text();
}

it('pgdrain stats names a bad pgdrain.tick_wait_ms and its rule under its counts (on stderr beside --json), and nothing when it is good', async () => {
  await setOnDatabase('soon');
  const text = await runCli(db.url, 'stats');
  // Unfixed: 'no jobs\n' alone.
  expect(text.stdout).toMatch(/^no jobs\nbad setting pgdrain\.tick_wait_ms: must be a duration as PostgreSQL's time settings take one: .*got 'soon'.*; until then a claim that would wait for a bounded queue's tick fails \(PDC03\)\n$/);
  const json = await runCli(db.url, 'stats', '--json');
  expect(json.stdout).toBe('[]\n');
  expect(json.stderr).toContain(RULE);
  await setOnDatabase('2s');
  expect((await runCli(db.url, 'stats')).stdout).toBe('no jobs\n');
});

it('the dashboard names a bad pgdrain.tick_wait_ms and its rule, and nothing when it is good', async () => {
  await setOnDatabase('soon');
  const page = await dashboard();
  // Unfixed: no such line.
  expect(page).toMatch(/<p class="error">bad setting pgdrain\.tick_wait_ms: must be a duration as PostgreSQL&#39;s time settings take one: .*got &#39;soon&#39;/);
  await setOnDatabase('2s');
  expect(await dashboard()).not.toContain('bad setting');
});
