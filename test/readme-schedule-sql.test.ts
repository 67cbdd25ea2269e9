// The recurring-jobs SQL example of docs/scheduling.md (its first paragraph,
// up to the blank line before maintenance, which needs pg_cron) as a user
// pastes it into psql: every statement runs, in order, on a freshly migrated
// database (no pg_cron here: the schedules go to the drains), and the tenant's
// schedule carries its group, capped by its queue's group_concurrency. On a
// real PostgreSQL.
import { describe, expect, it } from 'vitest';
import { testDb } from './support/db.js';
import { docFile } from './support/docs.js';

const db = await testDb();
const sql = db.sql;
const page = docFile('docs/scheduling.md').text;

describe("docs/scheduling.md: the recurring jobs' SQL example", () => {
  it('runs as pasted, and the group schedule\'s ticks are capped by its queue', async () => {
    const block = /```sql\n(-- Recurring jobs:[^`]*?)\n\n/.exec(page)?.[1];
    expect(block, 'docs/scheduling.md: the recurring jobs SQL example').toBeDefined();
    expect(block).toContain("group_id => 'acme'");
    // One simple-protocol query, as psql runs a pasted script: the first error stops it.
    await sql(block!);
    const [s] = await sql<{ queue: string; group_id: string; group_tier: string; runner: string }>(
      `select queue, group_id, group_tier, runner from jobs.schedules where name = 'acme-export'`);
    expect(s).toEqual({ queue: 'reports', group_id: 'acme', group_tier: 'pro', runner: 'drains' });
    // Its comment promises the queue's group_concurrency counts it: the queue has one.
    const [q] = await sql<{ group_concurrency: number | null }>(`select group_concurrency from jobs.queue where name = 'reports'`);
    expect(q!.group_concurrency).not.toBeNull();
  });
});
