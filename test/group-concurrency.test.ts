// A queue's group_concurrency (pg-boss 12's groupConcurrency): at most N of
// one group's jobs run at once, whatever the number of claims (jobs.pick
// counts them under the max_running lock). The SQL claim, tiers, jobs
// without a group, expired leases, bad input, history and the claim's plan.
import pg from 'pg';
import { beforeEach, describe, expect, it } from 'vitest';
import { fill } from '../bench/fill.js';
import { capturePlans, explainSession, scans, seqScansOfQueue } from '../bench/explain.js';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const T0 = '2030-01-01T00:00:00Z';

type Claimed = { job_id: string; group_id: string | null };
const claim = async (n: number, now = T0, queue = 'gc') =>
  sql<Claimed>(`select c.job_id::text, q.group_id from jobs.claim($1, now => $2, queue => $3) c
                join jobs.job_queue q using (job_id) order by c.job_id`, [n, now, queue]);
const publish = (n: number, group: string | null, tier: string | null = null, queue = 'gc', timeout = 60) =>
  sql(`select jobs.publish('gc.job', jsonb_build_object('i', i), queue => $1, timeout_seconds => $2, group_id => $3,
                           group_tier => $4, now => $5::timestamptz - interval '1 minute')
       from generate_series(1, $6) i`, [queue, timeout, group, tier, T0, n]);
const byGroup = (rows: Claimed[]) => {
  const counts: Record<string, number> = {};
  for (const r of rows) counts[r.group_id ?? '(none)'] = (counts[r.group_id ?? '(none)'] ?? 0) + 1;
  return counts;
};

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.running_slot');
  await sql(`delete from jobs.queue where name <> 'default'`);
  await sql(`select jobs.create_queue('gc', group_concurrency => 2)`);
});

