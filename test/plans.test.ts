// The plans PostgreSQL picks for consuming and acknowledging, on a queue big
// enough (20,000 pending, analyzed) that a sequential scan would be chosen if
// no index fitted. Captured with auto_explain from inside the PL/pgSQL
// functions, after the switch to cached generic plans (6th call on). The
// planner decides alone: enable_seqscan is left on.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturePlans, EXPLAIN_OPTIONS, explainSession, scans, seqScansOfQueue, toPlan, type CapturedPlan } from '../bench/explain.js';
import { fill } from '../bench/fill.js';
import { COUNTS_SQL } from '../src/http/counts.js';
import { createQueue } from '../src/index.js';
import { pgDriver } from '../src/db/pg.js';
import { testDb } from './support/db.js';

const db = await testDb();
const client = new pg.Client({ connectionString: db.url });

const indexScanOfQueue = /^Index (Only )?Scan using \S+ on job_queue$/;

/** The plans whose statement text matches `re` (the statement's first lines). */
function plansOf(plans: readonly CapturedPlan[], re: RegExp): CapturedPlan[] {
  return plans.filter((p) => re.test(p.text.slice(0, p.text.indexOf('\n', p.text.indexOf('Query Text:') + 800))));
}

/** Buffers of an index (the claim index unless told) that the plans' scans of it read, summed; NaN when none scanned it. */
function indexBuffers(plans: readonly CapturedPlan[], index = 'job_queue_pending_idx'): number {
  const scan = new RegExp(`Scan using ${index}[^]*?Buffers: shared hit=(\\d+)`, 'g');
  const reads = plans.flatMap((p) => [...p.text.matchAll(scan)]);
  return reads.length ? reads.reduce((sum, m) => sum + Number(m[1]), 0) : NaN;
}

/**
 * Buffers the plans' scans of jobs.job_queue read (hit or read), summed: each scan node's own Buffers line
 * (a node with none read none), never its statement's planning or the catalog's pages (a plan made again
 * after an invalidation, as a loaded cluster's other databases' DDL can cause, reads those).
 */
function queueScanBuffers(plans: readonly CapturedPlan[]): number {
  let sum = 0;
  for (const p of plans) {
    for (const node of p.text.split(/\n(?=\s*->)/)) {
      if (!/(?:Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|Tid Scan|Tid Range Scan)(?: Backward)?(?: using \S+)? on job_queue\b/
        .test(node)) continue;
      const b = /Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?/.exec(node);
      sum += Number(b?.[1] ?? 0) + Number(b?.[2] ?? 0);
    }
  }
  return sum;
}

/** The server's clock. */
async function serverNow(): Promise<Date> {
  return (await client.query<{ t: Date }>('select now() as t')).rows[0]!.t;
}

/** The plans of one drain() claim of 500 jobs at `at` in this session; it must get all 500. */
async function drainClaim(at: Date): Promise<CapturedPlan[]> {
  return capturePlans(client, async () => {
    const { rows } = await client.query<{ r: { count: number } }>('select jobs.claim_json(500, now => $1) as r', [at]);
    expect(rows[0]!.r.count).toBe(500);
  });
}

/**
 * Runs fn on a queue whose claim index starts with the dead entries of 10,000
 * claimed and acknowledged jobs (2,500 left pending): autovacuum is off on
 * the table until fn ends, so nothing removes them.
 */
async function withDeadHead(fn: () => Promise<void>): Promise<void> {
  await client.query('truncate jobs.job_queue');
  await client.query('alter table jobs.job_queue set (autovacuum_enabled = false)');
  try {
    await fill(client, 12_500);
    await client.query('vacuum analyze jobs.job_queue');
    for (let batch = 0; batch < 20; batch++) {
      await client.query('select jobs.ack(array(select job_id from jobs.consume(500)))');
    }
    await fn();
  } finally {
    await client.query('alter table jobs.job_queue reset (autovacuum_enabled)');
  }
}

beforeAll(async () => {
  await client.connect();
  await fill(client, 20_000);
  await client.query('analyze jobs.job_queue');
  await explainSession(client);
});

