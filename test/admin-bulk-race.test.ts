// Set-based admin operations (sql/0028) while drains claim and settle: 3
// drains drain 1000 jobs (some in serial keys, some with a dependency)
// while cancel_bulk, reschedule and fail run on random subsets. Afterwards
// every job ended exactly once or waits, unchanged in half, and serial keys
// and dependencies are consistent.
import { expect, it } from 'vitest';
import { createQueue } from '../src/index.js';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const N = 1000;

it('cancel many, reschedule and fail on random subsets while 3 drains run: nothing lost, nothing half-changed', async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  // Every 5th job in one of 10 serial keys; every 7th depends on the job before it.
  await sql(`do $$ declare v_last bigint; begin
    for i in 1..${N} loop
      v_last := jobs.publish('t', to_jsonb(i), serial_key => case when i % 5 = 0 then 'k' || (i % 10) end,
                             depends_on => case when i % 7 = 0 then array[v_last] end);
    end loop; end $$`);
  const ids = (await sql<{ id: string }>('select job_id::text as id from jobs.job_queue order by job_id')).map((r) => r.id);
  expect(ids).toHaveLength(N);

  const runs = new Map<string, number>();
  const queue = createQueue({
    driver: { ...db.driver, close: async () => {} },
    tasks: {
      t: async (_body: unknown, ctx: { job: { id: string } }) => {
        runs.set(ctx.job.id, (runs.get(ctx.job.id) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, Math.random() * 3));
      },
    },
  });

  const pick = () => ids.filter(() => Math.random() < 0.04);
  let draining = true;
  const counted = { failed: 0 };
  const admin = async (worker: number) => {
    for (let i = 0; draining || i < 10; i++) {
      const subset = pick();
      const op = (i + worker) % 3;
      if (op === 0) await queue.cancel(subset, 'race');
      else if (op === 1) await queue.reschedule(subset, { runAt: new Date(Date.now() + 3_600_000), priority: 3 });
      else {
        const n = await queue.fail(subset, 'race');
        counted.failed += n;
      }
    }
  };
  const drains = async () => {
    // Until a round of 3 drains claims nothing: what is left waits for later.
    for (;;) {
      const reports = await Promise.all([0, 1, 2].map(() => queue.drain(25, Date.now() + 120_000, { concurrency: 5 })));
      if (reports.every((r) => r.claimed === 0)) return;
    }
  };
  const admins = Promise.all([0, 1, 2].map(admin));
  await drains();
  draining = false;
  await admins;
  await drains();

  // Every job is in exactly one place: waiting in job_queue, or ended once in jobs.job.
  const [place] = await sql<{ queued: number; ended: number; both: number }>(`select
      (select count(*)::int from jobs.job_queue) as queued, (select count(*)::int from jobs.job) as ended,
      (select count(*)::int from jobs.job j join jobs.job_queue q using (job_id)) as both`);
  expect(place!.queued + place!.ended).toBe(N);
  expect(place!.both).toBe(0);
  // Nothing left running or with a half-done cancel; what waits is rescheduled, blocked behind it, or in a key behind it.
  expect(await sql(`select job_id from jobs.job_queue
                    where lease_until is not null or cancel_requested_at is not null
                       or (scheduled_at <= now() and waiting_deps = 0 and not serial_wait)`)).toEqual([]);
  // Every job that fail() counted is a dead letter with its reason, and no other job is.
  const [failed] = await sql<{ n: number; other: number }>(`select count(*) filter (where error like 'failed: race%')::int as n,
      count(*) filter (where error not like 'failed: race%')::int as other from jobs.job where status = 'failure'`);
  expect(failed).toEqual({ n: counted.failed, other: 0 });
  // A success ran at least once; a job ended without running (cancelled, failed by fail) never started.
  const ended = await sql<{ id: string; status: string; started: boolean }>(
    `select job_id::text as id, status, started_at is not null as started from jobs.job`);
  for (const j of ended) {
    if (j.status === 'success') expect(runs.get(j.id), j.id).toBeGreaterThanOrEqual(1);
    if (!j.started) expect(runs.has(j.id), j.id).toBe(false);
  }
  // Serial keys: a key with waiting jobs has exactly one head, its first job.
  expect(await sql(`select serial_key from jobs.job_queue where serial_key is not null group by serial_key
                    having count(*) filter (where not serial_wait) <> 1
                        or min(job_id) <> min(job_id) filter (where not serial_wait)`)).toEqual([]);
  // Dependencies: a blocked job waits on as many active jobs as it counts; none on an ended one.
  expect(await sql(`select q.job_id from jobs.job_queue q
                    left join jobs.dependency d on d.job_id = q.job_id
                    left join jobs.job_queue dq on dq.job_id = d.depends_on
                    group by q.job_id, q.waiting_deps
                    having q.waiting_deps <> count(dq.job_id) or count(d.job_id) <> count(dq.job_id)`)).toEqual([]);
  // Ran something, changed something: the race happened.
  expect(runs.size).toBeGreaterThan(100);
  expect(counted.failed).toBeGreaterThan(0);
}, 120_000);