describe('jobs.pick honours group_concurrency', () => {
  it('hands out at most the cap per group, across claims; jobs without a group are not held back', async () => {
    await publish(5, 'a');
    await publish(5, 'b');
    await publish(3, null);
    // One claim of 20: two of each group (a batch does not overrun a group), every ungrouped one.
    expect(byGroup(await claim(20))).toEqual({ a: 2, b: 2, '(none)': 3 });
    // Both groups at their cap: the next claim finds nothing of theirs.
    expect(await claim(20)).toEqual([]);
    // One of a's jobs ends: one slot of a, none of b.
    await sql(`select jobs.ack(job_id) from jobs.job_queue where group_id = 'a' and lease_until is not null limit 1`);
    expect(byGroup(await claim(20))).toEqual({ a: 1 });
    expect(await sql(`select jobs.group_running('gc') as r`)).toEqual([{ r: { a: 2, b: 2 } }]);
  });

  it('a group of a tier takes the tier\'s cap; other tiers and none take group_concurrency', async () => {
    await sql(`select jobs.create_queue('gc', group_tiers => '{"pro": 4}')`);
    await publish(6, 'p', 'pro');
    await publish(6, 'f', 'free');
    await publish(6, 'n');
    expect(byGroup(await claim(100))).toEqual({ p: 4, f: 2, n: 2 });
    expect(await claim(100)).toEqual([]);
  });

  it('a tier\'s cap written with a fraction (5.0) is the integer, kept as one', async () => {
    await sql(`select jobs.create_queue('gc', group_tiers => '{"pro": 5.0, "team": 3e0}')`);
    expect(await sql(`select group_tiers::text as t from jobs.queue where name = 'gc'`)).toEqual([{ t: '{"pro": 5, "team": 3}' }]);
    await publish(6, 'p', 'pro');
    expect(byGroup(await claim(100))).toEqual({ p: 5 });
  });

  it('a queue without group_concurrency does not limit groups', async () => {
    await sql(`select jobs.create_queue('gc', group_concurrency => null)`);
    await publish(5, 'a');
    expect(byGroup(await claim(20))).toEqual({ a: 5 });
  });

  it('a running job whose lease passed keeps its slot until an expiry reaps it', async () => {
    await sql(`select jobs.create_queue('gc', group_concurrency => 1)`);
    await publish(2, 'a', null, 'gc', 1);
    await publish(1, null);
    const first = await claim(10);
    expect(byGroup(first)).toEqual({ a: 1, '(none)': 1 });
    const running = first.find((r) => r.group_id === 'a')!.job_id;
    // Its lease (1 s) passed, but a transaction holds its row: the claim's
    // expiry skips it (SKIP LOCKED), so it still runs as far as its group goes.
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    try {
      await other.query('begin');
      await other.query('select 1 from jobs.job_queue where job_id = $1 for update', [running]);
      expect(await claim(10, '2030-01-01T00:00:05Z')).toEqual([]);
      expect(await sql(`select jobs.group_running('gc') as r`)).toEqual([{ r: { a: 1 } }]);
      await other.query('rollback');
    } finally {
      await other.end();
    }
    // Reaped now (back to pending for a retry): its slot is free, and one job of a is handed out.
    const next = await claim(10, '2030-01-01T00:00:06Z');
    expect(byGroup(next)).toEqual({ a: 1 });
    expect(await sql(`select count(*)::int as n from jobs.job_queue where group_id = 'a' and lease_until is not null`))
      .toEqual([{ n: 1 }]);
  });

  it("a drain's claims start past a full group, but still count the jobs that do not fit from the true head", async () => {
    // The head needs an hour (the drains' claims take at most 600 s); three of group y behind it.
    await sql(`select jobs.publish('gc.long', queue => 'gc', group_id => 'x', timeout_seconds => 3600, now => $1::timestamptz - interval '2 minutes')`, [T0]);
    await publish(3, 'y', null, 'gc', 10);
    type Answer = { count: number; unfit: number; jobs: { id: string } | null }; // ids comma-separated
    const client = new pg.Client({ connectionString: db.url }); // one session: claim_json remembers heads per session
    await client.connect();
    try {
      const drainClaim = async (at: string) => (await client.query<{ r: Answer }>(
        `select jobs.claim_json(10, null, 600, now => $1, queue => 'gc') as r`, [at])).rows[0]!.r;
      const first = await drainClaim('2030-01-01T00:00:00.01Z');
      expect(first).toMatchObject({ count: 2, unfit: 1 });
      await sql('select jobs.ack($1::bigint)', [first.jobs!.id.split(',')[0]]);
      // Starts past the head (the group head this session remembered), takes y's third job, and still counts the long one.
      expect(await drainClaim('2030-01-01T00:00:00.02Z')).toMatchObject({ count: 1, unfit: 1 });
    } finally {
      await client.end();
    }
  });

  it('locks few of the jobs of a group its own picks fill (a plain and a filtered claim)', async () => {
    // 300 of a below its cap ahead of 20 of other groups: the claim takes two
    // of a and reads on; at most 16 of the 298 left of a are locked (before:
    // each one read was locked until the claim's commit, a hot group's whole backlog).
    await publish(300, 'a');
    await sql(`select jobs.publish('gc.job', queue => 'gc', group_id => 'o' || i, attributes => '{"k": 1}',
                                   now => $1::timestamptz - interval '1 second') from generate_series(1, 20) i`, [T0]);
    await sql(`update jobs.job_queue set attributes = '{"k": 1}' where group_id = 'a'`);
    for (const filter of [null, '{"k": 1}']) {
      const other = new pg.Client({ connectionString: db.url });
      await other.connect();
      try {
        await other.query('begin');
        const { rows } = await other.query<{ group_id: string | null }>(
          `select q.group_id from jobs.claim(10, now => $1, queue => 'gc', filter => $2::jsonb) c join jobs.job_queue q using (job_id)`,
          [T0, filter]);
        expect(byGroup(rows as Claimed[]), String(filter)).toEqual({ a: 2, o1: 1, o2: 1, o3: 1, o4: 1, o5: 1, o6: 1, o7: 1, o8: 1 });
        // The waiting jobs of a the claim did not take, but 16, can be locked by another transaction.
        expect(await sql(`select count(*)::int as n from (select 1 from jobs.job_queue where group_id = 'a' and lease_until is null
                                                          for update skip locked) x`), String(filter)).toEqual([{ n: 282 }]);
        await other.query('rollback');
      } finally {
        await other.end();
      }
    }
  });

  it('with max_running, serial keys, priorities and a filter', async () => {
    await sql(`select jobs.create_queue('gc', max_running => 3)`);
    await publish(4, 'a');
    await publish(4, 'b');
    // max_running bounds the total; group_concurrency each group.
    const rows = await claim(10);
    expect(rows).toHaveLength(3);
    expect(Math.max(...Object.values(byGroup(rows)))).toBeLessThanOrEqual(2);
    await sql('truncate jobs.job_queue, jobs.running_slot');
    await sql(`select jobs.create_queue('gc', max_running => null)`);
    // A higher priority's jobs of a full group are stepped over for a lower one's.
    await sql(`select jobs.publish('gc.hi', queue => 'gc', group_id => 'a', priority => 5, now => $1::timestamptz - interval '1 minute')
               from generate_series(1, 3)`, [T0]);
    await sql(`select jobs.publish('gc.lo', queue => 'gc', group_id => 'b', priority => 1, now => $1::timestamptz - interval '1 minute')`, [T0]);
    await sql(`select jobs.publish('gc.ser', queue => 'gc', group_id => 'c', serial_key => 's', now => $1::timestamptz - interval '1 minute')
               from generate_series(1, 2)`, [T0]);
    expect(byGroup(await claim(10))).toEqual({ a: 2, b: 1, c: 1 });
    // A filtered claim (attributes) is capped too.
    await sql(`select jobs.publish('gc.f', queue => 'gc', group_id => 'd', attributes => '{"k": 1}', now => $1::timestamptz - interval '1 minute')
               from generate_series(1, 3)`, [T0]);
    const filtered = await sql<{ n: number }>(`select count(*)::int as n from jobs.claim(10, now => $1, queue => 'gc', filter => '{"k": 1}')`, [T0]);
    expect(filtered).toEqual([{ n: 2 }]);
  });
});

