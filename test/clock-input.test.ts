// The injected clock (`now`) of every public jobs.* function that takes one
// (README: Injected clock) at ±infinity: refused by jobs.clock (sql/0002) as
// PD007 naming now, nothing written. Before, each took it somewhere else:
// extend_lease set an infinite lease, consume leased a job until infinity,
// maintain, expire and the cancels ran on it, publish failed with the
// table's check (23514), settle_arrays with "cannot subtract infinite
// timestamps", claim_json with "cannot convert infinity to bigint".
// The schedule functions that take one and redrive's count (below) too:
// publish_due_schedules set a due schedule's next tick to infinity (it never
// ran again) and wrote its last_error, schedule answered that its cron never
// fires (PDC01 cron), redrive_counts failed with the table's check (23514).
import { beforeEach, describe, expect, it } from 'vitest';
import { sqlErrorOf, testDb } from './support/db.js';
import { tableState } from './support/table-state.js';

const db = await testDb();
const sql = db.sql;
/** A running job (claimed by consume) and a waiting one. */
let running = '';
let waiting = '';

/** Every row of the tables a refused call could have written, as one text. */
const state = () => tableState(sql, [['jobs.job_queue', 'job_id'], ['jobs.job', 'job_id'], ['jobs.job_archive', 'job_id'], ['jobs.queue', 'name']]);

beforeEach(async () => {
  await sql('truncate jobs.job_queue, jobs.job, jobs.job_archive');
  running = (await sql<{ id: string }>(`select jobs.publish('t.run', dedupe_key => 'k.run', priority => 1) as id`))[0]!.id;
  expect(await sql(`select job_id::text as id from jobs.consume(1)`)).toEqual([{ id: running }]);
  waiting = (await sql<{ id: string }>(`select jobs.publish('t.wait') as id`))[0]!.id;
});

const calls: [string, (now: string) => string][] = [
  ['publish', (now) => `select jobs.publish('t.a', now => ${now})`],
  ['publish_arrays', (now) => `select jobs.publish_arrays(array['t.a'], now => ${now})`],
  ['publish_bulk', (now) => `select jobs.publish_bulk(array[('t.a', null, null, null, null, null)]::jobs.bulk_job[], now => ${now})`],
  ['publish_event', (now) => `select jobs.publish_event('e.x', now => ${now})`],
  ['consume', (now) => `select * from jobs.consume(1, ${now})`],
  ['consume_topic', (now) => `select * from jobs.consume_topic('t.%', 1, ${now})`],
  ['claim', (now) => `select * from jobs.claim(1, now => ${now})`],
  ['claim_json', (now) => `select jobs.claim_json(1, now => ${now})`],
  ['claim_json settling', (now) => `select jobs.claim_json(1, now => ${now}, ids => array[${running}]::bigint[],
                                     attempts => '{1}', outcomes => '{ack}')`],
  ['settle_arrays', (now) => `select jobs.settle_arrays(array[${running}]::bigint[], '{1}', '{ack}', now => ${now})`],
  ['settle', (now) => `select jobs.settle('[{"id":${running},"attempt":1,"outcome":"ack"}]', ${now})`],
  ['ack', (now) => `select jobs.ack(${running}, null, ${now})`],
  ['ack of many', (now) => `select jobs.ack(array[${running}]::bigint[], null, ${now})`],
  ['nack', (now) => `select jobs.nack(${running}, 'e', null, ${now})`],
  ['nack of many', (now) => `select jobs.nack(array[${running}]::bigint[], array['e'], null, ${now})`],
  ['expire', (now) => `select jobs.expire(10, ${now})`],
  ['maintain', (now) => `select jobs.maintain(now => ${now})`],
  ['extend_lease', (now) => `select jobs.extend_lease(${running}, 1, 10, ${now})`],
  ['cancel', (now) => `select jobs.cancel(${running}, null, ${now})`],
  ['cancel_bulk', (now) => `select jobs.cancel_bulk(array[${waiting}]::bigint[], null, ${now})`],
  ['cancel_key', (now) => `select jobs.cancel_key('k.run', null, ${now})`],
  ['reschedule', (now) => `select jobs.reschedule(array[${waiting}]::bigint[], priority => 5, now => ${now})`],
  ['fail', (now) => `select jobs.fail(array[${waiting}]::bigint[], null, ${now})`],
  ['complete', (now) => `select jobs.complete(array[${waiting}]::bigint[], null, ${now})`],
  ['delete_jobs', (now) => `select jobs.delete_jobs(array[${waiting}]::bigint[], ${now})`],
];

describe.each(['infinity', '-infinity'])('now at %s', (value) => {
  it.each(calls)('%s: PD007 naming now, nothing written', async (_name, call) => {
    const before = await state();
    const error = await sqlErrorOf(sql, call(`'${value}'::timestamptz`));
    expect({ code: error.code, column: error.column, message: error.message })
      .toEqual({ code: 'PD007', column: 'now', message: `now: must be a finite time or null, got ${value}` });
    expect(await state()).toBe(before);
  });
});

describe('a finite now (and null) still runs the call', () => {
  it('extend_lease from a given now', async () => {
    expect(await sql(`select jobs.extend_lease(${running}, 1, 60, '2100-01-01Z') = '2100-01-01Z'::timestamptz + interval '60 s' as ok`))
      .toEqual([{ ok: true }]);
  });

  it('ack with none, consume at a later now', async () => {
    expect(await sql(`select jobs.ack(${running}, null, null) as ok`)).toEqual([{ ok: true }]);
    expect(await sql(`select job_id::text as id, lease_until = now() + interval '1 hour 60 s' as ok
                      from jobs.consume(1, now() + interval '1 hour')`)).toEqual([{ id: waiting, ok: true }]);
  });
});

describe.each(['infinity', '-infinity'])('the schedule functions and redrive, now at %s', (value) => {
  /** The schedules and jobs a refused call could have written, as one text. */
  const scheduleState = async () => (await sql<{ s: string }>(`select concat_ws('|',
      (select string_agg(r::text, ',' order by r.name) from jobs.recurring r), queued.s) as s
      from (select string_agg(q::text, ',' order by q.job_id) as s from jobs.job_queue q) queued`))[0]!.s;

  it.each([
    ['schedule', () => `select jobs.schedule('s.new', '* * * * *', 't.a', now => '${value}')`],
    // Due (next_run_at passed) for a drain's claim or maintain to tick.
    ['publish_due_schedules', () => `select jobs.publish_due_schedules('${value}')`],
    // As pg_cron runs it (runner set by hand: no pg_cron here).
    ['run_schedule', () => `select jobs.run_schedule('s.cron', '${value}')`],
    ['redrive_counts', () => `select * from jobs.redrive_counts(now => '${value}')`],
  ])('%s: PD007 naming now, nothing written', async (_name, call) => {
    await sql('truncate jobs.recurring');
    await sql(`select jobs.schedule('s.due', '* * * * *', 't.a'), jobs.schedule('s.cron', '* * * * *', 't.b')`);
    await sql(`update jobs.recurring set next_run_at = now() - interval '1 minute' where name = 's.due'`);
    await sql(`update jobs.recurring set runner = 'pg_cron', next_run_at = null where name = 's.cron'`);
    await sql(`select jobs.fail(array[${waiting}]::bigint[])`);
    const before = await scheduleState();
    const error = await sqlErrorOf(sql, call());
    expect({ code: error.code, column: error.column, message: error.message })
      .toEqual({ code: 'PD007', column: 'now', message: `now: must be a finite time or null, got ${value}` });
    expect(await scheduleState()).toBe(before);
  });
});
