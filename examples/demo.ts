// `npm start`: a real run on the embedded PostgreSQL (or DATABASE_URL):
// migrate, publish a mix of jobs, drain, wait for the retry, drain again.
// The deadline is a budget, not a duration: a drain returns as soon as the
// queue is empty, and takes only jobs whose timeout (60 s by default) fits.
import { connect } from '../src/cli/connect.js';
import { formatReport } from '../src/cli/format.js';
import { createQueue } from '../src/index.js';
import * as tasks from './tasks.js';

const { driver } = await connect(undefined, (line) => console.log(line));
const queue = createQueue({ driver, tasks });
await queue.migrate();
// Start from a clean demo: earlier runs' demo jobs go away.
await driver.query(`delete from jobs.job_queue where task like 'demo.%'`);
await driver.query(`delete from jobs.job where task like 'demo.%'`);

const ids = await queue.publishBulk([
  { task: 'demo.math.sum', body: { a: 1, b: 2 } },
  { task: 'demo.email.send', body: { to: 'ada@example.com' }, priority: 10 },
  { task: 'demo.flaky', body: {}, maxRetries: 2 },
  { task: 'demo.math.sum', body: { a: 40, b: 2 }, delaySeconds: 3 },
]);
console.log(`published jobs ${ids.join(', ')} (email.send has priority 10; the last sum runs in 3 s)`);

const first = await queue.drain(50, Date.now() + 90_000);
console.log(`\nfirst drain\n${formatReport(first)}`);

const { rows } = await driver.query<{ wait_ms: number }>(
  `select greatest(0, extract(epoch from max(scheduled_at) - now()) * 1000)::float8 as wait_ms
   from jobs.job_queue where task like 'demo.%'`);
const waitMs = Math.ceil(Number(rows[0]?.wait_ms ?? 0)) + 100;
console.log(`\nwaiting ${(waitMs / 1000).toFixed(1)} s for the retry's backoff and the scheduled job…`);
await new Promise((r) => setTimeout(r, waitMs));

const second = await queue.drain(50, Date.now() + 90_000);
console.log(`\nsecond drain\n${formatReport(second)}`);

const ended = await driver.query<{ job_id: string; task: string; status: string; attempts: number; result: unknown }>(
  `select job_id::text, task, status, attempts, result from jobs.job where task like 'demo.%' order by ended_at, job_id`);
console.log('\njobs.job:');
for (const j of ended.rows) console.log(`  ${j.job_id} ${j.task} ${j.status} after ${j.attempts} attempt(s): ${JSON.stringify(j.result)}`);
await queue.close();
