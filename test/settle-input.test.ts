// Bad input to the settle calls SQL users make (ack, nack, settle,
// settle_arrays, and claim_json's settle) and to jobs.expire: refused with a PD code naming the field,
// the deliveries left running, nothing ended. Found by a scripted sweep of
// every public jobs.* function with odd values for each argument.
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';

const db = await testDb();
const sql = db.sql;
let a = '';
let b = '';

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job');
  // a has retries left, b none: a nack retries a, ends b as a failure.
  a = (await sql<{ id: string }>(`select jobs.publish('t.a', max_retries => 3, priority => 2) as id`))[0]!.id;
  b = (await sql<{ id: string }>(`select jobs.publish('t.b', max_retries => 0, priority => 1) as id`))[0]!.id;
  expect(await sql(`select job_id from jobs.consume(2)`)).toHaveLength(2);
});

/** Both deliveries still running, at attempt 1, and no job ended. */
async function untouched() {
  expect(await sql(`select job_id::text as id, attempt, last_error, lease_until is not null as leased
                    from jobs.job_queue order by job_id`)).toEqual([
    { id: a, attempt: 1, last_error: null, leased: true },
    { id: b, attempt: 1, last_error: null, leased: true },
  ]);
  expect(await sql(`select job_id from jobs.job`)).toEqual([]);
}

