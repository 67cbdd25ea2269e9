// A dependant cancelled because one of its dependencies failed, redriven
// (include_cancelled) while another of its dependencies is still active:
// that dependency's success must not strand it (waiting_deps below zero,
// never claimed).
import { expect, it } from 'vitest';
import { testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
const id = async (text: string) => (await sql<{ id: string }>(`select ${text}::text as id`))[0]!.id;

it('runs once its other dependency succeeded', async () => {
  const b = await id(`jobs.publish('b', max_retries => 0)`);
  const c = await id(`jobs.publish('c', scheduled_at => now() + interval '1 hour')`);
  const d = await id(`jobs.publish('d', depends_on => array[${b}, ${c}]::bigint[])`);
  await sql(`select jobs.nack(job_id, 'b failed') from jobs.consume(1)`);
  expect(await sql(`select status from jobs.job where job_id = $1`, [d])).toEqual([{ status: 'cancelled' }]);
  expect(await sql(`select jobs.redrive(job_ids => array[$1::bigint], include_cancelled => true) as n`, [d])).toEqual([{ n: 1 }]);
  await sql(`update jobs.job_queue set scheduled_at = now() - interval '1 second' where job_id = $1`, [c]);
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: c }]);
  await sql(`select jobs.ack($1::bigint)`, [c]);
  expect(await sql(`select job_id::text as id from jobs.consume(5)`)).toEqual([{ id: d }]);
});
