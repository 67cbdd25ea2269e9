// Stress of dedupe mode keep_waiting (sql/0005_publish_keyed.sql, sql/0004):
// bulks of keep_waiting keys, single keep_waiting publishes of the same keys,
// drains that claim and settle in transactions holding their rows a moment
// (some nacks; jobs of one retry, so some fail) and a redrive of the failed,
// all at once on one migrated database, for a number of seconds. Reports each
// actor's latencies and errors by SQLSTATE (40P01: a deadlock; PD011: kept
// changing hands), and checks each answer: a publish must not answer a job a
// claim had taken (running, retrying or ended) before the publish was sent,
// unless a redrive sent after that claim put it back. With KW_CHECK=1 (the
// default) each publish runs in a transaction that reads its answered jobs
// again before it commits: one a claim started (or that ended) meanwhile was
// answered unlocked, while a claim was taking it (startedBeforeCommit).
//   esbuild bench/keep-waiting-stress.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=dist/bench/keep-waiting-stress.mjs && node dist/bench/keep-waiting-stress.mjs DSN [SECONDS]
// (sizes below: KW_KEYS, KW_BULK, KW_BULKS, KW_SINGLES, KW_DRAINS, KW_SERIALS, KW_HOLD_MS, KW_REDRIVES, KW_CHECK)
import pg from 'pg';

const url = process.argv[2];
if (!url) throw new Error('usage: keep-waiting-stress DSN [SECONDS]');
const seconds = Number(process.argv[3] ?? 30);
// Sizes, each overridable by an environment variable of its name (KW_BULKS=5).
const size = (name: string, d: number) => Number(process.env[`KW_${name}`] ?? d);
const [KEYS, BULK, BULKS, SINGLES, DRAINS, SERIALS, HOLD_MS, REDRIVES, CHECK] =
  [size('KEYS', 200), size('BULK', 50), size('BULKS', 3), size('SINGLES', 3), size('DRAINS', 3), size('SERIALS', 20), size('HOLD_MS', 5),
   size('REDRIVES', 1), size('CHECK', 1)];

type Answer = { key: string; id: string; sent: number; answered: number };
const answers: Answer[] = [];
const claims = new Map<string, number[]>(); // job id: when each claim of it had committed
const redrives: { sent: number; ids: Set<string> }[] = [];
const errors = new Map<string, number>();
const latency = { bulk: [] as number[], single: [] as number[], settle: [] as number[] };
const end = Date.now() + seconds * 1000;
const started = { bulk: 0, single: 0 }; // answered jobs found started or ended before the publish committed

/**
 * The publish q, in a transaction that then reads the jobs it answered
 * (CHECK): each must still wait to start, as the publish held it.
 */
async function publishChecked(c: pg.Client, actor: 'bulk' | 'single', q: string, params: unknown[]): Promise<string[]> {
  if (!CHECK) return (await c.query<{ ids: string[] }>(q, params)).rows[0]!.ids;
  await c.query('begin');
  try {
    const ids = (await c.query<{ ids: string[] }>(q, params)).rows[0]!.ids;
    const { n } = (await c.query<{ n: number }>(
      `select count(*)::int as n from unnest($1::bigint[]) i
       where not exists (select from jobs.job_queue q where q.job_id = i and q.lease_until is null and q.attempt = 0)`, [ids])).rows[0]!;
    started[actor] += n;
    await c.query('commit');
    return ids;
  } catch (e) {
    await c.query('rollback').catch(() => {});
    throw e;
  }
}

const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
const keyOf = (i: number) => `k${i}`;
const serialOf = () => (Math.random() < 0.5 ? null : `s${Math.floor(Math.random() * SERIALS)}`);
const failed = (actor: string, e: unknown) => {
  const code = `${actor} ${(e as { code?: string }).code ?? String(e)}`;
  errors.set(code, (errors.get(code) ?? 0) + 1);
};
const client = async () => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  return c;
};

async function bulk() {
  const c = await client();
  while (Date.now() < end) {
    const keys = [...Array(KEYS).keys()].sort(() => Math.random() - 0.5).slice(0, BULK).map(keyOf);
    const sent = Date.now();
    try {
      const ids = await publishChecked(c, 'bulk',
        `select jobs.publish_arrays(array_fill('kw'::text, array[$3::int]), dedupe_keys => $1::text[], serial_keys => $2::text[],
                max_retries => array_fill(1, array[$3::int]), dedupe_modes => array_fill('keep_waiting'::text, array[$3::int]))::text[] as ids`,
        [keys, keys.map(serialOf), BULK]);
      const answered = Date.now();
      latency.bulk.push(answered - sent);
      keys.forEach((key, i) => answers.push({ key, id: ids[i]!, sent, answered }));
    } catch (e) {
      failed('bulk', e);
    }
  }
  await c.end();
}

