// The two sides of an SQL A/B (bench/claim-ab.ts, bench/redrive-ab.ts): databases
// a and b of one bench cluster, each migrated by this build, then patched by
// its side's SQL file if one is given (e.g. a `create or replace function` of
// a change).
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { createQueue } from '../src/index.js';

/** Creates, migrates and patches databases a and b beside serverUrl's; answers their URLs. */
export async function abDatabases(serverUrl: string, patches: { a?: string | undefined; b?: string | undefined }):
    Promise<Record<'a' | 'b', string>> {
  const urls = { a: '', b: '' };
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    for (const which of ['a', 'b'] as const) {
      await admin.query(`create database ${which}`);
      urls[which] = serverUrl.replace(/\/bench$/, `/${which}`);
      const q = createQueue({ connectionString: urls[which], tasks: {} });
      await q.migrate();
      await q.close();
      const patch = patches[which];
      if (patch) {
        const c = new pg.Client({ connectionString: urls[which] });
        await c.connect();
        await c.query(readFileSync(patch, 'utf8'));
        await c.end();
      }
    }
  } finally {
    await admin.end();
  }
  return urls;
}