describe('publishing a group', () => {
  it('carries the group into jobs.all and history, from publish, publish_arrays and publish_bulk', async () => {
    const id = (await sql<{ id: string }>(`select jobs.publish('gc.job', queue => 'gc', group_id => 'g1', group_tier => 'pro')::text as id`))[0]!.id;
    await sql(`select jobs.publish_arrays(array['gc.job', 'gc.job'], queue => 'gc', group_ids => array['g2', null],
                                          group_tiers => array['t', null])`);
    await sql(`select jobs.publish_bulk(array[('gc.job', null, null, null, null, null)::jobs.bulk_job], queue => 'gc', group_id => 'g3')`);
    expect(await sql(`select group_id, group_tier from jobs.all order by job_id`)).toEqual([
      { group_id: 'g1', group_tier: 'pro' }, { group_id: 'g2', group_tier: 't' },
      { group_id: null, group_tier: null }, { group_id: 'g3', group_tier: null },
    ]);
    await sql(`select jobs.create_queue('gc', group_concurrency => 10)`);
    await sql(`select jobs.ack(job_id) from jobs.claim(10, queue => 'gc')`);
    expect(await sql(`select group_id, group_tier, status from jobs.job where job_id = $1`, [id]))
      .toEqual([{ group_id: 'g1', group_tier: 'pro', status: 'success' }]);
    // A failure redriven comes back in its group; a dedupe replace takes the new one.
    const failed = (await sql<{ id: string }>(`select jobs.publish('gc.job', queue => 'gc', group_id => 'g4', max_retries => 0)::text as id`))[0]!.id;
    await sql(`select jobs.nack(job_id, 'no') from jobs.claim(10, queue => 'gc')`);
    expect(await sql(`select jobs.redrive(job_ids => array[$1::bigint]) as n`, [failed])).toEqual([{ n: 1 }]);
    expect(await sql(`select group_id from jobs.job_queue where job_id = $1`, [failed])).toEqual([{ group_id: 'g4' }]);
    const kept = (await sql<{ id: string }>(`select jobs.publish('gc.job', queue => 'gc', dedupe_key => 'k', group_id => 'a')::text as id`))[0]!.id;
    await sql(`select jobs.publish('gc.job', queue => 'gc', dedupe_key => 'k', dedupe_mode => 'replace', group_id => 'b', group_tier => 't')`);
    expect(await sql(`select group_id, group_tier from jobs.job_queue where job_id = $1`, [kept])).toEqual([{ group_id: 'b', group_tier: 't' }]);
  });

  it('refuses bad groups, naming the field, writing nothing', async () => {
    const cases: [string, string][] = [
      [`select jobs.publish('gc.job', group_id => '')`, 'group_id'],
      [`select jobs.publish('gc.job', group_id => E' \\t')`, 'group_id'],
      [`select jobs.publish('gc.job', group_id => repeat('x', 201))`, 'group_id'],
      [`select jobs.publish('gc.job', group_tier => 'pro')`, 'group_tier'],
      [`select jobs.publish('gc.job', group_id => 'g', group_tier => '')`, 'group_tier'],
      [`select jobs.publish('gc.job', group_id => 'g', group_tier => '  ')`, 'group_tier'],
      [`select jobs.publish_arrays(array['a', 'b'], group_ids => array['g', ''])`, 'jobs[2].group_id'],
      [`select jobs.publish_arrays(array['a', 'b'], group_ids => array['g', ' '])`, 'jobs[2].group_id'],
      [`select jobs.publish_arrays(array['a', 'b'], group_ids => array['g', 'h'], group_tiers => array[null, E'\\n'])`, 'jobs[2].group_tier'],
      [`select jobs.publish_arrays(array['a', 'b'], group_tiers => array[null, 't'])`, 'jobs[2].group_tier'],
      [`select jobs.publish_bulk(array[('a', null, null, null, null, null)::jobs.bulk_job], group_tier => 't')`, 'jobs[1].group_tier'],
    ];
    for (const [text, column] of cases) {
      const e = await sqlErrorOf(sql, text);
      expect(e, text).toMatchObject({ code: 'PD019', column });
    }
    expect(await sql('select count(*)::int as n from jobs.job_queue')).toEqual([{ n: 0 }]);
  });

  it('refuses bad queue settings, naming the argument', async () => {
    const cases: [string, string][] = [
      [`select jobs.create_queue('gc', group_concurrency => 0)`, 'group_concurrency'],
      [`select jobs.create_queue('gc', group_concurrency => 100001)`, 'group_concurrency'],
      [`select jobs.create_queue('gc', group_tiers => '[1]')`, 'group_tiers'],
      [`select jobs.create_queue('gc', group_tiers => '{" ": 3}')`, 'group_tiers'],
      [`select jobs.create_queue('gc', group_tiers => '{"pro": 0}')`, 'group_tiers.pro'],
      [`select jobs.create_queue('gc', group_tiers => '{"pro": 1.5}')`, 'group_tiers.pro'],
      [`select jobs.create_queue('gc', group_tiers => '{"pro": 5.5, "team": 2}')`, 'group_tiers.pro'],
      [`select jobs.create_queue('gc', group_tiers => '{"pro": "2"}')`, 'group_tiers.pro'],
      [`select jobs.create_queue('gc2', group_tiers => '{"pro": 2}')`, 'group_tiers'],
      [`select jobs.create_queue('gc', group_concurrency => null)`, 'group_concurrency'],
    ];
    await sql(`select jobs.create_queue('gc', group_tiers => '{"pro": 3}')`);
    for (const [text, column] of cases) {
      const e = await sqlErrorOf(sql, text);
      expect(e, text).toMatchObject({ code: 'PD019', column });
    }
    expect(await sql(`select group_concurrency, group_tiers from jobs.queue where name = 'gc'`))
      .toEqual([{ group_concurrency: 2, group_tiers: { pro: 3 } }]);
    expect(await sql(`select count(*)::int as n from jobs.queue where name = 'gc2'`)).toEqual([{ n: 0 }]);
  });
});

