// Claim and ack time as the backlog grows: 1k, 100k and 1M pending jobs.
// Through the SQL contract (jobs.consume(500), jobs.ack(ids)), one session, a
// backlog topped up after each batch so it stays at N. The backlogs take
// turns over ROUNDS rounds, so a change in the machine's load lands on all of
// them rather than on one. Then, in the last round, the plans of one more
// consume and ack, after PL/pgSQL has switched to its cached generic plans.
import { writeFileSync } from 'node:fs';
import pg from 'pg';
import { migrate } from '../src/migrate.js';
import { pgDriver } from '../src/db/pg.js';
import { fill } from './fill.js';
import { capturePlans, explainSession, scans, seqScansOfQueue, type CapturedPlan } from './explain.js';
import { fmtMs, fmtRatio, median, now, quantile, table } from './stats.js';

export const BACKLOGS = [1_000, 100_000, 1_000_000];
const BATCH = 500;
const ROUNDS = 3;
const TIMED = 20; // per backlog and round
/** PL/pgSQL switches a statement to a generic plan after 5 custom ones. */
const WARM = 6;

interface Batch {
  consumeMs: number;
  ackMs: number;
}

async function consumeAck(db: pg.ClientBase): Promise<Batch> {
  let t = now();
  const { rows } = await db.query<{ ids: string[] | null }>('select array_agg(job_id) as ids from jobs.consume($1)', [BATCH]);
  const consumeMs = now() - t;
  const ids = rows[0]!.ids ?? [];
  if (ids.length !== BATCH) throw new Error(`consume(${BATCH}) returned ${ids.length} jobs`);
  t = now();
  const acked = (await db.query<{ n: number }>('select jobs.ack($1::bigint[]) as n', [ids])).rows[0]!.n;
  const ackMs = now() - t;
  if (acked !== BATCH) throw new Error(`ack of ${BATCH} jobs acknowledged ${acked}`);
  await fill(db, BATCH);
  return { consumeMs, ackMs };
}

export interface ScaleRow {
  pending: number;
  consume: number[];
  ack: number[];
  consumePlans: CapturedPlan[];
  ackPlans: CapturedPlan[];
}

export async function scale(url: string, backlogs = BACKLOGS, progress: (line: string) => void = () => {}): Promise<ScaleRow[]> {
  const driver = pgDriver(url, { max: 1 });
  await migrate(driver);
  await driver.close();
  const rows: ScaleRow[] = [];
  const timed = new pg.Client({ connectionString: url });
  const explained = new pg.Client({ connectionString: url });
  await timed.connect();
  await explained.connect();
  try {
    await explainSession(explained);
    const byBacklog = new Map(backlogs.map((pending) => [pending, { batches: [] as Batch[], consumePlans: [] as CapturedPlan[], ackPlans: [] as CapturedPlan[] }]));
    for (let round = 1; round <= ROUNDS; round++) {
      for (const pending of backlogs) {
        const row = byBacklog.get(pending)!;
        await timed.query('truncate jobs.job_queue, jobs.job');
        await fill(timed, pending);
        await timed.query('vacuum analyze jobs.job_queue');
        await timed.query('checkpoint');
        for (let i = 0; i < TIMED; i++) row.batches.push(await consumeAck(timed));
        progress(`  scale ${pending}, round ${round}: consume(500) median ${fmtMs(median(row.batches.map((b) => b.consumeMs)))} ms so far`);
        if (round < ROUNDS) continue;
        // The explained session's own plan cache warms up here.
        for (let i = 0; i < WARM + 1; i++) {
          let ids: string[] = [];
          row.consumePlans = await capturePlans(explained, async () => {
            ids = (await explained.query<{ ids: string[] }>('select array_agg(job_id) as ids from jobs.consume($1)', [BATCH])).rows[0]!.ids;
          });
          row.ackPlans = await capturePlans(explained, async () => {
            await explained.query('select jobs.ack($1::bigint[])', [ids]);
          });
          await fill(timed, BATCH);
        }
      }
    }
    for (const [pending, r] of byBacklog) {
      rows.push({ pending, consume: r.batches.map((b) => b.consumeMs), ack: r.batches.map((b) => b.ackMs),
                  consumePlans: r.consumePlans, ackPlans: r.ackPlans });
    }
  } finally {
    await timed.end();
    await explained.end();
  }
  return rows;
}

function queueScans(plans: readonly CapturedPlan[]): string {
  const all = new Set(plans.flatMap(scans).filter((s) => / on (job_queue|job)$/.test(s)));
  return [...all].map((s) => s.replace(/ on (job_queue|job)$/, ' ($1)').replace(/^Index Scan using /, '')).join(', ');
}

export function scaleTable(rows: readonly ScaleRow[]): string {
  const base = rows[0]!;
  return table(['pending jobs', 'consume(500) ms, median (p90)', 'vs first', 'ack(500) ms, median (p90)', 'vs first',
                'index scans of the queue (consume / ack)', 'seq scans of the queue'],
    rows.map((r) => [r.pending.toLocaleString('en-US'),
      `${fmtMs(median(r.consume))} (${fmtMs(quantile(r.consume, 0.9))})`, fmtRatio(median(r.consume) / median(base.consume)),
      `${fmtMs(median(r.ack))} (${fmtMs(quantile(r.ack, 0.9))})`, fmtRatio(median(r.ack) / median(base.ack)),
      `${queueScans(r.consumePlans)} / ${queueScans(r.ackPlans)}`,
      String(seqScansOfQueue([...r.consumePlans, ...r.ackPlans]).length)]));
}

/** Writes the captured plans of each backlog to a file, for reading. */
export function writePlans(path: string, rows: readonly ScaleRow[]): void {
  writeFileSync(path, rows.map((r) => [`#### ${r.pending} pending: consume(${BATCH})`, ...r.consumePlans.map((p) => p.text),
    `#### ${r.pending} pending: ack(${BATCH} ids)`, ...r.ackPlans.map((p) => p.text)].join('\n\n')).join('\n\n'));
}
