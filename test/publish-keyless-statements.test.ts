// A publish without a dedupe key (and a keep publish) runs none of the key-taking
// path's statements: jobs.publish's replace/keep_waiting look for its direct path
// (no try: the bound check and the key's lock) is run only for those modes. Its
// condition, once one expression with a subquery (not a simple one: run by the
// executor each time), cost every publish a statement (~10% of a keyless one).
// Captured with auto_explain (log_nested_statements) at NOTICE level.
import pg from 'pg';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { capturePlans, explainSession } from '../bench/explain.js';
import { testDb } from './support/db.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });
beforeAll(async () => {
  await client.connect();
  await explainSession(client);
});
afterAll(async () => {
  await client.end();
});

/** The statements jobs.publish(args) runs inside (auto_explain's notices: text and plan), one call. */
const statements = async (args: string) =>
  (await capturePlans(client, async () => { await client.query(`select jobs.publish('a.run'${args})`); }))
    .map((p) => p.text);

it('a publish without a key, or with one in mode keep, runs no statement of the key-taking path', async () => {
  for (const args of ['', `, dedupe_key => 'k'`, `, dedupe_key => 'k'`]) {  // the key free, then held
    const texts = await statements(args);
    expect(texts.length).toBeGreaterThan(0);  // captured
    expect({ args, taking: texts.filter((t) => /v_takes|736039/.test(t)) }).toEqual({ args, taking: [] });
  }
  // A replace with the key held by a job not started yet: no try, the direct path's lock taken in one statement.
  const replace = await statements(`, dedupe_key => 'k', dedupe_mode => 'replace'`);
  expect(replace.filter((t) => /pg_try_advisory_xact_lock\(736039/.test(t))).toHaveLength(1);
});