describe('the plan of a claim on a group-limited queue', () => {
  // 10,000 waiting jobs of a group at its cap ahead of 2,000 of 200 others,
  // and 500 running jobs of another queue, analyzed: the claims count running
  // jobs through the partial index of grouped leases (not every lease) and pick through the claim index, never reading the
  // table whole; a session's next claims (drain()'s, within a second of
  // the last full read: `now` given) start past the jobs of the full group.
  it('uses indexes, generic plans included, and steps over a full group once', async () => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      // The server's clock: the other queue's leases (60 s) have not passed.
      const t0 = (await client.query<{ t: string }>('select now()::text as t')).rows[0]!.t;
      await client.query(`select jobs.publish_arrays(array(select 'noop' from generate_series(1, 10000)), queue => 'gc',
                            group_ids => array(select 'big' from generate_series(1, 10000)), now => $1::timestamptz - interval '1 hour')`, [t0]);
      await client.query(`select jobs.publish_arrays(array(select 'noop' from generate_series(1, 2000)), queue => 'gc',
                            group_ids => array(select 'g' || (i % 200) from generate_series(1, 2000) i),
                            now => $1::timestamptz - interval '30 minutes')`, [t0]);
      expect((await client.query(`select count(*)::int as n from jobs.claim(2, queue => 'gc', now => $1)`, [t0])).rows).toEqual([{ n: 2 }]);
      // Another queue's 500 running jobs: in the lease index, not in the index of grouped leases.
      await fill(client, 500);
      await client.query(`select count(*) from jobs.consume(500)`);
      await client.query('analyze jobs.job_queue');
      await explainSession(client);
      const cursorBuffers: number[] = [];
      for (let call = 1; call <= 7; call++) { // past the switch to generic plans
        const plans = await capturePlans(client, async () => {
          const { rows } = await client.query<{ r: { count: number; jobs: { group: unknown } } }>(
            `select jobs.claim_json(10, queue => 'gc', now => $1::timestamptz + make_interval(secs => $2 * 0.01)) as r`, [t0, call]);
          expect(rows[0]!.r.count, `call ${call}`).toBe(10);
        });
        expect(seqScansOfQueue(plans), `call ${call}`).toEqual([]);
        const count = plans.filter((p) => /jobs\.job_queue q\s+where q\.queue = p_queue and q\.group_id is not null/.test(p.text));
        expect(count.length, `call ${call}: the count among ${plans.map((p) => p.statement).join(' | ')}`).toBe(1);
        // Through its own index (an index or bitmap scan), never the lease index of every queue's running jobs.
        expect(scans(count[0]!).filter((x) => !/^Bitmap Heap Scan/.test(x)), count[0]!.text)
          .toEqual([expect.stringMatching(/^(Bitmap Index Scan on|Index (Only )?Scan using) job_queue_group_running_idx( on job_queue)?$/)]);
        const picks = plans.filter((p) => /for update skip locked/i.test(p.text) && /q\.group_tier/.test(p.text));
        expect(picks.length, `call ${call}: the pick among ${plans.map((p) => p.statement).join(' | ')}`).toBeGreaterThan(0);
        for (const p of picks) expect(scans(p), p.text).toEqual([expect.stringMatching(/^Index Scan using job_queue_pending_idx on job_queue/)]);
        cursorBuffers.push(picks.reduce((sum, p) => sum + Number(/Buffers: shared hit=(\d+)/.exec(p.text)?.[1] ?? 0), 0));
      }
      // The first claim read the full group's 10,000 jobs; the next start past them.
      expect(cursorBuffers[0]).toBeGreaterThan(100);
      for (const b of cursorBuffers.slice(1)) expect(b, cursorBuffers.join(' ')).toBeLessThan(50);
    } finally {
      await client.end();
    }
  });
});
