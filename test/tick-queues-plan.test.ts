// jobs.tick_queues (sql/0040), which every claim runs while any drain-run
// tick is due, finds the bounded queues' oldest due ticks one index probe a
// bounded queue (recurring_queue_due_idx), not by reading every due row and
// joining them to the queues: at 5,000 due ticks that read cost each claim
// 0.5-1.2 ms with one bounded queue, 2.8-5.6 ms when the ticks were its own
// (0.02-0.09 ms now; PG 15, a loaded 2-core machine). Plans captured with auto_explain inside the
// function, through the switch to cached generic plans (6th call on); the
// planner decides alone.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturePlans, explainSession, scans } from '../bench/explain.js';
import { testDb } from './support/db.js';
import { minute } from './support/schedule-clock.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });
const N = 5_000;

beforeAll(async () => {
  await client.connect();
  await client.query(`select jobs.create_queue('capped', max_size => 100000), jobs.create_queue('wide')`);
  await explainSession(client);
});
afterAll(() => client.end());

/** N due drain-run ticks in queue `many`, 3 in `few`; analyzed. */
async function fill(many: string, few: string): Promise<void> {
  await client.query('truncate jobs.recurring');
  await client.query(`insert into jobs.recurring (name, cron, task, queue, runner, next_run_at, created_at, updated_at)
                      select 's' || g, '* * * * *', 't', case when g <= 3 then $2 else $1 end, 'drains',
                             $3::timestamptz - g * interval '1 second', $3, $3
                      from generate_series(1, ${N + 3}) g`, [many, few, minute(0)]);
  await client.query('analyze jobs.recurring');
  await client.query('analyze jobs.queue');
}

/** The scans of jobs.recurring in the lookup's plans, over 7 calls, each with the rows it read. */
async function recurringReads(): Promise<string[]> {
  const out: string[] = [];
  for (let call = 1; call <= 7; call++) {
    const plans = await capturePlans(client, async () => {
      const { rows } = await client.query(`select waited, lost from jobs.tick_queues($1, true)`, [minute(1)]);
      expect(rows).toEqual([{ waited: 'capped', lost: [] }]);
    });
    const lookups = plans.filter((p) => /from jobs\.queue|from jobs\.recurring/.test(p.text) && !/tick_queues\(/.test(p.statement));
    expect(lookups.length, `call ${call}`).toBeGreaterThan(0);
    for (const p of lookups) {
      for (const line of p.text.split('\n')) {
        const scan = /((?:Seq Scan|Index Scan|Index Only Scan|Bitmap Heap Scan)(?: using \S+)? on recurring)\b.*actual time=\S+ rows=(\d+) loops=(\d+)/.exec(line);
        if (scan) out.push(`call ${call}: ${scan[1]} (${Number(scan[2]) * Number(scan[3])} rows)`);
      }
    }
    expect(scans(lookups[0]!).some((s) => /on recurring$/.test(s)), lookups[0]!.text).toBe(true);
  }
  return out;
}

describe.each([['in an unbounded queue, 3 in the bounded one', 'wide', 'capped'],
               ['in the bounded queue itself', 'capped', 'wide']])(`${N} due ticks %s`, (_shape, many, few) => {
  beforeAll(() => fill(many, few));

  it('the lookup of the bounded queues\' due ticks is an index probe a bounded queue, never a read of the due rows', async () => {
    const reads = await recurringReads();
    expect(reads.filter((r) => !/Index Scan using recurring_queue_due_idx on recurring \([01] rows\)$/.test(r))).toEqual([]);
  });
});
