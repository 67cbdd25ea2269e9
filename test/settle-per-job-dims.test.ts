// The per-job arrays of the array ack, nack and release (results, errors,
// attempts) must be one-dimensional: attempts[i] of a 2-D array is null, so
// attempts => '{{1},{1}}' passed the count (cardinality 2 for 2 job ids) and
// settled whatever delivery each job had, the guard attempts exist for.
// Now PD008 naming the field, and nothing settled.
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;

let ids: string[];
beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.dependency');
  await sql(`select jobs.publish_arrays(array['t', 't'])`);
  ids = (await sql<{ id: string }>(`select job_id::text as id from jobs.consume(10) order by job_id`)).map((r) => r.id);
});

const running = async () => (await sql<{ n: number }>(
  `select count(*)::int as n from jobs.job_queue where job_id > 0 and lease_until is not null`))[0]!.n;

describe('2-D per-job arrays', () => {
  it.each([
    ['ack attempts', `select jobs.ack($1::bigint[], attempts => '{{1},{1}}'::integer[])`, 'attempts'],
    ['ack results', `select jobs.ack($1::bigint[], results => '{{"1"},{"2"}}'::jsonb[])`, 'results'],
    ['nack errors', `select jobs.nack($1::bigint[], '{{a},{b}}'::text[])`, 'errors'],
    ['nack attempts', `select jobs.nack($1::bigint[], '{a,b}'::text[], attempts => '{{1},{1}}'::integer[])`, 'attempts'],
    ['release attempts', `select jobs.release($1::bigint[], '{{1},{1}}'::integer[])`, 'attempts'],
  ])('%s: PD008 naming the field, nothing settled', async (_, text, field) => {
    const e = await sqlErrorOf(sql, text, [ids]);
    expect([e.code, e.column, e.message]).toEqual(['PD008', field,
      `${field}: must be a one-dimensional array (${field}[i] belongs to job_ids[i]), got 2 dimensions`]);
    expect(await running()).toBe(2);
  });

  it('one-dimensional arrays settle as before; a wrong count is still refused', async () => {
    expect((await sqlErrorOf(sql, `select jobs.ack($1::bigint[], attempts => '{1}'::integer[])`, [ids])).message)
      .toBe('attempts: must be null or hold one element per job id (attempts[i] belongs to job_ids[i]), got 1 for 2 job ids');
    expect(await sql(`select jobs.ack($1::bigint[], attempts => '{2,1}'::integer[]) as n`, [ids])).toEqual([{ n: 1 }]);
    expect(await running()).toBe(1);
  });
});

// One-dimensional but not from 1 ('[0:1]={9,9}'): attempts[i] is the
// element at subscript i, so job_ids[1] was checked against the second
// element and job_ids[2] against none (null): the stale attempt 9 settled
// the second job's current delivery, and a results or errors array gave each
// job the wrong one (the last job none: its error not recorded).
describe('per-job arrays whose subscripts do not start at 1', () => {
  it.each([
    ['ack attempts', `select jobs.ack($1::bigint[], attempts => '[0:1]={9,9}'::integer[])`, 'attempts', 0],
    ['ack results', `select jobs.ack($1::bigint[], results => '[0:1]={"1","2"}'::jsonb[])`, 'results', 0],
    ['nack errors', `select jobs.nack($1::bigint[], '[2:3]={a,b}'::text[])`, 'errors', 2],
    ['release attempts', `select jobs.release($1::bigint[], '[0:1]={9,9}'::integer[])`, 'attempts', 0],
  ])('%s: PD008 naming the field, nothing settled', async (_, text, field, lower) => {
    const e = await sqlErrorOf(sql, text, [ids]);
    expect([e.code, e.column, e.message]).toEqual(['PD008', field,
      `${field}: must start at subscript 1 (${field}[i] belongs to job_ids[i]), got ${lower}`]);
    expect(await running()).toBe(2);
  });
});