async function single() {
  const c = await client();
  while (Date.now() < end) {
    const key = keyOf(Math.floor(Math.random() * KEYS));
    const sent = Date.now();
    try {
      const [id] = await publishChecked(c, 'single',
        `select array[jobs.publish('kw', dedupe_key => $1, serial_key => $2, max_retries => 1, dedupe_mode => 'keep_waiting')]::text[] as ids`,
        [key, serialOf()]);
      const answered = Date.now();
      latency.single.push(answered - sent);
      answers.push({ key, id: id!, sent, answered });
    } catch (e) {
      failed('single', e);
    }
  }
  await c.end();
}

/**
 * Claims 25 and settles them (a fifth nacked) in one jobs.settle_arrays, as
 * drain() does, holding the rows HOLD_MS (5) before the commit; one job per
 * transaction for a drain of transactional handlers (each its own ack).
 */
async function drain(transactional: boolean) {
  const c = await client();
  while (Date.now() < end) {
    try {
      const { rows } = await c.query<{ id: string; attempt: number }>(`select job_id::text as id, attempt from jobs.consume(25)`);
      const claimed = Date.now();
      for (const r of rows) claims.set(r.id, [...claims.get(r.id) ?? [], claimed]);
      if (rows.length === 0) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      const began = Date.now();
      for (const batch of transactional ? rows.map((r) => [r]) : [rows]) {
        const outcomes = batch.map(() => (Math.random() < 0.2 ? 'nack' : 'ack'));
        await c.query('begin');
        await c.query(`select jobs.settle_arrays($1::bigint[], $2::integer[], $3::text[], errors => $4::text[],
                                                 retry_at => array_fill(now(), array[$5::int]))`,
                      [batch.map((r) => r.id), batch.map((r) => r.attempt), outcomes, outcomes.map(() => 'boom'), batch.length]);
        if (HOLD_MS > 0) await c.query(`select pg_sleep($1::float8 / 1000)`, [HOLD_MS]);
        await c.query('commit');
      }
      latency.settle.push(Date.now() - began);
    } catch (e) {
      failed('drain', e);
      await c.query('rollback').catch(() => {});
    }
  }
  await c.end();
}

async function redrive() {
  const c = await client();
  while (Date.now() < end) {
    try {
      const { rows } = await c.query<{ id: string }>(`select job_id::text as id from jobs.job where status = 'failure'`);
      if (rows.length > 0) {
        const ids = rows.map((r) => r.id);
        redrives.push({ sent: Date.now(), ids: new Set(ids) });
        await c.query(`select jobs.redrive(job_ids => $1::bigint[])`, [ids]);
      }
    } catch (e) {
      failed('redrive', e);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await c.end();
}

const setup = await client();
await setup.query(`truncate jobs.job_queue, jobs.job, jobs.dependency`);
await Promise.all([
  ...Array.from({ length: BULKS }, bulk), ...Array.from({ length: SINGLES }, single),
  ...Array.from({ length: DRAINS }, (_, i) => drain(i === 0)), ...Array.from({ length: REDRIVES }, redrive),
]);

// An answer is wrong when a claim of its job had committed before the
// publish was sent, and no redrive sent after that claim (and before the
// answer) could have put it back unstarted.
const wrong = answers.filter((a) => {
  const before = (claims.get(a.id) ?? []).filter((t) => t < a.sent);
  if (before.length === 0) return false;
  const last = Math.max(...before);
  return !redrives.some((r) => r.ids.has(a.id) && r.sent > last && r.sent < a.answered);
});
const { rows: [counts] } = await setup.query(
  `select (select count(*) from jobs.job where status = 'success')::int as succeeded,
          (select count(*) from jobs.job where status = 'failure')::int as failed,
          (select count(*) from jobs.job_queue)::int as queued`);
await setup.end();
const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
  return { n: s.length, p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? 0 };
};
console.log(JSON.stringify({
  seconds, sizes: { KEYS, BULK, BULKS, SINGLES, DRAINS, SERIALS, HOLD_MS, REDRIVES, CHECK }, bulk: stats(latency.bulk), single: stats(latency.single), settle: stats(latency.settle),
  errors: Object.fromEntries(errors), wrongAnswers: wrong.length, startedBeforeCommit: CHECK ? started : 'not checked', wrongExample: wrong[0], ...counts,
}));