afterAll(async () => {
  await client.end();
});

describe('plans on a queue of 20,000 pending jobs', () => {
  it('consume and ack use index scans and never read jobs.job_queue or jobs.job whole, generic plans included', async () => {
    for (let call = 1; call <= 7; call++) {
      let ids: string[] = [];
      const consumePlans = await capturePlans(client, async () => {
        ids = (await client.query<{ ids: string[] }>('select array_agg(job_id) as ids from jobs.consume(500)')).rows[0]!.ids;
      });
      const ackPlans = await capturePlans(client, async () => {
        const { rows } = await client.query<{ n: number }>('select jobs.ack($1::bigint[]) as n', [ids]);
        expect(rows[0]!.n).toBe(500);
      });
      expect(ids).toHaveLength(500);
      expect(consumePlans.length).toBeGreaterThan(0);
      expect(ackPlans.length).toBeGreaterThan(0);
      expect(seqScansOfQueue([...consumePlans, ...ackPlans]), `call ${call}`).toEqual([]);

      // The pick (FOR UPDATE SKIP LOCKED) walks an index of pending jobs in claim order.
      const picks = plansOf(consumePlans, /skip locked/i);
      expect(picks.length, `call ${call}: a SKIP LOCKED pick among ${consumePlans.map((p) => p.statement).join(' | ')}`)
        .toBeGreaterThan(0);
      for (const pick of picks) expect(scans(pick).some((s) => indexScanOfQueue.test(s)), pick.text).toBe(true);

      // Settling finds each acknowledged job by its key: not by the lease index, which these
      // statistics (taken with no job running) make look small, but which holds every running job.
      const deletes = plansOf(ackPlans, /delete from jobs\.job_queue/i);
      expect(deletes.length, `call ${call}: the delete among ${ackPlans.map((p) => p.statement).join(' | ')}`).toBeGreaterThan(0);
      for (const d of deletes) expect(scans(d).filter((s) => / on job_queue$/.test(s)), d.text).toEqual(['Index Scan using job_queue_pkey on job_queue']);
    }
  });

  it("drain()'s own statements (claim_json with settle riding along) never read the queue whole", async () => {
    // Index probes rated dear in the session (random_page_cost 40), as moved statistics can rate
    // them: the claim's update and settle find 500 rows by key, which a seq scan must not win.
    const pool = new pg.Pool({ connectionString: db.url, max: 1, options: `${EXPLAIN_OPTIONS} -c random_page_cost=40` });
    const plans: CapturedPlan[] = [];
    pool.on('connect', (c) => c.on('notice', (msg) => {
      const plan = toPlan(msg.message);
      if (plan) plans.push(plan);
    }));
    const queue = createQueue({ driver: pgDriver(pool), tasks: { noop: async () => null } });
    try {
      const pending = Number((await client.query<{ n: string }>('select count(*) as n from jobs.job_queue')).rows[0]!.n);
      expect(pending).toBeGreaterThan(10_000);
      // One session drains it all in claims of 500: well past the switch to generic plans.
      const report = await queue.drain(500, Date.now() + 120_000);
      expect(report).toMatchObject({ claimed: pending, succeeded: pending, stoppedBy: 'empty' });
      expect(report.batches).toBeGreaterThan(6);
      expect(plans.some((p) => /claim/i.test(p.text))).toBe(true);
      const seq = plans.filter((p) => seqScansOfQueue([p]).length > 0);
      expect(seqScansOfQueue(plans), seq[0]?.text).toEqual([]);
      // Its settles find each job by its key, too.
      const deletes = plansOf(plans, /delete from jobs\.job_queue/i);
      expect(deletes.length).toBeGreaterThan(0);
      for (const d of deletes) expect(scans(d).filter((s) => / on job_queue$/.test(s)), d.text).toEqual(['Index Scan using job_queue_pkey on job_queue']);
    } finally {
      await queue.close();
      await pool.end();
    }
  });

  it('jobs scheduled for later cost a claim nothing: it never reads them', async () => {
    expect(Number((await client.query<{ n: string }>('select count(*) as n from jobs.job_queue')).rows[0]!.n)).toBe(0);
    await fill(client, 20_000, { laterSeconds: 3600 });
    await client.query(`select jobs.publish('noop', priority => 5, scheduled_at => now() + interval '1 hour')`);
    await client.query('vacuum analyze jobs.job_queue'); // the drained jobs' dead entries are another matter
    // Buffers the call's scans of jobs.job_queue read: a scan through the 20,000 future jobs reads a few
    // hundred pages (a claim that starts at a remembered head probes above it, from it and behind it: ~55
    // in all; a consume ~20). Not the whole call's buffers: those counted its statements' planning too,
    // 71 on a quiet machine and 82, over the bound, when a plan was made again (a loaded cluster's
    // invalidations: other databases' DDL), more with the catalog caches reset.
    const touched = async (text: string) => queueScanBuffers(await capturePlans(client, async () => void (await client.query(text))));
    // Twice first, so the claims measured below have planned both ways (the second starts at
    // the head the first remembered).
    for (let warm = 0; warm < 2; warm++) await client.query('select jobs.claim_json(500, null, 600)');
    for (let call = 1; call <= 7; call++) { // past the switch to generic plans
      const { rows } = await client.query<{ r: { jobs: unknown; count: number; unfit: number } }>('select jobs.claim_json(500, null, 600) as r');
      expect(rows[0]!.r).toMatchObject({ jobs: null, count: 0, unfit: 0 });
      expect(await touched('select jobs.claim_json(500, null, 600) as r'), `call ${call}`).toBeLessThan(70);
      expect(await touched('select count(*) from jobs.consume(500)'), `call ${call}`).toBeLessThan(40);
    }
    // Without the priority-5 job the remembered head is among the 20,000 (all due at one instant),
    // and a claim that comes back short looks behind it too: still not through them.
    await client.query('delete from jobs.job_queue where priority = 5');
    for (let call = 1; call <= 7; call++) {
      expect(await touched('select jobs.claim_json(500, null, 600) as r'), `call ${call}, one priority`).toBeLessThan(70);
    }
  });

  it('the entries of jobs claimed since the last vacuum are read once per claim, not by every scan', async () => {
    await withDeadHead(async () => {
      const plans = await capturePlans(client, async () => {
        expect((await client.query('select job_id from jobs.consume(500)')).rowCount).toBe(500);
      });
      // The head probe steps over the 10,000 dead entries at the start of the claim index
      // (about 60 pages of it)…
      const [probe] = plansOf(plans, /order by q\.priority desc, q\.scheduled_at, q\.job_id limit 1/);
      expect(probe, `the head probe among ${plans.map((p) => p.statement).join(' | ')}`).toBeDefined();
      expect(indexBuffers([probe!]), probe!.text).toBeGreaterThan(40);
      // …and the pick's range scan starts where the probe stopped: it reads the pages of the
      // 500 entries it locks (4 or so) and the way down to them.
      const [pick] = plansOf(plans, /skip locked/i);
      expect(pick, `the pick among ${plans.map((p) => p.statement).join(' | ')}`).toBeDefined();
      expect(pick!.text).toMatch(/ROW\(scheduled_at, job_id\) >= ROW\(/);
      expect(indexBuffers([pick!]), pick!.text).toBeLessThan(20);
    });
  });

  it("a drain's next claim starts at the head its last one found: the dead entries before it are not read at all", async () => {
    await withDeadHead(async () => {
      // drain()'s claim, twice in one session at one `now` (the remembered head lasts a second of it).
      const at = await serverNow();
      await client.query(`select set_config('pgdrain.claim_head', '', false)`); // nothing remembered yet
      const first = await drainClaim(at);
      const second = await drainClaim(at);
      // The first claim walks the 10,000 dead entries (about 60 pages of the index); the second
      // starts where the first found the head, past all but the 500 entries the first claimed.
      const [firstRead, secondRead] = [indexBuffers(first), indexBuffers(second)];
      expect(firstRead, first.map((p) => p.text).join('\n')).toBeGreaterThan(60);
      expect(second.some((p) => /\(start\.scheduled_at, start\.job_id\)/.test(p.text)),
        `the probe from the remembered head among ${second.map((p) => p.statement).join(' | ')}`).toBe(true);
      expect(secondRead, second.map((p) => p.text).join('\n')).toBeLessThan(firstRead - 40);
    });
  });

  it("a drain's lease probe reads only the leases that passed since its last claim found none", async () => {
    await withDeadHead(async () => {
      // The 10,000 settled jobs' leases (60 s) have all passed two minutes on: their dead entries
      // lead the lease index, and a probe from its start reads every one of them.
      const at = new Date((await serverNow()).getTime() + 120_000);
      await client.query(`select set_config('pgdrain.lease_floor', '', false)`); // nothing remembered yet
      const first = await drainClaim(at);
      const second = await drainClaim(at);
      const [firstRead, secondRead] = [indexBuffers(first, 'job_queue_lease_idx'), indexBuffers(second, 'job_queue_lease_idx')];
      expect(firstRead, first.map((p) => p.text).join('\n')).toBeGreaterThan(20);
      expect(secondRead, second.map((p) => p.text).join('\n')).toBeLessThan(5);
    });
  });

  it('and the expiry that probe sets off reads from the same point', async () => {
    await withDeadHead(async () => {
      const at = new Date((await serverNow()).getTime() + 120_000);
      await client.query(`select set_config('pgdrain.lease_floor', '', false)`);
      await drainClaim(at); // reads the whole lease index: no lease passed up to `at`
      // One job whose lease passes half a second after `at`, as if its drain had died.
      const { rows: [job] } = await client.query<{ job_id: string }>(
        `update jobs.job_queue set attempt = 1, started_at = $1::timestamptz - interval '1 minute', lease_until = $1::timestamptz + interval '0.5 seconds'
         where job_id = (select min(job_id) from jobs.job_queue where lease_until is null) returning job_id`, [at]);
      const second = await drainClaim(new Date(at.getTime() + 1000));
      const [expiry] = plansOf(second, /with expired as/);
      expect(expiry, `the expiry among ${second.map((p) => p.statement).join(' | ')}`).toBeDefined();
      expect(indexBuffers([expiry!], 'job_queue_lease_idx'), expiry!.text).toBeLessThan(5);
      const { rows: [after] } = await client.query('select lease_until, last_error from jobs.job_queue where job_id = $1', [job!.job_id]);
      expect(after).toMatchObject({ lease_until: null, last_error: expect.stringMatching(/^timed out/) }); // back to pending, to retry
    });
  });
});

describe('what a metrics scrape reads', () => {
  it('/stats and /metrics count the queue and the dead letters, never the whole history', async () => {
    await client.query('truncate jobs.job_queue, jobs.job');
    await fill(client, 20_000);
    for (let batch = 0; batch < 40; batch++) await client.query('select jobs.ack(array(select job_id from jobs.consume(500)))');
    await fill(client, 100);
    await client.query(`update jobs.job set status = 'failure' where job_id in (select job_id from jobs.job limit 3)`);
    await client.query('analyze jobs.job_queue, jobs.job');
    const { rows } = await client.query<{ 'QUERY PLAN': string }>(`explain ${COUNTS_SQL}`);
    const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(plan).not.toMatch(/Seq Scan on job( |$)/m);
    // One row: the counts as JSON (rows), beside the stopped schedules' names.
    const [{ rows: counts }] = (await client.query<{ rows: { task: string; state: string; jobs: number }[] }>(COUNTS_SQL)).rows as [{ rows: { task: string; state: string; jobs: number }[] }];
    expect(counts.find((r) => r.state === 'failure')?.jobs).toBe(3);
    expect(counts.some((r) => r.state === 'success')).toBe(false);
  });
});

describe('what queue.queueSize reads', () => {
  it('counts a queue\'s jobs in each state through an index of jobs.job_queue, never the history', async () => {
    // Ended jobs in jobs.job (the tests above's, and 2,000 more): the history it must not read.
    await client.query('truncate jobs.job_queue');
    await fill(client, 2_000);
    for (let batch = 0; batch < 4; batch++) await client.query('select jobs.ack(array(select job_id from jobs.consume(500)))');
    // Queue sized among 20,000 jobs of other queues: 2,320 due (320 then leased, 20 of those until a minute ago), 500 later.
    await fill(client, 20_000);
    await client.query(`select jobs.create_queue('sized')`);
    const sized = `select count(*) from jobs.publish_bulk(array(select jsonb_populate_record(null::jobs.bulk_job,
      jsonb_build_object('task', 'noop', 'scheduled_at', now() + make_interval(secs => $2::float8)))
      from generate_series(1, $1::int)), queue => 'sized')`;
    await client.query(sized, [2_320, 0]);
    await client.query(sized, [500, 3600]);
    await client.query(`select count(*) from jobs.consume(320, queue => 'sized')`);
    await client.query(`update jobs.job_queue set lease_until = now() - interval '1 minute'
                        where job_id in (select job_id from jobs.job_queue where lease_until is not null limit 20)`);
    await client.query('analyze jobs.job_queue, jobs.job');
    const pool = new pg.Pool({ connectionString: db.url, max: 1, options: EXPLAIN_OPTIONS });
    const plans: CapturedPlan[] = [];
    pool.on('connect', (c) => c.on('notice', (msg) => {
      const plan = toPlan(msg.message);
      if (plan) plans.push(plan);
    }));
    const queue = createQueue({ driver: pgDriver(pool) });
    const expected = { pending: 2_000, scheduled: 500, running: 300, expired: 20 } as const;
    const index = { pending: 'job_queue_pending_idx', scheduled: 'job_queue_pending_idx', running: 'job_queue_lease_idx',
                    expired: 'job_queue_lease_idx' } as const;
    /** queueSize's answer, and the scans and text of its one statement's plan. */
    const tableScans = async (name: string, state: keyof typeof expected): Promise<[number, string[], string]> => {
      plans.length = 0;
      const n = await queue.queueSize(name, { state });
      const counts = plansOf(plans, /from jobs\.job_queue q/);
      expect(counts.length, `${name} ${state}: the count among ${plans.map((p) => p.statement).join(' | ')}`).toBe(1);
      return [n, scans(counts[0]!), counts[0]!.text];
    };
    try {
      // Each call is an unnamed statement, planned knowing its queue's name (no generic plan is reused).
      for (const state of ['pending', 'scheduled', 'running', 'expired'] as const) {
        const [n, read, text] = await tableScans('sized', state);
        expect(n, state).toBe(expected[state]);
        // By the index, or a bitmap of it: never a Seq Scan.
        expect(read.filter((s) => / on job(_queue)?$/.test(s) && !/^(Index|Bitmap Heap)/.test(s)), text).toEqual([]);
        expect(read.filter((s) => new RegExp(`^(Index (Only )?Scan using ${index[state]} on job_queue|Bitmap Index Scan on ${index[state]})$`).test(s)),
               text).toHaveLength(1);
      }
      // A queue holding most of jobs.job_queue may be counted by reading it whole (the active jobs: what
      // the index scan would read anyway), never by reading jobs.job.
      const [n, read, text] = await tableScans('default', 'pending');
      expect(n).toBe(20_000);
      expect(read.filter((s) => / on job$/.test(s)), text).toEqual([]);
      expect(read.filter((s) => / on job_queue$/.test(s)), text).toHaveLength(1);
    } finally {
      await queue.close();
      await pool.end();
    }
  });
});

// Last: it leaves the queue's pages laid out otherwise, which the buffer counts above would see.
describe('settling failures on a queue of 20,000 pending jobs', () => {
  // Reviewer Y: the nack and release updates filtered on "lease_until is not null", which these
  // statistics make look rare: the planner walked the lease index and, for each job, the whole
  // outcome array (10,000 nacks: 18-25 s instead of 0.15 s).
  it('nack and release find each job by its key too, generic plans included', async () => {
    await client.query('truncate jobs.job_queue');
    await fill(client, 20_000);
    await client.query('analyze jobs.job_queue');
    for (let call = 1; call <= 7; call++) {
      const ids = (await client.query<{ ids: string[] }>('select array_agg(job_id) as ids from jobs.consume(500)')).rows[0]!.ids;
      const settlePlans = await capturePlans(client, async () => {
        const nacked = (await client.query<{ n: number }>(`select jobs.nack($1::bigint[], array_fill('x'::text, array[250])) as n`,
                                                           [ids.slice(0, 250)])).rows[0]!.n;
        const released = (await client.query<{ n: number }>('select jobs.release($1::bigint[]) as n', [ids.slice(250)])).rows[0]!.n;
        expect([nacked, released]).toEqual([250, 250]);
      });
      const updates = plansOf(settlePlans, /update jobs\.job_queue/i);
      expect(updates.length, `call ${call}: the updates among ${settlePlans.map((p) => p.statement).join(' | ')}`).toBeGreaterThan(1);
      for (const u of updates) expect(scans(u).filter((s) => / on job_queue$/.test(s)), u.text).toEqual(['Index Scan using job_queue_pkey on job_queue']);
      await client.query('delete from jobs.job_queue where job_id = any($1::bigint[])', [ids]);
    }
  });
});

describe("a queue with max_running counts its running jobs", () => {
  // Its claims count the queue's running jobs (jobs.pick) from the slots its
  // claims handed out (jobs.running_slot), each checked by one probe of the
  // primary key: never through the lease index, which is not per queue and
  // keeps the entries of every job settled since the last vacuum.
  it('from its own slots and primary-key probes, not from every lease, generic plans included', async () => {
    await client.query('truncate jobs.job_queue, jobs.job, jobs.running_slot');
    await client.query('alter table jobs.job_queue set (autovacuum_enabled = false)');
    try {
      // Another queue: 10,000 jobs settled since the last vacuum, 500 running.
      await fill(client, 12_000);
      await client.query('vacuum analyze jobs.job_queue');
      for (let batch = 0; batch < 20; batch++) await client.query('select jobs.ack(array(select job_id from jobs.consume(500)))');
      await client.query('select count(*) from jobs.consume(500)');
      await client.query(`select jobs.create_queue('limited', max_running => 50)`);
      await client.query(`select jobs.publish('noop', queue => 'limited') from generate_series(1, 200)`);
      await client.query('analyze jobs.job_queue');
      for (let call = 1; call <= 7; call++) { // past the switch to generic plans
        const plans = await capturePlans(client, async () => {
          const { rows } = await client.query<{ r: { count: number } }>(`select jobs.claim_json(5, queue => 'limited') as r`);
          expect(rows[0]!.r.count).toBe(5);
        });
        // jobs.running_count (before the lock), the cleanup and the count under it.
        const counts = plansOf(plans, /jobs\.running_slot s (where s\.queue = v_queue|join jobs\.job_queue q on q\.job_id = s\.job_id\s+where s\.queue = p_queue)/);
        expect(counts.length, `call ${call}: the count among ${plans.map((p) => p.statement).join(' | ')}`).toBe(3);
        for (const c of counts) {
          const read = scans(c).filter((x) => / on job_queue( q)?$/.test(x));
          // The cleanup probes each slot's job by primary key; the count reads no job_queue at all.
          for (const r of read) expect(r, c.text).toMatch(/^Index (Only )?Scan using job_queue_pkey on job_queue/);
          expect(scans(c).some((x) => /Seq Scan on job_queue/.test(x)), c.text).toBe(false);
        }
        // The 500 running jobs and 10,000 settled ones of the other queue are not read.
        expect(indexBuffers(counts, 'job_queue_lease_idx'), counts.map((c) => c.text).join('\n')).toBeNaN();
      }
    } finally {
      await client.query('alter table jobs.job_queue reset (autovacuum_enabled)');
    }
  });
});
