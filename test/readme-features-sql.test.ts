// The Features pages' ```sql blocks (docs/features.md lists the pages, in the
// order of the one-page README's Features section they came from) as a user
// pastes them into psql, one after another, on a freshly migrated database:
// every block runs without an error, in that order (a block may use what an
// earlier one made: queue 'mail', job ids), and the pairs its comments promise
// answer the same id do. psql's `\gset` (the Dependencies chain) is done here
// as psql does it: the row's columns become variables that a later `:name`
// reads. The one step a reader takes between blocks because a comment says so
// is taken here too, named where it is. On a real PostgreSQL.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { docFile, fencedBlocks, linkedPages, type FencedBlock } from './support/docs.js';

const db = await testDb();
const sql = db.sql;

/** The ```sql blocks of the Features pages, in docs/features.md's order, each with its file and line. */
function featureBlocks(): FencedBlock[] {
  return linkedPages(docFile('docs/features.md')).flatMap((page) => fencedBlocks(page, 'sql'));
}

/** Runs a block as psql would: `\gset` lines one by one, the rest as one simple-protocol query. */
async function run(code: string, vars: Map<string, string>): Promise<void> {
  const withVars = (text: string) => text.replace(/(?<!:):([a-z_]\w*)/g, (m, name: string) => vars.get(name) ?? m);
  if (!code.includes('\\gset')) {
    await sql(withVars(code));
    return;
  }
  for (const line of code.split('\n')) {
    const m = /^(.*?)\s*\\gset\s*$/.exec(line);
    if (!m) {
      if (line.trim() !== '') await sql(withVars(line));
      continue;
    }
    const [row] = await sql(withVars(m[1]!));
    for (const [k, v] of Object.entries(row ?? {})) vars.set(k, String(v));
  }
}

describe("The Features pages' SQL examples", () => {
  it('run as pasted, block after block, on a migrated database', async () => {
    const blocks = featureBlocks();
    // 24, as in the one-page README's Features section they came from.
    expect(blocks.length, 'docs: the Features SQL blocks').toBeGreaterThanOrEqual(24);
    const vars = new Map<string, string>();
    for (const { file, line, code } of blocks) {
      // Its comment says "true, once its running jobs ended": the job the
      // Named queues block consumed still runs, and a delete waits for none.
      if (code.includes("jobs.delete_queue('mail')")) {
        expect(code, `${file}:${line}`).toContain('once its running jobs ended');
        await sql(`select jobs.ack(job_id, null, null, attempt) from jobs.job_queue
                   where queue = 'mail' and lease_until is not null`);
      }
      try {
        await run(code, vars);
      } catch (error) {
        throw new Error(`${file}:${line}: ${(error as Error).message}`, { cause: error });
      }
    }
    // The dedupe example: a second publish of the key answered the first's id.
    const [dedupe] = await sql<{ n: string }>(`select count(*) as n from jobs.all where dedupe_key = 'welcome:42'`);
    expect(dedupe!.n).toBe('1');
    // The chain: b depends on a, as the \gset variables said.
    const [chain] = await sql<{ n: string }>(
      `select count(*) as n from jobs.job_queue where task = 'etl.transform' and waiting_deps = 1`);
    expect(chain!.n).toBe('1');
  });
});