describe('refused, naming the field, settling nothing', () => {
  const cases: [string, () => string, string, string, RegExp][] = [
    // Before: b ended as a failure with no error recorded, a retried with 'e1'.
    ['nack: fewer errors than job ids', () => `select jobs.nack(array[${a}, ${b}]::bigint[], array['e1'])`,
     'PD008', 'errors', /one element per job id/],
    ['nack: more errors than job ids', () => `select jobs.nack(array[${a}]::bigint[], array['e1', 'e2', 'e3'])`,
     'PD008', 'errors', /got 3 for 1 job ids/],
    ['ack: fewer results than job ids', () => `select jobs.ack(array[${a}, ${b}]::bigint[], array['{"ok":1}'::jsonb])`,
     'PD008', 'results', /one element per job id/],
    // Before: 23514, job_queue_scheduled_at_finite, from inside settle_arrays.
    ['nack of many: schedule_at infinity', () => `select jobs.nack(array[${a}]::bigint[], array['e'], 'infinity')`,
     'PD007', 'schedule_at', /finite/],
    // The one-job nack refuses a time in the past; the many-job one took it.
    ['nack of many: schedule_at in the past', () => `select jobs.nack(array[${a}]::bigint[], array['e'], now() - interval '1 day')`,
     'PD007', 'schedule_at', /not in the past/],
    ['settle_arrays: errors shorter than ids', () => `select jobs.settle_arrays(array[${a}, ${b}]::bigint[], '{1,1}', '{nack,nack}', errors => array['e1'])`,
     'PD008', 'errors', /one element per delivery/],
    ['settle_arrays: results longer than ids', () => `select jobs.settle_arrays(array[${a}]::bigint[], '{1}', '{ack}', results => array['1', '2']::jsonb[])`,
     'PD008', 'results', /one element per delivery/],
    ['settle_arrays: ms shorter than ids', () => `select jobs.settle_arrays(array[${a}, ${b}]::bigint[], '{1,1}', '{ack,ack}', ms => '{}')`,
     'PD008', 'ms', /one element per delivery/],
    // Before: stored as the job's duration_ms, NaN or below 0.
    ['settle_arrays: an ms that is NaN', () => `select jobs.settle_arrays(array[${a}]::bigint[], '{1}', '{ack}', ms => '{NaN}')`,
     'PD008', 'ms', /finite numbers of milliseconds, 0 or more, or nulls, got NaN$/],
    ['settle_arrays: an ms below 0', () => `select jobs.settle_arrays(array[${a}, ${b}]::bigint[], '{1,1}', '{ack,fail}', ms => '{NULL,-5}')`,
     'PD008', 'ms', /got -5$/],
    ['settle_arrays: an ms at Infinity', () => `select jobs.settle_arrays(array[${a}]::bigint[], '{1}', '{ack}', ms => '{Infinity}')`,
     'PD008', 'ms', /got Infinity$/],
    ['claim_json: an ms below 0 in its settle', () => `select jobs.claim_json(1, ids => array[${a}]::bigint[], attempts => '{1}',
                                                      outcomes => '{ack}', ms => '{-1}')`,
     'PD008', 'ms', /got -1$/],
    ['settle: an ms below 0', () => `select jobs.settle('[{"id":${a},"attempt":1,"outcome":"ack","ms":-3}]')`,
     'PD008', 'ms', /got -3$/],
    ['settle_arrays: a retry at infinity', () => `select jobs.settle_arrays(array[${a}]::bigint[], '{1}', '{nack}', retry_at => array['infinity']::timestamptz[])`,
     'PD008', 'retry_at', /finite/],
    ['settle_arrays: a snooze at -infinity', () => `select jobs.settle_arrays(array[${a}]::bigint[], '{1}', '{release}', retry_at => array['-infinity']::timestamptz[])`,
     'PD008', 'retry_at', /finite/],
    // Before: the result was silently dropped (jsonb_to_recordset ignores unknown keys) and the job acked.
    ['settle: a misspelt key', () => `select jobs.settle('[{"id":${a},"attempt":1,"outcome":"ack","reslt":{"ok":true}}]')`,
     'PD008', 'outcomes', /unknown field outcomes\[1\]\.reslt/],
    // Before: raw 22P02 / 22007 / 22003 cast errors.
    ['settle: an id that is not a number', () => `select jobs.settle('[{"id":"x${a}","attempt":1,"outcome":"ack"}]')`,
     'PD008', 'outcomes', /id and attempt must be integers/],
    ['settle: a retry_at that is not a time', () => `select jobs.settle('[{"id":${a},"attempt":1,"outcome":"nack","retry_at":"soon"}]')`,
     'PD008', 'outcomes', /retry_at a time/],
    ['settle: an attempt past integer', () => `select jobs.settle('[{"id":${a},"attempt":99999999999,"outcome":"ack"}]')`,
     'PD008', 'outcomes', /must be integers/],
    ['settle: a retry at infinity', () => `select jobs.settle('[{"id":${a},"attempt":1,"outcome":"nack","retry_at":"infinity"}]')`,
     'PD008', 'retry_at', /finite/],
    // Before: 2201W "LIMIT must not be negative".
    ['expire: a negative n', () => `select jobs.expire(-1)`, 'PD005', 'n', /0 or more/],
    // Before: LIMIT NULL, no bound at all.
    ['expire: a null n', () => `select jobs.expire(null)`, 'PD005', 'n', /0 or more/],
  ];
  it.each(cases)('%s', async (_name, text, code, field, rule) => {
    const error = await sqlErrorOf(sql, text());
    expect({ code: error.code, column: error.column }).toEqual({ code, column: field });
    expect(error.message.startsWith(`${field}: `)).toBe(true);
    expect(error.message).toMatch(rule);
    await untouched();
  });
});

describe('what stays accepted', () => {
  it('nack and ack of many with one error or result per job, or none', async () => {
    expect(await sql(`select jobs.nack(array[${a}, ${b}]::bigint[], array['e1', 'e2']) as n`)).toEqual([{ n: 2 }]);
    expect(await sql(`select job_id::text as id, error from jobs.job`)).toEqual([{ id: b, error: 'e2' }]);
    expect(await sql(`select last_error from jobs.job_queue`)).toEqual([{ last_error: 'e1' }]);
  });

  it('settle_arrays with its optional arrays null, or holding nulls', async () => {
    expect((await sql<{ r: Record<string, number> }>(
      `select jobs.settle_arrays(array[${a}, ${b}]::bigint[], '{1,1}', '{ack,ack}', null, '{NULL,NULL}', null, '{5,NULL}') as r`))[0]!.r)
      .toMatchObject({ succeeded: 2, stale: 0 });
  });

  it('expire(0) settles nothing', async () => {
    expect(await sql(`select jobs.expire(0, now() + interval '1 hour') as n`)).toEqual([{ n: 0 }]);
  });
});
